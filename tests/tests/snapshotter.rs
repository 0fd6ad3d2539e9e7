//! `tessera snapshotter` under a real containerd (scripts/containerd.sh) and runc: images
//! imported from OCI archives (built here from busybox-static with umoci) are unpacked into
//! the store, containers run on Tessera mounts and stay apart, a container's snapshot
//! commits and runs, everything removed is freed by `tessera gc`, and bad requests get
//! containerd's error codes without changing the store, and a running container survives
//! restarts of the snapshotter and of containerd. Everything started is stopped in
//! `Drop`, even when a test fails.

#[allow(dead_code)]
mod cli;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cli::{Cli, output_within, tessera_bin};
use tessera_tests::have_program;
use tessera_tests::mount::can_mount;

const NS: &str = "tessera-test";

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

fn can_run() -> bool {
    can_mount()
        && have_program("/usr/bin/containerd")
        && have_program("/usr/bin/ctr")
        && have_program("/usr/sbin/runc")
        && have_program("/usr/bin/umoci")
        && have_program("/bin/busybox")
}

/// A store, a `tessera snapshotter` on it and a private containerd using it.
struct Env {
    cli: Cli,
    ctd: PathBuf,
    snapshotter: Option<Child>,
}

impl Env {
    fn start() -> Env {
        let cli = Cli::bare();
        let ctd = cli.path("containerd");
        std::fs::create_dir_all(&ctd).unwrap();
        let mut env = Env {
            cli,
            ctd,
            snapshotter: None,
        };
        env.start_snapshotter();
        let out = env.script("start");
        assert!(out.status.success(), "containerd.sh start: {out:?}");
        env.cli.daemon_pid().expect("the snapshotter's daemon");
        env
    }

    /// Starts `tessera snapshotter` (appending to its log) and waits until it listens.
    fn start_snapshotter(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.cli.path("snapshotter.log"))
            .unwrap();
        let snapshotter = Command::new(tessera_bin())
            .arg("--store")
            .arg(&self.cli.store)
            .arg("snapshotter")
            .arg("--address")
            .arg(self.ctd.join("snapshotter.sock"))
            .env_remove("TESSERA_STORE")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.snapshotter = Some(snapshotter);
        let started = Instant::now();
        while !self.ctd.join("snapshotter.sock").exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the snapshotter did not listen: {}",
                self.snapshotter_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the snapshotter (SIGTERM, as a service manager would) and waits until it exited.
    fn stop_snapshotter(&mut self) {
        if let Some(child) = self.snapshotter.take() {
            cli::terminate(child);
        }
    }

    fn snapshotter_log(&self) -> String {
        std::fs::read_to_string(self.cli.path("snapshotter.log")).unwrap_or_default()
    }

    fn script(&self, action: &str) -> Output {
        output_within(
            Command::new("bash")
                .arg(scripts().join("containerd.sh"))
                .arg(action)
                .arg(&self.ctd),
            Duration::from_secs(120),
        )
    }

    fn ctr_output(&self, args: &[&str]) -> Output {
        let mut command = Command::new("ctr");
        command
            .arg("-a")
            .arg(self.ctd.join("containerd.sock"))
            .args(["-n", NS])
            .args(args)
            .stdin(Stdio::null());
        output_within(&mut command, Duration::from_secs(180))
    }

    /// Runs `ctr`, which must succeed; its stdout.
    fn ctr(&self, args: &[&str]) -> String {
        let out = self.ctr_output(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}{}\nsnapshotter log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.snapshotter_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `ctr`, which must fail with `needle` in its error.
    fn ctr_fails(&self, args: &[&str], needle: &str) {
        let out = self.ctr_output(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "ctr {args:?} succeeded");
        assert!(
            stderr.contains(needle),
            "ctr {args:?}: {stderr} lacks {needle:?}"
        );
    }

    fn snapshots(&self) -> Vec<String> {
        self.ctr(&["snapshots", "--snapshotter", "tessera", "ls"])
            .lines()
            .skip(1)
            .map(|l| l.to_string())
            .collect()
    }

    /// The store's images and containers, as `tessera` lists them.
    fn store_names(&self) -> (Vec<String>, Vec<String>) {
        let names = |args: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = self
                .cli
                .json(args)
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_string())
                .collect();
            v.sort();
            v
        };
        (
            names(&["images", "--json"]),
            names(&["containers", "--json"]),
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.script("stop");
        self.stop_snapshotter();
        // `self.cli` then stops the store's daemon (if still up) and detaches its mounts.
    }
}

fn umoci(args: &[&str]) {
    let out = Command::new("umoci").args(args).output().unwrap();
    assert!(out.status.success(), "umoci {args:?}: {out:?}");
}

