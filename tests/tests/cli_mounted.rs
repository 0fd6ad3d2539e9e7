//! The `tessera` command line and its daemon, through the built binary, with real mounts:
//! `mount` starts one daemon per store that serves several containers; while it runs every
//! command is its client (import, create, rm/rmi refusals, listings, diff, export and commit of
//! a mounted container, stats, gc, fsck, umount); SIGTERM and `daemon stop` flush and unmount;
//! a `kill -9`ed daemon leaves nothing that blocks the next mount; errors are one line; every
//! `--help` has an example. Each test has its own store (so its own daemon) and a guard that
//! stops the daemon and detaches its mounts even when the test fails.

mod cli;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Command;
use std::time::Duration;

use cli::*;
use tessera_tests::bytes;
use tessera_tests::mount::can_mount;

#[test]
fn one_daemon_serves_two_mounts_and_every_command() {
    if !can_mount() {
        return;
    }
    let cli = Cli::new(&["c1", "c2"]);
    let (m1, m2, m3) = (
        cli.mountpoint("m1"),
        cli.mountpoint("m2"),
        cli.mountpoint("m3"),
    );
    cli.mount("c1", &m1);
    let pid = cli.daemon_pid().unwrap();
    // The second mount reads through the daemon's shared block cache.
    cli.ok(&["mount", "--share-memory", "c2", s(&m2)]);
    assert_eq!(cli.daemon_pid(), Some(pid), "one daemon per store");
    let caching: Vec<bool> = cli.status()["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["share_memory"].as_bool().unwrap())
        .collect();
    assert_eq!(caching, [false, true]);
    let both = BTreeMap::from([
        ("c1".to_string(), m1.clone()),
        ("c2".to_string(), m2.clone()),
    ]);
    assert_eq!(cli.mounts(), both);
    cli.fails(&["mount", "c1", s(&m3)], "already mounted");
    assert!(!is_mounted(&m3));
    cli.fails(&["mount", "nope", s(&m3)], "nope");

    // Writes through the mounts (no fsync).
    std::fs::write(m1.join("new.txt"), "written through m1\n").unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(m1.join("big.bin"))
            .unwrap();
        f.write_all_at(b"PATCH", 500_000).unwrap();
    }
    std::fs::remove_file(m1.join("etc/hostname")).unwrap();
    std::fs::write(m2.join("etc/hostname"), "c2\n").unwrap();
    let mut big = bytes(1, 1 << 20);
    big[500_000..500_005].copy_from_slice(b"PATCH");

    // Import and create while mounted (the store lock is the daemon's: these are its clients).
    let src2 = cli.path("src2");
    std::fs::create_dir_all(&src2).unwrap();
    std::fs::write(src2.join("other"), bytes(2, 200_000)).unwrap();
    cli.ok(&["import", s(&src2), "--name", "other"]);
    cli.ok(&["create", "c3", "--from", "other"]);
    let images = cli.json(&["images", "--json"]);
    let names: Vec<&str> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["base", "other"]);
    let ps = cli.json(&["ps", "--json"]);
    let mounted: BTreeMap<&str, bool> = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["mounted"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        mounted,
        BTreeMap::from([("c1", true), ("c2", true), ("c3", false)])
    );
    assert!(cli.ok(&["containers"]).contains("mounted"));

    // Refusals, and removals of what nothing uses.
    cli.fails(&["rm", "c1"], "mounted");
    cli.fails(&["rmi", "base"], "used by container");
    cli.ok(&["rm", "c3"]);
    cli.ok(&["rmi", "other"]);

    // diff and export of a mounted container show what was written through the mount.
    let diff = cli.json(&["diff", "c1", "--json"]);
    let changes: BTreeMap<&str, &str> = diff
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap(), e["change"].as_str().unwrap()))
        .collect();
    assert_eq!(
        changes,
        BTreeMap::from([
            ("big.bin", "M"),
            ("etc", "M"),
            ("etc/hostname", "D"),
            ("new.txt", "A")
        ]),
        "{diff}"
    );
    let files = cli.export("c1");
    assert_eq!(files["new.txt"], b"written through m1\n");
    assert_eq!(files["big.bin"], big);
    assert!(!files.contains_key("etc/hostname"));

    // Commit of a mounted container: a new container from the image sees the changes; the
    // mounted one goes on on a fresh layer.
    cli.ok(&["commit", "c1", "--name", "snap"]);
    cli.ok(&["create", "c4", "--from", "snap"]);
    let files = cli.export("c4");
    assert_eq!(files["new.txt"], b"written through m1\n");
    assert_eq!(files["big.bin"], big);
    std::fs::write(m1.join("after-commit"), "later\n").unwrap();
    let diff = cli.json(&["diff", "c1", "--json"]);
    assert_eq!(diff.as_array().unwrap().len(), 1, "a fresh layer: {diff}");
    assert!(!cli.export("c4").contains_key("after-commit"));

    // stats, gc, fsck while mounted: nothing a mount uses is collected.
    let stats = cli.json(&["stats", "--json"]);
    assert_eq!(stats["store"]["containers"], 3, "{}", stats["store"]);
    assert!(stats["store"]["referenced_bytes"].as_u64().unwrap() >= 1 << 20);
    // Garbage next to live blocks of the mounts: a flushed file rewritten whole, and a file
    // written (unflushed) just before gc.
    let scratch = m2.join("scratch");
    std::fs::write(&scratch, bytes(4, 2 << 20)).unwrap();
    std::fs::File::open(&scratch).unwrap().sync_all().unwrap();
    std::fs::write(&scratch, bytes(5, 2 << 20)).unwrap();
    std::fs::write(m1.join("unflushed"), bytes(6, 300_000)).unwrap();
    let gc = cli.json(&["gc", "--json"]);
    eprintln!("gc while mounted: {gc}");
    assert!(gc["garbage_blocks"].as_u64().unwrap() > 0, "{gc}");
    assert!(gc["bytes_freed"].as_u64().unwrap() > 0, "{gc}");
    // Garbage left in mostly live packs goes when every pack holding any may be rewritten.
    let left = cli.json(&["gc", "--dry-run", "--json"]);
    assert!(left["garbage_blocks"].as_u64().unwrap() > 0, "{left}");
    cli.json(&["gc", "--repack-below", "100", "--json"]);
    let left = cli.json(&["gc", "--dry-run", "--json"]);
    assert_eq!(left["garbage_blocks"], 0, "{left}");
    assert_eq!(std::fs::read(&scratch).unwrap(), bytes(5, 2 << 20));
    assert_eq!(
        std::fs::read(m1.join("unflushed")).unwrap(),
        bytes(6, 300_000)
    );
    let fsck = cli.ok(&["fsck", "--verify-data"]);
    assert!(fsck.contains("no problems found"), "{fsck}");
    assert_eq!(std::fs::read(m1.join("big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read(m2.join("big.bin")).unwrap(),
        bytes(1, 1 << 20)
    );
    assert_eq!(std::fs::read(m2.join("etc/hostname")).unwrap(), b"c2\n");
    assert_eq!(std::fs::read(m1.join("after-commit")).unwrap(), b"later\n");

    // umount: one mount goes, the daemon stays; the last one goes, so does the daemon.
    cli.ok(&["umount", s(&m2)]);
    assert!(!is_mounted(&m2));
    assert_eq!(cli.mounts().len(), 1);
    cli.fails(&["umount", s(&m2)], "not mounted");
    cli.ok(&["umount", s(&m1)]);
    assert!(!is_mounted(&m1));
    wait_dead(pid, Duration::from_secs(10));
    cli.fails(&["daemon", "status"], "no tessera daemon");
    // In process now: the store is consistent and holds everything.
    assert!(cli.ok(&["fsck"]).contains("no problems found"));
    assert_eq!(cli.export("c2")["etc/hostname"], b"c2\n");
    assert_eq!(cli.export("c1")["after-commit"], b"later\n");
}

#[test]
fn sigterm_and_daemon_stop_flush_and_unmount() {
    if !can_mount() {
        return;
    }
    let cli = Cli::new(&["c1", "c2"]);
    let (m1, m2) = (cli.mountpoint("m1"), cli.mountpoint("m2"));

    // Two `tessera mount`s at once with no daemon: one daemon starts and serves both.
    std::thread::scope(|scope| {
        scope.spawn(|| cli.mount("c1", &m1));
        scope.spawn(|| cli.mount("c2", &m2));
    });
    assert_eq!(cli.mounts().len(), 2);
    let pid = cli.daemon_pid().unwrap();
    assert_eq!(
        cli.pids.lock().unwrap().len(),
        2,
        "one daemon and its keeper"
    );

    // SIGTERM: data written without fsync is durable once the daemon is gone.
    std::fs::write(m1.join("unsynced"), bytes(3, 3 << 20)).unwrap();
    std::fs::write(m2.join("unsynced2"), "two\n").unwrap();
    signal(pid, rustix::process::Signal::TERM);
    wait_dead(pid, Duration::from_secs(20));
    assert!(!is_mounted(&m1) && !is_mounted(&m2));
    assert!(cli.daemon_pid().is_none());
    assert_eq!(cli.export("c1")["unsynced"], bytes(3, 3 << 20));
    assert_eq!(cli.export("c2")["unsynced2"], b"two\n");

    // `daemon stop`, with a file held open on the mount (busy: flushed, then detached).
    cli.mount("c1", &m1);
    let pid = cli.daemon_pid().unwrap();
    assert_eq!(
        std::fs::read(m1.join("unsynced")).unwrap(),
        bytes(3, 3 << 20)
    );
    std::fs::write(m1.join("held"), "held open\n").unwrap();
    let held = std::fs::File::open(m1.join("held")).unwrap();
    cli.ok(&["daemon", "stop"]);
    // `daemon stop` returns once the daemon is gone: the next command runs in process.
    assert!(!alive(pid), "daemon stop returned before the daemon exited");
    assert!(!is_mounted(&m1));
    let files = cli.export("c1");
    assert_eq!(files["held"], b"held open\n");
    let mut text = String::new();
    let read = (&held).read_to_string(&mut text).unwrap_err();
    assert!(
        matches!(
            read.raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED)
        ),
        "{read}"
    );
    drop(held);
    cli.fails(&["daemon", "stop"], "no tessera daemon");
    assert!(
        cli.ok(&["fsck", "--verify-data"])
            .contains("no problems found")
    );
}

