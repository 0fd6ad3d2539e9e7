//! The kernel's writeback cache (the default mode): writes wait in the page cache, and the
//! mount pushes them to the volume every second, before SEEK_DATA/SEEK_HOLE, and before a
//! diff, export, stats or commit of the container reads it as a whole.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, SeekFrom};
use tessera_fusefs::MountConfig;
use tessera_tests::mount::{MountGuard, can_mount, mount};
use tessera_tests::trees::{Data, Kind, tar_tree};
use tessera_tests::{bytes, image_store, read_file};

const BS: u64 = 4096;

#[test]
fn the_mount_is_in_writeback_mode_by_default() {
    assert!(MountConfig::default().writeback_cache);
}

/// Waits (up to 5 s) until the store holds `bytes` of dirty data: the kernel's cached writes
/// reached the volume.
fn wait_until_in_the_volume(t: &tessera_tests::TempStore, bytes: u64) {
    let started = Instant::now();
    while t.dirty_bytes() < bytes {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the kernel still holds the writes after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn writes_reach_the_volume_within_seconds_without_a_sync() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |_| {});
    let m = mount(&t);
    fs::write(m.join("new"), bytes(1, 8 * BS as usize)).unwrap();
    // No fsync: the close writes the pages back (the next test keeps the file open, where
    // only the mount's writeback thread moves them).
    wait_until_in_the_volume(&t, 8 * BS);
    m.unmount();
}

#[test]
fn writes_to_a_file_held_open_reach_the_volume_within_seconds() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |_| {});
    let m = mount(&t);
    // Open for writing (the pushes run only while some file is): its close would write the
    // pages back, so it stays open until they are in the volume.
    let mut f = fs::File::create(m.join("held")).unwrap();
    std::io::Write::write_all(&mut f, &bytes(2, 8 * BS as usize)).unwrap();
    wait_until_in_the_volume(&t, 8 * BS);
    drop(f);
    m.unmount();
}

#[test]
fn seek_data_and_hole_see_writes_the_kernel_still_holds() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| fs::write(src.join("f"), b"").unwrap());
    let m = mount(&t);
    let f = OpenOptions::new().write(true).open(m.join("f")).unwrap();
    // A hole of 16 blocks, then data the volume has not been sent yet: a daemon answering
    // from what it has would call all of it a hole (ENXIO), and `cp` would copy zeros.
    f.write_all_at(&bytes(2, 4 * BS as usize), 16 * BS).unwrap();
    assert_eq!(rfs::seek(&f, SeekFrom::Data(0)).unwrap(), 16 * BS);
    assert_eq!(rfs::seek(&f, SeekFrom::Hole(16 * BS)).unwrap(), 20 * BS);
    // Extending the file over a new hole: the hole at the old end is seen too.
    f.write_all_at(b"end", 40 * BS).unwrap();
    assert_eq!(rfs::seek(&f, SeekFrom::Hole(0)).unwrap(), 0);
    assert_eq!(rfs::seek(&f, SeekFrom::Data(20 * BS)).unwrap(), 40 * BS);
    drop(f);
    m.unmount();
}

#[test]
fn diff_export_and_stats_of_a_mounted_container_see_the_kernels_writes() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::write(src.join("f"), bytes(1, 4 * BS as usize)).unwrap()
    });
    let m = mount(&t);
    let f = OpenOptions::new().write(true).open(m.join("f")).unwrap();
    f.write_all_at(b"changed", BS).unwrap();
    fs::write(m.join("added"), b"added").unwrap();
    // Each right after the writes, with the file still open.
    let diff = t.diff_container("c").unwrap();
    let changed = diff
        .iter()
        .find(|d| d.path == "f")
        .unwrap_or_else(|| panic!("{diff:?}"));
    assert_eq!(changed.ranges, [(BS, 2 * BS)], "{diff:?}");
    assert!(diff.iter().any(|d| d.path == "added" && d.change == "A"));
    f.write_all_at(b"again", 3 * BS).unwrap();
    let mut tar = Vec::new();
    t.container_view("c").unwrap().export_tar(&mut tar).unwrap();
    let (tree, _) = tar_tree(&tar);
    let mut want = bytes(1, 4 * BS as usize);
    want[BS as usize..BS as usize + 7].copy_from_slice(b"changed");
    want[3 * BS as usize..3 * BS as usize + 5].copy_from_slice(b"again");
    assert_eq!(tree.items[&b"f"[..]].kind, Kind::File(Data(want)));
    fs::write(m.join("big"), bytes(3, 16 * BS as usize)).unwrap();
    let stats = tessera::stats::stats(&t, &Default::default()).unwrap();
    let container = stats
        .owners
        .iter()
        .find(|c| c.kind == "container" && c.name == "c")
        .expect("the container's figures");
    assert!(
        container.exclusive_bytes >= 16 * BS,
        "stats missed what the kernel held: {container:?}"
    );
    drop(f);
    m.unmount();
}

