//! The intent log through the engine: an fsync of a file whose changes are plain byte ranges
//! costs one log record, what it made durable survives a crash that loses everything else, and
//! a later flush makes the record obsolete, so replay never takes the file back in time.

use std::sync::Arc;

use tessera::io::{Io, SimIo, SimOptions};
use tessera::{Caller, SetAttr, Store, StoreOptions};
use tessera_tests::tars::TarMaker;
use tessera_tests::{bytes, node_at, read_file, write_file};

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
        let commits = store.commit_count();
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
        // The truncate changed the node's record (its ctime): that change travels in the
        // same append as the last record of data.
        assert_eq!(
            store.intent_log_fsyncs() - before,
            4,
            "fsyncs through the log"
        );
        assert_eq!(store.commit_count(), commits, "no fsync committed");
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
/// durable with the data. Any other SETATTR is a metadata change, logged with the data.
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
    // A user's utimensat to an older mtime (ctime = now) is a metadata change: it travels
    // with the next record of data.
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
        2,
        "that fsync went through the log too"
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

/// A rollback-journal transaction (create the journal, write and fsync it twice, fsyncdir,
/// write and fsync the database, unlink the journal), over and over: every fsync is one log
/// append — the journal's create and unlink travel with the next record — and nothing
/// commits. After a crash, every fsync'd change to the namespace and the data is there, and
/// nothing that was never made durable is; a second crash right after the replay changes
/// nothing.
#[test]
fn namespace_changes_travel_with_the_fsync_that_needs_them() {
    for seed in 0..4 {
        let sim = SimIo::new(SimOptions::default());
        let store = open(&sim, true);
        let v = store.open_container("c").unwrap();
        let root = v.root();
        let db = node_at(&v, "db");
        v.write(db, 0, b"x").unwrap();
        v.fsync(db).unwrap(); // copy-up committed
        let mut want = read_file(&v, "db");
        let (logged, commits) = (store.intent_log_fsyncs(), store.commit_count());
        for round in 0..20u64 {
            let journal = v
                .create(root, b"db-journal", 0o644, Caller::ROOT)
                .unwrap()
                .node;
            v.write(journal, 0, &bytes(100 + round, 4608)).unwrap();
            v.fsync(journal).unwrap();
            v.fsyncdir().unwrap();
            v.write(journal, 0, b"header").unwrap();
            v.fsync(journal).unwrap();
            let at = (round as usize * 7919) % 190_000;
            let page = bytes(200 + round, 4096);
            v.write(db, at as u64, &page).unwrap();
            want[at..at + 4096].copy_from_slice(&page);
            v.fsync(db).unwrap();
            v.unlink(root, b"db-journal").unwrap();
        }
        assert_eq!(
            store.intent_log_fsyncs() - logged,
            60,
            "one append per fsync"
        );
        assert_eq!(store.commit_count(), commits, "nothing committed");
        // A new directory, a file in it, a rename into it: made durable by one fsync (the
        // renamed file's data by its own, before).
        let dir = v.mkdir(root, b"d", 0o755, Caller::ROOT).unwrap().node;
        write_file(&v, "d/x", b"in a new directory");
        write_file(&v, "moved", b"renamed");
        v.fsync(node_at(&v, "moved")).unwrap();
        v.rename(root, b"moved", dir, b"kept", Default::default())
            .unwrap();
        v.fsync(node_at(&v, "d/x")).unwrap();
        // Never made durable.
        write_file(&v, "lost", b"not fsync'd");

        let after = sim.crash(seed);
        drop((v, store));
        for round in 0..2 {
            let disk = if round == 0 {
                after.clone()
            } else {
                after.crash(seed + 10)
            };
            let store = open(&disk, false);
            let v = store.open_container("c").unwrap();
            assert_eq!(read_file(&v, "db"), want, "seed {seed}, open {round}");
            assert_eq!(read_file(&v, "d/x"), b"in a new directory");
            assert_eq!(read_file(&v, "d/kept"), b"renamed");
            for gone in ["db-journal", "lost", "moved"] {
                assert!(v.resolve(gone.as_bytes()).is_err(), "{gone} came back");
            }
            let report = store.fsck(&Default::default()).unwrap();
            assert!(report.is_clean(), "seed {seed}: {:?}", report.problems);
        }
    }
}

