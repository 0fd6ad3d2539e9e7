//! The intent log through the engine: an fsync of a file whose changes are plain byte ranges
//! costs one log record, what it made durable survives a crash that loses everything else, and
//! a later flush makes the record obsolete, so replay never takes the file back in time.

use std::sync::Arc;

use tessera::io::{Io, SimIo, SimOptions};
use tessera::{SetAttr, Store, StoreOptions};
use tessera_tests::tars::TarMaker;
use tessera_tests::{bytes, node_at, read_file};

fn open(sim: &Arc<SimIo>, init: bool) -> Store {
    let io: Io = sim.clone();
    let options = StoreOptions::default()
        .block_size(16384)
        .flush_interval(None)
        .io(io);
    if init {
        let store = Store::init("/sim", options).unwrap();
        let tar = TarMaker::new()
            .file("db", &bytes(1, 200_000))
            .file("other", &bytes(2, 50_000))
            .finish();
        store.import_tar(&tar[..], "img").unwrap();
        store.create_container("c", "img").unwrap();
        store
    } else {
        Store::open("/sim", options).expect("the store opens after a crash")
    }
}

/// The first fsync of a lower file commits its copy-up; later ones go through the log.
#[test]
fn fsyncs_of_plain_overwrites_go_through_the_log_and_survive_a_crash() {
    for seed in 0..6 {
        let sim = SimIo::new(SimOptions::default());
        let store = open(&sim, true);
        let v = store.open_container("c").unwrap();
        let db = node_at(&v, "db");
        let mut want = bytes(1, 200_000);
        let write = |at: usize, data: &[u8], want: &mut Vec<u8>| {
            v.write(db, at as u64, data).unwrap();
            if want.len() < at + data.len() {
                want.resize(at + data.len(), 0);
            }
            want[at..at + data.len()].copy_from_slice(data);
        };
        write(5000, b"first", &mut want);
        v.fsync(db).unwrap(); // copy-up pending: the ordinary path
        let before = store.intent_log_fsyncs();
        write(70_000, &bytes(3, 4096), &mut want); // a patch over a stored block
        write(16384 * 3, &bytes(4, 16384), &mut want); // a whole block
        write(199_000, &bytes(5, 5000), &mut want); // grows the file
        v.fsync(db).unwrap();
        // Each record carries only what changed since the one before.
        write(70_100, b"again", &mut want);
        v.fsync(db).unwrap();
        write(3, b"and the first block", &mut want);
        write(204_000, b"growing", &mut want);
        v.fsync(db).unwrap();
        v.setattr(
            db,
            &SetAttr {
                size: Some(150_000),
                ..Default::default()
            },
        )
        .unwrap();
        want.truncate(150_000);
        write(120_000, b"after the truncate", &mut want);
        v.fsync(db).unwrap();
        // The truncate changed the record (its ctime), so the last fsync commits instead.
        assert_eq!(
            store.intent_log_fsyncs() - before,
            3,
            "fsyncs through the log"
        );
        // Not durable: whatever the crash keeps of it, the fsync'd state must come back.
        v.write(db, 0, b"lost").unwrap();
        v.write(node_at(&v, "other"), 0, b"lost too").unwrap();

        let after = sim.crash(seed);
        drop((v, store));
        let store = open(&after, false);
        let v = store.open_container("c").unwrap();
        assert_eq!(read_file(&v, "db"), want, "seed {seed}");
        assert_eq!(read_file(&v, "other"), bytes(2, 50_000), "seed {seed}");
        let report = store.fsck(&Default::default()).unwrap();
        assert!(report.is_clean(), "seed {seed}: {:?}", report.problems);
    }
}

/// A record made obsolete by a later flush is not replayed over the newer data, even when
/// the file's committed size and root are back to what the record was made over.
#[test]
fn a_flushed_record_is_not_replayed_over_newer_data() {
    let sim = SimIo::new(SimOptions::default());
    let store = open(&sim, true);
    let v = store.open_container("c").unwrap();
    let db = node_at(&v, "db");
    v.write(db, 0, b"x").unwrap();
    v.fsync(db).unwrap(); // copy-up committed
    let original = read_file(&v, "db");
    v.write(db, 100, b"logged").unwrap();
    v.fsync(db).unwrap(); // through the log
    assert!(store.intent_log_fsyncs() > 0);
    // Back to the state the record was made over, committed by an ordinary flush.
    v.write(db, 100, &original[100..106]).unwrap();
    store.sync().unwrap();
    let after = sim.crash(1);
    drop((v, store));
    let store = open(&after, false);
    let v = store.open_container("c").unwrap();
    assert_eq!(read_file(&v, "db"), original);
}

