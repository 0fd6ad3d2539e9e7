//! The daemon: the one process that owns an open store and serves every mount of it, so all
//! mounted containers share one writer (and, in share-memory mode, one block cache). It
//! listens on the store's control socket; every CLI command run while it lives is a client.
//! SIGTERM, SIGINT and `tessera daemon stop` flush and unmount everything. Unless started with
//! `--persist`, it exits once its last mount is gone (or if it never gets one).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tessera::{ErrorKind, Store};
use tessera_fusefs::{Mount, MountConfig};

use crate::keeper::HANDOVER_EXIT;
use crate::kept::{HeldMount, KeeperLink};
use crate::paths::DaemonPaths;
use crate::protocol::{self, Answer};
use crate::reply::{
    self, CacheStatus, DaemonStatus, MountStatus, RemoteStatus, Reply, Restarting, Stopping,
    Unmounted,
};
use crate::service::{self, Request};

/// How a daemon runs.
pub struct DaemonOptions {
    /// Stay up with no mounts (for a service manager).
    pub persist: bool,
    /// Bytes of the verified block cache share-memory mounts read through.
    pub cache_bytes: usize,
    /// Serve every mount with one pool of FUSE workers (`tessera_fusefs::MountConfig::pooled`).
    pub fuse_pool: bool,
    /// A mount to make before serving (`tessera mount --foreground`).
    pub initial_mount: Option<MountRequest>,
}

pub struct MountRequest {
    pub container: String,
    pub mountpoint: PathBuf,
    pub share_memory: bool,
    pub write_through: bool,
}

/// How long a daemon that never got a mount waits for one.
const IDLE_START: Duration = Duration::from_secs(30);

/// How long a starting daemon waits for the store lock of another process.
const LOCK_WAIT: Duration = Duration::from_secs(10);

struct Mounted {
    container: String,
    share_memory: bool,
    write_through: bool,
    mount: Mount,
}

struct Daemon {
    store: Store,
    store_path: PathBuf,
    mounts: Mutex<BTreeMap<PathBuf, Mounted>>,
    had_mount: AtomicBool,
    stop: (Mutex<bool>, Condvar),
    /// Requests accepted and not yet answered: the daemon does not exit under them.
    active: AtomicUsize,
    /// Set once the daemon is on its way out: it takes no new mounts.
    stopping: AtomicBool,
    /// Runs on with no mounts (else it exits after its last unmount).
    persist: bool,
    /// The keeper that holds every mount's descriptor (`keeper`), when one started us.
    keeper: Option<KeeperLink>,
    /// Mounts are served by one pool of FUSE workers.
    fuse_pool: bool,
}

/// How long a hand-over waits for the requests being served.
const QUIESCE: Duration = Duration::from_secs(30);

impl Daemon {
    fn request_stop(&self) {
        *self.stop.0.lock().unwrap() = true;
        self.stop.1.notify_all();
    }

    fn mount(&self, request: MountRequest) -> Result<reply::Mounted> {
        let MountRequest {
            container,
            mountpoint,
            share_memory,
            write_through,
        } = request;
        if self.stopping.load(Ordering::SeqCst) {
            bail!("the tessera daemon is stopping; run the command again");
        }
        if !mountpoint.is_dir() {
            bail!("mount point {} is not a directory", mountpoint.display());
        }
        if self.mounts.lock().unwrap().contains_key(&mountpoint) {
            bail!("{} is already a tessera mount", mountpoint.display());
        }
        let volume = self.store.open_container(&container)?;
        // A container with a size limit is served write-through: a write past the limit then
        // fails at write(2) with ENOSPC, as on ext4 or xfs, not later at write back (fsync,
        // close) with the kernel's cache showing bytes that were never stored.
        let write_through = write_through || volume.size_limit().is_some();
        let mount = Mount::new(
            volume,
            &mountpoint,
            self.mount_config(&container, write_through, share_memory),
        )
        .with_context(|| format!("mounting {container} at {}", mountpoint.display()))?;
        tracing::info!("mounted {container} at {}", mountpoint.display());
        self.serve(&container, &mountpoint, share_memory, write_through, mount);
        Ok(reply::Mounted {
            container,
            mountpoint,
        })
    }

    fn mount_config(
        &self,
        container: &str,
        write_through: bool,
        share_memory: bool,
    ) -> MountConfig {
        MountConfig {
            share_memory,
            writeback_cache: !write_through,
            kept: self.keeper.is_some(),
            pooled: self.fuse_pool,
            fsname: format!("tessera:{container}"),
            ..MountConfig::default()
        }
    }