/// Changes may be logged only while every block they name is durable: here a second thread
/// flushes and commits all the time, so a file's new block map (made by its flush, named in
/// the metadata before the commit syncs its pack) is often pending when another file's fsync
/// logs the changes made so far. The power is cut while both run; every file whose fsync had
/// returned reads back whole, and fsck finds every block it names.
#[test]
fn changes_naming_blocks_not_yet_durable_are_not_logged() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    for seed in 0..6 {
        let sim = SimIo::new(SimOptions::default());
        let store = open(&sim, true);
        let v = store.open_container("c").unwrap();
        let done = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let after = std::thread::scope(|s| {
            s.spawn(|| {
                // Flush and commit, over and over, until the power is cut.
                while !stop.load(Ordering::Relaxed) {
                    if store.sync().is_err() {
                        break;
                    }
                }
            });
            s.spawn(|| {
                for i in 0..400 {
                    let name = format!("f{i}");
                    let (dir, leaf) = tessera_tests::parent_of(&v, &name);
                    let made = v
                        .create(dir, leaf, 0o644, Caller::ROOT)
                        .and_then(|a| v.write(a.node, 0, &bytes(i, 20_000)).map(|_| a.node))
                        .and_then(|node| v.fsync(node));
                    if made.is_err() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    done.store(i as usize + 1, Ordering::SeqCst);
                }
            });
            std::thread::sleep(std::time::Duration::from_millis(150 + 40 * seed));
            let fsynced = done.load(Ordering::SeqCst);
            let after = sim.crash(seed);
            stop.store(true, Ordering::Relaxed);
            (after, fsynced)
        });
        let (after, fsynced) = after;
        assert!(fsynced > 0, "seed {seed}: no fsync returned in time");
        drop((v, store));
        let store = open(&after, false);
        let v = store.open_container("c").unwrap();
        for i in 0..fsynced {
            assert_eq!(
                read_file(&v, &format!("f{i}")),
                bytes(i as u64, 20_000),
                "seed {seed}: f{i} of {fsynced}"
            );
        }
        let report = store
            .fsck(&tessera::maintenance::FsckOptions { verify_data: true })
            .unwrap();
        assert!(report.is_clean(), "seed {seed}: {:?}", report.problems);
    }
}

/// A big fsync'd write is stored once, in a pack, rather than in the log and then a pack; many
/// small patches of blocks a flush would write whole still go to the log.
#[test]
fn big_writes_are_stored_and_small_patches_logged() {
    let sim = SimIo::new(SimOptions::default());
    let store = open(&sim, true);
    let v = store.open_container("c").unwrap();
    let (logged, commits) = (store.intent_log_fsyncs(), store.commit_count());
    write_file(&v, "big", &bytes(9, 4 << 20));
    v.fsync(node_at(&v, "big")).unwrap();
    assert_eq!(store.intent_log_fsyncs(), logged, "4 MiB went to the log");
    assert!(store.commit_count() > commits, "the fsync did not commit");
    // 100 patches of 100 bytes, one per 16 KiB block: logged.
    let big = node_at(&v, "big");
    for i in 0..100u64 {
        v.write(big, i * 16384 + 7, &bytes(i, 100)).unwrap();
    }
    v.fsync(big).unwrap();
    assert_eq!(store.intent_log_fsyncs(), logged + 1);
    let want = read_file(&v, "big");
    let after = sim.crash(5);
    drop((v, store));
    let store = open(&after, false);
    let v = store.open_container("c").unwrap();
    assert_eq!(read_file(&v, "big"), want);
}
