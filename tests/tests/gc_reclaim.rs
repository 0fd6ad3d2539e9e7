//! gc reclaims exactly the blocks that removed images and containers held alone, and nothing
//! that anything still references: block counts are checked figure by figure, a dry run
//! changes nothing, and every remaining file reads back whole after `fsck --verify-data`.

use std::fs;

use tessera::maintenance::{FsckOptions, GcOptions};
use tessera::stats::{StatsOptions, StoreFigures};
use tessera_tests::{TempStore, bytes, read_file, write_file};

const BS: usize = 16384;

fn figures(t: &TempStore) -> StoreFigures {
    tessera::stats::stats(t, &StatsOptions::default())
        .unwrap()
        .store
}

fn gc(t: &TempStore, dry_run: bool) -> tessera::maintenance::GcReport {
    t.gc(&GcOptions {
        dry_run,
        ..GcOptions::default()
    })
    .unwrap()
}

/// A gc that rewrites every pack holding any garbage (the default leaves packs that are
/// mostly live, and their garbage counted as reclaimable).
fn gc_all(t: &TempStore) -> tessera::maintenance::GcReport {
    t.gc(&GcOptions {
        dry_run: false,
        repack_below: 1.0,
    })
    .unwrap()
}

fn assert_clean(t: &TempStore) {
    let report = t.fsck(&FsckOptions { verify_data: true }).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn gc_reclaims_removed_images_and_containers_and_nothing_else() {
    let t = TempStore::new(BS as u32);
    // "old" and "keep" share 16 blocks; each has blocks of its own (64 and 32).
    let (shared, own_old, own_keep) = (bytes(1, 16 * BS), bytes(2, 64 * BS), bytes(3, 32 * BS));
    for (name, own) in [("old", &own_old), ("keep", &own_keep)] {
        let src = t.dir.path().join(name);
        fs::create_dir(&src).unwrap();
        fs::write(src.join("own.bin"), own).unwrap();
        fs::write(src.join("shared.bin"), &shared).unwrap();
        t.import_path(&src, name).unwrap();
    }
    // A container of "keep" with 8 blocks of its own, durable.
    t.create_container("c", "keep").unwrap();
    let written = bytes(4, 8 * BS);
    {
        let c = t.open_container("c").unwrap();
        write_file(&c, "new.bin", &written);
        c.sync().unwrap();
    }
    let block_bytes = |blocks: usize| (blocks * BS) as u64;
    assert_eq!(
        figures(&t).stored_block_bytes,
        block_bytes(64 + 16 + 32 + 8)
    );
    let report = gc(&t, true);
    assert_eq!(
        report.garbage_blocks, 0,
        "nothing is garbage yet: {report:?}"
    );

    // rmi: nothing is deleted until gc; a dry run reports the 64 blocks and changes nothing.
    t.remove_image("old").unwrap();
    let before = figures(&t);
    assert_eq!(before.stored_block_bytes, block_bytes(120));
    let report = gc(&t, true);
    assert_eq!(
        (report.garbage_blocks, report.garbage_bytes),
        (64, block_bytes(64)),
        "{report:?}"
    );
    assert_eq!(figures(&t), before, "a dry run changed the store");

    // gc: exactly "old"'s own blocks go; the shared ones stay for "keep".
    let report = gc(&t, false);
    assert_eq!(report.garbage_blocks, 64, "{report:?}");
    assert!(report.bytes_freed > 0, "{report:?}");
    let after = figures(&t);
    assert_eq!(after.stored_block_bytes, block_bytes(16 + 32 + 8));
    assert!(
        after.pack_bytes < before.pack_bytes,
        "{after:?} vs {before:?}"
    );
    assert_clean(&t);
    let keep = t.open_image("keep").unwrap();
    assert_eq!(read_file(&keep, "own.bin"), own_keep);
    assert_eq!(read_file(&keep, "shared.bin"), shared);
    let c = t.open_container("c").unwrap();
    assert_eq!(read_file(&c, "new.bin"), written);
    assert_eq!(read_file(&c, "shared.bin"), shared);
    drop(c);

    // rm of the container: its 8 blocks are garbage. When they share a pack with live blocks
    // (those the first gc copied), the default gc may leave them, counted as reclaimable; a
    // gc that rewrites every pack holding garbage takes what is left.
    t.remove_container("c").unwrap();
    assert_eq!(gc(&t, false).garbage_blocks, 8);
    let left = figures(&t);
    assert_eq!(left.referenced_bytes, block_bytes(16 + 32));
    assert_eq!(
        left.stored_block_bytes - left.reclaimable_bytes,
        block_bytes(16 + 32),
        "{left:?}"
    );
    let report = gc_all(&t);
    assert_eq!(
        report.garbage_bytes, left.reclaimable_bytes,
        "{report:?} {left:?}"
    );
    assert_eq!(figures(&t).stored_block_bytes, block_bytes(16 + 32));
    assert_clean(&t);
    assert_eq!(read_file(&keep, "own.bin"), own_keep);
    drop(keep);

    // The last image: the store is empty of blocks. Packs with nothing live go whatever the
    // threshold, even 0.
    t.remove_image("keep").unwrap();
    let report = t
        .gc(&GcOptions {
            dry_run: false,
            repack_below: 0.0,
        })
        .unwrap();
    assert_eq!(report.garbage_blocks, 48, "{report:?}");
    assert_eq!(figures(&t).stored_block_bytes, 0);
    assert_clean(&t);
}
