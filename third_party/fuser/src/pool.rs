//! One set of threads serving many sessions (Tessera patch). A session normally reads its
//! /dev/fuse descriptor on threads of its own; a process serving hundreds of mounts then runs
//! thousands of threads, each with a request buffer. A [`Pool`] waits on every served
//! descriptor with one epoll instance and gives whichever is ready to a free worker, which
//! reads one request (the descriptor is non-blocking) and dispatches it to that session's
//! filesystem, as the session's own loop would.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::Filesystem;
use crate::channel::ChannelSender;
use crate::ll::Operation;
use crate::notify::Notifier;
use crate::read_buf::FuseReadBuf;
use crate::reply::ReplyEmpty;
use crate::request::RequestWithSender;
use crate::session::{Session, SessionEventLoop};

/// What a worker found on a ready descriptor.
enum Served {
    /// A request was dispatched, or there was none (another worker took it).
    Going,
    /// The connection is gone (unmounted or aborted).
    Ended,
}

trait Entry: Send + Sync {
    fn serve_one(&self, buf: &mut [u8]) -> Served;
    fn fd(&self) -> std::os::fd::BorrowedFd<'_>;
}

/// A session served by a pool. Dropping the last reference (after its connection ended and
/// no worker holds it) drops the filesystem, which calls its `destroy`, then marks it ended.
struct Pooled<FS: Filesystem> {
    event_loop: Option<SessionEventLoop<FS>>,
    ended: Arc<(Mutex<bool>, Condvar)>,
}

impl<FS: Filesystem> Entry for Pooled<FS> {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.event_loop.as_ref().expect("served").ch.as_fd()
    }

    fn serve_one(&self, buf: &mut [u8]) -> Served {
        let se = self.event_loop.as_ref().expect("served");
        match se.ch.receive(buf) {
            Ok(size) => match RequestWithSender::new(se.ch.sender(), &buf[..size]) {
                Some(req) => {
                    if let Ok(Operation::Destroy(_)) = req.request.operation() {
                        req.reply::<ReplyEmpty>().ok();
                    } else {
                        let _entered = se.filesystem.fs.as_ref().and_then(|fs| fs.enter());
                        req.dispatch(se);
                    }
                    Served::Going
                }
                None => Served::Ended,
            },
            Err(Errno::EAGAIN | Errno::EINTR | Errno::ENOENT) => Served::Going,
            Err(_) => Served::Ended,
        }
    }
}

impl<FS: Filesystem> Drop for Pooled<FS> {
    fn drop(&mut self) {
        // The filesystem's `destroy` runs as its holder drops, before the session is ended.
        drop(self.event_loop.take());
        *self.ended.0.lock().unwrap() = true;
        self.ended.1.notify_all();
    }
}

/// Threads that serve any number of sessions.
pub struct Pool {
    epoll: Epoll,
    entries: Mutex<HashMap<u64, Arc<dyn Entry>>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of `threads` workers.
    pub fn new(threads: usize) -> io::Result<Arc<Pool>> {
        let pool = Arc::new(Pool {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            entries: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        for i in 0..threads.max(1) {
            let worker = pool.clone();
            thread::Builder::new()
                .name(format!("fuser-pool-{i}"))
                .spawn(move || worker.work())?;
        }
        Ok(pool)
    }

    fn work(&self) {
        let mut buf = FuseReadBuf::new();
        let buf = buf.as_mut();
        let mut events = [EpollEvent::empty()];
        loop {
            match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    log::error!("fuser pool: epoll_wait: {e}");
                    return;
                }
            }
            let id = events[0].data();
            let Some(entry) = self.entries.lock().unwrap().get(&id).cloned() else {
                continue;
            };
            if let Served::Ended = entry.serve_one(buf) {
                if self.entries.lock().unwrap().remove(&id).is_some() {
                    let _ = self.epoll.delete(entry.fd());
                }
            }
        }
    }

    /// Serves `session` on this pool's threads until its connection ends.
    pub fn serve<FS: Filesystem>(&self, session: Session<FS>) -> io::Result<PooledSession> {
        let (event_loop, sender, mount) = session.into_event_loop();
        fcntl(&event_loop.ch, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let ended = Arc::new((Mutex::new(false), Condvar::new()));
        let entry: Arc<dyn Entry> = Arc::new(Pooled {
            event_loop: Some(event_loop),
            ended: ended.clone(),
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.entries.lock().unwrap().insert(id, entry.clone());
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
        if let Err(e) = self.epoll.add(entry.fd(), EpollEvent::new(flags, id)) {
            self.entries.lock().unwrap().remove(&id);
            return Err(e.into());
        }
        Ok(PooledSession {
            ended,
            sender,
            _mount: mount,
        })
    }
}

/// A session a [`Pool`] serves.
#[derive(Debug)]
pub struct PooledSession {
    ended: Arc<(Mutex<bool>, Condvar)>,
    sender: ChannelSender,
    /// Unmounted when the session is dropped (as with `BackgroundSession`).
    _mount: Option<crate::mnt::Mount>,
}

impl PooledSession {
    /// Waits until the connection ended and the filesystem was destroyed; then drops the
    /// mount handle (which unmounts, should it still be mounted).
    pub fn join(self) -> io::Result<()> {
        let mut ended = self.ended.0.lock().unwrap();
        while !*ended {
            ended = self.ended.1.wait(ended).unwrap();
        }
        Ok(())
    }

    /// An object that can be used to send notifications to the kernel.
    pub fn notifier(&self) -> Notifier {
        Notifier::new(self.sender.clone())
    }
}
