//! The FUSE file data operations through the kernel, on a mounted container: fsync,
//! fdatasync and fsyncdir, fallocate (mode 0, KEEP_SIZE, PUNCH_HOLE; other modes
//! EOPNOTSUPP), SEEK_DATA/SEEK_HOLE (zero blocks are holes), copy_file_range (aligned blocks
//! shared, not stored again), O_TRUNC and O_APPEND, utimes with "now", O_DIRECT, locks,
//! offsets past 1 TiB, and atime never updated by reads. Namespace operations are in
//! `mount_ops.rs`, concurrent writes in `mount_concurrency.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use rustix::fs::{self as rfs, FallocateFlags};
use tessera_fusefs::MountConfig;
use tessera_tests::mount::{MountGuard, can_mount, errno, mount, remount};
use tessera_tests::{bytes, image_store, read_file};

const BS: u64 = 4096;

fn rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

#[test]
fn fsync_and_fsyncdir_flush_dirty_data() {
    if !can_mount() {
        return;
    }
    for writeback_cache in [true, false] {
        fsync_and_fsyncdir_flush(MountConfig {
            writeback_cache,
            ..MountConfig::default()
        });
    }
}

fn fsync_and_fsyncdir_flush(config: MountConfig) {
    let t = image_store(BS as u32, |src| fs::create_dir(src.join("d")).unwrap());
    let m = MountGuard::new(t.open_container("c").unwrap(), config);
    let f = File::create(m.join("d/a")).unwrap();
    f.write_all_at(&bytes(3, 5 * BS as usize), 0).unwrap();
    // Under the writeback cache the writes wait in the kernel until it writes them back.
    m.push_kernel_cache();
    assert!(
        t.dirty_bytes() >= 5 * BS,
        "writes wait in memory until a flush"
    );
    // fsync makes the data durable: stored and committed, or (a small file) in the intent
    // log, held in memory until the flusher stores it.
    let logged = t.intent_log_fsyncs();
    f.sync_all().unwrap();
    assert!(
        t.dirty_bytes() == 0 || t.intent_log_fsyncs() > logged,
        "fsync neither flushed nor logged the file"
    );
    let g = File::create(m.join("d/b")).unwrap();
    g.write_all_at(&bytes(4, 2 * BS as usize), 0).unwrap();
    m.push_kernel_cache();
    assert!(t.dirty_bytes() >= 2 * BS);
    let logged = t.intent_log_fsyncs();
    g.sync_data().unwrap();
    assert!(
        t.intent_log_fsyncs() > logged || t.dirty_bytes() <= 5 * BS,
        "fdatasync neither flushed nor logged the file"
    );
    File::open(m.join("d")).unwrap().sync_all().unwrap();
    File::open(m.path()).unwrap().sync_all().unwrap();
    // A full sync stores everything.
    t.sync().unwrap();
    assert_eq!(t.dirty_bytes(), 0, "sync flushed the files");
    drop((f, g));
    m.unmount();
}

#[test]
fn fallocate_modes() {
    if !can_mount() {
        return;
    }
    let data = bytes(5, 8 * BS as usize);
    let t = image_store(BS as u32, |src| fs::write(src.join("f"), &data).unwrap());
    let mut m = mount(&t);
    let file = rw(&m.join("f"));
    assert_eq!(file.metadata().unwrap().blocks(), 8 * BS / 512);
    let falloc = |mode, off: u64, len: u64| rfs::fallocate(file.as_fd(), mode, off, len);
    falloc(FallocateFlags::empty(), 0, 12 * BS).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 12 * BS, "mode 0 extends");
    falloc(FallocateFlags::KEEP_SIZE, 0, 20 * BS).unwrap();
    assert_eq!(
        file.metadata().unwrap().len(),
        12 * BS,
        "KEEP_SIZE keeps the size"
    );
    let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    falloc(punch, 2 * BS, 3 * BS).unwrap();
    falloc(punch, 6 * BS + 100, 50).unwrap();
    let mut want = data.clone();
    want[2 * BS as usize..5 * BS as usize].fill(0);
    want[6 * BS as usize + 100..6 * BS as usize + 150].fill(0);
    want.resize(12 * BS as usize, 0);
    file.sync_all().unwrap();
    assert_eq!(fs::read(m.join("f")).unwrap(), want);
    assert_eq!(
        file.metadata().unwrap().blocks(),
        5 * BS / 512,
        "punched blocks are holes"
    );
    // ZERO_RANGE: whole blocks become holes, parts are zeroed; past the end it grows the
    // file, unless KEEP_SIZE.
    let zero = FallocateFlags::ZERO_RANGE;
    falloc(zero, 8 * BS + 10, 2 * BS).unwrap();
    want[8 * BS as usize + 10..10 * BS as usize + 10].fill(0);
    falloc(zero | FallocateFlags::KEEP_SIZE, 11 * BS, 4 * BS).unwrap();
    want[11 * BS as usize..].fill(0);
    assert_eq!(
        file.metadata().unwrap().len(),
        12 * BS,
        "KEEP_SIZE keeps the size"
    );
    falloc(zero, 11 * BS + 7, 2 * BS).unwrap();
    want.resize(13 * BS as usize + 7, 0);
    assert_eq!(
        file.metadata().unwrap().len(),
        13 * BS + 7,
        "ZERO_RANGE grows the file"
    );
    file.sync_all().unwrap();
    assert_eq!(fs::read(m.join("f")).unwrap(), want);
    for mode in [
        FallocateFlags::COLLAPSE_RANGE,
        FallocateFlags::INSERT_RANGE,
        FallocateFlags::PUNCH_HOLE,
    ] {
        assert_eq!(errno(falloc(mode, 0, BS)), libc::EOPNOTSUPP, "{mode:?}");
    }
    drop(file);
    m = remount(m, &t);
    assert_eq!(fs::read(m.join("f")).unwrap(), want);
    assert_eq!(fs::metadata(m.join("f")).unwrap().blocks(), 5 * BS / 512);
    assert_eq!(
        read_file(&t.open_image("img").unwrap(), "f"),
        data,
        "the image is untouched"
    );
    m.unmount();
}

