//! Power cuts in the middle of the operations that rewrite or forget what is stored: gc, rm
//! and rmi, the clean close of a view and a store, and a flush the dirty limit forces on a
//! writer. Each is cut short at points drawn over all of its mutating I/O calls (counted in a
//! dry run; see `crash::crash_everywhere`), the disk crashes, and the reopened store must be
//! clean (fsck, every block verified), keep every committed image and fsync'd byte, show each
//! object before or after the operation and never between, show the operation's effect if it
//! reported success, and keep working. And the checker itself catches a disk that skips a sync.

use std::cell::RefCell;
use std::sync::Arc;

use tessera::io::{SimIo, SimOptions};
use tessera::maintenance::GcOptions;
use tessera::volume::Volume;
use tessera::{Caller, NodeId, Store};
use tessera_tests::bytes;
use tessera_tests::crash::*;

const BS: u32 = 4096;

/// The trees imported and written, and the source directories of the imports.
struct Fixture {
    dir: tempfile::TempDir,
    base: Tree,
    other: Tree,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (base, other) = (base_tree(), tree(vec![("opt/blob", bytes(77, 300_000))]));
        write_tree(&dir.path().join("base"), &base);
        write_tree(&dir.path().join("other"), &other);
        Fixture { dir, base, other }
    }

    fn src(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `base` with `files` added.
    fn base_with(&self, files: &[(&str, Vec<u8>)]) -> Tree {
        let mut t = self.base.clone();
        t.extend(
            files
                .iter()
                .map(|(p, d)| (p.to_string(), Entry::File(d.clone()))),
        );
        t
    }

    fn snap(&self) -> Tree {
        self.base_with(&[("kept", kept())])
    }

    fn c(&self) -> Tree {
        self.base_with(&[("kept", kept()), ("logged", logged())])
    }

    fn d(&self) -> Tree {
        self.base_with(&[("scratch", bytes(3, 200_000))])
    }

    /// Everything as `history` leaves it.
    fn allowed(&self) -> Allowed {
        Allowed::default()
            .image("base", [Some(self.base.clone())])
            .image("snap", [Some(self.snap())])
            .image("other", [Some(self.other.clone())])
            .container(CONTAINER, [Some(self.c())])
            .container("d", [Some(self.d())])
    }
}

fn kept() -> Vec<u8> {
    bytes(1, 50_000)
}

fn logged() -> Vec<u8> {
    bytes(2, 30_000)
}

fn new_file(v: &Volume, name: &str, data: &[u8]) -> NodeId {
    let node = v.create(v.root(), name.as_bytes(), 0o644, Caller::ROOT);
    let node = node.unwrap().node;
    v.write(node, 0, data).unwrap();
    node
}

/// A store with some history, `c`'s view open: image `base`; container `c` on it with `kept`
/// fsync'd and committed as image `snap`, then `logged` fsync'd through the intent log (its
/// blocks still in memory); container `d` on `base` with `scratch` fsync'd; image `other`.
fn history(sim: &Arc<SimIo>, fx: &Fixture, dirty_limit: Option<u64>) -> (Store, Volume) {
    let mut options = options(sim, BS);
    if let Some(limit) = dirty_limit {
        options = options.dirty_limit(limit);
    }
    let store = Store::init(STORE, options).unwrap();
    store.import_path(&fx.src("base"), "base").unwrap();
    for container in [CONTAINER, "d"] {
        store.create_container(container, "base").unwrap();
    }
    let d = store.open_container("d").unwrap();
    let scratch = new_file(&d, "scratch", &bytes(3, 200_000));
    d.fsync(scratch).unwrap();
    drop(d);
    let v = store.open_container(CONTAINER).unwrap();
    let kept = new_file(&v, "kept", &kept());
    v.fsync(kept).unwrap();
    store.commit_container(CONTAINER, "snap").unwrap();
    let node = new_file(&v, "logged", &[]);
    v.fsyncdir().unwrap(); // the name is committed: the data's fsync can take the log
    v.write(node, 0, &logged()).unwrap();
    let through_log = store.intent_log_fsyncs();
    v.fsync(node).unwrap();
    assert_eq!(store.intent_log_fsyncs(), through_log + 1, "not logged");
    store.import_path(&fx.src("other"), "other").unwrap();
    (store, v)
}

