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
//! - Written block bytes are never overwritten in place. Only reclamation removes them, in three
//!   steps: `reclaim` copies a unit's live blocks elsewhere and retires the unit (no lookup finds
//!   it, a reader that found it earlier still reads it); the next checkpoint lists it as retired
//!   and the metadata commit forgets it; only then does `delete_retired` free its space. A crash
//!   anywhere leaves either the old unit recorded or the copies recorded, never neither.
//! - Every block is verified against its id when it is loaded; a mismatch is a `Corrupt` error
//!   naming the pack and offset, never wrong bytes.
//! - The all-zero block is never stored (`BlockId::ZERO`); callers synthesize it.

mod block_cache;
pub mod compress;
mod memory_store;
mod pack_reader;
mod pack_reads;
pub mod pack_store;
mod pack_writer;
mod reclaim;
pub mod remote;
mod staging;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use block_cache::BlockCache;
pub use compress::Compression;
pub use memory_store::MemoryStore;
pub use pack_store::PackStore;
pub use reclaim::{ReclaimPlan, ReclaimUnit};
pub use remote::{Remote, RemoteStore, RemoteUrl};

use crate::error::Result;
use crate::format::records::PackRecord;
use crate::ids::{BlockId, PackId};

/// Pack lengths to record in metadata (see the durability contract).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub packs: BTreeMap<PackId, PackRecord>,
    /// Packs reclamation retired: the metadata commit deletes their records.
    pub retired: BTreeSet<PackId>,
}

impl Checkpoint {
    pub fn is_empty(&self) -> bool {
        self.packs.is_empty() && self.retired.is_empty()
    }
}

/// One block of a [`BlockStore::read_blocks`] call and where its bytes go.
pub struct BlockRead<'a> {
    pub id: BlockId,
    pub dst: &'a mut [u8],
    /// Bytes of the block to skip before `dst` starts.
    pub skip: usize,
}

impl BlockRead<'_> {
    pub(crate) fn fill(&mut self, block: &[u8]) {
        // A stored last block is as long as the file was; a read may start past its end.
        let start = self.skip.min(block.len());
        let available = (block.len() - start).min(self.dst.len());
        self.dst[..available].copy_from_slice(&block[start..start + available]);
        self.dst[available..].fill(0);
    }
}

/// Blocks an import writes aside: invisible to lookups until adopted, gone when dropped
/// unadopted, so a failed import leaves the store as it was.
pub trait Staging: Send {
    /// Stores blocks neither the store nor this staging holds; returns the bytes added.
    fn put(&mut self, blocks: &[(BlockId, &[u8])]) -> Result<u64>;

    /// Whether this staging stored the block.
    fn holds(&self, id: &BlockId) -> bool;

    /// Hands the staged blocks to the store: readable at once, recorded by the next
    /// checkpoint (so durable with the metadata commit that publishes the import).
    fn adopt(self: Box<Self>) -> Result<()>;
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

    /// Reads many verified blocks: each request gets bytes `[skip, skip + dst.len())` of its
    /// block (zero past the block's end). A store with a block cache serves what it holds from
    /// it and keeps each block of which only a part was asked (its neighbours are the likely
    /// next reads); with `fill_cache`, it keeps every block it reads. Backends batch what they
    /// can (adjacent blocks in one read).
    fn read_blocks(&self, reads: &mut [BlockRead<'_>], fill_cache: bool) -> Result<()> {
        let _ = fill_cache;
        let mut scratch = vec![0u8; self.block_size()];
        for read in reads.iter_mut() {
            let n = self.get(&read.id, &mut scratch)?;
            read.fill(&scratch[..n]);
        }
        Ok(())
    }

    /// `read_blocks` for a reader of a file that holds `following` more blocks after the
    /// last one asked for: a store that fetches ahead of reads (the remote-backed one) fetches
    /// no further into what follows; the others just read.
    fn read_file_blocks(
        &self,
        reads: &mut [BlockRead<'_>],
        fill_cache: bool,
        following: u64,
    ) -> Result<()> {
        let _ = following;
        self.read_blocks(reads, fill_cache)
    }

    /// Starts a staging area for an import.
    fn stage(&self) -> Result<Box<dyn Staging + '_>>;

    /// Makes every earlier `put` durable; see the contract above.
    fn sync(&self) -> Result<Checkpoint>;

    /// The caller recorded `checkpoint` durably; it need not be returned again.
    fn acknowledge(&self, checkpoint: &Checkpoint);

    /// Whether everything put so far is durable and described by an acknowledged checkpoint:
    /// the next `sync` would have nothing to add. Metadata that names only blocks put before
    /// a settled moment stays valid after a crash without a commit (the intent log relies on
    /// it). A store that cannot tell says no.
    fn is_settled(&self) -> bool {
        false
    }

    fn stats(&self) -> BlockStoreStats;

    /// Every stored block and where it lives (for fsck and gc), pack by pack.
    fn locations(&self) -> Result<Vec<(BlockId, BlockLocation)>>;

    /// What reclaiming every block `live` rejects would do: each unit (pack) holding garbage,
    /// the live blocks to copy out of it, and the garbage found. `ReclaimPlan::select` keeps
    /// the units worth rewriting (copying a mostly live one costs more than it frees).
    fn plan_reclaim(&self, live: &dyn Fn(&BlockId) -> bool) -> Result<ReclaimPlan>;

    /// Carries out a plan: copies the live blocks of its units elsewhere, then retires the
    /// units. The caller guarantees no block outside the plan's live sets is referenced, and
    /// no `put` runs meanwhile. The retired units leave the next checkpoint.
    fn reclaim(&self, plan: &ReclaimPlan) -> Result<()>;

    /// Frees the space of retired units whose checkpoint was acknowledged. Returns the bytes
    /// freed.
    fn delete_retired(&self) -> Result<u64>;

    /// The block cache's (bytes held, hits, misses), when the store has one.
    fn cache_figures(&self) -> Option<(usize, u64, u64)> {
        None
    }

    /// Empties the block cache, if the store has one (so the next reads are cold).
    fn drop_cache(&self) {}

    /// What was found damaged when the store opened (units it serves only in part).
    fn damage(&self) -> Vec<String> {
        Vec::new()
    }

    /// The limit on the remote's blocks kept locally, when the store is backed by a remote.
    fn fetch_cache(&self) -> Option<&remote::FetchCache> {
        None
    }

    /// The remote packs behind the store, when it is backed by a remote (a lazy pull attaches
    /// the image's packs there, so the store can fetch its blocks on first read).
    fn remote_packs(&self) -> Option<&remote::RemotePacks> {
        None
    }
}
