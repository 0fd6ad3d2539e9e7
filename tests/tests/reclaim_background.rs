//! The background reclaimer: space a container's overwrites, truncates and unlinks made
//! unreachable is freed without anyone running gc, and what images reference is not touched.

use std::time::{Duration, Instant};

use tessera::Store;
use tessera::maintenance::{FsckOptions, GcOptions};
use tessera_tests::{TempStore, bytes, read_file, small_tree, write_file};

const MIB: usize = 1 << 20;

/// A store whose flusher ticks every 50 ms (so the reclaimer's idle trigger comes soon).
fn busy_store() -> TempStore {
    let options = TempStore::options(65536)
        .flush_interval(Some(Duration::from_millis(50)))
        .background_reclaim(true);
    let t = TempStore::with_options(65536, options);
    let src = t.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    small_tree(&src);
    t.import_path(&src, "img").unwrap();
    t.create_container("c", "img").unwrap();
    t
}

/// Pack bytes a full gc (every pack with garbage rewritten) would free now.
fn left_for_gc(store: &Store) -> u64 {
    let dry = GcOptions {
        dry_run: true,
        repack_below: 0.5,
    };
    store.gc(&dry).unwrap().bytes_freed
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pack_bytes(store: &Store) -> u64 {
    store.block_store_stats().pack_bytes
}

#[test]
fn overwrites_and_unlinks_are_reclaimed_without_gc() {
    let t = busy_store();
    let image_file = read_file(&t.open_image("img").unwrap(), "/usr/lib/big.bin");
    let volume = t.open_container("c").unwrap();
    // Rewrite an 8 MiB file twelve times: 96 MiB stored, 8 MiB of it live at the end.
    for round in 0..12 {
        write_file(&volume, "/data", &bytes(round, 8 * MIB));
        volume.sync().unwrap();
    }
    wait_for("the reclaimer to catch up", || left_for_gc(&t) == 0);
    let status = t.reclaim_status();
    assert!(status.passes > 0 && status.bytes_freed > 0, "{status:?}");
    // Garbage left is within the reclaimer's budget (32 MiB) of the live 8 MiB and the image.
    assert!(
        pack_bytes(&t) < 48 * MIB as u64,
        "{} pack bytes",
        pack_bytes(&t)
    );
    assert_eq!(read_file(&volume, "/data"), bytes(11, 8 * MIB));

    // Unlinking a file held open frees nothing until the last close, then everything.
    let root = tessera::NodeId::ROOT;
    let node = volume.lookup(root, b"data").unwrap().node;
    let handle = volume.open(node, false).unwrap();
    volume.unlink(root, b"data").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(volume.read(node, 0, 16).unwrap(), bytes(11, 8 * MIB)[..16]);
    volume.release(handle).unwrap();
    wait_for("the unlinked file's blocks to go", || {
        let stats = tessera::stats::stats(&t, &Default::default()).unwrap();
        stats.store.reclaimable_bytes == 0
    });
    assert!(
        pack_bytes(&t) < 2 * MIB as u64,
        "{} pack bytes",
        pack_bytes(&t)
    );

    // The image was never touched.
    let report = t.fsck(&FsckOptions { verify_data: true }).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let image = t.open_image("img").unwrap();
    assert_eq!(read_file(&image, "/usr/lib/big.bin"), image_file);
}

#[test]
fn a_truncate_is_reclaimed_and_the_kept_part_stays() {
    let t = busy_store();
    let volume = t.open_container("c").unwrap();
    let data = bytes(7, 40 * MIB);
    write_file(&volume, "/big", &data);
    volume.sync().unwrap();
    let node = volume.resolve(b"/big").unwrap().node;
    volume
        .setattr(
            node,
            &tessera::SetAttr {
                size: Some(MIB as u64),
                ..Default::default()
            },
        )
        .unwrap();
    volume.sync().unwrap();
    wait_for("the truncated blocks to go", || {
        let stats = tessera::stats::stats(&t, &Default::default()).unwrap();
        stats.store.reclaimable_bytes == 0
    });
    assert!(
        pack_bytes(&t) < 4 * MIB as u64,
        "{} pack bytes",
        pack_bytes(&t)
    );
    assert_eq!(read_file(&volume, "/big"), data[..MIB]);
}
