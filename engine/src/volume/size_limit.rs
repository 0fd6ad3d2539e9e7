//! Per-container size limits (`tessera create --size-limit`, `tessera update`): the bytes a
//! container holds exclusively — stored blocks that no image and no other container
//! references — may not grow past its limit. A write that would take them past fails with
//! ENOSPC, as it would on a full file system of the limit's size (what `df` in the mount
//! shows: the limit and the use). ENOSPC rather than EDQUOT: the container sees one file
//! system, and that is how docker's `--storage-opt size` on xfs project quotas fails, so
//! programs already handle it; EDQUOT would speak of a per-user quota that is not there.
//!
//! Exclusive bytes are exact only after a scan of the store (`stats::exclusive_bytes`: a
//! sync, then every layer's block maps), too slow for every write. So the view keeps the last
//! scan's figure and charges, until the next scan, one block for each block a write makes
//! dirty that was not (an upper bound: a dirty block may be stored as a duplicate, or replace
//! a block the container alone held). When a write would take the estimate past the limit,
//! the view scans again (at most once a second, unless an unlink, truncate, hole punch or
//! rename may have given space back since) and refuses the write only if the exact figure
//! plus the write still pass it — whole blocks the store holds already (shared, or the
//! container's own) not counted.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Volume;
use super::file_data::FileData;
use crate::error::{Error, Result};
use crate::ids::BlockId;

/// Scans no more often than this while writes press against the limit.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Limit {
    /// The limit in bytes (`u64::MAX`: none).
    bytes: AtomicU64,
    /// The last scan: exclusive bytes then, and when (`None`: none yet).
    scanned: Mutex<Option<(u64, Instant)>>,
    /// Bytes charged since the last scan.
    charged: AtomicU64,
    /// Held through a scan (never with `scanned`, which writers take under a file's lock:
    /// the scan flushes, and takes every file's lock).
    scanning: Mutex<()>,
    /// Off for views that replay what was already acknowledged (the intent log at open).
    enforced: AtomicBool,
    /// Something may have given space back since the last scan (an unlink, a truncate…):
    /// the next refusal scans again, however recent the last scan.
    freed: AtomicBool,
}

impl Default for Limit {
    fn default() -> Limit {
        Limit {
            bytes: AtomicU64::new(u64::MAX),
            scanned: Mutex::new(None),
            charged: AtomicU64::new(0),
            scanning: Mutex::new(()),
            enforced: AtomicBool::new(true),
            freed: AtomicBool::new(false),
        }
    }
}

impl Limit {
    pub fn set(&self, bytes: Option<u64>) {
        self.bytes
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    pub fn get(&self) -> Option<u64> {
        Some(self.bytes.load(Ordering::SeqCst)).filter(|b| *b != u64::MAX)
    }

    /// Notes an operation that may give space back (see `freed`).
    pub fn note_freed(&self) {
        if self.bytes.load(Ordering::Relaxed) != u64::MAX {
            self.freed.store(true, Ordering::Relaxed);
        }
    }

    fn applies(&self) -> bool {
        self.get().is_some() && self.enforced.load(Ordering::SeqCst)
    }

    /// Charges `bytes` if the estimate stays within the limit (`false`: it would not, or no
    /// scan was made yet).
    fn try_charge(&self, bytes: u64) -> bool {
        let limit = self.bytes.load(Ordering::SeqCst);
        let Some((scanned, _)) = *self.scanned.lock().unwrap() else {
            return false;
        };
        let charged = self.charged.load(Ordering::SeqCst);
        if bytes > 0 && scanned + charged + bytes > limit {
            return false;
        }
        self.charged.fetch_add(bytes, Ordering::SeqCst);
        true
    }

    /// Exclusive bytes as estimated now (`None`: never scanned).
    fn estimate(&self) -> Option<u64> {
        let scanned = self.scanned.lock().unwrap().map(|(b, _)| b)?;
        Some(scanned + self.charged.load(Ordering::SeqCst))
    }
}

impl Volume {
    /// Stops enforcing the container's size limit (replay of acknowledged writes).
    pub(crate) fn ignore_size_limit(&self) {
        self.shared.limit.enforced.store(false, Ordering::SeqCst);
    }