#[test]
fn a_push_right_after_writes_gives_the_volume_every_byte_the_kernel_cached() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| fs::write(src.join("f"), b"").unwrap());
    // A slow daemon: each WRITE takes 200 ms, so a push that only started the write-back
    // would return long before the volume has the bytes.
    let config = MountConfig {
        test_write_delay: Duration::from_millis(200),
        ..MountConfig::default()
    };
    let m = MountGuard::new(t.open_container("c").unwrap(), config);
    let f = OpenOptions::new().write(true).open(m.join("f")).unwrap();
    // Each round rewrites the file, still open, and pushes at once (what commit, export, diff
    // and stats do first): the volume must have every byte when the push returns.
    for round in 0..4u64 {
        let data = bytes(10 + round, 512 << 10);
        f.write_all_at(&data, 0).unwrap();
        // The kernel starts writing the pages back by itself (as its flusher would): they are
        // under write-back, not dirty, when the push comes.
        rfs::fadvise(&f, 0, None, rfs::Advice::DontNeed).unwrap();
        t.push_kernel_caches(Some("c")).unwrap();
        let seen = read_file(&t.container_view("c").unwrap(), "f");
        assert!(
            seen == data,
            "round {round}: {} of {} bytes differ",
            seen.iter().zip(&data).filter(|(a, b)| a != b).count(),
            data.len()
        );
    }
    drop(f);
    m.unmount();
}

/// What commit, export, diff and stats promise of a mounted container under a writer that goes
/// on: every write completed before they started (later ones may be in it, page by page).
#[test]
fn a_push_under_a_running_writer_gives_the_volume_what_was_written_before_it() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| fs::write(src.join("f"), b"").unwrap());
    let config = MountConfig {
        test_write_delay: Duration::from_millis(50),
        ..MountConfig::default()
    };
    let m = MountGuard::new(t.open_container("c").unwrap(), config);
    let f = OpenOptions::new().write(true).open(m.join("f")).unwrap();
    let data = bytes(3, 48 << 20);
    let written = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for (i, chunk) in data.chunks(64 << 10).enumerate() {
                f.write_all_at(chunk, (i * (64 << 10)) as u64).unwrap();
                written.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
            }
        });
        for round in 0..6 {
            std::thread::sleep(Duration::from_millis(150));
            let before = written.load(std::sync::atomic::Ordering::SeqCst);
            t.push_kernel_caches(Some("c")).unwrap();
            let seen = read_file(&t.container_view("c").unwrap(), "f");
            let missing = (0..before)
                .step_by(4096)
                .filter(|&at| seen.get(at) != Some(&data[at]))
                .count();
            assert_eq!(
                missing, 0,
                "round {round}: pages written before the push are missing"
            );
        }
    });
    drop(f);
    m.unmount();
}

#[test]
fn write_through_mounts_send_every_write() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |_| {});
    let config = MountConfig {
        writeback_cache: false,
        ..MountConfig::default()
    };
    let m = MountGuard::new(t.open_container("c").unwrap(), config);
    fs::write(m.join("new"), bytes(1, 3 * BS as usize)).unwrap();
    assert!(
        t.dirty_bytes() >= 3 * BS,
        "write(2) returned after the daemon had it"
    );
    m.unmount();
}