/// An OCI archive with three images: `base` (busybox-static), and `one` and `two`, each
/// `base` plus a layer of its own.
fn oci_archive(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let at = |r: &str| format!("{}:{r}", layout.display());
    let bundle = |n: &str| dir.join(n).to_str().unwrap().to_string();
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &at("base")]);
    umoci(&["unpack", "--image", &at("base"), &bundle("b0")]);
    let root = dir.join("b0/rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "echo", "ls", "test"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    for d in ["etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("etc/motd"), "from the base\n").unwrap();
    umoci(&["repack", "--image", &at("base"), &bundle("b0")]);
    for name in ["one", "two"] {
        let b = format!("b-{name}");
        umoci(&["unpack", "--image", &at("base"), &bundle(&b)]);
        std::fs::write(
            dir.join(&b).join(format!("rootfs/{name}.txt")),
            format!("{name}\n"),
        )
        .unwrap();
        umoci(&["repack", "--image", &at(name), &bundle(&b)]);
    }
    let archive = dir.join("images.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    archive
}

fn import(env: &Env) {
    let archive = oci_archive(&env.cli.path("oci"));
    env.ctr(&[
        "images",
        "import",
        "--base-name",
        "tessera.test/bb",
        "--snapshotter",
        "tessera",
        archive.to_str().unwrap(),
    ]);
}

fn stored_bytes(env: &Env) -> u64 {
    env.cli.json(&["stats", "--json"])["store"]["stored_block_bytes"]
        .as_u64()
        .unwrap()
}

#[test]
fn containers_run_on_tessera_snapshots_and_everything_removed_is_freed() {
    if !can_run() {
        return;
    }
    let env = Env::start();
    import(&env);
    // base, base+one, base+two: the base layer is one committed snapshot, stored once.
    let snapshots = env.snapshots();
    assert_eq!(snapshots.len(), 3, "{snapshots:?}");
    assert!(
        snapshots.iter().all(|l| l.contains("Committed")),
        "{snapshots:?}"
    );
    let busybox = std::fs::metadata("/bin/busybox").unwrap().len();
    let stored = stored_bytes(&env);
    assert!(
        stored < busybox * 3 / 2,
        "{stored} bytes stored for a {busybox}-byte busybox"
    );

    let one = env.ctr(&[
        "run",
        "--snapshotter",
        "tessera",
        "tessera.test/bb:one",
        "c1",
        "/bin/sh",
        "-c",
        "cat /etc/motd /one.txt && echo written by c1 > /root/out",
    ]);
    assert_eq!(one, "from the base\none\n");
    let two = env.ctr(&[
        "run", "--snapshotter", "tessera", "tessera.test/bb:two", "c2", "/bin/sh", "-c",
        "cat /two.txt; test -e /root/out && echo c1 leaked; test -e /one.txt && echo one leaked; true",
    ]);
    assert_eq!(two, "two\n");

    // c1's snapshot, committed, and a container run on a snapshot prepared from it.
    env.ctr(&[
        "snapshots",
        "--snapshotter",
        "tessera",
        "commit",
        "c1-done",
        "c1",
    ]);
    env.ctr(&[
        "snapshots",
        "--snapshotter",
        "tessera",
        "prepare",
        "c3-snap",
        "c1-done",
    ]);
    let mounts = env.ctr(&[
        "snapshots",
        "--snapshotter",
        "tessera",
        "mounts",
        "/x",
        "c3-snap",
    ]);
    assert!(mounts.contains("bind"), "{mounts}");
    let source = mounts.split_whitespace().nth(3).unwrap().to_string();
    let three = env.ctr(&[
        "run",
        "--rootfs",
        &source,
        "c3",
        "/bin/sh",
        "-c",
        "cat /root/out /one.txt",
    ]);
    assert_eq!(three, "written by c1\none\n");
    let usage = env.ctr(&["snapshots", "--snapshotter", "tessera", "usage", "c1-done"]);
    assert!(usage.contains("c1-done"), "{usage}");

    // Remove everything: containerd's GC removes the snapshots, `tessera gc` frees the blocks.
    env.ctr(&["containers", "rm", "c1", "c2", "c3"]);
    env.ctr(&["snapshots", "--snapshotter", "tessera", "rm", "c3-snap"]);
    env.ctr(&["snapshots", "--snapshotter", "tessera", "rm", "c1-done"]);
    for tag in ["base", "one", "two"] {
        env.ctr(&["images", "rm", "--sync", &format!("tessera.test/bb:{tag}")]);
    }
    let started = Instant::now();
    while !env.snapshots().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            env.snapshots()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(env.store_names(), (vec!["ctd-empty".to_string()], vec![]));
    env.cli.ok(&["gc"]);
    let after = stored_bytes(&env);
    assert!(after < busybox / 10, "{after} bytes still stored after gc");
}