#[test]
fn seek_data_and_hole() {
    if !can_mount() {
        return;
    }
    // Blocks: data, zero, zero, data, zero, then a short data block.
    let mut content = vec![0u8; 5 * BS as usize + 100];
    content[..BS as usize].fill(1);
    content[3 * BS as usize..4 * BS as usize].fill(3);
    content[5 * BS as usize..].fill(5);
    let t = image_store(BS as u32, |src| {
        fs::write(src.join("sparse"), &content).unwrap()
    });
    let m = mount(&t);
    let file = rw(&m.join("sparse"));
    let size = content.len() as u64;
    let seek = |pos| rfs::seek(file.as_fd(), pos);
    assert_eq!(seek(rfs::SeekFrom::Data(0)).unwrap(), 0);
    assert_eq!(seek(rfs::SeekFrom::Hole(0)).unwrap(), BS);
    assert_eq!(seek(rfs::SeekFrom::Data(BS)).unwrap(), 3 * BS);
    assert_eq!(seek(rfs::SeekFrom::Hole(3 * BS + 7)).unwrap(), 4 * BS);
    assert_eq!(seek(rfs::SeekFrom::Data(4 * BS + 5)).unwrap(), 5 * BS);
    assert_eq!(seek(rfs::SeekFrom::Hole(5 * BS)).unwrap(), size);
    assert_eq!(errno(seek(rfs::SeekFrom::Data(size))), libc::ENXIO);
    // Zeros written over a data block make it a hole once flushed.
    file.write_all_at(&vec![0; BS as usize], 3 * BS).unwrap();
    file.sync_all().unwrap();
    t.sync().unwrap();
    assert_eq!(seek(rfs::SeekFrom::Data(BS)).unwrap(), 5 * BS);
    let empty = File::create(m.join("empty")).unwrap();
    empty.set_len(10 * BS).unwrap();
    assert_eq!(
        errno(rfs::seek(empty.as_fd(), rfs::SeekFrom::Data(0))),
        libc::ENXIO
    );
    assert_eq!(rfs::seek(empty.as_fd(), rfs::SeekFrom::Hole(0)).unwrap(), 0);
    drop((file, empty));
    m.unmount();
}

/// Copies `len` bytes with copy_file_range, looping over short copies.
fn copy_range(from: &File, mut off_in: u64, to: &File, mut off_out: u64, len: u64) {
    let end = off_in + len;
    while off_in < end {
        let want = (end - off_in) as usize;
        let n =
            rfs::copy_file_range(from, Some(&mut off_in), to, Some(&mut off_out), want).unwrap();
        assert!(n > 0, "copy_file_range stopped short");
    }
}

