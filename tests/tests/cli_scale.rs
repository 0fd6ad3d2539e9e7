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

#[test]
fn twenty_idle_mounts_cost_the_daemon_little_memory() {
    if !can_mount() {
        return;
    }
    let names: Vec<String> = (0..MOUNTS).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let cli = Cli::new(&refs);
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
