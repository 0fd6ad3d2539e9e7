use tessera::{Caller, RenameFlags};
use tessera_tests::*;

#[test]
fn import_write_commit_reopen() {
    let mut t = TempStore::new(4096);
    let src = t.dir.path().join("src");
    small_tree(&src);
    let report = t.import_path(&src, "base").unwrap();
    assert_eq!(report.logical_bytes, 300_008);
    t.create_container("c1", "base").unwrap();
    {
        let v = t.open_container("c1").unwrap();
        assert_eq!(read_file(&v, "etc/hostname"), b"tessera\n");
        assert_eq!(read_file(&v, "usr/lib/big.bin"), bytes(1, 300_000));
        let big = node_at(&v, "usr/lib/big.bin");
        v.write(big, 150_000, b"XYZ").unwrap();
        let mut expected = bytes(1, 300_000);
        expected[150_000..150_003].copy_from_slice(b"XYZ");
        assert_eq!(read_file(&v, "usr/lib/big.bin"), expected);
        v.fsync(big).unwrap();
        assert_eq!(read_file(&v, "usr/lib/big.bin"), expected);
        let etc = node_at(&v, "etc");
        v.mkdir(etc, b"new", 0o755, Caller::ROOT).unwrap();
        v.unlink(etc, b"hostname").unwrap();
        v.rename(v.root(), b"usr", v.root(), b"usr2", RenameFlags::default())
            .unwrap();
        assert_eq!(read_file(&v, "usr2/lib/big.bin"), expected);
    }
    t.commit_container("c1", "snap").unwrap();
    t.reopen();
    let img = t.open_image("base").unwrap();
    assert_eq!(read_file(&img, "usr/lib/big.bin"), bytes(1, 300_000));
    assert_eq!(read_file(&img, "etc/hostname"), b"tessera\n");
    let snap = t.open_image("snap").unwrap();
    assert!(snap.resolve(b"etc/hostname").is_err());
    assert!(snap.resolve(b"etc/new").is_ok());
    let data = read_file(&snap, "usr2/lib/big.bin");
    assert_eq!(&data[150_000..150_003], b"XYZ");
}

#[test]
fn st_blocks_is_exact_before_and_after_a_flush() {
    let t = TempStore::new(4096);
    t.create_empty_image("empty").unwrap();
    t.create_container("c", "empty").unwrap();
    let v = t.open_container("c").unwrap();
    let node = v.create(v.root(), b"f", 0o644, Caller::ROOT).unwrap().node;
    v.write(node, 0, &bytes(3, 300_000)).unwrap();
    v.fsync(node).unwrap();
    let sectors = |v: &tessera::Volume| v.getattr(node).unwrap().blocks;
    let full = sectors(&v);
    assert_eq!(full, 74 * 8, "300 000 bytes are 74 blocks of 4 KiB");
    v.write(node, 0, &bytes(4, 100_000)).unwrap();
    assert_eq!(sectors(&v), full, "overwriting replaces blocks, adds none");
    v.setattr(
        node,
        &tessera::SetAttr {
            size: Some(8192),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(sectors(&v), 2 * 8);
    v.fallocate(node, tessera::Fallocate::PunchHole, 0, 4096)
        .unwrap();
    assert_eq!(sectors(&v), 8);
    v.fsync(node).unwrap();
    assert_eq!(sectors(&v), 8);
}

#[test]
fn a_full_disk_fails_the_write_not_a_later_flush() {
    use tessera::io::{Io, SimIo, SimOptions};
    let sim = SimIo::new(SimOptions {
        capacity: Some(64 << 20),
        ..Default::default()
    });
    let options = TempStore::options(4096).io(sim.clone() as Io);
    let store = tessera::Store::init("/store", options).unwrap();
    store.create_empty_image("empty").unwrap();
    store.create_container("c", "empty").unwrap();
    let v = store.open_container("c").unwrap();
    let node = v.create(v.root(), b"f", 0o644, Caller::ROOT).unwrap().node;
    let mut written = 0u64;
    let err = loop {
        // Distinct data: repeated chunks would dedup and never fill the disk.
        let chunk = bytes(written + 1, 1 << 20);
        match v.write(node, written, &chunk) {
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
        assert!(written < 128 << 20, "a 64 MiB disk took {written} bytes");
    };
    assert_eq!(err.kind(), tessera::ErrorKind::NoSpace, "{err}");
    // What write(2) accepted is durable at the next fsync.
    v.fsync(node).unwrap();
    assert_eq!(v.getattr(node).unwrap().size, written);
}

#[test]
fn the_dirty_budget_counts_exactly_what_is_held() {
    let t = TempStore::new(4096);
    t.create_empty_image("empty").unwrap();
    t.create_container("c", "empty").unwrap();
    let v = t.open_container("c").unwrap();
    let node = v.create(v.root(), b"f", 0o644, Caller::ROOT).unwrap().node;
    v.write(node, 0, &bytes(1, 64 * 4096)).unwrap();
    t.sync().unwrap();
    assert_eq!(t.dirty_bytes(), 0);
    // Patches hold only what was written: two 100-byte writes into one stored block.
    v.write(node, 10, &[7; 100]).unwrap();
    v.write(node, 300, &[8; 100]).unwrap();
    assert_eq!(t.dirty_bytes(), 200);
    // Touching writes merge; a whole-block write holds the block.
    v.write(node, 110, &[9; 190]).unwrap();
    assert_eq!(t.dirty_bytes(), 390);
    v.write(node, 8192, &[1; 4096]).unwrap();
    assert_eq!(t.dirty_bytes(), 390 + 4096);
    // Truncating drops what lies past the end; punching a hole holds nothing for it.
    v.setattr(
        node,
        &tessera::SetAttr {
            size: Some(4096),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(t.dirty_bytes(), 390);
    v.fallocate(node, tessera::Fallocate::PunchHole, 0, 4096)
        .unwrap();
    assert_eq!(t.dirty_bytes(), 0);
    let mut expected = vec![0u8; 4096];
    assert_eq!(v.read(node, 0, 8192).unwrap(), expected);
    v.write(node, 5, &[3; 10]).unwrap();
    expected[5..15].fill(3);
    t.sync().unwrap();
    assert_eq!(t.dirty_bytes(), 0);
    assert_eq!(v.read(node, 0, 4096).unwrap(), expected);
}
