//! The harness of the CLI tests: the built `tessera` binary (built on demand), a store of
//! the test's own with the CLI pointed at it, commands run with a deadline, and a guard that
//! stops the store's daemon and detaches its mounts in `Drop`, even when the test fails.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tessera_tests::bytes;

/// The `tessera` binary of this build: `<target>/<profile>/tessera`, next to the `deps/`
/// directory holding this test. Built (once per test binary) when missing or older than the
/// sources — `cargo test -p tessera-tests` alone does not build another package's binary.
pub fn tessera_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let bin = profile_dir.join("tessera");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        if !bin.exists() || older_than_sources(&bin, workspace) {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .current_dir(workspace)
                .args(["build", "-p", "tessera-tools", "--bin", "tessera"]);
            match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") => {}
                Some("release") => {
                    build.arg("--release");
                }
                Some(other) => {
                    build.args(["--profile", other]);
                }
                None => {}
            }
            if let Some(target) = profile_dir.parent() {
                build.arg("--target-dir").arg(target);
            }
            let status = build.status().expect("running cargo build");
            assert!(status.success() || bin.exists(), "building tessera failed");
        }
        bin
    })
}

/// Whether any source of the binary changed after it was built.
fn older_than_sources(bin: &Path, workspace: &Path) -> bool {
    /// The newest modification time of a file or of anything under a directory.
    fn newest(path: &Path) -> SystemTime {
        let own = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH);
        let children = std::fs::read_dir(path).into_iter().flatten().flatten();
        children
            .map(|e| newest(&e.path()))
            .fold(own, SystemTime::max)
    }
    let built = std::fs::metadata(bin).and_then(|m| m.modified());
    let sources = ["engine/src", "fusefs/src", "tools/src", "Cargo.lock"]
        .iter()
        .map(|s| newest(&workspace.join(s)))
        .fold(UNIX_EPOCH, SystemTime::max);
    built.map_or(true, |b| b < sources)
}

/// Runs a command with a deadline (a hung CLI fails the test instead of hanging it).
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    try_output_within(command, limit).unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

