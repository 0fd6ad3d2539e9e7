//! gc running while views read and write (invariant 8 of docs/design.md, under concurrency): writers,
//! readers, flushes and a gc that rewrites every pack holding garbage, all on the same files at
//! once for a few seconds. Every write fills one half of a 4 KiB block (so the block is read, modified and
//! written) with one byte value, so a reader can
//! tell a correct block (uniform) from a wrong one without locking out the writers. Nothing
//! deadlocks (a watchdog fails the test), every read is block-consistent, the final contents
//! are what the writers last wrote, and the store checks clean with every block verified.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera::maintenance::{FsckOptions, GcOptions};
use tessera::{Caller, NodeId};
use tessera_tests::TempStore;

const FILE: usize = 256 * 1024;
/// Writes cover half a block, so every write reads its block first.
const HALF: u64 = 2048;

#[test]
fn gc_never_takes_blocks_from_live_readers_and_writers() {
    let t = Arc::new(TempStore::new(4096));
    t.create_empty_image("empty").unwrap();
    t.create_container("c", "empty").unwrap();
    let v = t.open_container("c").unwrap();
    let files: Vec<(NodeId, Arc<Mutex<Vec<u8>>>)> = (0..2)
        .map(|i| {
            let name = format!("f{i}");
            let node = v
                .create(v.root(), name.as_bytes(), 0o644, Caller::ROOT)
                .unwrap()
                .node;
            // Uniform half-blocks, as the writers make them.
            let data: Vec<u8> = (0..FILE)
                .map(|x| (x / HALF as usize % 200) as u8 + 1)
                .collect();
            v.write(node, 0, &data).unwrap();
            (node, Arc::new(Mutex::new(data)))
        })
        .collect();
    v.sync().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while !done.load(Ordering::SeqCst) {
                if started.elapsed() > Duration::from_secs(60) {
                    // A deadlocked worker would block the joins forever: end the process.
                    eprintln!("deadlock: readers, writers and gc made no progress in 60 s");
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut workers = Vec::new();
    for (i, (node, model)) in files.iter().enumerate() {
        let node = *node;
        let (wv, wmodel, wstop) = (v.clone(), model.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            let mut round = 0u64;
            while !wstop.load(Ordering::SeqCst) {
                round += 1;
                let half = (round * 7919 + i as u64 * 104_729) % (FILE as u64 / HALF);
                let value = (round % 251) as u8 + 1;
                let chunk = vec![value; HALF as usize];
                wv.write(node, half * HALF, &chunk).unwrap();
                let at = (half * HALF) as usize;
                wmodel.lock().unwrap()[at..at + chunk.len()].copy_from_slice(&chunk);
                if round.is_multiple_of(5) {
                    wv.fsync(node).unwrap();
                }
            }
        }));
        let (rv, rstop) = (v.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            while !rstop.load(Ordering::SeqCst) {
                let got = rv.read(node, 0, FILE).unwrap();
                assert_eq!(got.len(), FILE);
                for (h, half) in got.chunks(HALF as usize).enumerate() {
                    assert!(
                        half.iter().all(|x| *x == half[0]),
                        "half-block {h} read during gc is not one write's bytes"
                    );
                }
            }
        }));
    }
    // Flushes of every file while the writers keep writing them: the generation in flight
    // must stay readable, and writes landing meanwhile must survive into the next flush.
    let syncer = {
        let (sv, sstop) = (v.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut flushes = 0;
            while !sstop.load(Ordering::SeqCst) {
                sv.sync().unwrap();
                flushes += 1;
            }
            flushes
        })
    };
    let gc = {
        let (t, stop) = (t.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                // Rewrite every pack that holds any garbage at all.
                let options = GcOptions {
                    dry_run: false,
                    repack_below: 1.01,
                };
                t.gc(&options).unwrap();
                runs += 1;
            }
            runs
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let gc_runs = gc.join().unwrap();
    let flushes = syncer.join().unwrap();
    assert!(flushes > 0, "no flush ran");
    done.store(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    assert!(gc_runs > 0, "gc never ran");

    for (node, model) in &files {
        assert!(v.read(*node, 0, FILE).unwrap() == *model.lock().unwrap());
    }
    v.sync().unwrap();
    assert_eq!(t.dirty_bytes(), 0, "the dirty budget must return to zero");
    drop(v);
    let report = t.fsck(&FsckOptions { verify_data: true }).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}
