//! Set-user-ID and set-group-ID bits through a real mount. The mount asks the kernel for
//! `FUSE_HANDLE_KILLPRIV_V2`, so the volume, not the kernel, drops them on a change of owner
//! and on a write or truncation by an unprivileged process. Every case runs the same commands
//! on the mount (in both caching modes) and on a plain directory of the host, and compares the
//! modes: the host's filesystem is the reference. The volume follows the rules of Linux 6.2
//! and later (set-group-ID without group execute is dropped for a writer outside the file's
//! group); on older kernels the cases that depend on it are skipped.

use std::fs::{self, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use tessera_fusefs::MountConfig;
use tessera_tests::image_store;
use tessera_tests::mount::{MountGuard, can_mount};

/// (name, kind, mode) of the nodes every case starts from; files are writable by everyone so
/// that an unprivileged user can write and truncate them.
const NODES: &[(&str, &str, u32)] = &[
    ("suid-sgid-gx", "file", 0o6777),
    ("suid-only", "file", 0o4766),
    ("sgid-no-gx", "file", 0o2766),
    ("plain", "file", 0o0777),
    ("dir", "dir", 0o6777),
];

fn make_nodes(root: &Path) {
    for (name, kind, mode) in NODES {
        let path = root.join(name);
        if *kind == "dir" {
            fs::create_dir(&path).unwrap();
        } else {
            fs::write(&path, b"#!/bin/sh\necho hello\n").unwrap();
        }
        fs::set_permissions(&path, Permissions::from_mode(*mode)).unwrap();
    }
}

/// Runs `script` in `dir` as `uid` (0 or an unprivileged user).
fn run(dir: &Path, uid: u32, script: &str) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).current_dir(dir);
    if uid != 0 {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{script} as {uid}: {out:?}");
}

fn modes(root: &Path) -> Vec<(String, u32)> {
    NODES
        .iter()
        .map(|(name, _, _)| {
            let mode = fs::symlink_metadata(root.join(name)).unwrap().mode() & 0o7777;
            (name.to_string(), mode)
        })
        .collect()
}

/// Runs `script` as `uid` on a fresh mount of an image holding the nodes (from the image, so
/// the first change is also a copy-up) and on a host directory holding the same, and compares.
fn same_as_host(config: MountConfig, uid: u32, script: &str) {
    let host = tempfile::tempdir().unwrap();
    make_nodes(host.path());
    // The host directory must be reachable for the unprivileged user, as the mount is.
    fs::set_permissions(host.path(), Permissions::from_mode(0o755)).unwrap();
    let t = image_store(4096, make_nodes);
    let m = MountGuard::new(t.open_container("c").unwrap(), config);
    run(host.path(), uid, script);
    run(m.path(), uid, script);
    let (want, got) = (modes(host.path()), modes(m.path()));
    m.unmount();
    assert_eq!(got, want, "{script} as {uid}: mount (left) vs host (right)");
}

/// Whether the host kernel drops a non-executable set-group-ID bit for a writer outside the
/// file's group (`setattr_should_drop_sgid`, Linux 6.2).
fn host_has_6_2_rules() -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 2)
}

fn both_modes(uid: u32, script: &str) {
    same_as_host(MountConfig::default(), uid, script);
    let share = MountConfig {
        share_memory: true,
        ..MountConfig::default()
    };
    same_as_host(share, uid, script);
}

#[test]
fn chown_by_root_drops_set_id_bits_of_files_not_directories() {
    if !can_mount() {
        return;
    }
    both_modes(
        0,
        "chown 1000:1000 suid-sgid-gx suid-only sgid-no-gx plain dir",
    );
    both_modes(0, "chgrp 1000 suid-sgid-gx suid-only sgid-no-gx dir");
    // No owner change at all (chown to -1:-1) still drops them.
    both_modes(0, "chown : suid-sgid-gx suid-only sgid-no-gx plain dir");
}

#[test]
fn writes_and_truncations_by_another_user_drop_set_id_bits() {
    if !can_mount() {
        return;
    }
    if !host_has_6_2_rules() {
        eprintln!("skipped: the host kernel predates the set-group-ID rules of Linux 6.2");
        return;
    }
    let names = "suid-sgid-gx suid-only sgid-no-gx plain";
    both_modes(1000, &format!("for f in {names}; do echo more >> $f; done"));
    both_modes(1000, &format!("truncate -s 5 {names}"));
    both_modes(1000, &format!("for f in {names}; do : > $f; done")); // open(O_TRUNC)
    // No size change and no data through write(2): the kernel asks with an empty SETATTR.
    both_modes(
        1000,
        &format!("for f in {names}; do fallocate -l 8192 $f; done"),
    );
    let copy = "import os, sys\n\
                src = os.open('plain', os.O_RDONLY)\n\
                for name in sys.argv[1:]:\n    \
                    os.copy_file_range(src, os.open(name, os.O_WRONLY), 4)";
    let set_id = "suid-sgid-gx suid-only sgid-no-gx"; // from `plain`
    both_modes(1000, &format!("/usr/bin/python3 -c \"{copy}\" {set_id}"));
}

#[test]
fn writes_and_truncations_by_root_keep_set_id_bits() {
    if !can_mount() {
        return;
    }
    let names = "suid-sgid-gx suid-only sgid-no-gx plain";
    both_modes(0, &format!("for f in {names}; do echo more >> $f; done"));
    both_modes(0, &format!("truncate -s 5 {names}"));
    both_modes(0, &format!("for f in {names}; do : > $f; done"));
}
