//! The kernel adapter: presents a Tessera [`Volume`] as a FUSE filesystem. It decodes kernel
//! requests, calls the volume and replies ([`fs`]), maps errors to errno in one place
//! ([`errno`]) and converts attributes ([`attr`]). It keeps no state of its own: node ids are
//! inode numbers and volume handles are file handles.
//!
//! Mount options as root: `suid,dev` (images hold setuid binaries and device nodes),
//! `default_permissions` (the kernel checks modes), `allow_other` (non-root users in the
//! container can use it). Any other user mounts through fusermount3 ([`fusermount`]): nosuid,
//! nodev, and `allow_other` only when asked (fusermount3 then checks /etc/fuse.conf).

pub mod attr;
mod convert;
mod dir_reply;
pub mod errno;
mod fs;
mod fusermount;
mod handover;
pub mod mounts;
mod negotiate;
mod serving;
mod set_id;
mod writeback;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{Config, MountOption, SessionACL};
pub use handover::Inheritance;
use serving::Serving;
use tessera::Volume;
use writeback::{Writeback, push_cached_writes};

/// How a view is mounted.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// Serve read(2) from the daemon's verified block cache (FOPEN_DIRECT_IO, mmap allowed),
    /// so N containers reading the same blocks hold them once. Default: off — the kernel's
    /// page cache is the only cache (FOPEN_KEEP_CACHE).
    pub share_memory: bool,
    /// Let the kernel cache writes (FUSE_WRITEBACK_CACHE) in the default mode: a write is a
    /// copy into the page cache, not a request; the mount pushes what the kernel holds every
    /// second and before commit, export, diff and stats (see `writeback`). Default: on.
    pub writeback_cache: bool,
    /// Let users other than the mounting one in (`allow_other`). Default on as root.
    pub allow_other: bool,
    /// Threads serving requests (each with its own /dev/fuse descriptor). Default: the
    /// number of CPUs, at least 4 — a thread waiting on an O_DIRECT pack read must not leave
    /// the CPUs idle (`tessera bench mount`: cold sequential reads 1.0 → 1.55 GiB/s on 2 CPUs).
    pub threads: usize,
    /// A keeper process holds a copy of the mount's descriptor, so that the mount outlives
    /// this process and another can serve it on (`handover`). Every serving thread then
    /// reads that one descriptor: the unanswered requests of a cloned one die with the
    /// process that holds it. Default off.
    pub kept: bool,
    /// Served by the process's one pool of FUSE workers (`serving`) instead of threads of
    /// its own: a process serving many mounts keeps a fixed number of threads. Default off.
    pub pooled: bool,
    /// Shown as the source in /proc/mounts.
    pub fsname: String,
    /// Tests only: each WRITE request waits this long before the volume takes it (a slow
    /// daemon, to show what waits for the kernel's write-back and what does not).
    #[doc(hidden)]
    pub test_write_delay: std::time::Duration,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            share_memory: false,
            writeback_cache: true,
            allow_other: rustix::process::geteuid().is_root(),
            threads: std::thread::available_parallelism().map_or(4, |n| n.get().max(4)),
            kept: false,
            pooled: false,
            fsname: "tessera".into(),
            test_write_delay: std::time::Duration::ZERO,
        }
    }
}

/// A mounted view. Unmounts (and flushes) when dropped.
pub struct Mount {
    session: Option<Serving>,
    mountpoint: PathBuf,
    volume: Volume,
    writeback: Arc<Writeback>,
    /// The FUSE connection (see `mounts::connection_of`).
    connection: Option<u64>,
    /// A copy of the mount's /dev/fuse descriptor (see `handover`).
    device: std::os::fd::OwnedFd,
    handover: Arc<handover::Handover>,
    /// Handles this process gives out start here (see `Inheritance::handle_base`).
    handle_base: u64,
}

/// fuser's settings for serving a mount configured as `config`: who may use it, how many
/// threads serve it.
fn session_config(config: &MountConfig) -> Config {
    let mut fuse_config = Config::default();
    fuse_config.acl = if config.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    fuse_config.n_threads = Some(config.threads.max(1));
    fuse_config
}

/// How long an unmounted mount's session may take to end before its connection is taken to
/// be held by a copy of the mount in another mount namespace.
const SESSION_END: std::time::Duration = std::time::Duration::from_secs(2);

