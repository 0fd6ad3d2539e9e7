//! POSIX ACLs through a real mount (FUSE_POSIX_ACL: the kernel checks access against them;
//! the volume keeps them and the mode in step, applies default ACLs on create, and the umask
//! only without one). Every case runs the same script on a fresh mount of an image and on a
//! host ext4 directory holding the same nodes, as root and (through `runuser`) as `nobody`,
//! and compares what the script printed: the host is the reference.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use tessera_fusefs::MountConfig;
use tessera_tests::mount::{MountGuard, can_mount};
use tessera_tests::{have_program, image_store};

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask 022\n{script}"))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The nodes every case starts from: plain files, a file with a named-user entry, and a
/// directory with a default ACL (both from the image, so they also test import).
fn make_nodes(root: &Path) {
    fs::set_permissions(root, Permissions::from_mode(0o755)).unwrap();
    for (name, mode) in [
        ("f", 0o666),
        ("g", 0o600),
        ("h", 0o666),
        ("acl-file", 0o640),
    ] {
        fs::write(root.join(name), format!("data of {name}\n")).unwrap();
        fs::set_permissions(root.join(name), Permissions::from_mode(mode)).unwrap();
    }
    fs::create_dir(root.join("inh")).unwrap();
    sh(
        root,
        "setfacl -m u:nobody:r acl-file\n\
         setfacl -m u:nobody:rwx inh\n\
         setfacl -d -m u:nobody:rwx,g::r-x inh",
    );
}

/// What `script` prints on a fresh mount and on the host, which must be the same.
fn same_as_host(script: &str) {
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    make_nodes(host.path());
    let t = image_store(4096, make_nodes);
    let m = MountGuard::new(t.open_container("c").unwrap(), MountConfig::default());
    let want = sh(host.path(), script);
    let got = sh(m.path(), script);
    m.unmount();
    assert_eq!(got, want, "{script}\n--- mount (left) vs host ext4 (right)");
}

fn ready() -> bool {
    can_mount() && have_program("/usr/bin/setfacl") && have_program("/usr/sbin/runuser")
}

const SHOW: &str = "for n in f g h acl-file inh; do stat -c '%n %a' $n; getfacl -n $n; done";

#[test]
fn named_entries_and_the_mask_decide_access() {
    if !ready() {
        return;
    }
    same_as_host(&format!(
        "setfacl -m u:nobody:--- f; runuser -u nobody -- cat f 2>&1\n\
         setfacl -m u:nobody:r g; runuser -u nobody -- cat g 2>&1\n\
         runuser -u nobody -- cat acl-file 2>&1\n\
         setfacl -m u:nobody:rw,m::r h; runuser -u nobody -- sh -c 'echo x >> h' 2>&1\n\
         setfacl -m g:nogroup:rw f; runuser -u nobody -- sh -c 'echo y >> f' 2>&1\n\
         chmod 600 g; runuser -u nobody -- cat g 2>&1\n\
         chmod 640 acl-file; runuser -u nobody -- cat acl-file 2>&1\n\
         {SHOW}"
    ));
}

#[test]
fn default_acls_are_inherited_and_replace_the_umask() {
    if !ready() {
        return;
    }
    same_as_host(
        "umask 077; touch inh/a; mkdir inh/b; mkfifo inh/p; touch plain; mkdir plaind\n\
         runuser -u nobody -- sh -c 'umask 022; echo n > inh/c; mkdir inh/e; mkdir inh/e/deeper'\n\
         umask 027; touch plain2; mkdir plaind2\n\
         for n in inh/a inh/b inh/p inh/c inh/e inh/e/deeper plain plaind plain2 plaind2; do\n\
           stat -c '%n %a %u' $n; getfacl -n $n\n\
         done",
    );
}

#[test]
fn setting_an_acl_sets_the_mode_and_a_minimal_one_is_not_kept() {
    if !ready() {
        return;
    }
    same_as_host(&format!(
        "setfacl -m u:nobody:rwx f; stat -c %a f\n\
         setfacl -m u::rwx,g::r-x,o::- g; stat -c %a g\n\
         getfattr -n system.posix_acl_access g 2>&1\n\
         setfacl -b f acl-file; stat -c %a f acl-file\n\
         getfattr -n system.posix_acl_access f 2>&1\n\
         setfacl -k inh; getfattr -n system.posix_acl_default inh 2>&1\n\
         {SHOW}"
    ));
}

/// An ACL set on a mount (a copy-up of the file's record) is in the committed image, in the
/// exported tar (a PAX `SCHILY.xattr` header, as OCI tools write it) and in an image imported
/// from that tar, where the kernel enforces it.
#[test]
fn acls_survive_commit_export_and_import() {
    if !ready() {
        return;
    }
    let t = image_store(4096, make_nodes);
    let m = MountGuard::new(t.open_container("c").unwrap(), MountConfig::default());
    sh(m.path(), "setfacl -m u:nobody:--- f");
    let set = sh(m.path(), "getfacl -n f acl-file");
    m.unmount();
    t.commit_container("c", "with-acl").unwrap();
    let tar = tessera_tests::trees::export(&t.open_image("with-acl").unwrap());
    let (tree, _) = tessera_tests::trees::tar_tree(&tar);
    let xattrs = &tree.items[&b"f".to_vec()].xattrs;
    assert!(
        xattrs.contains_key(&b"system.posix_acl_access".to_vec()),
        "no ACL of f in the exported tar: {xattrs:?}"
    );
    t.import_tar(&tar[..], "from-tar").unwrap();
    t.create_container("c2", "from-tar").unwrap();
    let m = MountGuard::new(t.open_container("c2").unwrap(), MountConfig::default());
    let imported = sh(m.path(), "getfacl -n f acl-file");
    let denied = sh(m.path(), "runuser -u nobody -- cat f 2>&1 || true");
    m.unmount();
    assert_eq!(imported, set);
    assert_eq!(denied, "cat: f: Permission denied\n");
}
