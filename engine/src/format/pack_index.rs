//! Sealed pack index files (`.idx`): an immutable sorted table id → (offset, length), as git's
//! pack `.idx`. Searched in place through a read-only map.
//!
//! ```text
//! header (64 bytes): magic "TIDX\0\0\0\0" | version u32 | reserved u32 | pack id u64 |
//!                    count u64 | pack length u64 | zero padding
//! fanout: 256 × u32, entry i = number of ids whose first byte is <= i
//! entries: count × (block id [32] | offset u64 | length u32), sorted by id; in version 2 the
//!          length's top bit says the stored bytes are compressed (as in the pack)
//! trailer: blake3 of every byte before it [32]
//! ```

use super::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::ids::BlockId;

pub const MAGIC: &[u8; 8] = b"TIDX\0\0\0\0";
const HEADER_LEN: usize = 64;
const FANOUT_LEN: usize = 256 * 4;
const ENTRY_LEN: usize = 44;
const TRAILER_LEN: usize = 32;

/// Where a block lives inside its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    /// Bytes stored (the compressed length of a compressed block).
    pub len: u32,
    /// Whether the stored bytes are a zstd frame of the block (format version 2).
    pub compressed: bool,
}

impl Entry {
    pub fn plain(offset: u64, len: u32) -> Entry {
        Entry {
            offset,
            len,
            compressed: false,
        }
    }
}

/// Encodes an index; `entries` need not be sorted.
pub fn encode(
    version: u32,
    pack_id: u64,
    pack_len: u64,
    entries: &mut [(BlockId, Entry)],
) -> Vec<u8> {
    entries.sort_unstable_by_key(|(id, _)| *id);
    let mut e = Encoder::with_capacity(HEADER_LEN + FANOUT_LEN + entries.len() * ENTRY_LEN + 32);
    e.raw(MAGIC)
        .u32(version)
        .u32(0)
        .u64(pack_id)
        .u64(entries.len() as u64)
        .u64(pack_len)
        .raw(&[0; HEADER_LEN - 40]);
    let mut fanout = [0u32; 256];
    for (id, _) in entries.iter() {
        fanout[id.0[0] as usize] += 1;
    }
    let mut total = 0;
    for slot in fanout {
        total += slot;
        e.u32(total);
    }
    for (id, entry) in entries.iter() {
        e.raw(id.as_bytes())
            .u64(entry.offset)
            .u32(super::pack::encode_len(entry.len, entry.compressed));
    }
    let mut bytes = e.finish();
    let sum = blake3::hash(&bytes);
    bytes.extend_from_slice(sum.as_bytes());
    bytes
}

/// A validated view of an index file's bytes.
pub struct IndexView<'a> {
    bytes: &'a [u8],
    pub pack_id: u64,
    pub pack_len: u64,
    pub count: usize,
}

impl<'a> IndexView<'a> {
    /// Checks magic, version (one this build reads), size and (when `verify`) the trailing
    /// checksum.
    pub fn parse(bytes: &'a [u8], verify: bool) -> Result<IndexView<'a>> {
        if bytes.len() < HEADER_LEN + FANOUT_LEN + TRAILER_LEN || &bytes[..8] != MAGIC {
            return Err(Error::Corrupt("pack index: bad magic or too short".into()));
        }
        let mut d = Decoder::new(&bytes[8..40], "pack index header");
        let found = d.u32()?;
        if !(super::OLDEST_FORMAT_VERSION..=super::FORMAT_VERSION).contains(&found) {
            return Err(Error::Corrupt(format!("pack index version {found}")));
        }
        d.u32()?;
        let pack_id = d.u64()?;
        let count = d.u64()? as usize;
        let pack_len = d.u64()?;
        let expected = count
            .checked_mul(ENTRY_LEN)
            .map(|n| n + HEADER_LEN + FANOUT_LEN + TRAILER_LEN);
        if expected != Some(bytes.len()) {
            return Err(Error::Corrupt(
                "pack index: size does not match count".into(),
            ));
        }
        let body = bytes.len() - TRAILER_LEN;
        if verify && blake3::hash(&bytes[..body]).as_bytes() != &bytes[body..] {
            return Err(Error::Corrupt("pack index checksum mismatch".into()));
        }
        Ok(IndexView {
            bytes,
            pack_id,
            pack_len,
            count,
        })
    }

    fn fanout(&self, byte: usize) -> usize {
        let at = HEADER_LEN + byte * 4;
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap()) as usize
    }

    fn entry_at(&self, i: usize) -> (BlockId, Entry) {
        let at = HEADER_LEN + FANOUT_LEN + i * ENTRY_LEN;
        let raw = &self.bytes[at..at + ENTRY_LEN];
        let id = BlockId(raw[..32].try_into().unwrap());
        let offset = u64::from_le_bytes(raw[32..40].try_into().unwrap());
        let (len, compressed) =
            super::pack::decode_len(u32::from_le_bytes(raw[40..44].try_into().unwrap()));
        (
            id,
            Entry {
                offset,
                len,
                compressed,
            },
        )
    }

    pub fn find(&self, id: &BlockId) -> Option<Entry> {
        let first = id.0[0] as usize;
        let mut lo = if first == 0 {
            0
        } else {
            self.fanout(first - 1)
        };
        let mut hi = self.fanout(first).min(self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (found, entry) = self.entry_at(mid);
            match found.cmp(id) {
                std::cmp::Ordering::Equal => return Some(entry),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }

    pub fn iter(&self) -> impl Iterator<Item = (BlockId, Entry)> + '_ {
        (0..self.count).map(|i| self.entry_at(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_entry_and_no_other() {
        let mut entries: Vec<_> = (0..500u32)
            .map(|i| {
                let id = BlockId::of(&i.to_le_bytes());
                (
                    id,
                    Entry {
                        offset: 4096 * i as u64,
                        len: i + 1,
                        compressed: i % 3 == 0,
                    },
                )
            })
            .collect();
        let bytes = encode(1, 3, 1 << 20, &mut entries.clone());
        let view = IndexView::parse(&bytes, true).unwrap();
        assert_eq!(view.count, 500);
        assert_eq!(view.pack_id, 3);
        for (id, entry) in entries.drain(..) {
            assert_eq!(view.find(&id), Some(entry));
        }
        assert_eq!(view.find(&BlockId::of(b"absent")), None);
        let mut bad = bytes.clone();
        bad[200] ^= 1;
        assert!(IndexView::parse(&bad, true).is_err());
    }
}
