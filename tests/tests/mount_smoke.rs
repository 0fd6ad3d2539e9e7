//! A first real mount: files through the kernel, stable inode numbers across copy-up.

use std::os::unix::fs::MetadataExt;

use tessera_fusefs::MountConfig;
use tessera_tests::mount::{MountGuard, can_mount};
use tessera_tests::*;

#[test]
fn mount_read_write_and_stable_inodes() {
    if !can_mount() {
        return;
    }
    let t = TempStore::new(4096);
    let src = t.dir.path().join("src");
    small_tree(&src);
    t.import_path(&src, "base").unwrap();
    t.create_container("c1", "base").unwrap();
    let volume = t.open_container("c1").unwrap();
    let m = MountGuard::new(volume, MountConfig::default());
    let big = m.join("usr/lib/big.bin");
    assert_eq!(std::fs::read(m.join("etc/hostname")).unwrap(), b"tessera\n");
    let ino_before = std::fs::metadata(&big).unwrap().ino();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
        f.write_all_at(b"XYZ", 150_000).unwrap();
        f.sync_all().unwrap();
    }
    let meta = std::fs::metadata(&big).unwrap();
    assert_eq!(meta.ino(), ino_before);
    let data = std::fs::read(&big).unwrap();
    assert_eq!(&data[150_000..150_003], b"XYZ");
    std::fs::create_dir(m.join("newdir")).unwrap();
    std::fs::write(m.join("newdir/f"), b"hello").unwrap();
    std::fs::rename(m.join("usr"), m.join("usr2")).unwrap();
    assert_eq!(std::fs::read(m.join("newdir/f")).unwrap(), b"hello");
    let mut names: Vec<_> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["etc", "hostname-link", "newdir", "usr2"]);
    m.unmount();
}

/// A process in a mount namespace made after the mount (as `unshare -m` or a rootless
/// podman's pause process makes one) holds a copy of it: unmounting here must still end (the
/// copy's connection is aborted), not wait for that process forever.
#[test]
fn unmount_ends_while_another_mount_namespace_holds_a_copy() {
    if !can_mount() || !have_program("/usr/bin/unshare") {
        return;
    }
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let t = image_store(4096, small_tree);
    let m = MountGuard::new(t.open_container("c").unwrap(), MountConfig::default());
    std::fs::write(m.join("written"), b"before the copy\n").unwrap();
    let holder = Kill(
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "120"])
            .spawn()
            .unwrap(),
    );
    // Until the holder runs in its own namespace (with its copy of the mount).
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let ns = format!("/proc/{}/ns/mnt", holder.0.id());
    let started = std::time::Instant::now();
    while std::fs::read_link(&ns).map_or(true, |theirs| theirs == ours) {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        m.unmount();
        let _ = done.send(());
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the unmount ended");
    drop(holder);
    // Nothing written was lost on the way.
    let view = t.container_view("c").unwrap();
    assert_eq!(read_file(&view, "written"), b"before the copy\n");
}
