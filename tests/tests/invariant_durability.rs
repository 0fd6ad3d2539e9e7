//! Invariants 4, 5 and 8 of docs/design.md, each written to fail if it broke: a corrupt pack byte
//! gives a `Corrupt` error naming the pack and offset, never wrong bytes; durable points survive
//! a simulated power cut (compact; `crash_random.rs` has the random one); an open-but-unlinked
//! file lives until its release (through commit and gc), and a crash sweeps it. Invariants 6
//! and 7 concern the FUSE mount and are tested in `mount_posix.rs`.

use std::sync::Arc;

use tessera::StoreOptions;
use tessera::io::{Io, SimIo, SimOptions};
use tessera::maintenance::GcOptions;
use tessera::volume::Volume;
use tessera::{Caller, ErrorKind, Store};
use tessera_tests::invariants::*;
use tessera_tests::{TempStore, bytes, node_at, read_file, write_file};

#[test]
fn invariant_4_corruption_is_detected() {
    let mut t = TempStore::new(4096);
    t.create_empty_image("empty").unwrap();
    t.create_container("c", "empty").unwrap();
    let victim = bytes(7, 3 * 4096);
    {
        let v = t.open_container("c").unwrap();
        write_file(&v, "victim", &victim);
        write_file(&v, "other", &bytes(8, 5000));
    }
    t.sync().unwrap();
    // Find the victim's middle block in a pack and flip one byte inside it.
    let packs = t.path().join("packs");
    let (pack, offset) = std::fs::read_dir(&packs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .find_map(|p| {
            let data = std::fs::read(&p).unwrap();
            let at = data
                .windows(64)
                .position(|w| w == &victim[4096..4096 + 64])?;
            Some((p, at as u64))
        })
        .expect("the victim's block is in a pack");
    let pack_id: u64 = pack.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut data = std::fs::read(&pack).unwrap();
    data[offset as usize + 100] ^= 0x40;
    std::fs::write(&pack, &data).unwrap();

    for round in 0..2 {
        let v = t.open_container("c").unwrap();
        let node = node_at(&v, "victim");
        for (from, len) in [(0, 3 * 4096), (4096 + 200, 10), (8000, 300)] {
            let err = v
                .read(node, from, len)
                .expect_err("wrong bytes were returned");
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
            let text = err.to_string();
            let named = text.contains(&format!("pack {pack_id} at offset {offset}"));
            assert!(
                named,
                "round {round}: the error names no pack and offset: {text}"
            );
        }
        assert_eq!(
            v.read(node, 0, 4096).unwrap(),
            victim[..4096],
            "an intact block"
        );
        assert_eq!(read_file(&v, "other"), bytes(8, 5000));
        drop(v);
        t.reopen(); // verification does not depend on anything cached
    }
}

fn sim_store(sim: &Arc<SimIo>, init: bool) -> Store {
    let io: Io = sim.clone();
    let options = StoreOptions::default()
        .block_size(4096)
        .flush_interval(None)
        .io(io);
    match init {
        true => Store::init("/sim", options).unwrap(),
        false => Store::open("/sim", options).expect("the store opens after a crash"),
    }
}

fn read_path(v: &Volume, path: &str) -> Option<Vec<u8>> {
    let attr = v.resolve(path.as_bytes()).ok()?;
    Some(v.read(attr.node, 0, attr.size as usize).expect("readable"))
}

#[test]
fn invariant_5_crash_consistency() {
    let (a1, a2, a3) = (bytes(1, 20_000), bytes(2, 9_000), bytes(3, 30_000));
    let (b1, c1) = (bytes(4, 70_000), bytes(5, 5_000));
    for seed in 0..8 {
        let sim = SimIo::new(SimOptions::default());
        let store = sim_store(&sim, true);
        store.create_empty_image("empty").unwrap();
        store.create_container("c", "empty").unwrap();
        let v = store.open_container("c").unwrap();
        let a = create(&v, "a");
        v.write(a, 0, &a1).unwrap();
        v.fsync(a).unwrap(); // fsync: a = a1
        let b = create(&v, "b");
        v.write(b, 0, &b1).unwrap(); // b's data only becomes durable at the commit
        v.mkdir(v.root(), b"d", 0o755, Caller::ROOT).unwrap();
        let c = create(&v, "d/c");
        v.fsyncdir().unwrap(); // names: a, b, d/c (b and c still empty)
        v.write(c, 0, &c1).unwrap();
        store.commit_container("c", "snap").unwrap(); // everything so far
        v.write(a, 5_000, &a2).unwrap();
        store.sync().unwrap(); // a = a1 with a2 at 5000
        v.write(a, 0, &a3).unwrap(); // none of these is durable:
        v.write(b, 0, b"lost").unwrap();
        v.unlink(node_at(&v, "d"), b"c").unwrap();
        create(&v, "e");

        let after = sim.crash(seed);
        drop((v, store));
        let store = sim_store(&after, false);
        let mut a_synced = a1.clone();
        a_synced[5_000..14_000].copy_from_slice(&a2);
        let v = store.open_container("c").unwrap();
        assert_eq!(
            read_path(&v, "a"),
            Some(a_synced),
            "seed {seed}: synced data"
        );
        assert_eq!(
            read_path(&v, "b"),
            Some(b1.clone()),
            "seed {seed}: committed data"
        );
        assert_eq!(
            read_path(&v, "d/c"),
            Some(c1.clone()),
            "seed {seed}: an unsynced unlink"
        );
        assert_eq!(read_path(&v, "e"), None, "seed {seed}: an unsynced create");
        let snap = store.open_image("snap").unwrap();
        for (path, data) in [("a", &a1), ("b", &b1), ("d/c", &c1)] {
            assert_eq!(
                read_path(&snap, path).as_ref(),
                Some(data),
                "seed {seed}: {path}"
            );
        }
        // The store keeps working: a durable write survives the next crash.
        v.write(a, 0, &a3).unwrap();
        v.fsync(a).unwrap();
        let again = after.crash(seed + 100);
        drop((v, snap, store));
        let store = sim_store(&again, false);
        let v = store.open_container("c").unwrap();
        assert_eq!(
            read_path(&v, "a").unwrap()[..a3.len()],
            a3[..],
            "seed {seed}: lost again"
        );
    }
}

#[test]
fn invariant_8_open_unlinked_files_survive() {
    let sim = SimIo::new(SimOptions::default());
    let store = sim_store(&sim, true);
    store.create_empty_image("empty").unwrap();
    store.create_container("c", "empty").unwrap();
    let v = store.open_container("c").unwrap();
    let f = create(&v, "f");
    let mut data = bytes(1, 100_000);
    v.write(f, 0, &data).unwrap();
    v.fsync(f).unwrap();
    let fh = v.open(f, false).unwrap();
    v.unlink(v.root(), b"f").unwrap();
    assert_eq!(
        v.lookup(v.root(), b"f").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(v.getattr(f).unwrap().nlink, 0);
    assert_eq!(
        v.read(f, 0, data.len()).unwrap(),
        data,
        "unlinked but open: readable"
    );
    v.write(f, 90_000, &bytes(2, 20_000)).unwrap();
    data.resize(110_000, 0);
    data[90_000..].copy_from_slice(&bytes(2, 20_000));
    v.fsync(f).unwrap();

    // gc runs with garbage in the orphan's pack: the orphan's blocks, flushed or not, stay.
    // (A full sync stores the new file's blocks; its fsync would only log them.)
    write_file(&v, "garbage", &bytes(3, 200_000));
    store.sync().unwrap();
    v.write(f, 0, b"dirty, never flushed").unwrap();
    data[..20].copy_from_slice(b"dirty, never flushed");
    v.unlink(v.root(), b"garbage").unwrap();
    let gc = GcOptions {
        repack_below: 1.0,
        ..Default::default()
    };
    let report = store.gc(&gc).unwrap();
    let moved = report.packs_rewritten > 0 && report.garbage_bytes > 0;
    assert!(moved, "gc rewrote no pack: {report:?}");
    assert_eq!(
        v.read(f, 0, data.len()).unwrap(),
        data,
        "gc took an open file's blocks"
    );

    // Commit does not take the orphan into the image; the container keeps it open.
    store.commit_container("c", "snap").unwrap();
    let snap = store.open_image("snap").unwrap();
    assert!(
        snap.list_dir(snap.root()).unwrap().is_empty(),
        "commit took a nameless file"
    );
    assert!(snap.getattr(f).is_err(), "commit took the orphan's record");
    v.write(f, 0, b"after commit").unwrap();
    data[..12].copy_from_slice(b"after commit");
    assert_eq!(v.read(f, 0, data.len()).unwrap(), data);
    v.fsync(f).unwrap();

    // A crash while it is open: the orphan is swept at the next open.
    let after = sim.crash(1);
    drop((snap, v, store));
    let store = sim_store(&after, false);
    let v = store.open_container("c").unwrap();
    assert!(v.getattr(f).is_err(), "a crash left the orphan behind");
    assert!(v.list_dir(v.root()).unwrap().is_empty());
    write_file(&v, "g", b"still works");
    v.fsync(node_at(&v, "g")).unwrap();

    // Without a crash, the last release frees it.
    let g = node_at(&v, "g");
    let fh2 = v.open(g, false).unwrap();
    v.unlink(v.root(), b"g").unwrap();
    assert_eq!(v.read(g, 0, 11).unwrap(), b"still works");
    v.release(fh2).unwrap();
    assert_eq!(v.getattr(g).unwrap_err().kind(), ErrorKind::NotFound);
    let _ = fh;
}
