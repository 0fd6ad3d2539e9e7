//! A full disk during durability points (simulated: ENOSPC after a countdown of writes): the
//! call fails cleanly, never a panic; after `heal` the data syncs; nothing durable is lost.

use tessera::io::{SimIo, SimOptions};
use tessera::volume::Volume;
use tessera::{Caller, ErrorKind, NodeId, Store};
use tessera_tests::bytes;
use tessera_tests::crash::*;

/// The disk fills up (ENOSPC after some writes) during fsync, sync or commit: the call fails
/// and nothing panics; the view keeps showing the data; after `heal` the same data (and more)
/// is written and synced, and a crash then keeps it all, with what was durable untouched.
/// Cut points cover all of the point's mutating calls (counted in a dry run), and every cut
/// before the last call must fail the point: none may report durability it did not get.
/// (It found a seal that forgot its pack, and a database that stayed failed after one error.)
#[test]
fn a_full_disk_fails_durability_points_and_heals() {
    for point in [Point::Fsync, Point::Sync, Point::Commit] {
        let calls = full_disk_run(point, None);
        let cuts = cut_points(calls, 20, calls);
        let failed = cuts
            .iter()
            .filter(|&&budget| full_disk_run(point, Some(budget)) > 0)
            .count();
        let below = cuts.iter().filter(|&&budget| budget < calls).count();
        assert_eq!(
            failed, below,
            "{point:?} of {calls} calls: {failed} of the {below} runs cut short failed"
        );
    }
}

/// One run: the disk fills after `budget` more calls (never: the dry run) before `point`.
/// Returns the point's mutating calls in the dry run, else 1 if it failed (0 if not).
fn full_disk_run(point: Point, budget: Option<u64>) -> u64 {
    let context = format!("budget {budget:?}, {point:?}");
    let run_point = |store: &Store, v: &Volume, f: NodeId| match point {
        Point::Fsync => v.fsync(f),
        Point::Commit if store.image_record("snap").is_err() => {
            store.commit_container(CONTAINER, "snap").map(drop)
        }
        _ => store.sync(),
    };
    let sim = SimIo::new(SimOptions::default());
    let (store, v) = empty_store(&sim);
    let keep = v
        .create(v.root(), b"keep", 0o644, Caller::ROOT)
        .unwrap()
        .node;
    v.write(keep, 0, &bytes(1, 100_000)).unwrap();
    v.fsync(keep).unwrap();
    let f = v.create(v.root(), b"f", 0o644, Caller::ROOT).unwrap().node;
    let mut expected = bytes(budget.unwrap_or(0) + 10, 150_000);
    v.write(f, 0, &expected).unwrap();

    sim.fail_after(budget.map_or(i64::MAX, |b| b as i64));
    let before = sim.mutating_calls();
    let first = run_point(&store, &v, f);
    let Some(budget) = budget else {
        first.unwrap_or_else(|e| panic!("{context}: the dry run failed: {e}"));
        return sim.mutating_calls() - before;
    };
    if let Err(e) = &first {
        let kind = e.kind();
        assert!(
            matches!(kind, ErrorKind::NoSpace | ErrorKind::Io),
            "{context}: {e}"
        );
    }
    let snap_at_first = store.image_record("snap").is_ok().then(|| expected.clone());
    assert_eq!(
        read_all(&v, "f"),
        content(&expected),
        "{context}: while full"
    );
    v.write(f, 149_000, b"while full").unwrap();
    expected[149_000..149_010].copy_from_slice(b"while full");
    sim.heal();
    v.write(f, 7, b"after heal").unwrap();
    expected[7..17].copy_from_slice(b"after heal");
    let snap_expected = snap_at_first.unwrap_or_else(|| expected.clone());
    if let Err(e) = run_point(&store, &v, f) {
        panic!("{context}: fails after heal (first try: {first:?}): {e}");
    }
    assert_eq!(
        read_all(&v, "f"),
        content(&expected),
        "{context}: after heal"
    );

    let after = sim.crash(budget);
    let failed = first.is_err() as u64;
    drop((v, store));
    let store = Store::open(STORE, options(&after, 4096))
        .unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    check_packs(&after, &store).unwrap_or_else(|e| panic!("{context}: {e}"));
    let v = store.open_container(CONTAINER).unwrap();
    assert_eq!(
        read_all(&v, "keep"),
        content(&bytes(1, 100_000)),
        "{context}: lost"
    );
    assert_eq!(
        read_all(&v, "f"),
        content(&expected),
        "{context}: synced data lost"
    );
    if let Point::Commit = point {
        let image = store.open_image("snap").unwrap();
        assert_eq!(
            read_all(&image, "f"),
            content(&snap_expected),
            "{context}: image"
        );
    }
    failed
}
