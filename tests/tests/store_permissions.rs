//! A store is its owner's alone: its packs hold every block of every image and container, so
//! another user must not be able to read them whatever the modes of the files inside.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use tessera::{Store, StoreOptions};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_store_is_private_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    // Even in a directory every user can enter (a fresh /tmp directory is 0700 already).
    fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("store");
    let store = Store::init(&root, StoreOptions::default()).unwrap();
    drop(store);
    assert_eq!(mode(&root), 0o700);
    // A store made before this rule (0755) is tightened when it is opened.
    fs::set_permissions(&root, Permissions::from_mode(0o755)).unwrap();
    drop(Store::open(&root, StoreOptions::default()).unwrap());
    assert_eq!(mode(&root), 0o700);
    if !rustix::process::geteuid().is_root() {
        return;
    }
    // As another user: the packs and the metadata cannot even be listed.
    let out = Command::new("cat")
        .arg(root.join("tessera-store"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
}