#[test]
fn bad_requests_get_containerds_codes_and_change_nothing() {
    if !can_run() {
        return;
    }
    let env = Env::start();
    let snap = |args: &[&str]| {
        let mut all = vec!["snapshots", "--snapshotter", "tessera"];
        all.extend_from_slice(args);
        all.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: &[&str]| env.ctr(&snap(args).iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let fails = |args: &[&str], needle: &str| {
        env.ctr_fails(
            &snap(args).iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            needle,
        )
    };
    run(&["prepare", "a", ""]);
    run(&["commit", "a-done", "a"]);
    run(&["prepare", "b", "a-done"]);
    let before = env.store_names();
    fails(&["prepare", "x", "no-such"], "not found");
    fails(
        &["commit", "a-done2", "a-done"],
        "not active: failed precondition",
    );
    fails(&["prepare", "x", "b"], "not committed: failed precondition");
    fails(&["commit", "y", "no-such"], "not found");
    fails(&["prepare", "b", "a-done"], "already exists");
    run(&["prepare", "c", "a-done"]);
    let before_c = env.store_names();
    fails(&["commit", "a-done", "c"], "already exists");
    assert_eq!(env.store_names(), before_c);
    run(&["rm", "c"]);
    // containerd removes a snapshot from its backend in its garbage collection, just after.
    let started = Instant::now();
    while env.store_names() != before {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            env.store_names()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    fails(&["rm", "a-done"], "failed precondition");
    fails(&["rm", "no-such"], "not found");
    assert_eq!(env.store_names(), before);
    let listed = env.snapshots();
    assert_eq!(listed.len(), 2, "{listed:?}");
}

/// The counter a running container writes every 100 ms, read through its rootfs mount.
fn beat(rootfs: &Path) -> u64 {
    let text = std::fs::read_to_string(rootfs.join("root/beat")).unwrap_or_default();
    text.trim().parse().unwrap_or(0)
}

/// Waits until the running container's counter passes `after`: it is still running and
/// writing into its Tessera rootfs.
fn beats_past(env: &Env, rootfs: &Path, after: u64) -> u64 {
    let started = Instant::now();
    loop {
        let now = beat(rootfs);
        if now > after {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the container stopped writing at {now}; snapshotter log:\n{}",
            env.snapshotter_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_running_container_survives_restarts_of_the_snapshotter_and_of_containerd() {
    if !can_run() {
        return;
    }
    let mut env = Env::start();
    import(&env);
    // An ID of its own: runc keeps its state per namespace, not per containerd, and the
    // other tests of this file run containers at the same time.
    env.ctr(&[
        "run",
        "-d",
        "--snapshotter",
        "tessera",
        "tessera.test/bb:one",
        "survivor",
        "/bin/sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /root/beat; /bin/busybox sleep 0.1; done",
    ]);
    let mounts = env.ctr(&[
        "snapshots",
        "--snapshotter",
        "tessera",
        "mounts",
        "/x",
        "survivor",
    ]);
    let rootfs = PathBuf::from(mounts.split_whitespace().nth(3).unwrap());
    let daemon = env.cli.daemon_pid().expect("the store's daemon");
    let snapshots = env.snapshots();
    let info = env.ctr(&["snapshots", "--snapshotter", "tessera", "info", "survivor"]);
    let before = beats_past(&env, &rootfs, 0);

    // The snapshotter stops and starts again: the mounts are the daemon's, so the container
    // never notices; the new snapshotter finds every snapshot with its labels.
    env.stop_snapshotter();
    let during = beats_past(&env, &rootfs, before);
    env.start_snapshotter();
    // containerd redials a proxy plugin with a backoff: until then requests fail fast.
    let started = Instant::now();
    while !env
        .ctr_output(&["snapshots", "--snapshotter", "tessera", "ls"])
        .status
        .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "containerd did not reconnect to the restarted snapshotter"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(env.snapshots(), snapshots);
    assert_eq!(
        env.ctr(&["snapshots", "--snapshotter", "tessera", "info", "survivor"]),
        info
    );
    let after = beats_past(&env, &rootfs, during);

    // containerd restarts (its shims, and the task, stay up) and finds the task running.
    let out = env.script("restart");
    assert!(out.status.success(), "containerd.sh restart: {out:?}");
    let tasks = env.ctr(&["tasks", "ls"]);
    assert!(
        tasks
            .lines()
            .any(|l| l.starts_with("survivor") && l.contains("RUNNING")),
        "{tasks}"
    );
    let after = beats_past(&env, &rootfs, after);
    assert_eq!(env.snapshots(), snapshots);
    assert_eq!(
        env.cli.daemon_pid(),
        Some(daemon),
        "the daemon was restarted"
    );

    // The store's daemon is killed, then restarted: each time its keeper starts the next one
    // on the same mounts, and the container writes on after a pause.
    cli::signal(daemon, rustix::process::Signal::KILL);
    let started = Instant::now();
    let next = loop {
        if let Some(pid) = env.cli.daemon_pid().filter(|p| *p != daemon) {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no next daemon"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let after = beats_past(&env, &rootfs, after);
    let out = env.cli.ok(&["daemon", "restart"]);
    assert!(out.contains("mounts served on"), "{out}");
    assert_ne!(env.cli.daemon_pid(), Some(next));
    beats_past(&env, &rootfs, after);
    assert_eq!(env.snapshots(), snapshots);

    // Stopped and removed through the restarted pair, the container's snapshot goes.
    env.ctr(&["tasks", "kill", "-s", "SIGKILL", "survivor"]);
    let started = Instant::now();
    while env
        .ctr_output(&["tasks", "delete", "survivor"])
        .status
        .code()
        != Some(0)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the container did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    env.ctr(&["containers", "rm", "survivor"]);
    assert!(
        !env.snapshots().iter().any(|l| l.starts_with("survivor ")),
        "{:?}",
        env.snapshots()
    );
}