#[test]
fn copy_file_range_shares_aligned_blocks() {
    if !can_mount() {
        return;
    }
    let data = bytes(6, 16 * BS as usize);
    let t = image_store(BS as u32, |src| fs::write(src.join("src"), &data).unwrap());
    let m = mount(&t);
    let src = File::open(m.join("src")).unwrap();
    let before = t.block_store_stats().block_bytes;
    let dst = File::create(m.join("dst")).unwrap();
    copy_range(&src, 0, &dst, 0, 16 * BS);
    dst.sync_all().unwrap();
    assert_eq!(
        t.block_store_stats().block_bytes,
        before,
        "aligned blocks are shared, not stored again"
    );
    assert_eq!(fs::read(m.join("dst")).unwrap(), data);
    // Into the middle of a file with other data, still aligned.
    let mid = rw(&m.join("dst"));
    mid.write_all_at(&bytes(7, 4 * BS as usize), 0).unwrap();
    copy_range(&src, 8 * BS, &mid, BS, 2 * BS);
    let mut want = data.clone();
    want[..4 * BS as usize].copy_from_slice(&bytes(7, 4 * BS as usize));
    want[BS as usize..3 * BS as usize].copy_from_slice(&data[8 * BS as usize..10 * BS as usize]);
    assert_eq!(fs::read(m.join("dst")).unwrap(), want);
    // Unaligned ranges are copied byte for byte.
    let odd = File::create(m.join("odd")).unwrap();
    odd.write_all_at(b"head", 0).unwrap();
    copy_range(&src, 100, &odd, 7, 3 * BS);
    let mut want = b"head\0\0\0".to_vec();
    want.extend_from_slice(&data[100..100 + 3 * BS as usize]);
    assert_eq!(fs::read(m.join("odd")).unwrap(), want);
    // From a source whose data is not flushed yet (the blocks have no ids to share).
    let fresh = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.join("fresh"))
        .unwrap();
    fresh.write_all_at(&bytes(11, 4 * BS as usize), 0).unwrap();
    let copy = File::create(m.join("copy")).unwrap();
    copy_range(&fresh, 0, &copy, 0, 4 * BS);
    copy.sync_all().unwrap();
    assert_eq!(
        fs::read(m.join("copy")).unwrap(),
        bytes(11, 4 * BS as usize)
    );
    drop((src, dst, mid, odd, fresh, copy));
    m.unmount();
}

#[test]
fn o_trunc_and_o_append() {
    if !can_mount() {
        return;
    }
    let data = bytes(8, 3 * BS as usize);
    let t = image_store(BS as u32, |src| fs::write(src.join("f"), &data).unwrap());
    let m = mount(&t);
    let p = m.join("f");
    let reader = File::open(&p).unwrap();
    let ino = reader.metadata().unwrap().ino();
    let mut trunc = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    assert_eq!(trunc.metadata().unwrap().len(), 0, "O_TRUNC cuts at open");
    assert_eq!(
        reader.metadata().unwrap().len(),
        0,
        "every descriptor sees it"
    );
    assert_eq!(trunc.metadata().unwrap().ino(), ino);
    trunc.write_all(b"new").unwrap();
    let mut append = OpenOptions::new().append(true).open(&p).unwrap();
    append.write_all(b"-a").unwrap();
    trunc.write_all_at(b"0123456789", 5).unwrap(); // extends past the append position
    append.write_all(b"-b").unwrap();
    drop((trunc, append));
    let mut back = Vec::new();
    (&reader).read_to_end(&mut back).unwrap();
    assert_eq!(back, b"new-a0123456789-b");
    assert_eq!(read_file(&t.open_image("img").unwrap(), "f"), data);
    drop(reader);
    m.unmount();
}

#[test]
fn reads_never_update_atime() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::write(src.join("f"), bytes(9, 20_000)).unwrap();
        fs::write(src.join("r"), bytes(10, 20_000)).unwrap();
    });
    let image_atime = |path: &str| {
        t.open_image("img")
            .unwrap()
            .resolve(path.as_bytes())
            .unwrap()
            .atime
    };
    let (f_atime, r_atime) = (image_atime("f"), image_atime("r"));
    let m = mount(&t);
    let p = m.join("f");
    let before = fs::metadata(&p).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(fs::read(&p).unwrap().len(), 20_000);
    assert_eq!(fs::read(m.join("r")).unwrap().len(), 20_000);
    let mut f = File::open(&p).unwrap();
    f.read_exact(&mut [0u8; 100]).unwrap();
    drop(f);
    let after = fs::metadata(&p).unwrap();
    assert_eq!(
        (after.atime(), after.atime_nsec()),
        (before.atime(), before.atime_nsec())
    );
    // A write changes mtime and ctime, not atime.
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .write_all_at(b"w", 0)
        .unwrap();
    let written = fs::metadata(&p).unwrap();
    assert_ne!(
        (written.mtime(), written.mtime_nsec()),
        (before.mtime(), before.mtime_nsec())
    );
    assert_ne!(
        (written.ctime(), written.ctime_nsec()),
        (before.ctime(), before.ctime_nsec())
    );
    assert_eq!(
        (written.atime(), written.atime_nsec()),
        (before.atime(), before.atime_nsec())
    );
    m.unmount();
    // What the daemon recorded (no kernel cache answers here): reading copied nothing up.
    let changed: Vec<String> = t
        .diff_container("c")
        .unwrap()
        .into_iter()
        .map(|d| d.path)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].ends_with('f'), "{changed:?}");
    let volume = t.open_container("c").unwrap();
    assert_eq!(volume.resolve(b"f").unwrap().atime, f_atime);
    assert_eq!(volume.resolve(b"r").unwrap().atime, r_atime);
}

