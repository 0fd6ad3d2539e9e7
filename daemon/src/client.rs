//! Running a request: through the store's daemon when one runs, else in this process (same
//! `service::execute` either way), and starting a daemon.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::paths::DaemonPaths;
use crate::protocol;
use crate::reply::{FromReply, Reply};
use crate::service::{self, Request};
use anyhow::{Context, Result, bail};

/// How long a client waits for the daemon a keeper is starting.
const KEEPER_WAIT: Duration = Duration::from_secs(30);

/// Whether a daemon serves the store (and a connection to it). While a keeper runs between
/// two daemons (a restart, or a daemon killed), this waits for the next one: a command run
/// in process then would open the store beside mounts it does not serve.
pub fn daemon(store: &Path) -> Option<std::os::unix::net::UnixStream> {
    let paths = DaemonPaths::for_store(store).ok()?;
    let started = Instant::now();
    loop {
        if let Some(stream) = protocol::connect(&paths.socket) {
            return Some(stream);
        }
        if keeper_running(&paths).is_none() || started.elapsed() > KEEPER_WAIT {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `request` against the store at `store`.
pub fn call(store: &Path, request: Request) -> Result<Reply> {
    match daemon(store) {
        Some(stream) => protocol::call(stream, &request),
        None => service::call_local(store, request),
    }
}

/// Runs `request` against the store at `store`; the report of the kind it answers.
pub fn call_for<T: FromReply>(store: &Path, request: Request) -> Result<T> {
    call(store, request)?.report()
}

/// Whether process `pid` still runs or holds its files: a zombie whose threads are all gone
/// (only the leader left in /proc/PID/task) has closed everything, the store lock included.
pub fn running(pid: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let zombie = stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with(['Z', 'X']));
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    !(zombie && threads <= 1)
}

/// Starts a background daemon for the store, with a block cache of `cache_size` (like "1G"),
/// and waits until it listens. The daemon is this executable run as `tessera daemon run`:
/// callers are the `tessera` binary.
pub fn start_daemon(store: &Path, cache_size: &str) -> Result<std::os::unix::net::UnixStream> {
    start_daemon_with(store, cache_size, &[])
}

/// `start_daemon`, with more arguments for `tessera daemon run` (like `--persist`).
pub fn start_daemon_with(
    store: &Path,
    cache_size: &str,
    extra: &[&str],
) -> Result<std::os::unix::net::UnixStream> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let paths = DaemonPaths::for_store(store)?;
    paths.create_dir()?;
    // One start at a time: a concurrent `tessera mount` waits here, then finds the daemon
    // started by the first (else its own daemon would fail on the store lock). Released when
    // this returns; the daemon does not inherit it (close-on-exec).
    let start = paths.socket.with_extension("start");
    let start_lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&start)
        .with_context(|| format!("opening {}", start.display()))?;
    rustix::fs::flock(&start_lock, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", start.display()))?;
    // A daemon, or the next one of a keeper between two (or a keeper on its way out, gone
    // before this returns None: a new keeper never meets an old one).
    if let Some(stream) = daemon(store) {
        return Ok(stream);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&paths.log)
        .with_context(|| format!("opening {}", paths.log.display()))?;
    let exe = std::env::current_exe().context("finding the tessera executable")?;
    let mut child = std::process::Command::new(exe)
        .arg("--store")
        .arg(store)
        .args(["daemon", "run", "--cache-size", cache_size])
        .args(extra)
        // Set here, so the daemon need not re-execute itself for it (see `daemon::malloc`).
        .env(crate::malloc::VAR, crate::malloc::THRESHOLD)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .process_group(0)
        .spawn()
        .context("starting the daemon")?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if let Some(stream) = protocol::connect(&paths.socket) {
            return Ok(stream);
        }
        if let Some(status) = child.try_wait()? {
            let tail = log_tail(&paths.log);
            bail!("the daemon exited ({status}) before listening: {tail}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "the daemon did not start listening within 20 s (see {})",
        paths.log.display()
    )
}

/// The last error line of a daemon log.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no log output")
        .to_string()
}

/// The keeper (`keeper`) of the store whose paths are `paths`, if one runs: its pid.
pub fn keeper_running(paths: &DaemonPaths) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(&paths.keeper_pid)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours = cmdline.windows(6).any(|w| w == b"daemon");
    (ours && running(u64::from(pid))).then_some(pid)
}
