//! What the kernel caches of a mount's writes reaches the volume only when the kernel writes it
//! back: every write under FUSE_WRITEBACK_CACHE, and stores into shared mappings in either
//! mode. This module pushes it from a thread of its own, never from a serving thread:
//! - every [`INTERVAL`] a syncfs of the mount starts the write-back of everything dirty, so a
//!   write is in the volume within about a second and durable within the store's flush
//!   interval after that ("durable within 5 s", design.md §2);
//! - before whatever reads the container as a whole — commit, export, diff, stats — through
//!   the volume's [`KernelCache`] hook, and before SEEK_DATA/SEEK_HOLE is answered (the kernel
//!   asks without writing back first: a daemon answering from what it has would call fresh
//!   data a hole, and `cp` would copy zeros), the push must also *wait* until the volume has
//!   the writes. A syncfs of the mount does (design.md §5: measured with a slowed daemon;
//!   `sync(2)` does not wait for FUSE mounts, syncfs of one does), run in a child process so
//!   that no thread of the daemon ever waits on write-back the daemon itself must serve. A
//!   seek pushes only when its file is open for writing (`writers`).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{Errno, ReplyLseek};
use tessera::{KernelCache, NodeId, SeekTarget, Volume};

use crate::errno::errno;

/// How often the kernel's cached writes are pushed to the volume.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Pushes the kernel's cached writes of one mount.
struct Pusher {
    mountpoint: PathBuf,
    /// The mount's device: once it is unmounted, the path names the directory under it, whose
    /// file system is none of ours to sync.
    dev: u64,
}

impl Pusher {
    /// Writes back everything the kernel holds dirty for the mount: a syncfs of its root,
    /// opened anew each time (a descriptor held open would make unmounting fail with EBUSY),
    /// which returns once the volume has it.
    fn push(&self) -> io::Result<()> {
        let root = File::open(&self.mountpoint)?;
        if root.metadata()?.dev() != self.dev {
            return Ok(());
        }
        drop(root);
        push_cached_writes(&self.mountpoint)
    }
}

/// Pushes the kernel's cached writes of the mount at `mountpoint` once, now: a syncfs, run in a
/// child process (`sync -f`). A syncfs waits uninterruptibly for the mount's write-back, which
/// this process serves: issued from one of its own threads, a kill -9 arriving meanwhile would
/// leave the daemon unable to exit (that thread waits for requests only the exiting process
/// could answer) and its /dev/fuse descriptors open, so the mount would hang instead of failing.
/// A child waiting there is orphaned instead, and ends once the kernel aborts the connection.
pub(crate) fn push_cached_writes(mountpoint: &Path) -> io::Result<()> {
    let status = std::process::Command::new("sync")
        .arg("-f")
        .arg(mountpoint)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "sync -f {} failed ({status})",
            mountpoint.display()
        )));
    }
    Ok(())
}

enum Job {
    /// Answer an lseek once the kernel's writes are in the volume.
    Seek {
        node: NodeId,
        offset: u64,
        target: SeekTarget,
        reply: ReplyLseek,
    },
    Stop,
}

/// The mount's writeback thread and the handle the filesystem queues seeks on.
pub(crate) struct Writeback {
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The open handles that may write (by handle: their node). Only a file open for writing
    /// can have pages the kernel holds dirty (a writable shared mapping needs such a handle,
    /// and closing one writes its pages back), so a seek on any other file needs no push.
    writers: Arc<Mutex<HashMap<u64, NodeId>>>,
    /// Handles may be open for writing that `writers` does not list (opened under a daemon
    /// that was killed): every tick pushes.
    unknown_writers: Arc<std::sync::atomic::AtomicBool>,
    /// Set when the session ends (fuser calls the filesystem's `destroy`).
    ended: (Mutex<bool>, Condvar),
}

impl Writeback {
    /// A writeback that runs nothing yet: seeks are answered at once until [`Writeback::start`].
    pub fn idle() -> Arc<Writeback> {
        Arc::new(Writeback {
            jobs: Mutex::new(None),
            thread: Mutex::new(None),
            writers: Arc::new(Mutex::new(HashMap::new())),
            unknown_writers: Arc::default(),
            ended: (Mutex::new(false), Condvar::new()),
        })
    }

    /// The session ended: the kernel closed the connection.
    pub fn mark_ended(&self) {
        *self.ended.0.lock().unwrap() = true;
        self.ended.1.notify_all();
    }

