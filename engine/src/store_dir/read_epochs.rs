//! Waiting for the reads in progress without holding up the ones that start meanwhile: a
//! grace period, as RCU has. A read registers in the current epoch for as long as it holds
//! block ids it resolved; `wait` moves the epoch on and waits until the previous epoch's reads
//! are done. Reads that start after the move register in the new epoch and never wait (an
//! `RwLock` would queue them behind the waiting writer, and a read fetching from a remote can
//! take seconds).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};

#[derive(Default)]
pub struct ReadEpochs {
    epoch: AtomicU64,
    /// Reads registered in even and odd epochs.
    active: [AtomicU64; 2],
    waiter: Mutex<()>,
    done: Condvar,
}

/// A read in progress (registered until dropped).
pub struct Reading<'a> {
    epochs: &'a ReadEpochs,
    slot: usize,
}

impl ReadEpochs {
    /// Registers a read in the current epoch.
    pub fn enter(&self) -> Reading<'_> {
        loop {
            let epoch = self.epoch.load(SeqCst);
            let slot = (epoch % 2) as usize;
            self.active[slot].fetch_add(1, SeqCst);
            // Registered before the epoch moved on: `wait` will see it. Otherwise this
            // registration may be missed: take it back and register in the new epoch.
            if self.epoch.load(SeqCst) == epoch {
                return Reading { epochs: self, slot };
            }
            self.leave(slot);
        }
    }

    /// Waits until every read registered before the call is done. Callers are serialized
    /// (reclamation holds the flush lock), so an epoch's slot is free again before the
    /// epoch after next reuses it.
    pub fn wait(&self) {
        let slot = (self.epoch.fetch_add(1, SeqCst) % 2) as usize;
        let mut guard = self.waiter.lock().unwrap();
        while self.active[slot].load(SeqCst) > 0 {
            guard = self.done.wait(guard).unwrap();
        }
    }

    fn leave(&self, slot: usize) {
        if self.active[slot].fetch_sub(1, SeqCst) == 1 {
            // Under the mutex, so a waiter between its check and its wait is not missed.
            let _guard = self.waiter.lock().unwrap();
            self.done.notify_all();
        }
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.epochs.leave(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    #[test]
    fn wait_returns_only_after_the_reads_registered_before_it_and_never_blocks_new_ones() {
        let epochs = Arc::new(ReadEpochs::default());
        let old = epochs.enter();
        let waited = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (epochs, waited) = (epochs.clone(), waited.clone());
            std::thread::spawn(move || {
                epochs.wait();
                waited.store(true, SeqCst);
            })
        };
        // The waiter has moved the epoch on once it is waiting.
        while epochs.epoch.load(SeqCst) == 0 {
            std::thread::yield_now();
        }
        // A read that starts now does not wait, and the waiter does not wait for it.
        let new = epochs.enter();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waited.load(SeqCst),
            "returned while an older read was in progress"
        );
        drop(old);
        waiter.join().unwrap();
        assert!(waited.load(SeqCst));
        drop(new);
        // Nothing in progress: returns at once, twice over (each slot in turn).
        epochs.wait();
        epochs.wait();
    }
}
