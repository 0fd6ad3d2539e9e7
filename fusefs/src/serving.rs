//! Who serves a mount's requests: threads of its own (fuser's background session), or the
//! process's one pool of workers shared by every pooled mount — a daemon with a thousand
//! mounts then runs a fixed number of FUSE threads, not four per mount.

use std::sync::{Arc, Mutex};

use crate::fs::TesseraFs;

pub(crate) enum Serving {
    Own(fuser::BackgroundSession),
    Pooled(fuser::PooledSession),
}

/// The process's pool: twice the CPUs, at least eight — a worker waiting on an O_DIRECT pack
/// read or a remote fetch must not leave the CPUs idle.
fn pool() -> std::io::Result<Arc<fuser::Pool>> {
    static POOL: Mutex<Option<Arc<fuser::Pool>>> = Mutex::new(None);
    let mut pool = POOL.lock().unwrap();
    if let Some(pool) = pool.as_ref() {
        return Ok(pool.clone());
    }
    let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
    let made = fuser::Pool::new((2 * cpus).max(8))?;
    *pool = Some(made.clone());
    Ok(made)
}

impl Serving {
    pub fn start(session: fuser::Session<TesseraFs>, pooled: bool) -> std::io::Result<Serving> {
        Ok(match pooled {
            true => Serving::Pooled(pool()?.serve(session)?),
            false => Serving::Own(session.spawn()?),
        })
    }

    pub fn notifier(&self) -> fuser::Notifier {
        match self {
            Serving::Own(s) => s.notifier(),
            Serving::Pooled(s) => s.notifier(),
        }
    }

    /// Waits until the session ended (its filesystem destroyed).
    pub fn join(self) -> std::io::Result<()> {
        match self {
            Serving::Own(s) => s.join(),
            Serving::Pooled(s) => s.join(),
        }
    }
}
