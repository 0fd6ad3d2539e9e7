//! What the kernel caches of a mount's writes reaches the volume only when the kernel writes it
//! back: every write under FUSE_WRITEBACK_CACHE, and stores into shared mappings in either
//! mode. This module pushes it (a syncfs of the mount, which the mount's serving threads
//! answer) from a thread of its own, never from a serving thread:
//! - every [`INTERVAL`], so a write is in the volume within a second and durable within the
//!   store's flush interval after that ("durable within 5 s", design.md §2);
//! - before whatever reads the container as a whole — commit, export, diff, stats — through
//!   the volume's [`KernelCache`] hook;
//! - before SEEK_DATA/SEEK_HOLE is answered: the kernel asks without writing back first, and
//!   a daemon that has not seen the data would call it a hole (and `cp` would copy zeros).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{Errno, ReplyLseek};
use tessera::{KernelCache, NodeId, SeekTarget, Volume};

use crate::errno::errno;

/// How often the kernel's cached writes are pushed to the volume.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Pushes the kernel's cached writes of one mount: a syncfs of its root, opened anew each time
/// (a descriptor held open would make unmounting fail with EBUSY).
#[derive(Debug)]
struct Pusher {
    mountpoint: PathBuf,
    /// The mount's device: once it is unmounted, the path names the directory under it, whose
    /// file system is none of ours to sync.
    dev: u64,
}

impl Pusher {
    fn push(&self) -> io::Result<()> {
        let root = File::open(&self.mountpoint)?;
        if root.metadata()?.dev() != self.dev {
            return Ok(());
        }
        rustix::fs::syncfs(&root)?;
        Ok(())
    }
}

/// Pushes the kernel's cached writes of the mount at `mountpoint` once, now.
pub(crate) fn push_cached_writes(mountpoint: &Path) -> io::Result<()> {
    rustix::fs::syncfs(File::open(mountpoint)?)?;
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
}

impl Writeback {
    /// A writeback that runs nothing yet: seeks are answered at once until [`Writeback::start`].
    pub fn idle() -> Arc<Writeback> {
        Arc::new(Writeback {
            jobs: Mutex::new(None),
            thread: Mutex::new(None),
        })
    }

    /// Starts the thread for the mount at `mountpoint` and registers the volume's hook.
    pub fn start(&self, volume: &Volume, mountpoint: &Path) -> io::Result<()> {
        let pusher = Arc::new(Pusher {
            mountpoint: mountpoint.to_path_buf(),
            dev: std::fs::metadata(mountpoint)?.dev(),
        });
        let (tx, rx) = mpsc::channel();
        let (thread_volume, thread_pusher) = (volume.clone(), pusher.clone());
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
        let hook: KernelCache = Arc::new(move || pusher.push());
        volume.set_kernel_cache(Some(hook));
        *self.jobs.lock().unwrap() = Some(tx);
        *self.thread.lock().unwrap() = Some(thread);
        Ok(())
    }

    /// Answers a SEEK_DATA/SEEK_HOLE after pushing the kernel's writes (on the thread), or at
    /// once when no thread runs.
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
        let job = match self.jobs.lock().unwrap().as_ref() {
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
