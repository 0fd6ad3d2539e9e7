//! The size limit on what a remote-backed store keeps of the remote's blocks. Local copies of
//! blocks the remote holds are a cache: past the limit, the least recently used are dropped
//! (the maintenance pass `Store::evict_cache` rewrites the packs that held them) and fetched
//! again when read. Blocks of containers' writable layers are never chosen.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;

use crate::ids::BlockId;
use crate::store::BlockLocation;

/// A pass frees down to this share of the limit, so it does not run again at the next fetch.
const LOW_WATER: f64 = 0.9;

pub struct FetchCache {
    /// Bytes of cached blocks allowed (0: no limit).
    limit: AtomicU64,
    /// Bytes the last measure found, plus what fetches added since.
    held: AtomicU64,
    /// Cached blocks by recency of use since the store opened (most recent first). Blocks
    /// not used since are older than any of these.
    recent: Mutex<LruCache<BlockId, ()>>,
}

impl Default for FetchCache {
    fn default() -> Self {
        FetchCache {
            limit: AtomicU64::new(0),
            held: AtomicU64::new(u64::MAX),
            recent: Mutex::new(LruCache::unbounded()),
        }
    }
}

impl FetchCache {
    pub fn limit(&self) -> Option<u64> {
        Some(self.limit.load(Ordering::Relaxed)).filter(|l| *l > 0)
    }

    pub fn set_limit(&self, limit: Option<u64>) {
        self.limit.store(limit.unwrap_or(0), Ordering::Relaxed);
    }

    /// Notes a use of blocks the remote holds (only with a limit: without one nothing is
    /// ever chosen, and reads pay nothing).
    pub(super) fn used(&self, ids: impl Iterator<Item = BlockId>) {
        if self.limit().is_none() {
            return;
        }
        let mut recent = self.recent.lock().unwrap();
        for id in ids {
            recent.put(id, ());
        }
    }

    /// Fetches kept `bytes` more locally.
    pub(super) fn added(&self, bytes: u64) {
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held != u64::MAX).then(|| held + bytes)
            });
    }

    /// Records a measure of the cached bytes.
    pub(crate) fn measured(&self, bytes: u64) {
        self.held.store(bytes, Ordering::Relaxed);
    }

    /// Whether the cache may be over its limit (a pass measures before it evicts). True until
    /// a first measure.
    pub fn may_be_over(&self) -> bool {
        self.limit()
            .is_some_and(|limit| self.held.load(Ordering::Relaxed) > limit)
    }

    /// Chooses cached blocks to drop, given every local block with its location and whether
    /// it is cached (the remote holds it) and may go (no writable layer uses it): least
    /// recently used first — blocks not used since the store opened before those used, the
    /// oldest packs' first — until the rest fit under the low-water mark. Returns them and
    /// the cached bytes measured.
    pub(crate) fn victims(
        &self,
        local: &[(BlockId, BlockLocation)],
        cached: &dyn Fn(&BlockId) -> bool,
        pinned: &dyn Fn(&BlockId) -> bool,
    ) -> (HashSet<BlockId>, u64) {
        let held: u64 = local
            .iter()
            .filter(|(id, _)| cached(id))
            .map(|(_, l)| l.len as u64)
            .sum();
        let mut victims = HashSet::new();
        let Some(limit) = self.limit().filter(|limit| held > *limit) else {
            return (victims, held);
        };
        let target = (limit as f64 * LOW_WATER) as u64;
        // Rank 0: not used since open; then by recency, least recent first.
        let ranks: HashMap<BlockId, usize> = {
            let recent = self.recent.lock().unwrap();
            let n = recent.len();
            recent
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (*id, n - i))
                .collect()
        };
        let mut candidates: Vec<(usize, u64, u64, BlockId, u32)> = local
            .iter()
            .filter(|(id, _)| cached(id) && !pinned(id))
            .map(|(id, l)| {
                let rank = ranks.get(id).copied().unwrap_or(0);
                (rank, l.pack.0, l.offset, *id, l.len)
            })
            .collect();
        candidates.sort_unstable();
        let mut left = held;
        for (_, _, _, id, len) in candidates {
            if left <= target {
                break;
            }
            victims.insert(id);
            left -= len as u64;
        }
        (victims, held)
    }

    /// Forgets the recency of dropped blocks.
    pub(crate) fn dropped(&self, victims: &HashSet<BlockId>) {
        let mut recent = self.recent.lock().unwrap();
        for id in victims {
            recent.pop(id);
        }
    }
}
