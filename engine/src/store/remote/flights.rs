//! Blocks on their way from the remote, and the background fetches that stream ahead of
//! sequential reads (`RemotePacks::plan` decides what; this file runs it).
//!
//! Each block being fetched is claimed once, by the read or the background window that
//! fetches it: a read that needs a block in flight waits for that fetch instead of asking the
//! remote a second time, and a window skips what is local or already claimed. A claim ends
//! after the block is in the local packs (or the fetch failed), so a reader that finds no
//! claim finds the block local, or fetches it itself. A background window that fails is only
//! logged: the reader that needs one of its blocks fetches it again, and gets the error.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use crate::ids::BlockId;

/// Background windows in flight at once, over every stream of the store.
pub(super) const MAX_BACKGROUND: usize = 4;

#[derive(Default)]
pub(super) struct Flights {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Claimed blocks, by the number of the fetch that claimed them.
    claimed: HashMap<BlockId, u64>,
    /// Fetches that hold claims, by number; `true` for a background window.
    fetches: HashMap<u64, bool>,
    next: u64,
}

/// The claims of one fetch; dropping it ends them and wakes the readers waiting.
pub(super) struct Claim {
    flights: Arc<Flights>,
    number: u64,
    pub(super) ids: Vec<BlockId>,
}

impl Flights {
    /// Background windows that may start now.
    pub(super) fn budget(&self) -> usize {
        let state = self.state.lock().unwrap();
        let running = state.fetches.values().filter(|bg| **bg).count();
        MAX_BACKGROUND.saturating_sub(running)
    }

    /// Claims the blocks of `ids` that are neither local nor claimed (`is_local` is asked
    /// under the lock, so a fetch that ends meanwhile is seen as local), and returns the
    /// fetches holding the others.
    pub(super) fn claim(
        self: &Arc<Self>,
        ids: &[BlockId],
        background: bool,
        is_local: &dyn Fn(&BlockId) -> bool,
    ) -> (Claim, Vec<u64>) {
        let mut state = self.state.lock().unwrap();
        let number = state.next;
        state.next += 1;
        let mut mine = Vec::new();
        let mut waits = Vec::new();
        for id in ids {
            match state.claimed.get(id) {
                Some(other) => waits.push(*other),
                None if is_local(id) => {}
                None => {
                    state.claimed.insert(*id, number);
                    mine.push(*id);
                }
            }
        }
        if !mine.is_empty() {
            state.fetches.insert(number, background);
        }
        waits.sort_unstable();
        waits.dedup();
        let claim = Claim {
            flights: self.clone(),
            number,
            ids: mine,
        };
        (claim, waits)
    }

    /// Waits until the listed fetches have ended.
    pub(super) fn wait(&self, fetches: &[u64]) {
        let mut state = self.state.lock().unwrap();
        while fetches.iter().any(|f| state.fetches.contains_key(f)) {
            state = self.changed.wait(state).unwrap();
        }
    }

    /// Waits until no background window is in flight (closing the store; tests).
    pub(super) fn wait_for_background(&self) {
        let mut state = self.state.lock().unwrap();
        while state.fetches.values().any(|bg| *bg) {
            state = self.changed.wait(state).unwrap();
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let mut state = self.flights.state.lock().unwrap();
        for id in &self.ids {
            state.claimed.remove(id);
        }
        state.fetches.remove(&self.number);
        drop(state);
        self.flights.changed.notify_all();
    }
}

/// Runs `fetch` on a thread of its own (a background window, whose claim it holds); `shared`
/// keeps what it needs alive, and the store waits for it before closing.
pub(super) fn spawn<S: Send + Sync + 'static>(
    shared: &Arc<S>,
    claim: Claim,
    fetch: impl FnOnce(&S, &[BlockId]) + Send + 'static,
) {
    let shared = shared.clone();
    let started = std::thread::Builder::new()
        .name("tessera-prefetch".into())
        .spawn(move || {
            fetch(&shared, &claim.ids);
            drop(claim);
        });
    if let Err(e) = started {
        tracing::warn!("starting a background fetch: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BlockId {
        BlockId::of(&[n; 10])
    }

    #[test]
    fn a_block_is_claimed_once_and_waiters_wake_when_it_ends() {
        let flights = Arc::new(Flights::default());
        let local = |_: &BlockId| false;
        let (first, waits) = flights.claim(&[id(1), id(2)], true, &local);
        assert_eq!((first.ids.len(), waits.len()), (2, 0));
        assert_eq!(flights.budget(), MAX_BACKGROUND - 1);
        let (second, waits) = flights.claim(&[id(2), id(3)], false, &local);
        assert_eq!(second.ids, vec![id(3)]);
        assert_eq!(waits, vec![first.number]);
        let waiter = {
            let flights = flights.clone();
            std::thread::spawn(move || flights.wait(&waits))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(
            !waiter.is_finished(),
            "waits while the first fetch holds its claim"
        );
        drop(first);
        waiter.join().unwrap();
        assert_eq!(flights.budget(), MAX_BACKGROUND);
        drop(second);
        let (third, waits) = flights.claim(&[id(2), id(3)], true, &|b| *b == id(2));
        assert_eq!((third.ids.clone(), waits.len()), (vec![id(3)], 0));
        drop(third);
        flights.wait_for_background();
    }
}
