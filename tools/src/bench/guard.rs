//! Guards for everything a bench creates outside its own memory: the scratch directory, kernel
//! mounts, loop devices and fuse-overlayfs daemons. Each one undoes itself in `Drop`, so an
//! error, a panic or Ctrl-C (which only sets a flag the bench loops check, so the stack
//! unwinds normally) leaves nothing behind. A run killed with SIGKILL can leave leftovers; the
//! next run sweeps those of dead runs ([`sweep_stale`]).
//!
//! Nothing here may unmount or delete anything outside a `tessera-bench-<pid>-*` directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static INTERRUPTED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// Ctrl-C and SIGTERM set a flag instead of killing the process, so guards get to run.
pub fn install_interrupt_handler() -> Result<()> {
    let flag = INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, flag.clone())
            .context("installing the Ctrl-C handler")?;
    }
    Ok(())
}

/// Fails once Ctrl-C was pressed; long loops call it between steps.
pub fn check() -> Result<()> {
    if INTERRUPTED
        .get()
        .is_some_and(|flag| flag.load(Ordering::Relaxed))
    {
        bail!("interrupted; cleaned up");
    }
    Ok(())
}

const PREFIX: &str = "tessera-bench-";

/// Runs a command to completion, failing with its stderr when it fails.
pub fn run(command: &mut Command) -> Result<String> {
    let what = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    check()?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Mounts under `root` (deepest first), from /proc/self/mountinfo.
fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(field.replace("\\040", " ")))
        .filter(|p| p.starts_with(root) && p != root)
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn detach(path: &Path) {
    if let Err(e) = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        tracing::warn!("detaching {}: {e}", path.display());
    }
}

/// The run's scratch directory `WORK/tessera-bench-<pid>-XXXX`. On drop, anything still
/// mounted under it is detached first, so removing it can never reach through a mount.
pub struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    pub fn new(work_dir: &Path) -> Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .tempdir_in(work_dir)
            .with_context(|| format!("creating a scratch directory in {}", work_dir.display()))?;
        Ok(Scratch(Some(dir)))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("scratch is live").path()
    }

    /// A new empty directory inside the scratch directory.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let path = self.path().join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            for mount in mounts_under(dir.path()) {
                detach(&mount);
            }
            if let Err(e) = dir.close() {
                tracing::warn!("removing the scratch directory: {e}");
            }
        }
    }
}

/// A kernel mount made by the bench; unmounted (detached when busy) on drop.
pub struct KernelMount(PathBuf);

impl KernelMount {
    /// `mount -t TYPE -o OPTIONS SOURCE TARGET`.
    pub fn new(kind: &str, source: &str, options: &str, target: &Path) -> Result<KernelMount> {
        let mut command = Command::new("mount");
        command.args(["-t", kind]);
        if !options.is_empty() {
            command.args(["-o", options]);
        }
        run(command.arg(source).arg(target))?;
        Ok(KernelMount(target.to_path_buf()))
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        if rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::empty()).is_err() {
            detach(&self.0);
        }
    }
}

/// A loop device over a file; detached on drop.
pub struct LoopDevice(String);

impl LoopDevice {
    /// `losetup --direct-io=on -f --show FILE` (direct I/O, so the backing file's page cache
    /// does not hold a second copy of what the loop device's filesystem caches).
    pub fn attach(file: &Path) -> Result<LoopDevice> {
        let out = run(Command::new("losetup")
            .args(["--direct-io=on", "-f", "--show"])
            .arg(file))?;
        Ok(LoopDevice(out.trim().to_string()))
    }

    pub fn device(&self) -> &str {
        &self.0
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let status = Command::new("losetup")
            .args(["-d", &self.0])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            tracing::warn!("could not detach loop device {}", self.0);
        }
    }
}

/// A fuse-overlayfs daemon in the foreground (our child, in its own process group so Ctrl-C
/// reaches only us) and its mount. Drop unmounts, waits for it to exit, kills it if it hangs.
pub struct FuseOverlayfs {
    child: Child,
    mountpoint: PathBuf,
}

impl FuseOverlayfs {
    pub fn mount(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let log = target.with_extension("log");
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let child = Command::new("fuse-overlayfs")
            .args(["-f", "-o", &options])
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .process_group(0)
            .spawn()
            .context("starting fuse-overlayfs")?;
        let mut daemon = FuseOverlayfs {
            child,
            mountpoint: target.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !mounts_under(target.parent().unwrap_or(target)).contains(&daemon.mountpoint) {
            if let Some(status) = daemon.child.try_wait()? {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("fuse-overlayfs exited ({status}): {}", log.trim());
            }
            if Instant::now() > deadline {
                bail!("fuse-overlayfs did not mount {} in 10 s", target.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(daemon)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FuseOverlayfs {
    fn drop(&mut self) {
        if rustix::mount::unmount(&self.mountpoint, rustix::mount::UnmountFlags::empty()).is_err() {
            detach(&self.mountpoint);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
        tracing::warn!("fuse-overlayfs did not exit after unmount: killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `name` is a scratch directory of a run whose process is gone.
fn is_dead_run(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let pid = rest.split('-').next().unwrap_or("");
    !pid.is_empty()
        && pid.chars().all(|c| c.is_ascii_digit())
        && !Path::new("/proc").join(pid).exists()
}

/// Cleans up after runs that were killed without a chance to clean up (SIGKILL): their
/// mounts, loop devices and scratch directories. Runs that are alive are left alone.
pub fn sweep_stale(work_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return;
    };
    let dead: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| is_dead_run(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    if dead.is_empty() {
        return;
    }
    let loops = Command::new("losetup")
        .args(["--list", "--noheadings", "--output", "NAME,BACK-FILE"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for dir in dead {
        tracing::warn!("removing leftovers of a killed run: {}", dir.display());
        for mount in mounts_under(&dir) {
            detach(&mount);
        }
        for line in loops.lines() {
            let mut fields = line.split_whitespace();
            if let (Some(dev), Some(file)) = (fields.next(), fields.next())
                && Path::new(file).starts_with(&dir)
            {
                drop(LoopDevice(dev.to_string()));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dead_runs_are_swept() {
        let me = format!("{PREFIX}{}-abcd", std::process::id());
        assert!(!is_dead_run(&me));
        assert!(is_dead_run(&format!("{PREFIX}4000000000-abcd")));
        assert!(!is_dead_run("tessera-demo-1234"));
        assert!(!is_dead_run(&format!("{PREFIX}x-1")));
    }
}
