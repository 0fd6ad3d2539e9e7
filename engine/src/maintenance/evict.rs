//! Keeping a remote-backed store's copies of the remote's blocks under their limit
//! (`tessera pull --lazy --cache-size`): the least recently used are dropped by rewriting the
//! local packs that hold them, as reclamation rewrites packs — under the same locks, so no
//! flush, import or read in progress is disturbed — and fetched again when read. Blocks that
//! containers' writable layers use are never dropped (they stay readable with the remote
//! away), nor is anything the remote lacks.

use serde::{Deserialize, Serialize};

use super::mark;
use crate::error::{Error, Result};
use crate::ids::BlockId;
use crate::store_dir::Store;
use crate::store_dir::record_cache_limit;

/// What an eviction pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvictReport {
    pub limit: u64,
    /// Bytes of the remote's blocks held locally before the pass.
    pub cached_bytes: u64,
    pub blocks_dropped: u64,
    pub bytes_dropped: u64,
    /// Pack bytes removed from disk, and live bytes copied to do it.
    pub bytes_freed: u64,
    pub bytes_copied: u64,
}

impl Store {
    /// Sets (or, with `None`, lifts) the limit on the remote's blocks this store keeps,
    /// durably: it holds whenever the store opens. Only a store backed by a remote has one.
    pub fn set_cache_limit(&self, limit: Option<u64>) -> Result<()> {
        let Some(cache) = self.blocks().fetch_cache() else {
            return Err(Error::InvalidInput(
                "a cache size applies to a store backed by a remote (pull --lazy)".into(),
            ));
        };
        record_cache_limit(&self.inner.io, &self.inner.layout, limit)?;
        cache.set_limit(limit);
        Ok(())
    }

    /// The limit on the remote's blocks this store keeps, if it has one.
    pub fn cache_limit(&self) -> Option<u64> {
        self.blocks().fetch_cache().and_then(|c| c.limit())
    }

    /// Drops cached blocks past the limit, least recently used first. `None` when the store
    /// has no limit (it is not backed by a remote, or no `--cache-size` was given).
    pub fn evict_cache(&self) -> Result<Option<EvictReport>> {
        let (Some(cache), Some(packs)) =
            (self.blocks().fetch_cache(), self.blocks().remote_packs())
        else {
            return Ok(None);
        };
        let Some(limit) = cache.limit() else {
            return Ok(None);
        };
        self.sync()?;
        let _flush = self.flush_guard();
        let _no_dedup = self.inner.reclaim_lock.write().unwrap();
        self.wait_for_reads();
        let pinned = mark::writable_blocks(self)?;
        let local = self.blocks().locations()?;
        let (victims, held) =
            cache.victims(&local, &|id| packs.holds(id), &|id| pinned.contains(id));
        let mut report = EvictReport {
            limit,
            cached_bytes: held,
            ..Default::default()
        };
        if victims.is_empty() {
            cache.measured(held);
            return Ok(Some(report));
        }
        report.blocks_dropped = victims.len() as u64;
        report.bytes_dropped = local
            .iter()
            .filter(|(id, _)| victims.contains(id))
            .map(|(_, l)| l.len as u64)
            .sum();
        let keep = |id: &BlockId| !victims.contains(id);
        // Every pack holding a victim is rewritten without it.
        let plan = self
            .blocks()
            .plan_reclaim(&keep)?
            .select(f64::INFINITY, None);
        (report.bytes_freed, report.bytes_copied) = plan.totals();
        self.blocks().reclaim(&plan)?;
        self.commit_metadata()?;
        self.blocks().delete_retired()?;
        cache.dropped(&victims);
        cache.measured(held - report.bytes_dropped);
        tracing::info!(
            "cache over its limit of {limit} bytes: dropped {} blocks ({} bytes) of the remote's",
            report.blocks_dropped,
            report.bytes_dropped
        );
        Ok(Some(report))
    }
}