impl Mount {
    /// Mounts `volume` at `mountpoint` and serves it on background threads.
    pub fn new(volume: Volume, mountpoint: &Path, config: MountConfig) -> std::io::Result<Mount> {
        mounts::clear_stale(mountpoint)?;
        let mut options = vec![
            MountOption::FSName(config.fsname.clone()),
            // fuser's own mount(2) path drops `MountOption::Subtype` (it is a fusermount
            // option there), so the kernel option is passed directly: type "fuse.tessera".
            MountOption::CUSTOM("subtype=tessera".into()),
            MountOption::DefaultPermissions,
            MountOption::Suid,
            MountOption::Dev,
            MountOption::Exec,
            MountOption::NoAtime,
        ];
        if !volume.is_writable() {
            options.push(MountOption::RO);
        }
        let mut fuse_config = session_config(&config);
        fuse_config.mount_options = options;
        let root = rustix::process::geteuid().is_root();
        // A cloned descriptor is a new open of /dev/fuse, which only root may do everywhere.
        fuse_config.clone_fd = config.threads > 1 && root && !config.kept;
        volume.set_cache_reads(config.share_memory);
        let writeback = Writeback::idle();
        let writable = volume.is_writable();
        let fsname = config.fsname.clone();
        let allow_other = config.allow_other;
        let handover = Arc::new(handover::Handover::default());
        let pooled = config.pooled;
        let filesystem =
            fs::TesseraFs::new(volume.clone(), config, writeback.clone(), handover.clone());
        let session = if root {
            fuser::Session::new(filesystem, mountpoint, &fuse_config)?
        } else {
            let options = fusermount::options(&fsname, writable, allow_other);
            let fd = fusermount::mount(mountpoint, &options)?;
            fuser::Session::from_fd(filesystem, fd, fuse_config.acl, fuse_config)?
        };
        use std::os::fd::AsFd;
        let device = session.as_fd().try_clone_to_owned()?;
        let mount = Mount {
            session: Some(Serving::start(session, pooled)?),
            mountpoint: mountpoint.to_path_buf(),
            volume,
            writeback,
            connection: mounts::connection_of(mountpoint),
            device,
            handover,
            handle_base: 0,
        };
        mounts::raise_read_ahead(mountpoint);
        mount.serving()
    }

    /// Starts what a mount runs beside its requests (the write-back push), once it serves.
    fn serving(self) -> std::io::Result<Mount> {
        self.start_writeback()?;
        Ok(self)
    }

    /// Serves, on `device`, a mount at `mountpoint` that an earlier process made and served
    /// and that outlived it: no mount call and no FUSE INIT (the connection keeps what it
    /// negotiated); the requests that process left unanswered are sent again.
    pub fn adopt(
        volume: Volume,
        mountpoint: &Path,
        device: std::os::fd::OwnedFd,
        config: MountConfig,
        inheritance: &Inheritance,
    ) -> std::io::Result<Mount> {
        let handle_base = inheritance.handle_base.max(handover::HANDLE_RANGE);
        let open = inheritance.handles.clone().unwrap_or_default();
        volume
            .adopt_handles(handle_base, &open)
            .map_err(|e| std::io::Error::other(format!("taking over open handles: {e}")))?;
        volume.set_cache_reads(config.share_memory);
        let handover = handover::Handover::inheriting(inheritance);
        let writeback = Writeback::idle();
        for &(fh, node) in &open.files {
            // Kept as writers: whether they were is not handed over, and a needless push on a
            // seek costs less than a missed one.
            writeback.opened(fh, node, libc::O_RDWR);
        }
        if inheritance.handles.is_none() {
            writeback.assume_unknown_writers();
        }
        let fuse_config = session_config(&config);
        let acl = fuse_config.acl;
        let pooled = config.pooled;
        let filesystem =
            fs::TesseraFs::new(volume.clone(), config, writeback.clone(), handover.clone());
        let served = device.try_clone()?;
        let session = Serving::start(
            fuser::Session::from_fd_initialized(filesystem, served, acl, fuse_config),
            pooled,
        )?;
        let mount = Mount {
            session: Some(session),
            mountpoint: mountpoint.to_path_buf(),
            volume,
            writeback,
            connection: mounts::connection_of(mountpoint),
            device,
            handover,
            handle_base,
        };
        handover::notify_resend(&mount.device)?;
        mount.serving()
    }