    /// Sets the limit of a live view (after `Store::set_size_limit`).
    pub(crate) fn set_size_limit(&self, bytes: Option<u64>) {
        self.shared.limit.set(bytes);
    }

    /// The container's size limit (`None`: none).
    pub fn size_limit(&self) -> Option<u64> {
        self.shared.limit.get()
    }

    /// The container's limit and its exclusive bytes as estimated now (scanning when none
    /// was made); `None` without a limit.
    pub fn size_limit_use(&self) -> Result<Option<(u64, u64)>> {
        let Some(limit) = self.shared.limit.get() else {
            return Ok(None);
        };
        if self.shared.limit.estimate().is_none() {
            self.scan_exclusive(true)?;
        }
        Ok(Some((limit, self.shared.limit.estimate().unwrap_or(0))))
    }

    /// Charges a write of `data` at `offset` against the limit: one block for each block it
    /// makes dirty. `fd` is the file's locked data; it is released and taken again when the
    /// store must be scanned. Errors with NoSpace when the write does not fit.
    pub(super) fn charge_write<'a>(
        &self,
        state: &'a super::file_data::NodeState,
        fd: std::sync::MutexGuard<'a, FileData>,
        offset: u64,
        data: &[u8],
    ) -> Result<std::sync::MutexGuard<'a, FileData>> {
        let limit = &self.shared.limit;
        if !limit.applies() {
            return Ok(fd);
        }
        let bs = self.block_bytes();
        let end = offset + data.len() as u64;
        let new_blocks = |fd: &FileData| {
            (offset / bs..end.div_ceil(bs))
                .filter(|i| !fd.dirty.contains_key(i))
                .count() as u64
                * bs
        };
        if limit.try_charge(new_blocks(&fd)) {
            return Ok(fd);
        }
        // The scan flushes every file, this one too: its lock must be free.
        drop(fd);
        self.scan_exclusive(false)?;
        let fd = state.data.lock().unwrap();
        if limit.try_charge(new_blocks(&fd)) {
            return Ok(fd);
        }
        // Closer, at the cost of hashing: a whole block the store holds already is shared
        // (or the container's own already), so it adds nothing to what the container holds
        // alone.
        let store = self.shared.store.blocks();
        let mut wanted = 0;
        for index in (offset / bs..end.div_ceil(bs)).filter(|i| !fd.dirty.contains_key(i)) {
            let start = index * bs;
            if start >= offset && start + bs <= end {
                let block = &data[(start - offset) as usize..(start + bs - offset) as usize];
                let id = BlockId::of(block);
                if id.is_zero() || store.contains(&id)? {
                    continue;
                }
            }
            wanted += bs;
        }
        if limit.try_charge(wanted) {
            return Ok(fd);
        }
        let (max, used) = (limit.get().unwrap_or(0), limit.estimate().unwrap_or(0));
        Err(Error::NoSpace(format!(
            "container {} reached its size limit: {used} of {max} bytes held, a write of {wanted} more refused",
            self.shared.container_name().unwrap_or_default()
        )))
    }

    /// Scans the store for the container's exclusive bytes — `always`, or when the last scan
    /// is older than `RESCAN_EVERY`. No lock of a file may be held (the scan flushes).
    fn scan_exclusive(&self, always: bool) -> Result<()> {
        let Some(name) = self.shared.container_name() else {
            return Ok(());
        };
        let limit = &self.shared.limit;
        let _one_at_a_time = limit.scanning.lock().unwrap();
        let recent = limit
            .scanned
            .lock()
            .unwrap()
            .is_some_and(|(_, at)| at.elapsed() < RESCAN_EVERY);
        let freed = limit.freed.swap(false, Ordering::SeqCst);
        if recent && !always && !freed {
            return Ok(());
        }
        let before = limit.charged.load(Ordering::SeqCst);
        let bytes = crate::stats::exclusive_bytes(&self.shared.store, &name)?;
        // What was charged meanwhile was made dirty after the scan's sync: still charged.
        let mut scanned = limit.scanned.lock().unwrap();
        limit.charged.fetch_sub(before, Ordering::SeqCst);
        *scanned = Some((bytes, Instant::now()));
        Ok(())
    }
}
