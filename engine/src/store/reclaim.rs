//! Reclaiming packs: plan which packs hold enough garbage to rewrite, copy their live blocks
//! into the open pack, retire them (lookups stop finding them), and delete their files once a
//! metadata commit forgot them.
//!
//! Why it is safe without stopping readers: the copies are appended, and visible, before the
//! pack is retired, and the open pack is searched first, so a lookup always finds a block
//! that is live; a reader that located a block in a retired pack holds that pack's file and
//! keeps reading it (Linux keeps an unlinked file's data while it is open). The pack's record
//! leaves the metadata in the same commit that records the copies, so a crash leaves one or
//! the other recorded; an unrecorded file is deleted at the next open.

use std::collections::{BTreeMap, HashSet};

use super::pack_store::PackStore;
use super::{BlockLocation, BlockStore};
use crate::error::{IoContext, Result};
use crate::ids::{BlockId, PackId};

/// What a reclamation would do; see [`BlockStore::plan_reclaim`].
#[derive(Debug, Clone, Default)]
pub struct ReclaimPlan {
    pub units: Vec<ReclaimUnit>,
    pub stored_blocks: u64,
    /// Bytes of the live blocks (each once).
    pub live_bytes: u64,
    /// Stored blocks nothing references, and their bytes: the most reclamation could free.
    pub garbage_blocks: u64,
    pub garbage_bytes: u64,
}

/// One unit (pack) to rewrite.
#[derive(Debug, Clone, Default)]
pub struct ReclaimUnit {
    pub pack: PackId,
    /// Live blocks to copy out before the unit goes.
    pub live: Vec<BlockId>,
    pub live_bytes: u64,
    pub dead_bytes: u64,
    /// Bytes the unit occupies: what retiring it frees.
    pub bytes: u64,
}

impl ReclaimPlan {
    /// Groups `locations` (newest copy of a block first) by pack and keeps the packs that hold
    /// garbage.
    pub fn from_locations(
        locations: Vec<(BlockId, BlockLocation)>,
        live: &dyn Fn(&BlockId) -> bool,
        unit_bytes: &dyn Fn(PackId) -> u64,
    ) -> ReclaimPlan {
        let mut plan = ReclaimPlan::default();
        let mut units: BTreeMap<PackId, ReclaimUnit> = BTreeMap::new();
        let mut seen = HashSet::new();
        for (id, location) in locations {
            if !seen.insert(id) {
                // Also in a newer pack (an earlier reclamation's copy): this one is garbage.
                let unit = units.entry(location.pack).or_default();
                unit.dead_bytes += location.len as u64;
                continue;
            }
            let unit = units.entry(location.pack).or_default();
            if live(&id) {
                unit.live.push(id);
                unit.live_bytes += location.len as u64;
                plan.live_bytes += location.len as u64;
            } else {
                unit.dead_bytes += location.len as u64;
                plan.garbage_blocks += 1;
                plan.garbage_bytes += location.len as u64;
            }
        }
        plan.stored_blocks = seen.len() as u64;
        for (pack, mut unit) in units {
            if unit.dead_bytes > 0 {
                unit.pack = pack;
                unit.bytes = unit_bytes(pack);
                plan.units.push(unit);
            }
        }
        plan
    }

    /// Keeps the units worth rewriting: those under `repack_below` live, then, mostly garbage
    /// first, more until the garbage the others hold is at most `budget` bytes.
    pub fn select(mut self, repack_below: f64, budget: Option<u64>) -> ReclaimPlan {
        let share =
            |u: &ReclaimUnit| u.live_bytes as f64 / (u.live_bytes + u.dead_bytes).max(1) as f64;
        self.units.sort_by(|a, b| share(a).total_cmp(&share(b)));
        let mut left: u64 = self.units.iter().map(|u| u.dead_bytes).sum();
        self.units.retain(|unit| {
            let keep = unit.live_bytes == 0
                || share(unit) < repack_below
                || budget.is_some_and(|budget| left > budget);
            if keep {
                left -= unit.dead_bytes;
            }
            keep
        });
        self
    }