    /// Waits up to `timeout` for the session to end; whether it did.
    pub fn wait_ended(&self, timeout: Duration) -> bool {
        let ended = self.ended.0.lock().unwrap();
        let (ended, _) = self
            .ended
            .1
            .wait_timeout_while(ended, timeout, |ended| !*ended)
            .unwrap();
        *ended
    }

    /// A handle was opened with `flags` (open(2)'s).
    pub fn opened(&self, fh: u64, node: NodeId, flags: i32) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            self.writers.lock().unwrap().insert(fh, node);
        }
    }

    pub fn released(&self, fh: u64) {
        self.writers.lock().unwrap().remove(&fh);
    }

    /// Files may be open for writing that this mount never saw opened (see `unknown_writers`).
    pub fn assume_unknown_writers(&self) {
        self.unknown_writers
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts the thread for the mount at `mountpoint` and registers the volume's hook.
    pub fn start(&self, volume: &Volume, mountpoint: &Path) -> io::Result<()> {
        let pusher = Arc::new(Pusher {
            mountpoint: mountpoint.to_path_buf(),
            dev: std::fs::metadata(mountpoint)?.dev(),
        });
        let (tx, rx) = mpsc::channel();
        let (thread_volume, thread_pusher) = (volume.clone(), pusher.clone());
        let (writers, unknown) = (self.writers.clone(), self.unknown_writers.clone());
        // Only a file open for writing can have pages the kernel holds dirty (see
        // `writers`): a mount with none has nothing to push, and an idle mount costs no
        // `sync -f` a second.
        let may_be_dirty = move || {
            !writers.lock().unwrap().is_empty()
                || unknown.load(std::sync::atomic::Ordering::Relaxed)
        };
        let thread = std::thread::Builder::new()
            .name("tessera-writeback".into())
            .spawn(move || {
                // A failing push is logged when it starts failing, not every second.
                let mut failing = false;
                loop {
                    match rx.recv_timeout(INTERVAL) {
                        Ok(Job::Seek {
                            node,
                            offset,
                            target,
                            reply,
                        }) => {
                            if let Err(e) = thread_pusher.push() {
                                tracing::warn!("pushing cached writes before a seek: {e}");
                            }
                            answer_seek(&thread_volume, node, offset, target, reply);
                        }
                        Err(RecvTimeoutError::Timeout) if !may_be_dirty() => {}
                        Err(RecvTimeoutError::Timeout) => match thread_pusher.push() {
                            Err(e) if !failing => {
                                failing = true;
                                tracing::warn!(
                                    "pushing cached writes of {}: {e}",
                                    thread_pusher.mountpoint.display()
                                );
                            }
                            Err(_) => {}
                            Ok(()) => failing = false,
                        },
                        Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            })?;
        // The hook is handed the view it pushes to; the mount's pusher knows it already.
        let hook: KernelCache = Arc::new(move |_: &Volume| pusher.push());
        volume.set_kernel_cache(Some(hook));
        *self.jobs.lock().unwrap() = Some(tx);
        *self.thread.lock().unwrap() = Some(thread);
        Ok(())
    }

    /// Answers a SEEK_DATA/SEEK_HOLE after pushing the kernel's writes (on the thread) when
    /// the file is open for writing, else at once.
    pub fn seek(
        &self,
        volume: &Volume,
        node: NodeId,
        offset: u64,
        target: SeekTarget,
        reply: ReplyLseek,
    ) {
        let job = Job::Seek {
            node,
            offset,
            target,
            reply,
        };
        let written = self.writers.lock().unwrap().values().any(|n| *n == node);
        let job = match self.jobs.lock().unwrap().as_ref().filter(|_| written) {
            Some(jobs) => match jobs.send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        if let Job::Seek {
            node,
            offset,
            target,
            reply,
        } = job
        {
            answer_seek(volume, node, offset, target, reply);
        }
    }

    /// Stops the thread (answering the seeks queued before) and removes the volume's hook; a
    /// mount stops it before it unmounts.
    pub fn stop(&self, volume: &Volume) {
        volume.set_kernel_cache(None);
        if let Some(jobs) = self.jobs.lock().unwrap().take() {
            let _ = jobs.send(Job::Stop);
        }
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }
}

fn answer_seek(volume: &Volume, node: NodeId, offset: u64, target: SeekTarget, reply: ReplyLseek) {
    match volume.seek(node, offset, target) {
        Ok(position) => reply.offset(position as i64),
        Err(e) if e.kind() == tessera::ErrorKind::NotFound => reply.error(Errno::ENXIO),
        Err(e) => reply.error(errno(&e)),
    }
}
