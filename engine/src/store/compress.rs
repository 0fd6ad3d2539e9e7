//! Block compression: zstd, one frame per block, chosen per store when it is made.
//!
//! A block's id is the blake3 of its uncompressed bytes, and every read verifies the
//! uncompressed bytes, so compression changes what a pack holds, never what a block is. A
//! block stays uncompressed when compressing it saves less than an eighth of its place in the
//! pack (blocks start on 4 KiB boundaries, so what counts is the padded length): data that
//! does not compress costs a look at a sample of it on write (below) and nothing on read.
//!
//! Before compressing, the order-0 entropy of every 16th byte is estimated (btrfs's
//! compression heuristic does the same): at 7.5 bits per byte or more the block is
//! taken for incompressible (random, or compressed already) and kept as it is without
//! trying. Such a block could only shrink through long repeats of high-entropy bytes, which
//! this misses; a trial compression of each costs an incompressible import about a tenth of
//! its throughput.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::format::pack::aligned;
use crate::ids::BlockId;

/// How a store keeps its blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    /// zstd at this level (1..=19).
    Zstd(i32),
}

/// The level `zstd` alone means: zstd's default trades ratio and speed well for blocks.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

impl Compression {
    /// The two bytes the store header keeps: codec (0 none, 1 zstd) and level.
    pub fn to_header(self) -> [u8; 2] {
        match self {
            Compression::None => [0, 0],
            Compression::Zstd(level) => [1, level as u8],
        }
    }

    pub fn from_header(bytes: [u8; 2]) -> Result<Compression> {
        match bytes {
            [0, 0] => Ok(Compression::None),
            [1, level @ 1..=19] => Ok(Compression::Zstd(level as i32)),
            _ => Err(Error::Corrupt(format!(
                "store header: unknown compression {bytes:?}"
            ))),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => write!(f, "none"),
            Compression::Zstd(level) => write!(f, "zstd:{level}"),
        }
    }
}

impl FromStr for Compression {
    type Err = Error;

    fn from_str(s: &str) -> Result<Compression> {
        let bad = || {
            Error::InvalidInput(format!(
                "compression {s:?}: expected none, zstd or zstd:LEVEL (1-19)"
            ))
        };
        match s.split_once(':') {
            None if s == "none" => Ok(Compression::None),
            None if s == "zstd" => Ok(Compression::Zstd(DEFAULT_ZSTD_LEVEL)),
            Some(("zstd", level)) => match level.parse::<i32>() {
                Ok(level @ 1..=19) => Ok(Compression::Zstd(level)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// The compressed form of a block when it is worth keeping: at least an eighth smaller in
/// its padded place. `None` keeps the block as it is.
pub fn compress(compression: Compression, data: &[u8]) -> Option<Vec<u8>> {
    let Compression::Zstd(level) = compression else {
        return None;
    };
    let place = aligned(data.len() as u64);
    // A block of one page has no smaller place.
    if place <= aligned(1) {
        return None;
    }
    if looks_incompressible(data) {
        return None;
    }
    let frame = COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            *cell = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        cell.as_mut()?.1.compress(data).ok()
    })?;
    (aligned(frame.len() as u64) + data.len() as u64 / 8 <= place).then_some(frame)
}

/// Bits per byte at or above which a block's sample is taken for incompressible.
const INCOMPRESSIBLE_BITS: f64 = 7.5;

/// Whether the order-0 entropy of every 16th byte says the block will not compress.
fn looks_incompressible(data: &[u8]) -> bool {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for byte in data.iter().step_by(16) {
        counts[*byte as usize] += 1;
        n += 1;
    }
    let n = n as f64;
    let bits: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum();
    bits >= INCOMPRESSIBLE_BITS
}

/// Compresses a batch, on several threads when it is large enough to pay for them.
pub fn compress_all(compression: Compression, blocks: &[(BlockId, &[u8])]) -> Vec<Option<Vec<u8>>> {
    if compression == Compression::None {
        return vec![None; blocks.len()];
    }
    let bytes: usize = blocks.iter().map(|(_, d)| d.len()).sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || bytes < 512 << 10 {
        return blocks
            .iter()
            .map(|(_, d)| compress(compression, d))
            .collect();
    }
    let chunk = blocks.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = blocks
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, d)| compress(compression, d))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("compression does not panic"))
            .collect()
    })
}

/// Decompresses a stored frame into `out` (at least a block long); returns the block's
/// length. A frame that does not decode is corruption (the caller names where it was).
pub fn decompress(frame: &[u8], out: &mut [u8]) -> std::result::Result<usize, String> {
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        let d = cell.as_mut().expect("just made");
        d.decompress_to_buffer(frame, out)
            .map_err(|e| format!("compressed block does not decode: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_ones_are_refused() {
        for (text, c) in [
            ("none", Compression::None),
            ("zstd", Compression::Zstd(3)),
            ("zstd:19", Compression::Zstd(19)),
        ] {
            let parsed: Compression = text.parse().unwrap();
            assert_eq!(parsed, c);
            assert_eq!(Compression::from_header(c.to_header()).unwrap(), c);
        }
        for bad in ["zstd:0", "zstd:20", "lz4", "zstd:x", ""] {
            assert!(bad.parse::<Compression>().is_err(), "{bad}");
        }
        assert!(Compression::from_header([2, 1]).is_err());
    }

    #[test]
    fn keeps_only_what_saves_an_eighth_and_round_trips() {
        let text: Vec<u8> = (0..65536u32)
            .map(|i| b"abcdefgh"[(i % 7) as usize])
            .collect();
        let frame = compress(Compression::Zstd(3), &text).expect("text compresses");
        let mut out = vec![0u8; 65536];
        assert_eq!(decompress(&frame, &mut out).unwrap(), text.len());
        assert_eq!(out, text);
        let mut random = vec![0u8; 65536];
        blake3::Hasher::new()
            .update(b"random")
            .finalize_xof()
            .fill(&mut random);
        assert_eq!(compress(Compression::Zstd(3), &random), None);
        assert!(looks_incompressible(&random));
        assert!(!looks_incompressible(&text));
        // Bytes of middling entropy still get a trial: half random, half zeros compresses.
        let mut half = random.clone();
        half[32768..].fill(0);
        assert!(!looks_incompressible(&half));
        assert!(compress(Compression::Zstd(3), &half).is_some());
        assert_eq!(compress(Compression::Zstd(3), &text[..4096]), None);
        assert_eq!(compress(Compression::None, &text), None);
        assert!(decompress(&text[..100], &mut out).is_err());
    }
}
