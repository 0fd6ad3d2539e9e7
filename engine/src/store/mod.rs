//! Content-addressed block storage.
//!
//! # Durability contract of [`BlockStore`]
//! - `put` hands blocks to the store. They are readable at once, from this process, and are not
//!   durable.
//! - `sync` makes every earlier `put` durable and returns a [`Checkpoint`]: the pack lengths that
//!   cover those blocks. The caller records the checkpoint in the same metadata transaction that
//!   first references the blocks, then calls `acknowledge`. A store reopened after a crash is
//!   cut back to the last recorded checkpoint, so metadata never references a block that is not
//!   on disk, and nothing the metadata references is ever cut.
//! - Written block bytes are never overwritten in place. Only gc (repack, then delete whole
//!   packs) removes them.
//! - Every block is verified against its id when it is loaded; a mismatch is a `Corrupt` error
//!   naming the pack and offset, never wrong bytes.
//! - The all-zero block is never stored (`BlockId::ZERO`); callers synthesize it.

mod block_cache;
mod memory_store;
mod pack_reader;
pub mod pack_store;
mod pack_writer;
mod retire;
mod staging;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use block_cache::BlockCache;
pub use memory_store::MemoryStore;
pub use pack_store::{BlockRead, PackStore};
pub use staging::Staging;

use crate::error::Result;
use crate::format::records::PackRecord;
use crate::ids::{BlockId, PackId};

/// Pack lengths to record in metadata (see the durability contract).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub packs: BTreeMap<PackId, PackRecord>,
}

/// Counts a store keeps of its contents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStoreStats {
    /// Blocks held (each once).
    pub blocks: u64,
    /// Bytes of block data held (unpadded).
    pub block_bytes: u64,
    /// Bytes the packs occupy on disk, headers, padding and garbage included.
    pub pack_bytes: u64,
    pub packs: u64,
}

/// Where one stored block lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLocation {
    pub pack: PackId,
    pub offset: u64,
    pub len: u32,
}

pub trait BlockStore: Send + Sync {
    fn block_size(&self) -> usize;

    /// Whether the store holds the block (in a sealed pack, the open pack or an earlier put).
    fn contains(&self, id: &BlockId) -> Result<bool>;

    /// Stores blocks whose ids the caller computed with `BlockId::of`. Blocks already held and
    /// zero blocks are skipped (dedup). Returns the bytes of block data added.
    fn put(&self, blocks: &[(BlockId, &[u8])]) -> Result<u64>;

    /// Reads a block into `out[..len]` after verifying it, and returns `len`. `out` holds at
    /// least `block_size` bytes.
    fn get(&self, id: &BlockId, out: &mut [u8]) -> Result<usize>;

    /// Makes every earlier `put` durable; see the contract above.
    fn sync(&self) -> Result<Checkpoint>;

    /// The caller recorded `checkpoint` durably; it need not be returned again.
    fn acknowledge(&self, checkpoint: &Checkpoint);

    fn stats(&self) -> BlockStoreStats;

    /// Every stored block and where it lives (for fsck and gc), pack by pack.
    fn locations(&self) -> Result<Vec<(BlockId, BlockLocation)>>;
}
