//! A block store backed by a remote (an S3-API object store), with the local packs as its
//! cache: one more [`BlockStore`], so nothing above the seam knows a block may live elsewhere.
//!
//! The remote holds sealed packs as immutable objects and their indexes (layout: `bucket.rs`,
//! docs/design.md §8). The store knows the remote packs whose indexes it attached (pulled with
//! an image, uploaded by this store, or found by [`RemotePacks::refresh`]); their indexes are
//! kept under `STORE/remote/URLHASH/`, so opening reads local files only and makes no request
//! — it never lists or downloads every remote pack.
//!
//! Reads: a block the local packs hold is read from them; the other blocks of a read that the
//! attached indexes name are fetched together, in coalesced ranged GETs, verified against
//! their ids, then put into the local packs and served from there. Reads that go through a
//! pack in order have windows of it fetched ahead in the background, several at once
//! (`fetch.rs` plans them, `flights.rs` runs them and keeps any block from being fetched
//! twice at once). A block whose bytes do not match its id is neither served nor kept (a
//! `Corrupt` error naming the object and offset). With a cache limit (`cache.rs`), the least
//! recently used of those copies are dropped again by `Store::evict_cache`. Writes (`put`, staging) go to the local
//! packs only, deduplicated against the remote too; [`RemoteStore::upload`] sends blocks the
//! remote lacks. The durability contract is the local store's: the remote only ever adds
//! copies, and a crash loses at most cached copies of remote blocks, fetched again on demand.

pub mod bucket;
mod cache;
mod client;
mod fetch;
mod flights;
mod index_cache;
mod remote_packs;
mod upload;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

pub use bucket::{LAYOUT_VERSION, PackName};
pub use cache::FetchCache;
pub use client::{Listed, Remote, RemoteFigures, RemoteUrl};
pub use remote_packs::RemotePacks;
pub use upload::UploadReport;

use super::ReclaimPlan;
use super::pack_store::{PackStore, PackStoreConfig};
use super::{BlockLocation, BlockRead, BlockStore, BlockStoreStats, Checkpoint, Staging};
use crate::error::Result;
use crate::format::records::PackRecord;
use crate::ids::{BlockId, PackId};
use crate::io::Io;
use crate::layout::StoreLayout;
use flights::Flights;

/// Reads fetch a block again at most this often when a cache eviction keeps dropping it.
const EVICTION_RETRIES: usize = 3;

pub struct RemoteStore {
    shared: Arc<Shared>,
    config: PackStoreConfig,
}

/// What background fetches use too.
struct Shared {
    local: PackStore,
    packs: RemotePacks,
    cache: FetchCache,
    flights: Arc<Flights>,
}

impl RemoteStore {
    /// Opens the local packs (recovering as `PackStore::open` does) and the indexes of the
    /// remote packs attached earlier. Makes no request to the remote.
    pub fn open(
        io: Io,
        layout: StoreLayout,
        config: PackStoreConfig,
        records: &BTreeMap<PackId, PackRecord>,
        remote: Remote,
    ) -> Result<RemoteStore> {
        let local = PackStore::open(io.clone(), layout.clone(), config.clone(), records)?;
        let packs = RemotePacks::open(io, layout, config.block_size, config.pack_target, remote)?;
        let shared = Shared {
            local,
            packs,
            cache: FetchCache::default(),
            flights: Arc::default(),
        };
        Ok(RemoteStore {
            shared: Arc::new(shared),
            config,
        })
    }

    /// The limit on the remote's blocks kept locally, and their recency.
    pub fn cache(&self) -> &FetchCache {
        &self.shared.cache
    }

    /// The remote packs this store knows.
    pub fn packs(&self) -> &RemotePacks {
        &self.shared.packs
    }

    pub fn remote(&self) -> &Remote {
        self.shared.packs.remote()
    }

    /// Whether the remote holds the block (as far as the attached indexes tell).
    pub fn remote_holds(&self, id: &BlockId) -> bool {
        self.shared.packs.holds(id)
    }

    /// Uploads the listed blocks the remote lacks (see `RemotePacks::upload`).
    pub fn upload(&self, ids: &[BlockId]) -> Result<UploadReport> {
        self.shared.packs.upload(ids, &self.shared.local)
    }