    /// Starts the thread that pushes the kernel's cached writes (writable views only).
    fn start_writeback(&self) -> std::io::Result<()> {
        match &self.session {
            Some(_) if self.volume.is_writable() => {
                self.writeback.start(&self.volume, &self.mountpoint)
            }
            _ => Ok(()),
        }
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    /// Unmounts (refusing, with EBUSY, while files on it are open), waits for the request
    /// threads, and makes the view's changes durable.
    pub fn unmount(mut self) -> std::io::Result<()> {
        self.unmount_inner()
    }

    /// Like [`Mount::unmount`], but a busy mount (EBUSY: files are open on it) is handed back
    /// with the error, still mounted and served; dropping it would detach it.
    pub fn try_unmount(mut self) -> Result<(), (Option<Box<Mount>>, std::io::Error)> {
        match self.unmount_inner() {
            Ok(()) => Ok(()),
            Err(e) if self.session.is_some() => Err((Some(Box::new(self)), e)),
            Err(e) => Err((None, e)),
        }
    }

    /// Unmounts even while files are open: flushes the view, aborts the FUSE connection (open
    /// files then fail with ENOTCONN) and detaches the mount. For daemon shutdown.
    pub fn force_unmount(mut self) -> std::io::Result<()> {
        if let Err(e) = self.unmount_inner() {
            tracing::warn!(
                "{} is busy ({e}): aborting its connection",
                self.mountpoint.display()
            );
            // Its open files keep it mounted: push what the kernel holds before the abort
            // loses it, and drop what it caches of them, so that they fail (ENOTCONN) rather
            // than go on serving a dead mount's pages.
            self.writeback.stop(&self.volume);
            if let Err(e) = push_cached_writes(&self.mountpoint) {
                tracing::warn!("{}: {e}", self.mountpoint.display());
            }
            if let Some(session) = &self.session {
                let notifier = session.notifier();
                for node in self.volume.open_nodes() {
                    let _ = notifier.inval_inode(fuser::INodeNo(node.0), 0, 0);
                }
            }
            let flushed = self.volume.sync();
            mounts::abort_connection(&self.mountpoint);
            let _ = mounts::unmount(&self.mountpoint, true);
            if let Some(session) = self.session.take() {
                session.join()?;
            }
            flushed.map_err(|e| std::io::Error::other(format!("flushing: {e}")))?;
        }
        Ok(())
    }

    fn unmount_inner(&mut self) -> std::io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        // No descriptor of the mount may be open while it unmounts. What the kernel holds goes
        // to the volume first: the unmount writes it back only when it ends the connection,
        // which a copy of the mount elsewhere prevents (below).
        self.writeback.stop(&self.volume);
        if let Err(e) = push_cached_writes(&self.mountpoint) {
            tracing::warn!("{}: {e}", self.mountpoint.display());
        }
        if let Err(e) = mounts::unmount(&self.mountpoint, false) {
            // Busy (or not ours to unmount): keep serving it.
            self.session = Some(session);
            if let Err(e) = self.start_writeback() {
                tracing::warn!("{}: restarting writeback: {e}", self.mountpoint.display());
            }
            return Err(e);
        }
        // A mount namespace made after this mount (`unshare -m`, a rootless podman's pause
        // process) holds a copy of it, which keeps the connection — and the session — alive
        // after this unmount: abort the connection (the copy then fails with ENOTCONN), or,
        // where that is not possible, leave the session to end with the process.
        if !self.writeback.wait_ended(SESSION_END) {
            tracing::warn!(
                "{} is unmounted, but another mount namespace still holds a copy of it: \
                 aborting its connection",
                self.mountpoint.display()
            );
            if !self.connection.is_some_and(mounts::abort_connection_id) {
                tracing::warn!(
                    "cannot abort it (fusectl is not mounted): it is served until this \
                     process exits"
                );
                drop(session);
                return self
                    .volume
                    .sync()
                    .map_err(|e| std::io::Error::other(format!("flushing after unmount: {e}")));
            }
        }
        match session.join() {
            Ok(()) => {}
            // The kernel ends the connection as the unmount completes; a serving thread that had
            // just taken a request off the queue reads ECONNABORTED instead of ENODEV
            // (fuse_dev_do_read), and fuser reports that. The unmount itself succeeded, and
            // fuser called `destroy` (which flushes) all the same.
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                tracing::debug!("{}: session ended with {e}", self.mountpoint.display());
            }
            Err(e) => return Err(e),
        }
        self.volume
            .sync()
            .map_err(|e| std::io::Error::other(format!("flushing after unmount: {e}")))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.session.is_none() {
            return;
        }
        if let Err(e) = self.unmount_inner() {
            tracing::warn!(
                "unmounting {}: {e}; detaching it",
                self.mountpoint.display()
            );
            let _ = mounts::unmount(&self.mountpoint, true);
            if let Some(session) = self.session.take() {
                drop(session);
            }
        }
    }
}