    /// Lists a mount this daemon now serves, and has its keeper hold it.
    fn serve(
        &self,
        container: &str,
        mountpoint: &Path,
        share_memory: bool,
        write_through: bool,
        mount: Mount,
    ) {
        let held = HeldMount {
            container: container.to_string(),
            mountpoint: mountpoint.to_path_buf(),
            share_memory,
            write_through,
            inheritance: mount.inheritance(false),
        };
        self.hold(&held, &mount);
        self.mounts.lock().unwrap().insert(
            mountpoint.to_path_buf(),
            Mounted {
                container: container.to_string(),
                share_memory,
                write_through,
                mount,
            },
        );
        self.had_mount.store(true, Ordering::SeqCst);
    }

    /// Has the keeper hold a copy of the mount's descriptor (and what the next daemon needs).
    fn hold(&self, held: &HeldMount, mount: &Mount) {
        let Some(keeper) = &self.keeper else {
            return;
        };
        let held = mount
            .device()
            .map_err(anyhow::Error::from)
            .and_then(|fd| keeper.hold(held, &fd));
        if let Err(e) = held {
            tracing::warn!(
                "the keeper does not hold {} ({e:#}): the mount ends with this daemon",
                mount.mountpoint().display()
            );
        }
    }

    /// The mount is gone: the keeper lets go of its descriptor.
    fn release(&self, mountpoint: &Path) {
        if let Some(keeper) = &self.keeper
            && let Err(e) = keeper.release(mountpoint)
        {
            tracing::warn!("telling the keeper {} is gone: {e:#}", mountpoint.display());
        }
    }

    /// Serves on a mount an earlier daemon made (it outlived that daemon in the keeper).
    fn adopt(&self, held: HeldMount, device: std::os::fd::OwnedFd) -> Result<()> {
        let HeldMount {
            container,
            mountpoint,
            share_memory,
            write_through,
            inheritance,
        } = held;
        let volume = self.store.open_container(&container)?;
        let config = self.mount_config(&container, write_through, share_memory);
        let mount = Mount::adopt(volume, &mountpoint, device, config, &inheritance)
            .with_context(|| format!("serving {container} at {} again", mountpoint.display()))?;
        let how = match inheritance.handles {
            Some(h) => format!("handed over, {} open files", h.files.len()),
            None => "its daemon was killed".into(),
        };
        tracing::info!(
            "serving {container} at {} again ({how})",
            mountpoint.display()
        );
        self.serve(&container, &mountpoint, share_memory, write_through, mount);
        Ok(())
    }

    /// Hands every mount over to the next daemon: stops taking requests, waits for those
    /// being served, makes everything durable and leaves the open handles with the keeper.
    /// The caller exits (with `HANDOVER_EXIT`) once the client has its answer.
    fn hand_over(&self) -> Result<Restarting> {
        let Some(keeper) = &self.keeper else {
            bail!(
                "this daemon has no keeper (it runs in the foreground, or an older build \
                 started it): stop it and mount again"
            );
        };
        if self.stopping.swap(true, Ordering::SeqCst) {
            bail!("the tessera daemon is stopping");
        }
        let mounts = self.mounts.lock().unwrap();
        let mut quiesced: Vec<&Mount> = Vec::new();
        for m in mounts.values() {
            if let Err(e) = m.mount.quiesce(QUIESCE) {
                for q in quiesced {
                    q.resume();
                }
                self.stopping.store(false, Ordering::SeqCst);
                return Err(e.into());
            }
            quiesced.push(&m.mount);
        }
        let handed = self
            .store
            .sync()
            .context("flushing before the hand-over")
            .and_then(|()| {
                mounts.iter().try_for_each(|(path, m)| {
                    keeper.update(&HeldMount {
                        container: m.container.clone(),
                        mountpoint: path.clone(),
                        share_memory: m.share_memory,
                        write_through: m.write_through,
                        inheritance: m.mount.inheritance(true),
                    })
                })
            });
        if let Err(e) = handed {
            quiesced.iter().for_each(|q| q.resume());
            self.stopping.store(false, Ordering::SeqCst);
            return Err(e);
        }
        let count = quiesced.len();
        drop(quiesced);
        // Held until the process exits: nothing may unmount or change them now.
        std::mem::forget(mounts);
        Ok(Restarting {
            handing_over: std::process::id(),
            keeper: keeper_pid().unwrap_or(0),
            mounts: count,
        })
    }