/// rm and rmi cut short: the container or image is there whole or gone, gone if the call
/// returned, and nothing else changed.
#[test]
fn crash_during_rm_and_rmi() {
    let fx = Fixture::new();
    type Remove = fn(&Store) -> tessera::Result<()>;
    let ops: [(&str, Remove); 2] = [
        ("rm d", |s| s.remove_container("d")),
        ("rmi other", |s| s.remove_image("other")),
    ];
    for (what, remove) in ops {
        let tally = crash_everywhere(
            what,
            |sim| history(sim, &fx, None),
            |(store, _)| remove(store).is_ok(),
            |sim, cut| {
                let mut allowed = fx.allowed();
                let may_be = match what {
                    "rm d" => allowed.containers.get_mut("d"),
                    _ => allowed.images.get_mut("other"),
                };
                let may_be = may_be.expect("listed");
                if cut.ok {
                    may_be.clear();
                }
                may_be.push(None);
                allowed.check(sim, BS, |_| Ok(()))
            },
        );
        assert_cut_both_ways(what, &tally);
    }
}

/// Some cuts failed the operation and some let it finish (so the failures were injected
/// into it, and the success check ran) — unless one cut is being replayed.
fn assert_cut_both_ways(what: &str, tally: &Tally) {
    eprintln!("{what}: {tally:?}");
    assert!(
        tally.cuts == 1 || (tally.calls > 0 && tally.succeeded > 0 && tally.succeeded < tally.cuts),
        "{what}: cut only one way: {tally:?}"
    );
}

/// gc (every pack with garbage rewritten, packs deleted) cut short: no live block is lost,
/// nothing is left unaccounted for, and if it returned, its reclamation is durable.
#[test]
fn crash_during_gc() {
    let fx = Fixture::new();
    let setup = |sim: &Arc<SimIo>| {
        let (store, v) = history(sim, &fx, None);
        store.remove_container("d").unwrap();
        store.remove_image("other").unwrap();
        v.unlink(v.root(), b"kept").unwrap(); // still in snap
        v.fsyncdir().unwrap();
        (store, v)
    };
    let all = GcOptions {
        dry_run: false,
        repack_below: 1.0,
    };
    let dry = GcOptions {
        dry_run: true,
        ..all
    };
    let report = setup(&SimIo::new(SimOptions::default()))
        .0
        .gc(&dry)
        .unwrap();
    assert!(report.packs_rewritten > 0 && report.packs_deleted + report.packs_rewritten > 1);
    let mut c = fx.c();
    c.remove("kept");
    let tally = crash_everywhere(
        "gc",
        setup,
        |(store, _)| store.gc(&all).is_ok(),
        |sim, cut| {
            let allowed = Allowed::default()
                .image("base", [Some(fx.base.clone())])
                .image("snap", [Some(fx.snap())])
                .container(CONTAINER, [Some(c.clone())]);
            allowed.check(sim, BS, |store| {
                let left = store.gc(&dry).map_err(|e| e.to_string())?;
                match cut.ok && left.garbage_bytes > 0 {
                    true => Err(format!("gc returned but its work is undone: {left:?}")),
                    false => Ok(()),
                }
            })
        },
    );
    assert_cut_both_ways("gc", &tally);
}

