//! Reclaiming space as containers work, without anyone running `tessera gc`.
//!
//! The background flusher calls [`Store::reclaim_if_due`] after each tick. A pass is the gc
//! pass (mark, then the block store reclaims what nothing marks), chosen to cost little:
//! - it runs when the bytes flushes stored since the last pass reach an eighth of the live
//!   bytes (at least 32 MiB) — a container rewriting its files — or when the store changed
//!   since the last pass and then stayed idle for two ticks (an unlink, a truncate, a
//!   `rm -rf` that stored nothing new);
//! - it rewrites the packs gc would (under half live), then, mostly-garbage first, further
//!   packs until the garbage left is under an eighth of the live bytes (at least 32 MiB).
//!
//! So after a workload goes idle the store holds what `tessera gc` would leave, and during a
//! workload that rewrites its data the garbage stays within an eighth of the live bytes plus
//! the bytes written in one trigger interval. Blocks an image or a commit references are
//! marked, so never touched; `tessera gc` stays for an immediate pass and other thresholds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::gc::GcOptions;
use crate::store_dir::Store;

/// Garbage the background passes leave at most, as a share of the live block bytes...
const GARBAGE_SHARE: f64 = 0.125;
/// ...but never less than this many bytes, and a pass is due after this many stored.
const MIN_BYTES: u64 = 32 << 20;
/// Idle flusher ticks after a change before a pass runs.
const IDLE_TICKS: u32 = 2;

/// What the background reclaimer did; shown by `tessera daemon status` and `stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReclaimStatus {
    pub passes: u64,
    pub bytes_freed: u64,
    pub bytes_copied: u64,
    /// Garbage the last pass found and left (packs above its thresholds).
    pub garbage_left: u64,
    /// Block bytes stored since the last pass: what may have become garbage since.
    pub stored_since: u64,
    pub last_pass_seconds: f64,
    pub last_error: Option<String>,
}

/// The reclaimer's counters, kept by the store.
#[derive(Default)]
pub(crate) struct Reclaimer {
    stored_since: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    status: ReclaimStatus,
    live_bytes: u64,
    commits_at_pass: u64,
    idle_ticks: u32,
}

impl Reclaimer {
    /// A flush stored `bytes` of new blocks.
    pub fn stored(&self, bytes: u64) {
        self.stored_since.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn status(&self) -> ReclaimStatus {
        let mut status = self.state.lock().unwrap().status.clone();
        status.stored_since = self.stored_since.load(Ordering::Relaxed);
        status
    }
}

/// Garbage a background pass may leave for `live` bytes of live blocks.
fn garbage_budget(live: u64) -> u64 {
    ((live as f64 * GARBAGE_SHARE) as u64).max(MIN_BYTES)
}

impl Store {
    /// Runs a background reclamation pass when one is due (see the module comment). `busy`:
    /// whether this flusher tick found work.
    pub(crate) fn reclaim_if_due(&self, busy: bool) {
        if self.blocks().fetch_cache().is_some_and(|c| c.may_be_over())
            && let Err(e) = self.evict_cache()
        {
            tracing::warn!("keeping the cache under its limit failed: {e}");
        }
        let reclaimer = &self.inner.reclaimer;
        let commits = self.commit_count();
        let due = {
            let mut state = reclaimer.state.lock().unwrap();
            state.idle_ticks = if busy { 0 } else { state.idle_ticks + 1 };
            let stored = reclaimer.stored_since.load(Ordering::Relaxed);
            let rewriting = stored >= garbage_budget(state.live_bytes);
            let settled = state.idle_ticks >= IDLE_TICKS && commits != state.commits_at_pass;
            rewriting || settled
        };
        if !due {
            return;
        }
        let stored = reclaimer.stored_since.swap(0, Ordering::Relaxed);
        // gc's thresholds, plus the garbage budget.
        let outcome =
            self.gc_with_budget(&GcOptions::default(), &|live| Some(garbage_budget(live)));
        let mut state = reclaimer.state.lock().unwrap();
        state.commits_at_pass = self.commit_count();
        match outcome {
            Ok(report) => {
                state.live_bytes = report.live_bytes;
                let status = &mut state.status;
                status.passes += 1;
                status.bytes_freed += report.bytes_freed;
                status.bytes_copied += report.bytes_copied;
                status.garbage_left = report.garbage_bytes.saturating_sub(report.bytes_freed);
                status.last_pass_seconds = report.seconds;
                status.last_error = None;
                if report.bytes_freed > 0 {
                    tracing::info!(
                        "reclaimed {} bytes ({} copied) in {:.2} s",
                        report.bytes_freed,
                        report.bytes_copied,
                        report.seconds
                    );
                }
            }
            Err(e) => {
                // Try again at the next trigger: put back what the pass did not account.
                reclaimer.stored_since.fetch_add(stored, Ordering::Relaxed);
                tracing::warn!("background reclamation failed: {e}");
                state.status.last_error = Some(e.to_string());
            }
        }
    }

    /// What the background reclaimer did so far.
    pub fn reclaim_status(&self) -> ReclaimStatus {
        self.inner.reclaimer.status()
    }
}
