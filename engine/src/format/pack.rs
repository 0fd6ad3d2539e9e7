//! Pack files: an append-only run of segments after one header page.
//!
//! ```text
//! pack header (4096 bytes): magic "TPACK\0\0\0" | version u32 | block size u32 | pack id u64 |
//!                           zero padding
//! segment:  header: magic "TSEG" | count u32 | count × (block id [32] | length u32) |
//!                   (version 2: a length's top bit set means the stored bytes are a zstd
//!                   frame of the block, the rest of it their length)
//!                   checksum (first 16 bytes of blake3 of the header bytes before it) |
//!                   zero padding to a 4096 multiple
//!           data:   each block's bytes in header order, each starting on a 4096 boundary and
//!                   zero-padded to the next one
//! ```
//!
//! Entries are self-describing, so the index of a pack can always be rebuilt by walking its
//! segments. A segment per flush (rather than a header per block) keeps the per-block overhead
//! to 36 header bytes while every block still starts on a 4 KiB boundary for O_DIRECT.

use super::PACK_ALIGN;
use super::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::ids::BlockId;

pub const PACK_MAGIC: &[u8; 8] = b"TPACK\0\0\0";
pub const SEGMENT_MAGIC: &[u8; 4] = b"TSEG";
pub const HEADER_LEN: u64 = PACK_ALIGN;
const ENTRY_LEN: usize = 36;
const CHECKSUM_LEN: usize = 16;

/// The top bit of a stored length: the bytes are compressed (format version 2).
const COMPRESSED_BIT: u32 = 1 << 31;

/// A stored length and whether the bytes are compressed, as one on-disk u32.
pub fn encode_len(len: u32, compressed: bool) -> u32 {
    debug_assert!(len < COMPRESSED_BIT);
    if compressed {
        len | COMPRESSED_BIT
    } else {
        len
    }
}

/// The stored length and the compressed flag of an on-disk u32.
pub fn decode_len(raw: u32) -> (u32, bool) {
    (raw & !COMPRESSED_BIT, raw & COMPRESSED_BIT != 0)
}

/// One block of a segment: its id, the bytes stored and whether they are compressed.
pub type SegmentEntry = (BlockId, u32, bool);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackHeader {
    pub version: u32,
    pub block_size: u32,
    pub pack_id: u64,
}

impl PackHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(HEADER_LEN as usize);
        e.raw(PACK_MAGIC)
            .u32(self.version)
            .u32(self.block_size)
            .u64(self.pack_id);
        let mut bytes = e.finish();
        bytes.resize(HEADER_LEN as usize, 0);
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<PackHeader> {
        if bytes.len() < 24 || &bytes[..8] != PACK_MAGIC {
            return Err(Error::Corrupt("pack header: bad magic".into()));
        }
        let mut d = Decoder::new(&bytes[8..24], "pack header");
        Ok(PackHeader {
            version: d.u32()?,
            block_size: d.u32()?,
            pack_id: d.u64()?,
        })
    }
}

/// Rounds `n` up to the pack alignment.
pub fn aligned(n: u64) -> u64 {
    n.next_multiple_of(PACK_ALIGN)
}

/// Bytes a segment header with `count` entries occupies on disk (padding included).
pub fn segment_header_len(count: usize) -> u64 {
    aligned((4 + 4 + count * ENTRY_LEN + CHECKSUM_LEN) as u64)
}

/// Encodes a segment header (padded) for blocks of the given ids and stored lengths.
pub fn encode_segment_header(entries: &[SegmentEntry]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(segment_header_len(entries.len()) as usize);
    e.raw(SEGMENT_MAGIC).u32(entries.len() as u32);
    for (id, len, compressed) in entries {
        e.raw(id.as_bytes()).u32(encode_len(*len, *compressed));
    }
    let mut bytes = e.finish();
    let sum = blake3::hash(&bytes);
    bytes.extend_from_slice(&sum.as_bytes()[..CHECKSUM_LEN]);
    bytes.resize(segment_header_len(entries.len()) as usize, 0);
    bytes
}

/// How many entries a segment header says it has, read from its first 8 bytes, or `None` when
/// they are not a segment header (the end of the written part of a pack).
pub fn segment_count(first_bytes: &[u8]) -> Option<usize> {
    if first_bytes.len() < 8 || &first_bytes[..4] != SEGMENT_MAGIC {
        return None;
    }
    Some(u32::from_le_bytes(first_bytes[4..8].try_into().unwrap()) as usize)
}

/// Decodes a whole segment header (as long as `segment_header_len(count)`) of a pack of
/// format `version`, checking its checksum.
pub fn decode_segment_header(
    bytes: &[u8],
    version: u32,
    block_size: u32,
) -> Result<Vec<SegmentEntry>> {
    let count = segment_count(bytes).ok_or_else(|| Error::Corrupt("segment: bad magic".into()))?;
    let body = 8 + count * ENTRY_LEN;
    if bytes.len() < body + CHECKSUM_LEN {
        return Err(Error::Corrupt("segment header truncated".into()));
    }
    if blake3::hash(&bytes[..body]).as_bytes()[..CHECKSUM_LEN] != bytes[body..body + CHECKSUM_LEN] {
        return Err(Error::Corrupt("segment header checksum mismatch".into()));
    }
    let mut d = Decoder::new(&bytes[8..body], "segment header");
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let id = BlockId(d.array()?);
        let (len, compressed) = decode_len(d.u32()?);
        if len == 0 || len > block_size || id.is_zero() || (compressed && version < 2) {
            return Err(Error::Corrupt(format!(
                "segment entry {id} has invalid length {len}"
            )));
        }
        entries.push((id, len, compressed));
    }
    Ok(entries)
}

/// Bytes the data part of a segment with these entries occupies.
pub fn segment_data_len(entries: &[SegmentEntry]) -> u64 {
    entries.iter().map(|(_, len, _)| aligned(*len as u64)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trip() {
        let entries = vec![
            (BlockId::of(b"a"), 1, false),
            (BlockId::of(b"b"), 4096, true),
        ];
        let bytes = encode_segment_header(&entries);
        assert_eq!(bytes.len() as u64, segment_header_len(2));
        assert_eq!(segment_count(&bytes), Some(2));
        assert_eq!(decode_segment_header(&bytes, 2, 65536).unwrap(), entries);
        // A version 1 pack never holds compressed blocks: the bit is corruption there.
        assert!(decode_segment_header(&bytes, 1, 65536).is_err());
        let mut bad = bytes.clone();
        bad[10] ^= 0xff;
        assert!(decode_segment_header(&bad, 2, 65536).is_err());
        assert_eq!(segment_data_len(&entries), 8192);
    }

    #[test]
    fn header_round_trip() {
        let h = PackHeader {
            version: 1,
            block_size: 4096,
            pack_id: 9,
        };
        assert_eq!(PackHeader::decode(&h.encode()).unwrap(), h);
    }
}
