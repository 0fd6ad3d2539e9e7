//! Mounts that outlive the process serving them. The kernel keeps a FUSE connection alive
//! while any process holds its /dev/fuse descriptor; the daemon's keeper holds a copy of each
//! mount's, so that when the daemon exits (a hand-over) or is killed, the mount stays up with
//! its requests queued, and the next daemon serves the same descriptor on ([`Mount::adopt`]).
//!
//! - A hand-over: the daemon stops taking requests and waits for those it is serving
//!   ([`Mount::quiesce`]: the [`Gate`] every request enters), makes everything durable, and
//!   hands its open handles on with the descriptor. Requests the gate held back were read but
//!   never answered: the next daemon asks the kernel to send them again (FUSE_NOTIFY_RESEND).
//! - A kill: the same, except that what the killed daemon held in memory is gone (writes it
//!   acknowledged but had not made durable) and so is its handle table. The next daemon takes
//!   handles it does not know as open, and answers the first fsync through each of them — and
//!   every fsync the kernel sends again — with EIO: that fsync cannot vouch for writes the dead
//!   daemon may have lost, and Linux reports lost write-back to each file descriptor open when
//!   it happened the same way (once).

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tessera::Volume;
use tessera::volume::OpenHandles;

use crate::Mount;

/// What a mount's next server needs besides its descriptor: what the connection negotiated
/// and how the previous server ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inheritance {
    /// The kernel leaves the umask to the server (FUSE_DONT_MASK was negotiated).
    pub dont_mask: bool,
    /// The handles the previous server had open, when it handed them over; `None` when it
    /// was killed.
    pub handles: Option<OpenHandles>,
    /// The previous servers' handles are all below this number; this one numbers from it.
    pub handle_base: u64,
}

/// Handles of each server of a mount are numbered in their own range of 2^40.
pub(crate) const HANDLE_RANGE: u64 = 1 << 40;

/// Requests pass the gate while it is open; once closed it holds every new one back for good
/// (the process is about to exit), and [`Gate::close`] waits for those inside.
#[derive(Default)]
struct Gate {
    /// (closed, requests inside)
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

/// A request inside the gate; leaving when dropped.
struct Inside(Arc<Handover>);

impl Drop for Inside {
    fn drop(&mut self) {
        let mut state = self.0.gate.state.lock().unwrap();
        state.1 -= 1;
        self.0.gate.changed.notify_all();
    }
}

/// The hand-over state a mount shares with its filesystem.
#[derive(Default)]
pub(crate) struct Handover {
    gate: Gate,
    dont_mask: AtomicBool,
    /// The previous server was killed: inherited handles already answered EIO on fsync.
    killed: Option<Mutex<HashSet<u64>>>,
}

impl Handover {
    pub fn inheriting(inheritance: &Inheritance) -> Arc<Handover> {
        Arc::new(Handover {
            dont_mask: AtomicBool::new(inheritance.dont_mask),
            killed: inheritance
                .handles
                .is_none()
                .then(|| Mutex::new(HashSet::new())),
            ..Handover::default()
        })
    }

    pub fn dont_mask(&self) -> bool {
        self.dont_mask.load(Ordering::Relaxed)
    }

    pub fn set_dont_mask(&self, yes: bool) {
        self.dont_mask.store(yes, Ordering::Relaxed);
    }

    /// Lets a request in, or holds it back for good once the gate is closed.
    pub fn enter(self: &Arc<Self>) -> Box<dyn std::any::Any + Send> {
        let mut state = self.gate.state.lock().unwrap();
        while state.0 {
            state = self.gate.changed.wait(state).unwrap();
        }
        state.1 += 1;
        Box::new(Inside(self.clone()))
    }

    fn open(&self) {
        self.gate.state.lock().unwrap().0 = false;
        self.gate.changed.notify_all();
    }

    /// Closes the gate and waits up to `timeout` for the requests inside; whether they all
    /// left (if not, the gate is open again).
    fn close(&self, timeout: Duration) -> bool {
        let mut state = self.gate.state.lock().unwrap();
        state.0 = true;
        let (state, _) = self
            .gate
            .changed
            .wait_timeout_while(state, timeout, |s| s.1 > 0)
            .unwrap();
        state.1 == 0
    }

    /// Whether an fsync through handle `fh` (of volume `volume`) must fail with EIO: a
    /// request the kernel sent again after the server that took it was killed, or the first
    /// fsync through a handle opened under that server.
    pub fn fsync_lost(&self, volume: &Volume, fh: u64, resent: bool) -> bool {
        let Some(reported) = &self.killed else {
            return false;
        };
        resent || (volume.is_inherited_handle(fh) && reported.lock().unwrap().insert(fh))
    }
}

/// FUSE_NOTIFY_RESEND (kernel 6.9): the kernel queues every request it sent and has no answer
/// for again, flagged in their unique id.
const FUSE_NOTIFY_RESEND: i32 = 7;

/// The flag in a request's unique id that says the kernel sent it before (FUSE_UNIQUE_RESEND).
pub(crate) const UNIQUE_RESEND: u64 = 1 << 63;

pub(crate) fn notify_resend(device: impl AsFd) -> std::io::Result<()> {
    // struct fuse_out_header { len: u32, error: i32, unique: u64 }; unique 0 is a notification
    // and `error` its code.
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&16u32.to_ne_bytes());
    header[4..8].copy_from_slice(&FUSE_NOTIFY_RESEND.to_ne_bytes());
    rustix::io::write(device, &header)?;
    Ok(())
}

impl Mount {
    /// A copy of the mount's /dev/fuse descriptor: whoever holds it keeps the mount's
    /// connection up after this process is gone.
    pub fn device(&self) -> std::io::Result<OwnedFd> {
        self.device.try_clone()
    }

    /// What the next server of this mount needs besides its descriptor: with the open
    /// handles when `handed_over` (call after [`Mount::quiesce`]), else what it needs if this
    /// process is killed.
    pub fn inheritance(&self, handed_over: bool) -> Inheritance {
        Inheritance {
            dont_mask: self.handover.dont_mask(),
            handles: handed_over.then(|| self.volume.open_handles()),
            handle_base: self.handle_base + HANDLE_RANGE,
        }
    }

    /// Serves again after a [`Mount::quiesce`] (a hand-over that did not happen).
    pub fn resume(&self) {
        self.handover.open();
        if let Err(e) = self.start_writeback() {
            tracing::warn!("{}: restarting writeback: {e}", self.mountpoint.display());
        }
    }

    /// Stops serving: no request is taken any more, and this waits up to `timeout` for those
    /// being served. What the kernel sent meanwhile stays queued for the next server. An
    /// error (and the mount served on) when requests did not finish in time.
    pub fn quiesce(&self, timeout: Duration) -> std::io::Result<()> {
        self.writeback.stop(&self.volume);
        if self.handover.close(timeout) {
            return Ok(());
        }
        self.resume();
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "requests on {} did not finish within {timeout:?}",
                self.mountpoint.display()
            ),
        ))
    }
}