    fn umount(&self, mountpoint: &Path) -> Result<Unmounted> {
        // Held throughout: the mount is listed until it is really gone (and the daemon does
        // not see itself idle, and exit, halfway).
        let mut mounts = self.mounts.lock().unwrap();
        let entry = mounts
            .remove(mountpoint)
            .ok_or_else(|| anyhow!("{} is not mounted by this daemon", mountpoint.display()))?;
        let Mounted {
            container,
            share_memory,
            write_through,
            mount,
        } = entry;
        match mount.try_unmount() {
            Ok(()) => {}
            Err((Some(mount), e)) => {
                // Busy: still mounted; keep serving it.
                mounts.insert(
                    mountpoint.to_path_buf(),
                    Mounted {
                        container,
                        share_memory,
                        write_through,
                        mount: *mount,
                    },
                );
                bail!(
                    "unmounting {}: {e} (files are open on it)",
                    mountpoint.display()
                );
            }
            Err((None, e)) => bail!("unmounting {}: {e}", mountpoint.display()),
        }
        self.release(mountpoint);
        tracing::info!("unmounted {container} from {}", mountpoint.display());
        // The last one: the daemon exits now (the client waits for that, so a command typed
        // next finds the store free), unless a mount comes in first.
        let exiting = mounts.is_empty() && !self.persist;
        drop(mounts);
        if exiting {
            self.stop.1.notify_all();
        }
        Ok(Unmounted {
            container,
            mountpoint: mountpoint.to_path_buf(),
            exiting: exiting.then(std::process::id),
        })
    }

    fn status(&self) -> DaemonStatus {
        let mounts = self
            .mounts
            .lock()
            .unwrap()
            .iter()
            .map(|(path, m)| MountStatus {
                container: m.container.clone(),
                mountpoint: path.clone(),
                share_memory: m.share_memory,
                write_through: m.write_through,
            })
            .collect();
        DaemonStatus {
            pid: std::process::id(),
            keeper: self.keeper.as_ref().and_then(|_| keeper_pid()),
            fuse_pool: self.fuse_pool,
            store: self.store_path.clone(),
            mounts,
            dirty_bytes: self.store.dirty_bytes(),
            block_cache: self
                .store
                .block_cache_figures()
                .map(|(bytes, hits, misses)| CacheStatus {
                    bytes: bytes as u64,
                    hits,
                    misses,
                }),
            reclaim: self.store.reclaim_status(),
            intent_log_fsyncs: self.store.intent_log_fsyncs(),
            metadata_commits: self.store.commit_count(),
            remote: self.store.remote_figures().map(|(f, local)| RemoteStatus {
                requests: f.requests,
                bytes_fetched: f.bytes_fetched,
                blocks_fetched: f.blocks_fetched,
                bytes_sent: f.bytes_sent,
                local_pack_bytes: local,
                cache_limit: self.store.cache_limit(),
            }),
        }
    }