/// [`output_within`] without panicking (for `Drop`).
fn try_output_within(command: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Drain the pipes on threads so a chatty child cannot block on them.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not finish within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Whether a process lives or still holds its files (a zombie whose threads are all gone
/// does not: its leader can turn zombie while other threads still exit).
pub fn alive(pid: u32) -> bool {
    tessera_daemon::client::running(u64::from(pid))
}

pub fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(pid, sig);
}

/// Stops a child as a service manager would: SIGTERM, up to a minute to exit, then SIGKILL.
#[allow(dead_code)] // not every test binary starts a service
pub fn terminate(mut child: std::process::Child) {
    signal(child.id(), rustix::process::Signal::TERM);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn wait_dead(pid: u32, limit: Duration) {
    let started = Instant::now();
    while alive(pid) {
        assert!(started.elapsed() < limit, "process {pid} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `path` is a mount point now (any file system type).
pub fn is_mounted(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_str().unwrap();
    text.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

pub fn detach(path: &Path) {
    let _ = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH);
}

/// A store of its own in a temp dir, the CLI pointed at it, and cleanup of its daemon and
/// mounts in `Drop`.
pub struct Cli {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    /// Every daemon pid seen, to kill in Drop.
    pub pids: std::sync::Mutex<Vec<u32>>,
    /// Variables every command gets (a remote's AWS_* settings).
    pub env: Vec<(String, String)>,
}

impl Cli {
    /// A fresh, empty store.
    pub fn bare() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let cli = Cli {
            dir,
            store,
            pids: Default::default(),
            env: Vec::new(),
        };
        cli.ok(&["init"]);
        cli
    }

    /// A fresh store with `base` imported from a small tree, and `containers` on it.
    pub fn new(containers: &[&str]) -> Cli {
        let cli = Cli::bare();
        let src = cli.path("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hostname"), "base\n").unwrap();
        std::fs::write(src.join("big.bin"), bytes(1, 1 << 20)).unwrap();
        cli.ok(&["import", src.to_str().unwrap(), "--name", "base"]);
        for name in containers {
            cli.ok(&["create", name, "--from", "base"]);
        }
        cli
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A new, empty directory to mount on.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(tessera_bin());
        command
            .arg("--store")
            .arg(&self.store)
            .args(args)
            .env_remove("TESSERA_STORE")
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        output_within(&mut self.command(args), Duration::from_secs(60))
    }

    /// Runs a command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tessera {args:?} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// Runs a command that must fail with one line `tessera: …` containing `needle`.
    pub fn fails(&self, args: &[&str], needle: &str) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "tessera {args:?} succeeded");
        assert_one_error_line(&stderr, args);
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} lacks {needle:?}"
        );
        stderr
    }

    pub fn mount(&self, container: &str, mountpoint: &Path) {
        self.ok(&["mount", container, mountpoint.to_str().unwrap()]);
        self.daemon_pid().expect("a daemon after mount");
    }

    /// The pid of the store's daemon, when one answers.
    pub fn daemon_pid(&self) -> Option<u32> {
        let out = self.run(&["daemon", "status", "--json"]);
        if !out.status.success() {
            return None;
        }
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        let pid = status["pid"].as_u64().unwrap() as u32;
        let mut pids = self.pids.lock().unwrap();
        if !pids.contains(&pid) {
            pids.push(pid);
        }
        // Its keeper first: killed after the daemon, it would start another.
        if let Some(keeper) = status["keeper"].as_u64().map(|k| k as u32)
            && !pids.contains(&keeper)
        {
            pids.insert(0, keeper);
        }
        Some(pid)
    }

    /// The daemon's keeper (`tessera_daemon::keeper`).
    pub fn keeper_pid(&self) -> Option<u32> {
        self.daemon_pid()?;
        self.status()["keeper"].as_u64().map(|k| k as u32)
    }

    /// Kills the daemon and its keeper (kill -9 of both: the mounts die with them).
    pub fn kill_daemon_and_keeper(&self) -> u32 {
        let pid = self.daemon_pid().expect("a daemon");
        let keeper = self.keeper_pid().expect("a keeper");
        signal(keeper, rustix::process::Signal::KILL);
        wait_dead(keeper, Duration::from_secs(10));
        signal(pid, rustix::process::Signal::KILL);
        pid
    }

    pub fn status(&self) -> Value {
        self.json(&["daemon", "status", "--json"])
    }

    /// The container → mount point pairs the daemon reports.
    pub fn mounts(&self) -> BTreeMap<String, PathBuf> {
        let status = self.status();
        status["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let c = m["container"].as_str().unwrap().to_string();
                (c, PathBuf::from(m["mountpoint"].as_str().unwrap()))
            })
            .collect()
    }

    /// The files of a tar the CLI exported: path → contents.
    pub fn export(&self, target: &str) -> BTreeMap<String, Vec<u8>> {
        let tar_path = self.path(&format!("{target}.tar"));
        self.ok(&["export", target, "-o", tar_path.to_str().unwrap()]);
        let mut archive = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
        let mut files = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.insert(path.trim_start_matches("./").to_string(), data);
        }
        std::fs::remove_file(&tar_path).unwrap();
        files
    }

    /// The daemon's log (beside its socket), for failure reports.
    pub fn daemon_log(&self) -> Option<PathBuf> {
        let canonical = std::fs::canonicalize(&self.store).ok()?;
        let hash = blake3::hash(canonical.as_os_str().as_encoded_bytes()).to_hex();
        Some(PathBuf::from(format!(
            "/run/tessera/{}.log",
            &hash.as_str()[..16]
        )))
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        // Nothing here may panic (a panic while unwinding aborts every test).
        let quiet =
            |args: &[&str]| try_output_within(&mut self.command(args), Duration::from_secs(30));
        if let Ok(status) = quiet(&["daemon", "status", "--json"])
            && status.status.success()
        {
            let status: Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
            let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(pid) = status["pid"].as_u64() {
                pids.push(pid as u32);
            }
            if let Some(keeper) = status["keeper"].as_u64() {
                pids.insert(0, keeper as u32);
            }
            drop(pids);
            let _ = quiet(&["daemon", "stop"]);
        }
        for &pid in self.pids.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if alive(pid) {
                signal(pid, rustix::process::Signal::KILL);
            }
        }
        // Lazily detach whatever is still mounted under the temp dir (before it is removed:
        // removing through a live mount would delete the container's files).
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.dir.path().to_string_lossy().into_owned();
        for line in text.lines() {
            if let Some(mp) = line.split(' ').nth(4).filter(|mp| mp.starts_with(&root)) {
                eprintln!("cleanup: detaching {mp}");
                detach(Path::new(mp));
            }
        }
        if let Some(log) = self.daemon_log() {
            if failing {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                eprintln!("--- daemon log {} ---\n{text}", log.display());
            }
            let _ = std::fs::remove_file(log.with_extension("start"));
            let _ = std::fs::remove_file(log);
        }
    }
}

pub fn assert_one_error_line(stderr: &str, args: &[&str]) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {stderr:?}");
    assert!(lines[0].starts_with("tessera: "), "{args:?}: {stderr:?}");
}

pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}
