//! The background flusher: every interval, makes dirty data and metadata durable, so any
//! change is durable within a bounded time. It holds only a weak reference to the store and
//! exits when the store closes. Its errors are kept for the next fsync to report.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::Store;

#[derive(Default)]
pub(super) struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Flusher {
    pub fn stop(&self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap() = true;
        wake.notify_all();
    }
}

pub(super) fn start(store: &Store, interval: Duration) {
    let weak = Arc::downgrade(&store.inner);
    let stop = store.inner.flusher.stop.clone();
    let spawned = std::thread::Builder::new()
        .name("tessera-flush".into())
        .spawn(move || {
            loop {
                {
                    let (lock, wake) = &*stop;
                    let stopped = lock.lock().unwrap();
                    let (stopped, _) = wake.wait_timeout(stopped, interval).unwrap();
                    if *stopped {
                        return;
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                let store = Store { inner };
                let busy = store.inner.dirty.held() > 0 || store.inner.meta.pending_bytes() > 0;
                if busy && let Err(e) = store.sync() {
                    tracing::error!("background flush failed: {e}");
                    *store.inner.background_error.lock().unwrap() = Some(e.to_string());
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the background flusher: {e}");
    }
}