    /// Waits until no window fetched ahead is in flight.
    pub fn wait_for_background(&self) {
        self.shared.flights.wait_for_background();
        // A window's thread lets go of the store right after its claim.
        while Arc::strong_count(&self.shared) > 1 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Makes every listed block local: the blocks the local packs lack are fetched at once
    /// (verified), with what the plan adds, and put into them; windows the plan fetches
    /// ahead start in the background; blocks another fetch has on their way are waited for.
    /// A block fetched along that does not come is only logged; one that was asked for
    /// fails the call (after the others that came are kept).
    /// `following`: the blocks of the reader's file after these (`u64::MAX`: not a file's).
    fn make_local(&self, ids: impl Iterator<Item = BlockId>, following: u64) -> Result<()> {
        let shared = &self.shared;
        let mut seen = HashSet::new();
        let (mut touched, mut asked) = (Vec::new(), Vec::new());
        for id in ids {
            if id.is_zero() || !seen.insert(id) {
                continue;
            }
            if shared.packs.holds(&id) {
                touched.push(id);
            }
            if !shared.local.contains(&id)? {
                asked.push(id);
            }
        }
        if touched.is_empty() && asked.is_empty() {
            return Ok(());
        }
        let is_local = |id: &BlockId| shared.local.contains(id).unwrap_or(true);
        let budget = shared.flights.budget();
        let plan = shared
            .packs
            .plan(&touched, &asked, &is_local, budget, following);
        for window in plan.later {
            let (claim, _) = shared.flights.claim(&window, true, &is_local);
            if !claim.ids.is_empty() {
                flights::spawn(&self.shared, claim, |shared, ids| {
                    if let Err(e) = shared.fetch_and_keep(ids, &[]) {
                        tracing::warn!("read-ahead: {e}");
                    }
                });
            }
        }
        let mut wanted = asked.clone();
        wanted.extend(plan.now);
        while !wanted.is_empty() {
            let (claim, waits) = shared.flights.claim(&wanted, false, &is_local);
            let fetched = shared.fetch_and_keep(&claim.ids, &asked);
            drop(claim);
            fetched?;
            if waits.is_empty() {
                break;
            }
            // What other fetches brought; one that failed is fetched again here.
            shared.flights.wait(&waits);
            wanted = asked.iter().filter(|id| !is_local(id)).copied().collect();
        }
        Ok(())
    }

    /// Whether a cache eviction dropped one of these blocks after `make_local` fetched or
    /// found it (the read then fetches it again).
    fn evicted_meanwhile(&self, mut ids: impl Iterator<Item = BlockId>) -> bool {
        ids.any(|id| self.remote_holds(&id) && !self.shared.local.contains(&id).unwrap_or(true))
    }

    /// Notes the use of the remote's blocks among `ids`, for the cache's recency.
    fn used(&self, ids: impl Iterator<Item = BlockId>) {
        if self.cache().limit().is_some() {
            self.cache().used(ids.filter(|id| self.remote_holds(id)));
        }
    }
}

impl Shared {
    /// Fetches blocks (verified) and puts those that came into the local packs. Errors of
    /// blocks in `asked` fail the call; the others are logged.
    fn fetch_and_keep(&self, ids: &[BlockId], asked: &[BlockId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut fetched = Vec::with_capacity(ids.len());
        let mut failed = None;
        for (id, result) in self.packs.fetch_many(ids) {
            match result {
                Ok(data) => fetched.push((id, data)),
                Err(e) if asked.contains(&id) => {
                    failed.get_or_insert(e);
                }
                Err(e) => tracing::warn!("read-ahead of block {id}: {e}"),
            }
        }
        let pairs: Vec<(BlockId, &[u8])> = fetched.iter().map(|(id, d)| (*id, &d[..])).collect();
        self.cache.added(self.local.put(&pairs)?);
        failed.map_or(Ok(()), Err)
    }
}

impl Drop for RemoteStore {
    /// Windows fetched ahead put into the local packs: they end before the store closes.
    fn drop(&mut self) {
        self.wait_for_background();
    }
}

/// Staging that also skips blocks the remote holds.
struct RemoteStaging<'a> {
    inner: Box<dyn Staging + 'a>,
    store: &'a RemoteStore,
}

impl Staging for RemoteStaging<'_> {
    fn put(&mut self, blocks: &[(BlockId, &[u8])]) -> Result<u64> {
        let fresh: Vec<(BlockId, &[u8])> = blocks
            .iter()
            .filter(|(id, _)| !self.store.remote_holds(id))
            .copied()
            .collect();
        self.inner.put(&fresh)
    }

