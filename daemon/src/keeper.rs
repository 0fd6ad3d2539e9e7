//! The keeper: the small process `tessera daemon run` becomes, which starts the real daemon as
//! its child and keeps a copy of every mount's /dev/fuse descriptor. The kernel keeps a FUSE
//! connection alive while any process holds its descriptor, so when the daemon exits for a
//! hand-over (`tessera daemon restart`, exit code [`HANDOVER_EXIT`]) or dies (kill -9, a
//! crash), its mounts stay up — requests wait in the kernel — and the keeper starts the next
//! daemon, which takes the descriptors back and serves on (`tessera_fusefs::Mount::adopt`).
//!
//! It does nothing else: no store, no FUSE requests, one socket (`kept`) to its daemon. It
//! forwards SIGTERM, SIGINT and SIGHUP to the daemon; a daemon that exits with success has
//! unmounted everything, and the keeper exits with it. A daemon that cannot start (five in a
//! row die before taking the mounts back: a damaged store, say) is given up: the keeper
//! closes the descriptors — the mounts then fail with ENOTCONN as they would without it —
//! and exits with an error. A daemon killed after it took them is simply replaced.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};

use anyhow::{Context, Result, bail};
use rustix::event::{PollFd, PollFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::kept::{self, HeldMount, Message};
use crate::paths::DaemonPaths;

/// The exit code of a daemon that handed its mounts over and wants a successor.
pub const HANDOVER_EXIT: i32 = 75;

/// Daemons in a row that die before taking the mounts back, after which the keeper gives up.
const MAX_FAILED_STARTS: u32 = 5;

struct Keeper {
    store: PathBuf,
    /// The executable, as it was found at the start: a new binary put at the same path (an
    /// upgrade) is what the next daemon runs.
    exe: PathBuf,
    daemon_args: Vec<OsString>,
    held: BTreeMap<PathBuf, (HeldMount, OwnedFd)>,
    /// The running daemon asked for the mounts (it started).
    took: bool,
    failed_starts: u32,
}

/// Runs the keeper of the store at `store`: starts `tessera daemon run DAEMON_ARGS` and keeps
/// it (and its mounts) going until it exits with success.
pub fn run(store: &Path, daemon_args: Vec<OsString>) -> Result<()> {
    let paths = DaemonPaths::for_store(store)?;
    paths.create_dir()?;
    let listener = listen(&paths.keeper)?;
    // Clients that find no daemon while this runs wait for the next (`client::daemon`).
    std::fs::write(&paths.keeper_pid, std::process::id().to_string())
        .with_context(|| format!("writing {}", paths.keeper_pid.display()))?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("installing signal handlers")?;
    let mut keeper = Keeper {
        // The daemons it starts do not depend on where it was started from.
        store: std::fs::canonicalize(store)?,
        exe: std::env::current_exe().context("finding the tessera executable")?,
        daemon_args,
        held: BTreeMap::new(),
        took: false,
        failed_starts: 0,
    };
    let mut daemon = keeper.start()?;
    let mut link: Option<OwnedFd> = None;
    let result = loop {
        for signal in signals.pending() {
            tracing::info!("keeper: signal {signal}, passed to daemon {}", daemon.id());
            let pid = rustix::process::Pid::from_raw(daemon.id() as i32).expect("a child pid");
            let signal = rustix::process::Signal::from_named_raw(signal).expect("a signal");
            let _ = rustix::process::kill_process(pid, signal);
        }
        let mut fds = vec![PollFd::new(&listener, PollFlags::IN)];
        if let Some(link) = &link {
            fds.push(PollFd::new(link, PollFlags::IN));
        }
        let tick = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        match rustix::event::poll(&mut fds, Some(&tick)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => break Err(e.into()),
        }
        let (accept, readable) = (
            !fds[0].revents().is_empty(),
            fds.get(1).is_some_and(|f| !f.revents().is_empty()),
        );
        if accept {
            // A new daemon: whatever was linked before is gone.
            link = Some(rustix::net::accept_with(&listener, SocketFlags::CLOEXEC)?);
        } else if readable
            && let Some(socket) = &link
            && !keeper.serve(socket)?
        {
            link = None;
        }
        let Some(status) = daemon.try_wait()? else {
            continue;
        };
        // Everything the daemon said before it went (a hand-over's records) first.
        if let Some(socket) = link.take() {
            while keeper.serve(&socket)? {}
        }
        match keeper.next(status) {
            Ok(Some(next)) => daemon = next,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Unless a keeper started since has put its own there (it replaces a stale socket).
    let ours = std::fs::read_to_string(&paths.keeper_pid)
        .is_ok_and(|pid| pid.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(&paths.keeper);
        let _ = std::fs::remove_file(&paths.keeper_pid);
    }
    result
}

fn listen(path: &Path) -> Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::bind(&socket, &SocketAddrUnix::new(path)?)
        .with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    rustix::net::listen(&socket, 4)?;
    Ok(socket)
}

impl Keeper {
    fn start(&mut self) -> Result<Child> {
        if self.failed_starts >= MAX_FAILED_STARTS {
            bail!(
                "{MAX_FAILED_STARTS} daemons in a row died before serving; giving up their {} \
                 mounts (they now fail with ENOTCONN)",
                self.held.len()
            );
        }
        self.took = false;
        let child = Command::new(&self.exe)
            .arg("--store")
            .arg(&self.store)
            .args(["daemon", "run"])
            .args(&self.daemon_args)
            .env(kept::VAR, std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("starting the daemon")?;
        tracing::info!(
            "keeper {}: started daemon {}",
            std::process::id(),
            child.id()
        );
        Ok(child)
    }

    /// After the daemon exited with `status`: the next one, or `None` when the keeper is done.
    fn next(&mut self, status: ExitStatus) -> Result<Option<Child>> {
        self.failed_starts = if self.took { 0 } else { self.failed_starts + 1 };
        // A connection nothing serves any more (unmounted, or aborted) needs no keeping.
        self.held.retain(|mountpoint, (_, fd)| {
            let mut poll = [PollFd::new(fd, PollFlags::empty())];
            let _ = rustix::event::poll(&mut poll, Some(&rustix::time::Timespec::default()));
            let alive = !poll[0].revents().contains(PollFlags::ERR);
            if !alive {
                tracing::info!("keeper: {} is no longer mounted", mountpoint.display());
            }
            alive
        });
        let handover = status.code() == Some(HANDOVER_EXIT);
        if status.success() || (self.held.is_empty() && !handover) {
            if !self.held.is_empty() {
                tracing::warn!("keeper: the daemon exited and left mounts; closing them");
            }
            return match status.success() {
                true => Ok(None),
                false => bail!("the daemon exited with {status}"),
            };
        }
        tracing::warn!(
            "keeper: daemon exited ({status}) with {} mounts: starting the next",
            self.held.len()
        );
        self.start().map(Some)
    }

    /// Answers one packet of the daemon; false when it is gone.
    fn serve(&mut self, socket: &OwnedFd) -> Result<bool> {
        let Some((message, fd)) = kept::receive(socket.as_fd())? else {
            return Ok(false);
        };
        match (message, fd) {
            (Message::Hold(mount), Some(fd)) => {
                self.held.insert(mount.mountpoint.clone(), (mount, fd));
            }
            (Message::Update(mount), _) => {
                if let Some(entry) = self.held.get_mut(&mount.mountpoint) {
                    entry.0 = mount;
                }
            }
            (Message::Release(mountpoint), _) => {
                self.held.remove(&mountpoint);
            }
            (Message::Take, _) => {
                self.took = true;
                for (mount, fd) in self.held.values() {
                    kept::send(socket, &Message::Held(mount.clone()), Some(fd))?;
                }
                kept::send(socket, &Message::End, None)?;
            }
            (other, _) => tracing::warn!("keeper: unexpected message {other:?}"),
        }
        Ok(true)
    }
}
