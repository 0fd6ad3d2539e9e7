//! The store header file: names the format version and the store's block size.
//!
//! Layout (64 bytes, little-endian): magic `TESSERA\0` (8) | format version u32 | block size
//! u32 | pack target size u64 | reserved (zero) to byte 48 | first 16 bytes of blake3 of bytes
//! 0..48.

use super::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::store::Compression;

pub const MAGIC: &[u8; 8] = b"TESSERA\0";
pub const LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreHeader {
    pub version: u32,
    pub block_size: u32,
    pub pack_target: u64,
    pub compression: Compression,
}

impl StoreHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(LEN);
        e.raw(MAGIC)
            .u32(self.version)
            .u32(self.block_size)
            .u64(self.pack_target)
            .raw(&self.compression.to_header())
            .raw(&[0; 22]);
        let mut bytes = e.finish();
        let sum = blake3::hash(&bytes);
        bytes.extend_from_slice(&sum.as_bytes()[..16]);
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<StoreHeader> {
        if bytes.len() != LEN || &bytes[..8] != MAGIC {
            return Err(Error::InvalidInput(
                "not a tessera store (bad header magic)".into(),
            ));
        }
        if blake3::hash(&bytes[..48]).as_bytes()[..16] != bytes[48..] {
            return Err(Error::Corrupt("store header checksum mismatch".into()));
        }
        let mut d = Decoder::new(&bytes[8..48], "store header");
        Ok(StoreHeader {
            version: d.u32()?,
            block_size: d.u32()?,
            pack_target: d.u64()?,
            compression: Compression::from_header(d.array()?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checksum() {
        let h = StoreHeader {
            version: 2,
            block_size: 65536,
            pack_target: 1 << 28,
            compression: Compression::Zstd(3),
        };
        let mut bytes = h.encode();
        assert_eq!(StoreHeader::decode(&bytes).unwrap(), h);
        bytes[13] ^= 1;
        assert!(StoreHeader::decode(&bytes).is_err());
    }
}