    fn holds(&self, id: &BlockId) -> bool {
        self.inner.holds(id)
    }

    fn adopt(self: Box<Self>) -> Result<()> {
        self.inner.adopt()
    }
}

impl BlockStore for RemoteStore {
    fn block_size(&self) -> usize {
        self.config.block_size as usize
    }

    fn contains(&self, id: &BlockId) -> Result<bool> {
        Ok(self.shared.local.contains(id)? || self.remote_holds(id))
    }

    fn put(&self, blocks: &[(BlockId, &[u8])]) -> Result<u64> {
        let fresh: Vec<(BlockId, &[u8])> = blocks
            .iter()
            .filter(|(id, _)| !self.remote_holds(id))
            .copied()
            .collect();
        self.shared.local.put(&fresh)
    }

    fn get(&self, id: &BlockId, out: &mut [u8]) -> Result<usize> {
        let mut tries = 0;
        loop {
            self.make_local(std::iter::once(*id), u64::MAX)?;
            match self.shared.local.get(id, out) {
                Err(_)
                    if tries < EVICTION_RETRIES && self.evicted_meanwhile(std::iter::once(*id)) =>
                {
                    tries += 1
                }
                result => {
                    self.used(std::iter::once(*id));
                    return result;
                }
            }
        }
    }

    fn read_blocks(&self, reads: &mut [BlockRead<'_>], fill_cache: bool) -> Result<()> {
        self.read_file_blocks(reads, fill_cache, u64::MAX)
    }

    fn read_file_blocks(
        &self,
        reads: &mut [BlockRead<'_>],
        fill_cache: bool,
        following: u64,
    ) -> Result<()> {
        let mut tries = 0;
        loop {
            self.make_local(reads.iter().map(|r| r.id), following)?;
            match self.shared.local.read_blocks(reads, fill_cache) {
                Err(_)
                    if tries < EVICTION_RETRIES
                        && self.evicted_meanwhile(reads.iter().map(|r| r.id)) =>
                {
                    tries += 1
                }
                result => {
                    self.used(reads.iter().map(|r| r.id));
                    return result;
                }
            }
        }
    }

    fn stage(&self) -> Result<Box<dyn Staging + '_>> {
        Ok(Box::new(RemoteStaging {
            inner: self.shared.local.stage()?,
            store: self,
        }))
    }

    fn sync(&self) -> Result<Checkpoint> {
        self.shared.local.sync()
    }

    fn acknowledge(&self, checkpoint: &Checkpoint) {
        self.shared.local.acknowledge(checkpoint)
    }

    /// Puts (and blocks fetched from the remote) go to the local packs: settled when they are.
    fn is_settled(&self) -> bool {
        self.shared.local.is_settled()
    }

    /// Blocks and bytes held locally or on the remote (each once); packs and pack bytes are
    /// the local cache's.
    fn stats(&self) -> BlockStoreStats {
        let mut stats = self.shared.local.stats();
        let local: std::collections::HashSet<BlockId> = self
            .shared
            .local
            .locations()
            .unwrap_or_default()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for (id, len) in self.shared.packs.known_blocks() {
            if !local.contains(&id) {
                stats.blocks += 1;
                stats.block_bytes += len as u64;
            }
        }
        stats
    }

    /// The local packs' blocks (the cache); remote-only blocks have no local location.
    fn locations(&self) -> Result<Vec<(BlockId, BlockLocation)>> {
        self.shared.local.locations()
    }

    fn plan_reclaim(&self, live: &dyn Fn(&BlockId) -> bool) -> Result<ReclaimPlan> {
        self.shared.local.plan_reclaim(live)
    }

    fn reclaim(&self, plan: &ReclaimPlan) -> Result<()> {
        self.shared.local.reclaim(plan)
    }

    fn delete_retired(&self) -> Result<u64> {
        self.shared.local.delete_retired()
    }

    fn cache_figures(&self) -> Option<(usize, u64, u64)> {
        self.shared.local.cache_figures()
    }

    fn drop_cache(&self) {
        self.shared.local.drop_cache()
    }

    fn damage(&self) -> Vec<String> {
        self.shared.local.damage()
    }

    fn fetch_cache(&self) -> Option<&FetchCache> {
        Some(&self.shared.cache)
    }

    fn remote_packs(&self) -> Option<&RemotePacks> {
        Some(&self.shared.packs)
    }
}

#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
pub(crate) mod tests;
