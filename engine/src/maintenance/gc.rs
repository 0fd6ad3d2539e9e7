//! Garbage collection: mark, then let the block store reclaim what nothing marks. Packs whose
//! live share fell below a threshold have their live blocks copied into the open pack and are
//! retired; one metadata commit records the copies and forgets the retired packs (and deletes
//! the block-map pages nothing marks); only then are their files deleted. No reference counts
//! anywhere: liveness is what marking finds. The background reclaimer (`reclaimer.rs`) runs
//! the same pass as the container works.
//!
//! Safety (invariant 8 of docs/design.md): gc holds the flush lock (no flush can add
//! references while it works) and the reclaim lock exclusively (no import can dedup against a
//! block it frees), and takes the blocks live views reference only from memory. Reads go on:
//! the block store copies a live block before it retires the pack that held it.

use std::collections::HashSet;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::mark;
use crate::error::Result;
use crate::ids::PageId;
use crate::meta::{MetaRead, Table};
use crate::store_dir::Store;

/// How gc runs.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Report what would be reclaimed; change nothing.
    pub dry_run: bool,
    /// Rewrite sealed packs whose live bytes fell below this share of their block bytes.
    pub repack_below: f64,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            repack_below: 0.5,
        }
    }
}

/// What gc found and did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub referenced_blocks: u64,
    pub stored_blocks: u64,
    /// Bytes of the referenced blocks.
    pub live_bytes: u64,
    /// Stored blocks nothing references, and their bytes: what gc can reclaim at most.
    pub garbage_blocks: u64,
    pub garbage_bytes: u64,
    pub packs_rewritten: u64,
    pub packs_deleted: u64,
    /// Live block bytes copied out of rewritten packs.
    pub bytes_copied: u64,
    /// Pack bytes removed from disk.
    pub bytes_freed: u64,
    pub pages_deleted: u64,
    pub seconds: f64,
    /// What keeping a remote-backed store's cache under its limit dropped (when it has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted: Option<super::EvictReport>,
    /// The packs this store's hold on its remote names after the gc (a store that pulled
    /// lazily).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_packs: Option<u64>,
}

impl Store {
    /// Reclaims blocks and pages nothing references. Then, in a store backed by a remote with a cache limit, drops the least recently used
    /// of the remote's blocks past it.
    /// A store that pulled lazily then rewrites its hold on the remote to what its layers
    /// still reference (`transfer::hold`): a failure there is logged, the gc stands.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let _hold = self.inner.hold_lock.lock().unwrap();
        let mut report = self.gc_with_budget(options, &|_| None)?;
        if !options.dry_run {
            report.evicted = self.evict_cache()?;
            match self.write_own_hold(false) {
                Ok(held) => report.held_packs = held.map(|(_, packs)| packs as u64),
                Err(e) => tracing::warn!("gc: the store's hold on its remote stays as it was: {e}"),
            }
        }
        Ok(report)
    }

    /// gc that also rewrites packs until the garbage left is within `budget(live bytes)`.
    pub(crate) fn gc_with_budget(
        &self,
        options: &GcOptions,
        budget: &dyn Fn(u64) -> Option<u64>,
    ) -> Result<GcReport> {
        let started = Instant::now();
        self.sync()?;
        let _flush = self.flush_guard();
        let _no_dedup = self.inner.reclaim_lock.write().unwrap();
        self.wait_for_reads();
        let mut marks = mark::mark(self)?;
        marks.blocks.extend(mark::unflushed(self));

        let live = |id: &crate::ids::BlockId| marks.blocks.contains(id);
        let plan = self.blocks().plan_reclaim(&live)?;
        let live_bytes = plan.live_bytes;
        let plan = plan.select(options.repack_below, budget(live_bytes));
        let dead_pages = self.dead_pages(&marks.pages)?;
        let (bytes_freed, bytes_copied) = plan.totals();
        let mut report = GcReport {
            dry_run: options.dry_run,
            referenced_blocks: marks.blocks.len() as u64,
            stored_blocks: plan.stored_blocks,
            live_bytes,
            garbage_blocks: plan.garbage_blocks,
            garbage_bytes: plan.garbage_bytes,
            packs_deleted: plan.units.iter().filter(|u| u.live.is_empty()).count() as u64,
            packs_rewritten: plan.units.iter().filter(|u| !u.live.is_empty()).count() as u64,
            bytes_copied,
            bytes_freed,
            pages_deleted: dead_pages.len() as u64,
            seconds: 0.0,
            evicted: None,
            held_packs: None,
        };
        if options.dry_run {
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }

        self.blocks().reclaim(&plan)?;
        if !dead_pages.is_empty() {
            self.meta().write(|w| {
                for page in &dead_pages {
                    w.delete(Table::Pages, page.as_bytes());
                }
                Ok(())
            })?;
        }
        self.commit_metadata()?;
        self.blocks().delete_retired()?;
        report.seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            "gc: freed {} bytes of packs, copied {} live bytes, deleted {} pages",
            report.bytes_freed,
            report.bytes_copied,
            report.pages_deleted
        );
        Ok(report)
    }

    fn dead_pages(&self, live: &HashSet<PageId>) -> Result<Vec<PageId>> {
        let r = self.meta().read();
        Ok(r.scan(Table::Pages, &[])?
            .into_iter()
            .filter_map(|(key, _)| PageId::from_slice(&key))
            .filter(|page| !live.contains(page))
            .collect())
    }
}
