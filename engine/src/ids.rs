//! Typed identifiers: content hashes (`BlockId`, `PageId`) and sequence numbers (`NodeId`,
//! `LayerId`, `PackId`). Hashes print as lowercase hex and parse back from it.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The sentinel for "all zero bytes": never stored, never read from disk.
            pub const ZERO: $name = $name([0; 32]);

            pub fn is_zero(&self) -> bool {
                self.0 == [0; 32]
            }

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Builds the id from exactly 32 bytes; `None` for any other length.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map($name)
            }

            /// A short prefix for log lines and tables.
            pub fn short(&self) -> String {
                self.to_string()[..12].to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                let bad = || Error::InvalidInput(format!("{s:?} is not a 64-digit hex id"));
                if s.len() != 64 || !s.is_ascii() {
                    return Err(bad());
                }
                let mut out = [0u8; 32];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
                }
                Ok($name(out))
            }
        }
    };
}

hash_id!(
    /// blake3-256 of a block's bytes. Position-independent, so equal blocks anywhere dedup.
    BlockId
);
hash_id!(
    /// Hash of one page of a block-map tree (domain-separated from block hashes).
    PageId
);
hash_id!(
    /// The root of a file's block map: the id of its only block for files of at most one
    /// block, else the id of its top page (see `tree::block_map`). Equal roots, equal contents.
    MapRoot
);

const PAGE_CONTEXT: &str = "tessera 2026-11 block-map page v1";

impl BlockId {
    /// The id of `data`: `ZERO` when every byte is zero, blake3 otherwise.
    pub fn of(data: &[u8]) -> BlockId {
        if is_all_zero(data) {
            BlockId::ZERO
        } else {
            BlockId(*blake3::hash(data).as_bytes())
        }
    }
}

impl PageId {
    /// The id of an encoded block-map page (a page of all-zero children is `ZERO`).
    pub fn of(page: &[u8]) -> PageId {
        if is_all_zero(page) {
            PageId::ZERO
        } else {
            let mut hasher = blake3::Hasher::new_derive_key(PAGE_CONTEXT);
            hasher.update(page);
            PageId(*hasher.finalize().as_bytes())
        }
    }
}

/// True when every byte is zero. Written over u64 words so it vectorizes.
pub fn is_all_zero(data: &[u8]) -> bool {
    let (words, tail) = data.as_chunks::<8>();
    words.iter().all(|w| u64::from_ne_bytes(*w) == 0) && tail.iter().all(|b| *b == 0)
}

macro_rules! seq_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        /// Serialized as its number (records and the daemon's hand-over name ids so).
        #[derive(
            Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

seq_id!(
    /// A node's persistent id: the inode number a mount shows. Kept across copy-up and rename.
    NodeId
);
seq_id!(
    /// A layer: an immutable (or, for a container's top, writable) tree diff.
    LayerId
);
seq_id!(
    /// A pack file's sequence number.
    PackId
);

impl NodeId {
    /// Every layer stack has the same root directory node.
    pub const ROOT: NodeId = NodeId(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = BlockId::of(b"hello");
        let parsed: BlockId = id.to_string().parse().unwrap();
        assert_eq!(id, parsed);
        assert!("xyz".parse::<BlockId>().is_err());
    }

    #[test]
    fn zero_data_has_the_zero_id() {
        assert!(BlockId::of(&[0u8; 4096]).is_zero());
        assert!(BlockId::of(&[]).is_zero());
        assert!(!BlockId::of(&[0, 0, 1]).is_zero());
    }

    #[test]
    fn pages_and_blocks_hash_differently() {
        let data = [7u8; 64];
        assert_ne!(BlockId::of(&data).0, PageId::of(&data).0);
    }
}