#[test]
fn umount_of_a_busy_mount_keeps_it_and_the_last_umount_is_answered() {
    if !can_mount() {
        return;
    }
    let cli = Cli::new(&["c1"]);
    let m1 = cli.mountpoint("m1");
    cli.mount("c1", &m1);
    let pid = cli.daemon_pid().unwrap();
    // Busy: refused, and the mount stays listed and served.
    let held = std::fs::File::open(m1.join("etc/hostname")).unwrap();
    cli.fails(&["umount", s(&m1)], "busy");
    assert!(is_mounted(&m1));
    assert_eq!(cli.mounts().len(), 1);
    std::fs::write(m1.join("still-served"), "yes\n").unwrap();
    assert_eq!(std::fs::read(m1.join("etc/hostname")).unwrap(), b"base\n");
    drop(held);
    // The last umount, with data to flush, races the daemon's idle exit: it must still be
    // answered (and the daemon exit after it).
    for round in 0..4u64 {
        if round > 0 {
            cli.mount("c1", &m1);
        }
        std::fs::write(m1.join("bulk"), bytes(round, 16 << 20)).unwrap();
        cli.ok(&["umount", s(&m1)]);
        assert!(!is_mounted(&m1));
        // umount of the last mount returns once the daemon let go of the store: a command
        // typed right after it runs in process.
        cli.ok(&["fsck"]);
    }
    wait_dead(pid, Duration::from_secs(10));
    for pid in cli.pids.lock().unwrap().iter() {
        wait_dead(*pid, Duration::from_secs(10));
    }
    let files = cli.export("c1");
    assert_eq!(files["still-served"], b"yes\n");
    assert_eq!(files["bulk"], bytes(3, 16 << 20));
}

