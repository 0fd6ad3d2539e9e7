//! Garbage collection: mark, then sweep by repacking. Packs whose live share fell below a
//! threshold have their live blocks copied into the open pack; then one metadata commit drops
//! their records, and only then are their files deleted. Block-map pages nothing marks are
//! deleted in the same commit. No reference counts anywhere: liveness is what marking finds.
//!
//! Safety (DESIGN invariant 8): gc holds the flush lock (no flush can add references while it
//! works), collects blocks live views reference only from memory, then holds the block-read
//! lock exclusively, so no read or import holds a block id gc could move.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::mark;
use crate::error::Result;
use crate::format::records::pack_key;
use crate::ids::{BlockId, PackId, PageId};
use crate::meta::{MetaRead, Table};
use crate::store::BlockStore;
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
}

#[derive(Default)]
struct PackUse {
    live: Vec<(BlockId, u32)>,
    live_bytes: u64,
    dead_bytes: u64,
}

impl Store {
    /// Reclaims blocks and pages nothing references.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let started = Instant::now();
        self.sync()?;
        let _flush = self.flush_guard();
        let in_memory = mark::unflushed(self);
        let _no_readers = self.inner.gc_lock.write().unwrap();
        let mut marks = mark::mark(self)?;
        marks.blocks.extend(in_memory);

        let mut report = GcReport {
            dry_run: options.dry_run,
            referenced_blocks: marks.blocks.len() as u64,
            ..Default::default()
        };
        let mut packs: BTreeMap<PackId, PackUse> = BTreeMap::new();
        let mut stored = HashSet::new();
        for (id, location) in self.blocks().locations()? {
            stored.insert(id);
            let pack = packs.entry(location.pack).or_default();
            if marks.blocks.contains(&id) {
                pack.live.push((id, location.len));
                pack.live_bytes += location.len as u64;
            } else {
                pack.dead_bytes += location.len as u64;
                report.garbage_blocks += 1;
                report.garbage_bytes += location.len as u64;
            }
        }
        report.stored_blocks = stored.len() as u64;

        let chosen: Vec<(PackId, PackUse)> = packs
            .into_iter()
            .filter(|(_, usage)| {
                let total = usage.live_bytes + usage.dead_bytes;
                // A pack with nothing live goes whatever the threshold.
                usage.dead_bytes > 0
                    && (usage.live_bytes == 0
                        || (usage.live_bytes as f64) < options.repack_below * total as f64)
            })
            .collect();
        let open = self.blocks().open_pack();
        if !options.dry_run && chosen.iter().any(|(id, _)| Some(*id) == open) {
            // The open pack is mostly garbage: seal it so it can be rewritten like the others.
            self.blocks().seal_open()?;
        }
        let dead_pages = self.dead_pages(&marks.pages)?;
        report.pages_deleted = dead_pages.len() as u64;
        for (id, usage) in &chosen {
            let len = self.blocks().pack_len(*id).unwrap_or(0);
            report.bytes_freed += len;
            report.bytes_copied += usage.live_bytes;
            if usage.live.is_empty() {
                report.packs_deleted += 1;
            } else {
                report.packs_rewritten += 1;
            }
        }
        if options.dry_run {
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }

        for (id, usage) in chosen {
            self.rewrite_pack(id, &usage.live)?;
        }
        self.meta().write(|w| {
            for page in &dead_pages {
                w.delete(Table::Pages, page.as_bytes());
            }
            Ok(())
        })?;
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

    /// Copies a pack's live blocks into the open pack and takes the pack out of service.
    fn rewrite_pack(&self, id: PackId, live: &[(BlockId, u32)]) -> Result<()> {
        let bs = self.block_size() as usize;
        let mut blocks = Vec::with_capacity(live.len());
        for (block, _) in live {
            let mut buf = vec![0u8; bs];
            let n = self.blocks().read_block(block, &mut buf, false)?;
            buf.truncate(n);
            blocks.push((*block, buf));
        }
        self.blocks().retire(id)?;
        let refs: Vec<(BlockId, &[u8])> = blocks.iter().map(|(b, d)| (*b, d.as_slice())).collect();
        self.blocks().put(&refs)?;
        self.meta().write(|w| {
            w.delete(Table::Packs, &pack_key(id));
            Ok(())
        })
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