#[test]
fn utimes_now_and_explicit_times() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| fs::write(src.join("f"), b"f").unwrap());
    let m = mount(&t);
    let p = m.join("f");
    let touch = |args: &[&str]| {
        let out = Command::new("touch").args(args).arg(&p).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    touch(&["-d", "@1234567890"]);
    let old = fs::metadata(&p).unwrap();
    assert_eq!((old.atime(), old.mtime()), (1_234_567_890, 1_234_567_890));
    touch(&["-m"]); // UTIME_NOW for mtime, UTIME_OMIT for atime
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let meta = fs::metadata(&p).unwrap();
    assert!(
        (meta.mtime() - now).abs() < 60,
        "mtime {} is not now {now}",
        meta.mtime()
    );
    assert_eq!(meta.atime(), 1_234_567_890, "atime omitted");
    m.unmount();
    let v = t.open_container("c").unwrap();
    let attr = v.resolve(b"f").unwrap();
    assert_eq!(attr.atime, 1_234_567_890_000_000_000);
    assert!((attr.mtime / 1_000_000_000 - now).abs() < 60);
}

/// A buffer aligned for O_DIRECT.
#[repr(C, align(4096))]
struct Aligned([u8; 2 * BS as usize]);

#[test]
fn o_direct_locks_and_huge_offsets() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::write(src.join("f"), bytes(13, 4 * BS as usize)).unwrap()
    });
    let m = mount(&t);
    let p = m.join("f");
    let direct = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&p)
        .unwrap();
    let mut buf = Box::new(Aligned([0; 2 * BS as usize]));
    buf.0.copy_from_slice(&bytes(14, 2 * BS as usize));
    direct.write_all_at(&buf.0, BS).unwrap();
    buf.0.fill(0);
    direct.read_exact_at(&mut buf.0, BS).unwrap();
    assert_eq!(buf.0.to_vec(), bytes(14, 2 * BS as usize));
    let mut want = bytes(13, 4 * BS as usize);
    want[BS as usize..3 * BS as usize].copy_from_slice(&bytes(14, 2 * BS as usize));
    assert_eq!(
        fs::read(&p).unwrap(),
        want,
        "buffered readers see direct writes"
    );
    // Locks are the kernel's (the daemon implements none): flock and POSIX record locks work.
    rfs::flock(&direct, rfs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let other = File::open(&p).unwrap();
    let busy = rfs::flock(&other, rfs::FlockOperation::NonBlockingLockShared);
    assert_eq!(errno(busy), libc::EWOULDBLOCK);
    rfs::flock(&direct, rfs::FlockOperation::Unlock).unwrap();
    rfs::fcntl_lock(&direct, rfs::FlockOperation::NonBlockingLockExclusive).unwrap();
    drop((direct, other));
    // A sparse write 1 TiB out; past the largest file size (16 TiB, as ext4): EFBIG.
    let far = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.join("far"))
        .unwrap();
    far.write_all_at(b"far", 1 << 40).unwrap();
    assert_eq!(far.metadata().unwrap().len(), (1 << 40) + 3);
    // SEEK_DATA finds the data past the 2^28 blocks of hole, flushed or not.
    assert_eq!(rfs::seek(&far, rfs::SeekFrom::Data(0)).unwrap(), 1 << 40);
    far.sync_all().unwrap();
    assert_eq!(rfs::seek(&far, rfs::SeekFrom::Data(7)).unwrap(), 1 << 40);
    let mut back = [0u8; 3];
    far.read_exact_at(&mut back, 1 << 40).unwrap();
    assert_eq!(&back, b"far");
    assert_eq!(errno(far.set_len(1 << 45)), libc::EFBIG);
    drop(far);
    m.unmount();
}