#[test]
fn killed_daemon_leaves_nothing_that_blocks_the_next_mount() {
    if !can_mount() {
        return;
    }
    let cli = Cli::new(&["c1", "c2"]);
    let (m1, m2) = (cli.mountpoint("m1"), cli.mountpoint("m2"));
    cli.mount("c1", &m1);
    cli.mount("c2", &m2);
    let pid = cli.daemon_pid().unwrap();
    {
        let mut f = std::fs::File::create(m1.join("synced")).unwrap();
        std::io::Write::write_all(&mut f, b"made durable").unwrap();
        f.sync_all().unwrap();
    }
    // Overwrites of an image file: the first fsync commits the copy-up, the later ones go
    // through the intent log only, and are replayed at the next open.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(m1.join("big.bin"))
            .unwrap();
        for (i, at) in [1000u64, 70_000, 300_000, 5].into_iter().enumerate() {
            f.write_all_at(format!("fsync'd {i}").as_bytes(), at)
                .unwrap();
            f.sync_data().unwrap();
        }
    }
    assert!(
        cli.status()["intent_log_fsyncs"].as_u64().unwrap() >= 3,
        "{}",
        cli.status()
    );
    let mut big = bytes(1, 1 << 20); // the image's big.bin (see cli::Cli::new)
    // With its keeper (which would otherwise start the next daemon on the same mounts).
    assert_eq!(cli.kill_daemon_and_keeper(), pid);
    wait_dead(pid, Duration::from_secs(10));
    // statfs always asks the daemon (stat may come from the attribute cache for a while).
    let stale = rustix::fs::statfs(&m1).unwrap_err();
    assert!(
        matches!(
            stale,
            rustix::io::Errno::NOTCONN | rustix::io::Errno::CONNABORTED
        ),
        "{stale}"
    );

    // Same container, same mount point: the stale mount is cleared, the lock is free, the
    // socket replaced.
    cli.mount("c1", &m1);
    let pid2 = cli.daemon_pid().unwrap();
    assert_ne!(pid, pid2);
    assert_eq!(std::fs::read(m1.join("synced")).unwrap(), b"made durable");
    assert_eq!(std::fs::read(m1.join("etc/hostname")).unwrap(), b"base\n");
    for (i, at) in [1000usize, 70_000, 300_000, 5].into_iter().enumerate() {
        let text = format!("fsync'd {i}");
        big[at..at + text.len()].copy_from_slice(text.as_bytes());
    }
    assert!(std::fs::read(m1.join("big.bin")).unwrap() == big);
    // A stale mount of the dead daemon, while a new one serves the store: umount clears it.
    assert!(cli.ok(&["umount", s(&m2)]).contains("stale"));
    assert!(!is_mounted(&m2));
    assert_eq!(cli.mounts().len(), 1);

    // Killed again: with no daemon, umount clears the stale mount; the store works in process.
    assert_eq!(cli.kill_daemon_and_keeper(), pid2);
    wait_dead(pid2, Duration::from_secs(10));
    assert!(cli.ok(&["umount", s(&m1)]).contains("stale"));
    assert!(!is_mounted(&m1));
    cli.fails(&["umount", s(&m1)], "no tessera daemon");
    let ps = cli.json(&["ps", "--json"]);
    assert!(ps.as_array().unwrap().iter().all(|c| c["mounted"] == false));
    assert!(cli.ok(&["fsck"]).contains("no problems found"));
    // And a plain mount again, from scratch.
    cli.mount("c2", &m2);
    assert_eq!(std::fs::read(m2.join("etc/hostname")).unwrap(), b"base\n");
    cli.ok(&["umount", s(&m2)]);
}

