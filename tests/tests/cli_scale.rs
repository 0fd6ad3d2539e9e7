//! Node scale: one daemon serves many mounts, and an idle mount costs it little memory (issue
//! 11: ≤ 2 MiB each). Twenty containers are mounted, each reads a file and writes one, then the
//! daemon's anonymous memory is read from /proc. Before the daemon fixed glibc's mmap
//! threshold (`tessera_daemon::malloc`), each mount's FUSE threads held their 16 MiB request buffers
//! resident: 465 MiB for these twenty. The Cli guard stops the daemon and unmounts.

#[allow(dead_code)]
mod cli;

use cli::Cli;
use tessera_tests::mount::can_mount;

const MOUNTS: usize = 20;

/// A number field of /proc/PID/status (memory fields are in kB).
fn status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A store with containers c0..c19 of its image, and their names.
fn twenty_containers() -> (Vec<String>, Cli) {
    let names: Vec<String> = (0..MOUNTS).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let cli = Cli::new(&refs);
    (names, cli)
}

#[test]
fn twenty_idle_mounts_cost_the_daemon_little_memory() {
    if !can_mount() {
        return;
    }
    let (names, cli) = twenty_containers();
    let first = cli.mountpoint("m0");
    cli.mount("c0", &first);
    let pid = cli.daemon_pid().unwrap();
    let base = status(pid, "RssAnon:");
    for (i, name) in names.iter().enumerate() {
        let m = cli.mountpoint(&format!("m{i}"));
        if i > 0 {
            cli.mount(name, &m);
        }
        assert_eq!(std::fs::read(m.join("etc/hostname")).unwrap(), b"base\n");
        std::fs::write(m.join("written"), name).unwrap();
    }
    assert_eq!(cli.status()["mounts"].as_array().unwrap().len(), MOUNTS);
    let grown = status(pid, "RssAnon:").saturating_sub(base);
    let per_mount = grown / MOUNTS as u64;
    eprintln!(
        "{MOUNTS} mounts: anonymous memory grew by {grown} kB ({per_mount} kB per mount), {} threads",
        status(pid, "Threads:")
    );
    assert!(
        per_mount <= 2048,
        "{per_mount} kB of anonymous memory per idle mount"
    );
}

/// `--fuse-pool`: one pool of FUSE workers serves every mount, so twenty mounts add no FUSE
/// threads (each keeps only its write-back push), and the pool serves on across a hand-over
/// to the next daemon.
#[test]
fn with_a_fuse_pool_twenty_mounts_share_its_workers() {
    if !can_mount() {
        return;
    }
    let (names, cli) = twenty_containers();
    let mountpoints: Vec<_> = (0..MOUNTS)
        .map(|i| cli.mountpoint(&format!("m{i}")))
        .collect();
    let first = mountpoints[0].to_str().unwrap();
    cli.ok(&["mount", "c0", first, "--fuse-pool"]);
    let pid = cli.daemon_pid().unwrap();
    let one = status(pid, "Threads:");
    for (i, (name, m)) in names.iter().zip(&mountpoints).enumerate() {
        if i > 0 {
            cli.mount(name, m);
        }
        assert_eq!(std::fs::read(m.join("etc/hostname")).unwrap(), b"base\n");
        std::fs::write(m.join("written"), name).unwrap();
    }
    assert_eq!(cli.status()["fuse_pool"], true, "{}", cli.status());
    let threads = status(pid, "Threads:");
    eprintln!("{MOUNTS} pooled mounts: {threads} threads (one mount: {one})");
    // One thread per further mount (its write-back push); four FUSE threads each without
    // the pool.
    assert!(
        threads <= one + MOUNTS as u64,
        "{threads} threads for {MOUNTS} pooled mounts (one mount: {one})"
    );
    // The next daemon serves them with a pool of its own.
    let out = cli.ok(&["daemon", "restart"]);
    assert!(
        out.contains(&format!("{MOUNTS} of {MOUNTS} mounts")),
        "{out}"
    );
    assert_eq!(cli.status()["fuse_pool"], true);
    for (name, m) in names.iter().zip(&mountpoints) {
        assert_eq!(std::fs::read(m.join("written")).unwrap(), name.as_bytes());
    }
    for m in &mountpoints {
        cli.ok(&["umount", m.to_str().unwrap()]);
    }
    let files = cli.export("c7");
    assert_eq!(files["written"], b"c7");
}