    /// Pack bytes the plan frees and live bytes it copies.
    pub fn totals(&self) -> (u64, u64) {
        self.units
            .iter()
            .fold((0, 0), |(f, c), u| (f + u.bytes, c + u.live_bytes))
    }
}

impl PackStore {
    pub(super) fn plan(&self, live: &dyn Fn(&BlockId) -> bool) -> Result<ReclaimPlan> {
        // Newest packs first, so a block held twice counts as live where lookups find it.
        let open = self.open_pack_id();
        let mut locations = self.locations()?;
        // A damaged pack stays as it is: the blocks it lost cannot be copied out of it.
        let damaged = self.damaged.lock().unwrap().1.clone();
        locations.retain(|(_, l)| !damaged.contains(&l.pack));
        locations.sort_by_key(|(_, l)| std::cmp::Reverse((Some(l.pack) == open, l.pack)));
        Ok(ReclaimPlan::from_locations(locations, live, &|pack| {
            self.pack_len(pack).unwrap_or(0)
        }))
    }

    pub(super) fn carry_out(&self, plan: &ReclaimPlan) -> Result<()> {
        if plan.units.is_empty() {
            return Ok(());
        }
        let chosen: HashSet<PackId> = plan.units.iter().map(|u| u.pack).collect();
        if self
            .open_pack_id()
            .is_some_and(|open| chosen.contains(&open))
        {
            // Rewriting the open pack: seal it first, so copies go to a new one.
            let mut state = self.writer.lock().unwrap();
            self.seal(&mut state)?;
        }
        let bs = self.block_size();
        for unit in &plan.units {
            let mut copies = Vec::with_capacity(unit.live.len());
            for id in &unit.live {
                let mut buf = vec![0u8; bs];
                let n = self.read_block(id, &mut buf, false)?;
                buf.truncate(n);
                copies.push((*id, buf));
            }
            let refs: Vec<(BlockId, &[u8])> =
                copies.iter().map(|(id, d)| (*id, d.as_slice())).collect();
            self.put_copies(&refs, &chosen)?;
            self.retire(unit.pack)?;
        }
        Ok(())
    }

    /// Takes a sealed pack out of service: no lookup finds it any more and its record leaves
    /// the next checkpoint. Its files stay until the metadata forgot it.
    fn retire(&self, id: PackId) -> Result<()> {
        let removed = self.sealed.write().unwrap().remove(&id);
        if removed.is_none() {
            return Err(crate::error::Error::InvalidInput(format!(
                "pack {id} is not a sealed pack"
            )));
        }
        let mut state = self.writer.lock().unwrap();
        state.pending.remove(&id);
        state.retiring.insert(id);
        Ok(())
    }

    pub(super) fn delete_retired_packs(&self) -> Result<u64> {
        let retired = std::mem::take(&mut self.writer.lock().unwrap().retired);
        if retired.is_empty() {
            return Ok(0);
        }
        let mut freed = 0;
        for id in &retired {
            for path in [self.layout.pack(*id), self.layout.index(*id)] {
                if self.io.exists(&path) {
                    freed += self.io.allocated_bytes(&path).unwrap_or(0);
                    self.io
                        .remove_file(&path)
                        .ctx(|| format!("removing {}", path.display()))?;
                }
            }
        }
        self.io
            .sync_dir(&self.layout.packs_dir())
            .ctx(|| "syncing the packs directory".to_string())?;
        Ok(freed)
    }

    /// Bytes a pack occupies (sealed packs and the open one).
    pub fn pack_len(&self, id: PackId) -> Option<u64> {
        if let Some(sp) = self.sealed.read().unwrap().get(&id) {
            return Some(sp.view().pack_len);
        }
        let state = self.writer.lock().unwrap();
        state.writer.as_ref().filter(|w| w.id == id).map(|w| w.len)
    }

    fn open_pack_id(&self) -> Option<PackId> {
        self.open.read().unwrap().id
    }
}