#[test]
fn every_subcommand_has_an_example_and_errors_are_one_line() {
    let cli = Cli::new(&["c1"]);
    let help = cli.ok(&["--help"]);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 15, "{commands:?}");
    for command in commands.iter().copied().chain(["ps"]) {
        let text = cli.ok(&[command, "--help"]);
        assert!(
            text.contains("Example"),
            "`tessera {command} --help`:\n{text}"
        );
    }
    for action in ["status", "stop", "run"] {
        let text = cli.ok(&["daemon", action, "--help"]);
        assert!(
            text.contains("Example"),
            "`daemon {action} --help`:\n{text}"
        );
    }

    // Errors without a daemon, each one line.
    let missing = cli.path("missing");
    cli.fails(&["daemon", "status"], "no tessera daemon");
    cli.fails(&["create", "c9", "--from", "nope"], "nope");
    cli.fails(&["create", "c1", "--from", "base"], "c1");
    cli.fails(&["rm", "nope"], "nope");
    cli.fails(&["rmi", "nope"], "nope");
    cli.fails(&["diff", "nope"], "nope");
    cli.fails(&["commit", "nope", "--name", "x"], "nope");
    cli.fails(&["export", "nope", "-o", s(&cli.path("x.tar"))], "nope");
    cli.fails(&["import", s(&missing), "--name", "x"], "missing");
    cli.fails(&["mount", "c1", s(&missing)], "missing");
    cli.fails(&["umount", s(&cli.path("src"))], "no tessera daemon");
    let out = output_within(
        Command::new(tessera_bin()).args(["--store", s(&missing), "images"]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert_one_error_line(&String::from_utf8_lossy(&out.stderr), &["images"]);
    assert!(
        cli.daemon_pid().is_none(),
        "no command above starts a daemon"
    );
}

/// A container that writes and deletes frees the space without `tessera gc`, and
/// `daemon status` and `stats` show it.
#[test]
fn the_daemon_reclaims_what_a_container_deleted() {
    if !can_mount() {
        return;
    }
    let cli = Cli::new(&["c1"]);
    let m1 = cli.mountpoint("m1");
    cli.mount("c1", &m1);
    std::fs::write(m1.join("scratch.bin"), bytes(5, 48 << 20)).unwrap();
    std::fs::File::open(m1.join("scratch.bin"))
        .unwrap()
        .sync_all()
        .unwrap();
    std::fs::remove_file(m1.join("scratch.bin")).unwrap();
    let started = std::time::Instant::now();
    loop {
        let reclaim = cli.status()["reclaim"].clone();
        if reclaim["bytes_freed"].as_u64().unwrap() >= 40 << 20 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing reclaimed: {reclaim}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stats = cli.json(&["stats", "--json"]);
    assert_eq!(stats["store"]["reclaimable_bytes"], 0, "{stats}");
    let text = cli.ok(&["daemon", "status"]);
    assert!(text.contains("reclaim: "), "{text}");
}

/// Every file and directory of a store is its owner's alone whatever the umask (the packs
/// hold every container's data); the daemon's socket and log too, so another user can
/// neither read a block nor drive the daemon; `fsck` reports a store file others could read.
#[test]
fn the_store_and_the_daemon_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !can_mount() {
        return;
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    // The commands below inherit it; files and directories made by `create_dir_all` and the
    // like would be 0666 and 0777.
    let old_umask = rustix::process::umask(rustix::fs::Mode::empty());
    let cli = Cli::new(&["c1"]);
    let m1 = cli.mountpoint("m1");
    cli.mount("c1", &m1);
    std::fs::write(m1.join("new"), bytes(9, 300 << 10)).unwrap();
    cli.ok(&["commit", "c1", "--name", "img2"]);
    rustix::process::umask(old_umask);
    let mut seen = 0;
    let mut dirs = vec![cli.store.clone()];
    while let Some(dir) = dirs.pop() {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 6,
        "{seen} files (packs, indexes, metadata, log, lock, header)"
    );
    let log = cli.daemon_log().unwrap();
    let socket = log.with_extension("sock");
    assert_eq!(mode(log.parent().unwrap()), 0o700);
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&log), 0o600);
    // As another user: no byte of the store, no connection to the daemon.
    let as_nobody = |program: &str, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{program} {args:?} as nobody: {out:?}"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let header = cli.store.join("tessera-store");
    let err = as_nobody("cat", &[header.to_str().unwrap()]);
    assert!(err.contains("Permission denied"), "{err}");
    let connect = format!(
        "import socket; socket.socket(socket.AF_UNIX).connect({:?})",
        socket.to_str().unwrap()
    );
    let err = as_nobody("python3", &["-c", &connect]);
    assert!(err.contains("PermissionError"), "{err}");
    cli.ok(&["umount", m1.to_str().unwrap()]);
    // fsck finds a pack others could read (a store copied with the wrong umask, say).
    let pack = std::fs::read_dir(cli.store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pack"))
        .unwrap();
    std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cli.run(&["fsck"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(pack.file_name().unwrap().to_str().unwrap())
            && text.contains("lets other users in"),
        "{text}"
    );
    std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o600)).unwrap();
    cli.ok(&["fsck"]);
}