/// A clean close (the last view of a container dropped, then the store) cut short: the
/// container shows its state before the close or after, and after if the close ran whole.
#[test]
fn crash_during_a_clean_close() {
    let fx = Fixture::new();
    let late = bytes(5, 100_000);
    let mut changed = fx.c();
    changed.insert("late".into(), Entry::File(late.clone()));
    let Some(Entry::File(k)) = changed.get_mut("kept") else {
        panic!("kept")
    };
    k[10_000..20_000].copy_from_slice(&bytes(6, 10_000));
    let tally = crash_everywhere(
        "close",
        |sim| {
            let (store, v) = history(sim, &fx, None);
            new_file(&v, "late", &late);
            let kept = v.resolve(b"kept").unwrap().node;
            v.write(kept, 10_000, &bytes(6, 10_000)).unwrap();
            (RefCell::new(Some((v, store))), sim.clone())
        },
        |(open, sim)| {
            drop(open.borrow_mut().take());
            sim.injected_failures() == 0 // a close reports nothing: it ran whole or not
        },
        |sim, cut| {
            let may_be = match cut.ok {
                true => vec![Some(changed.clone())],
                false => vec![Some(fx.c()), Some(changed.clone())],
            };
            fx.allowed()
                .container(CONTAINER, may_be)
                .check(sim, BS, |_| Ok(()))
        },
    );
    assert_cut_both_ways("close", &tally);
}

/// A write that finds the dirty limit reached flushes first; that flush cut short leaves the
/// container before it or after it, and after it if the write returned.
#[test]
fn crash_during_a_flush_forced_by_the_dirty_limit() {
    let fx = Fixture::new();
    let (first, second) = (bytes(7, 768 << 10), bytes(8, 512 << 10));
    let mut flushed = fx.c();
    flushed.insert("big".into(), Entry::File(first.clone()));
    let tally = crash_everywhere(
        "dirty-limit flush",
        |sim| {
            let (store, v) = history(sim, &fx, Some(1 << 20));
            let big = new_file(&v, "big", &first);
            assert!(store.dirty_bytes() < 1 << 20);
            (store, v, big)
        },
        |(store, v, big)| {
            let before = store.dirty_bytes();
            let written = v.write(*big, first.len() as u64, &second);
            // The write waited for a flush: what was dirty before it is stored now.
            written.is_ok() && store.dirty_bytes() < before
        },
        |sim, cut| {
            let may_be = match cut.ok {
                true => vec![Some(flushed.clone())],
                false => vec![Some(fx.c()), Some(flushed.clone())],
            };
            fx.allowed()
                .container(CONTAINER, may_be)
                .check(sim, BS, |_| Ok(()))
        },
    );
    assert_cut_both_ways("dirty-limit flush", &tally);
}

/// The checker is shown a store on a disk that skips one kind of sync (the intent log's, the
/// packs', the metadata database's) after an fsync and a sync that each returned: it must
/// report the loss, and accept the same history on a sound disk.
#[test]
fn the_checker_catches_a_disk_that_skips_syncs() {
    let fx = Fixture::new();
    let expected = fx.base_with(&[
        ("kept", kept()),
        ("logged", logged()),
        ("synced", bytes(9, 90_000)),
        ("fsynced", bytes(10, 40_000)),
    ]);
    for broken in [None, Some("intent.log"), Some(".pack"), Some("meta.redb")] {
        let sim = SimIo::new(SimOptions::default());
        let (store, v) = history(&sim, &fx, None);
        sim.ignore_syncs_of(broken);
        new_file(&v, "synced", &bytes(9, 90_000));
        store.sync().unwrap();
        let node = new_file(&v, "fsynced", &[]);
        v.fsyncdir().unwrap();
        v.write(node, 0, &bytes(10, 40_000)).unwrap();
        v.fsync(node).unwrap();
        let after = sim.crash_losing_unsynced();
        drop((v, store));
        let verdict = fx
            .allowed()
            .container(CONTAINER, [Some(expected.clone())])
            .check(&after, BS, |_| Ok(()));
        eprintln!("skipping syncs of {broken:?}: {verdict:?}");
        match broken {
            None => verdict.expect("a sound disk"),
            Some(suffix) => assert!(verdict.is_err(), "skipped syncs of {suffix} went unseen"),
        }
    }
}
