//! The background flusher: every interval, makes dirty data and metadata durable, so any
//! change is durable within a bounded time; and early, when writers nudge it because dirty
//! data passed half the limit, so writers rarely have to flush themselves. It holds only a
//! weak reference to the store and exits when the store closes. Its errors are kept for the
//! next fsync to report. After each tick it runs a reclamation pass when one is due
//! (`maintenance::reclaimer`).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::Store;

#[derive(Default)]
struct Signals {
    stopped: bool,
    nudged: bool,
}

#[derive(Default)]
pub(super) struct Flusher {
    signals: Arc<(Mutex<Signals>, Condvar)>,
}

impl Flusher {
    pub fn stop(&self) {
        let (lock, wake) = &*self.signals;
        lock.lock().unwrap().stopped = true;
        wake.notify_all();
    }

    /// Asks for a flush now rather than at the next interval.
    pub fn nudge(&self) {
        let (lock, wake) = &*self.signals;
        let mut signals = lock.lock().unwrap();
        if !signals.nudged {
            signals.nudged = true;
            wake.notify_all();
        }
    }
}

pub(super) fn start(store: &Store, interval: Duration, reclaim: bool) {
    let weak = Arc::downgrade(&store.inner);
    let signals = store.inner.flusher.signals.clone();
    let spawned = std::thread::Builder::new()
        .name("tessera-flush".into())
        .spawn(move || {
            loop {
                {
                    let (lock, wake) = &*signals;
                    let mut state = lock.lock().unwrap();
                    if !state.nudged && !state.stopped {
                        state = wake.wait_timeout(state, interval).unwrap().0;
                    }
                    if state.stopped {
                        return;
                    }
                    state.nudged = false;
                }
                let Some(inner) = weak.upgrade() else { return };
                let store = Store { inner };
                let busy = store.inner.dirty.held() > 0 || store.inner.meta.pending_bytes() > 0;
                if busy && let Err(e) = store.sync() {
                    tracing::error!("background flush failed: {e}");
                    *store.inner.background_error.lock().unwrap() = Some(e.to_string());
                }
                if reclaim {
                    store.reclaim_if_due(busy);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the background flusher: {e}");
    }
}