/// A writeback-cache mount writes a file's times back (a SETATTR of mtime = ctime) before each
/// fsync: kept with the unflushed writes, it leaves the fsync on the log, and the time is
/// durable with the data. Any other SETATTR is a metadata change, committed by the fsync.
#[test]
fn the_kernels_time_write_back_keeps_fsync_on_the_log() {
    let sim = SimIo::new(SimOptions::default());
    let store = open(&sim, true);
    let v = store.open_container("c").unwrap();
    let db = node_at(&v, "db");
    v.write(db, 0, b"x").unwrap();
    v.fsync(db).unwrap(); // copy-up committed
    let before = store.intent_log_fsyncs();
    let when = 1_700_000_000_123_456_789;
    v.write(db, 100, b"logged").unwrap();
    let times = SetAttr {
        mtime: Some(when),
        ctime: Some(when),
        ..Default::default()
    };
    assert_eq!(v.setattr(db, &times).unwrap().mtime, when);
    v.fsync(db).unwrap();
    assert_eq!(
        store.intent_log_fsyncs() - before,
        1,
        "the fsync went through the log"
    );
    // A user's utimensat to an older mtime (ctime = now) is metadata: the commit path.
    v.write(db, 200, b"committed").unwrap();
    let older = SetAttr {
        mtime: Some(when - 1),
        ctime: Some(when + 1),
        ..Default::default()
    };
    v.setattr(db, &older).unwrap();
    v.fsync(db).unwrap();
    assert_eq!(
        store.intent_log_fsyncs() - before,
        1,
        "that fsync committed"
    );
    let after = sim.crash(3);
    drop((v, store));
    let store = open(&after, false);
    let v = store.open_container("c").unwrap();
    let attr = v.getattr(node_at(&v, "db")).unwrap();
    assert_eq!((attr.mtime, attr.ctime), (when - 1, when + 1));
    let data = read_file(&v, "db");
    assert_eq!(&data[100..106], b"logged");
    assert_eq!(&data[200..209], b"committed");
}

/// The time write-back alone, then a crash: replay restores the kernel's mtime.
#[test]
fn a_logged_time_write_back_survives_a_crash() {
    let sim = SimIo::new(SimOptions::default());
    let store = open(&sim, true);
    let v = store.open_container("c").unwrap();
    let db = node_at(&v, "db");
    v.write(db, 0, b"x").unwrap();
    v.fsync(db).unwrap();
    let when = 1_600_000_000_000_000_007;
    v.write(db, 50, b"data").unwrap();
    let times = SetAttr {
        mtime: Some(when),
        ctime: Some(when),
        ..Default::default()
    };
    v.setattr(db, &times).unwrap();
    v.fsync(db).unwrap();
    let after = sim.crash(4);
    drop((v, store));
    let store = open(&after, false);
    let v = store.open_container("c").unwrap();
    let attr = v.getattr(node_at(&v, "db")).unwrap();
    assert_eq!((attr.mtime, attr.ctime), (when, when));
    assert_eq!(&read_file(&v, "db")[50..54], b"data");
}

/// Appends and rewrites inside blocks the file did not have before (written as bytes, not
/// patches): each record carries only the bytes written since the one before, and replay puts
/// the block together from all of them.
#[test]
fn records_of_new_blocks_carry_only_what_was_written_since() {
    for seed in 0..4 {
        let sim = SimIo::new(SimOptions::default());
        let store = open(&sim, true);
        let v = store.open_container("c").unwrap();
        let db = node_at(&v, "db");
        v.write(db, 0, b"x").unwrap();
        v.fsync(db).unwrap(); // copy-up committed
        let mut want = read_file(&v, "db");
        let before = store.intent_log_fsyncs();
        for (at, data) in [
            (210_000usize, bytes(7, 1000)),
            (211_000, bytes(8, 1000)),
            (210_500, bytes(9, 100)),
            (226_000, bytes(10, 300)), // a new block past the old end: bytes
            (214_000, bytes(11, 1000)),
            (214_500, bytes(12, 2000)),
            (200_100, bytes(13, 50)), // the old last block: a patch
        ] {
            v.write(db, at as u64, &data).unwrap();
            if want.len() < at + data.len() {
                want.resize(at + data.len(), 0);
            }
            want[at..at + data.len()].copy_from_slice(&data);
            v.fsync(db).unwrap();
        }
        assert_eq!(store.intent_log_fsyncs() - before, 7);
        let after = sim.crash(seed);
        drop((v, store));
        let store = open(&after, false);
        let v = store.open_container("c").unwrap();
        assert_eq!(read_file(&v, "db"), want, "seed {seed}");
    }
}
