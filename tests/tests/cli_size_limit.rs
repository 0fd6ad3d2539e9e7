//! `tessera create --size-limit` and `tessera update` through the CLI and a real mount: `df`
//! in the mount shows the limit and the use, a write(2) past the limit fails with ENOSPC ("No
//! space left on device") while what was written stays (the limited container is served
//! write-through), and raising the limit on the mounted container lets the next write
//! through. The Cli guard unmounts and stops the daemon.

#[allow(dead_code)]
mod cli;

use std::io::Write;
use std::process::Command;

use cli::{Cli, s};
use tessera_tests::bytes;
use tessera_tests::mount::can_mount;

const MIB: u64 = 1 << 20;

/// `df -B1 --output=size,used,avail PATH`: (size, used, available) in bytes.
fn df(path: &std::path::Path) -> (u64, u64, u64) {
    let out = Command::new("df")
        .args(["-B1", "--output=size,used,avail"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().nth(1).unwrap();
    let n: Vec<u64> = line
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    (n[0], n[1], n[2])
}

/// Writes `len` new bytes into `path` in 128 KiB writes; returns what went in and the error
/// that stopped it (write(2) itself fails: a limited container is served write-through).
fn fill(path: &std::path::Path, seed: u64, len: usize) -> (usize, Option<std::io::Error>) {
    let mut f = std::fs::File::create(path).unwrap();
    let data = bytes(seed, len);
    let mut at = 0;
    for chunk in data.chunks(128 << 10) {
        if let Err(e) = f.write_all(chunk) {
            return (at, Some(e));
        }
        at += chunk.len();
    }
    f.sync_all().unwrap();
    (at, None)
}

#[test]
fn a_size_limit_shows_in_df_and_stops_writes_with_enospc() {
    if !can_mount() {
        return;
    }
    let cli = Cli::new(&[]);
    cli.ok(&["create", "c", "--from", "base", "--size-limit", "2M"]);
    let listed = cli.json(&["containers", "--json"]);
    assert_eq!(listed[0]["size_limit"], 2 * MIB, "{listed}");
    let m = cli.mountpoint("m");
    cli.mount("c", &m);
    let mounts = cli.status()["mounts"].clone();
    assert_eq!(mounts[0]["write_through"], true, "{mounts}");
    let (size, used, avail) = df(&m);
    assert_eq!(size, 2 * MIB);
    assert!(
        used < 256 << 10 && avail > size - (256 << 10),
        "{used} {avail}"
    );
    let (written, err) = fill(&m.join("new.bin"), 5, 4 << 20);
    let err = err.expect("4 MiB of new data went into a 2 MiB container");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(
        written as u64 >= MIB && written as u64 <= 2 * MIB,
        "{written}"
    );
    let (_, used, avail) = df(&m);
    assert!(used <= 2 * MIB && avail < 256 << 10, "{used} {avail}");
    // The image's file and what was acknowledged are intact.
    assert_eq!(std::fs::read(m.join("big.bin")).unwrap(), bytes(1, 1 << 20));
    let kept = std::fs::read(m.join("new.bin")).unwrap();
    assert_eq!(kept[..written], bytes(5, 4 << 20)[..written]);
    // A raised limit applies to the mounted container at once.
    let reply = cli.json(&["update", "c", "--size-limit", "16M", "--json"]);
    assert_eq!(reply["size_limit"], 16 * MIB, "{reply}");
    assert!(
        reply["exclusive_bytes"].as_u64().unwrap() <= 2 * MIB,
        "{reply}"
    );
    let (_, err) = fill(&m.join("more.bin"), 6, 4 << 20);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(df(&m).0, 16 * MIB);
    cli.ok(&["update", "c", "--size-limit", "none"]);
    assert!(df(&m).0 > 16 * MIB);
    cli.fails(&["update", "c", "--size-limit", "lots"], "lots");
    cli.fails(&["update", "nope", "--size-limit", "1G"], "nope");
    cli.ok(&["umount", s(&m)]);
}