    fn handle(&self, stream: UnixStream) {
        let answer = match protocol::read_request(&stream) {
            Err(e) => Answer::Error(format!("bad request: {e}")),
            Ok(request) => match self.execute(request) {
                Ok(reply) => Answer::Ok(Box::new(reply)),
                Err(e) => Answer::Error(crate::error_line(&e)),
            },
        };
        let handed_over = matches!(&answer, Answer::Ok(r) if matches!(**r, Reply::Restarting(_)));
        if let Err(e) = protocol::write_answer(&stream, &answer) {
            tracing::warn!("replying to a client: {e}");
        }
        if handed_over {
            tracing::info!("daemon {} handed its mounts over", std::process::id());
            std::process::exit(HANDOVER_EXIT);
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    fn execute(&self, request: Request) -> Result<Reply> {
        match request {
            Request::Mount {
                container,
                mountpoint,
                share_memory,
                write_through,
            } => self
                .mount(MountRequest {
                    container,
                    mountpoint,
                    share_memory,
                    write_through,
                })
                .map(Reply::Mounted),
            Request::Umount { mountpoint } => self.umount(&mountpoint).map(Reply::Unmounted),
            Request::Status => Ok(Reply::Status(self.status())),
            Request::Restart => self.hand_over().map(Reply::Restarting),
            Request::Stop => {
                self.request_stop();
                Ok(Reply::Stopping(Stopping {
                    stopping: std::process::id(),
                }))
            }
            other => service::execute(&self.store, other),
        }
    }

    /// Flushes and unmounts everything; a mount still in use is flushed, its FUSE connection
    /// aborted and the mount detached.
    fn unmount_all(&self) {
        let mounts = std::mem::take(&mut *self.mounts.lock().unwrap());
        for (path, m) in mounts {
            if let Err(e) = m.mount.force_unmount() {
                tracing::error!("unmounting {}: {e}", path.display());
            }
            self.release(&path);
        }
    }
}

/// Runs a daemon for the store at `store_path` until it is told to stop (or, without
/// `persist`, until its last mount is gone).
pub fn run(store_path: &Path, options: DaemonOptions) -> Result<()> {
    // The CLI's hook that ends a command quietly when its reader went away (main.rs) is not
    // the daemon's: a daemon never exits because some pipe or client closed.
    drop(std::panic::take_hook());
    let paths = DaemonPaths::for_store(store_path)?;
    paths.create_dir()?;
    // The daemon before this one may still be flushing on its way out (its socket already
    // gone, so a `tessera mount` started this one): wait a little for its store lock.
    // Mounts an earlier daemon served, which its keeper kept up: this daemon serves them on.
    let keeper = KeeperLink::from_env(&paths.keeper)?;
    let inherited = match &keeper {
        Some(keeper) => keeper
            .take()
            .context("taking the mounts back from the keeper")?,
        None => Vec::new(),
    };
    let waiting = Instant::now();
    let store = loop {
        let options = service::store_options()
            .block_cache_bytes(options.cache_bytes)
            .inherited_mounts(!inherited.is_empty());
        match Store::open(store_path, options) {
            Err(e) if e.kind() == ErrorKind::Locked && waiting.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            opened => break opened,
        }
    }
    .with_context(|| format!("opening store {}", store_path.display()))?;
    // We hold the store lock: a socket file left behind is stale.
    let _ = std::fs::remove_file(&paths.socket);
    let listener = UnixListener::bind(&paths.socket)
        .with_context(|| format!("listening on {}", paths.socket.display()))?;
    // Whoever may connect drives the daemon (mounts, commits, exports): its owner only. (Its
    // directory is owner-only too, so there is no window before this.)
    std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} owner-only", paths.socket.display()))?;
    let daemon = Arc::new(Daemon {
        store,
        store_path: std::fs::canonicalize(store_path)?,
        mounts: Mutex::new(BTreeMap::new()),
        had_mount: AtomicBool::new(false),
        stop: (Mutex::new(false), Condvar::new()),
        active: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        persist: options.persist,
        keeper,
        fuse_pool: options.fuse_pool,
    });
    for (held, device) in inherited {
        let mountpoint = held.mountpoint.clone();
        if let Err(e) = daemon.adopt(held, device) {
            // Nobody can serve it: let it go (its processes get ENOTCONN) and detach it.
            tracing::error!("{e:#}: detaching {}", mountpoint.display());
            daemon.release(&mountpoint);
            tessera_fusefs::mounts::abort_connection(&mountpoint);
            let _ = tessera_fusefs::mounts::unmount(&mountpoint, true);
        }
    }
    if let Some(first) = options.initial_mount
        && let Err(e) = daemon.mount(first)
    {
        let _ = std::fs::remove_file(&paths.socket);
        return Err(e);
    }
    spawn_listener(daemon.clone(), listener);
    spawn_signal_handler(daemon.clone())?;
    tracing::info!(
        "daemon {} serving {} on {}",
        std::process::id(),
        store_path.display(),
        paths.socket.display()
    );
    let started = Instant::now();
    {
        let mut stopped = daemon.stop.0.lock().unwrap();
        while !*stopped {
            stopped = daemon
                .stop
                .1
                .wait_timeout(stopped, Duration::from_millis(500))
                .unwrap()
                .0;
            let idle = daemon.mounts.lock().unwrap().is_empty()
                && daemon.active.load(Ordering::SeqCst) == 0;
            let gone = daemon.had_mount.load(Ordering::SeqCst) || started.elapsed() > IDLE_START;
            if idle && gone && !options.persist {
                break;
            }
        }
    }
    daemon.stopping.store(true, Ordering::SeqCst);
    let _ = std::fs::remove_file(&paths.socket);
    // Let requests in flight finish (a mount among them is then unmounted below).
    let waiting = Instant::now();
    while daemon.active.load(Ordering::SeqCst) > 0 && waiting.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.unmount_all();
    daemon.store.sync().context("flushing the store")?;
    tracing::info!("daemon {} stopped", std::process::id());
    Ok(())
}

fn spawn_listener(daemon: Arc<Daemon>, listener: UnixListener) {
    std::thread::Builder::new()
        .name("tessera-control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        let daemon = daemon.clone();
                        daemon.active.fetch_add(1, Ordering::SeqCst);
                        std::thread::spawn(move || daemon.handle(stream));
                    }
                    Err(e) => tracing::warn!("accepting a client: {e}"),
                }
            }
        })
        .expect("spawning the control thread");
}

fn spawn_signal_handler(daemon: Arc<Daemon>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("tessera-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!("signal {signal}: flushing and unmounting");
                daemon.request_stop();
            }
        })?;
    Ok(())
}

/// The keeper that started this daemon (it gives its pid in the environment).
fn keeper_pid() -> Option<u32> {
    std::env::var(crate::kept::VAR).ok()?.parse().ok()
}
