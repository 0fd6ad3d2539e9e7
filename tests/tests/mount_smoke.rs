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
