//! Model-based testing of a filesystem view. This module owns the vocabulary of operations
//! ([`Op`]) on a small fixed namespace (a few names, up to three levels deep) and on open
//! handles, the [`FsUnderTest`] trait that runs them on one filesystem, and the step-by-step
//! comparison of a system under test with a model ([`step`]).
//!
//! The implementations: [`EngineFs`] drives a container's `tessera::Volume` by path, the way
//! the kernel drives a FUSE daemon; [`DirFs`] drives any real directory with system calls — a
//! plain temporary directory is the model, a FUSE mount of a container is another system under
//! test. [`strategy`] generates op sequences (proptest), [`snapshot`] captures and compares
//! whole trees, [`engine_checks`] checks an engine file against itself. Nothing here knows
//! engine internals; it must never paper over an engine answer except where the kernel answers
//! before a request reaches the filesystem (see `engine_fs`).

pub mod dir_fs;
pub mod engine_checks;
pub mod engine_fs;
pub mod snapshot;
pub mod strategy;

pub use dir_fs::DirFs;
pub use engine_fs::EngineFs;
pub use snapshot::{Snapshot, compare};

/// An error number, as a system call reports it.
pub type Errno = i32;

/// What one operation returned: success or the errno.
pub type FsResult = Result<(), Errno>;

/// Every symlink points here: out of the namespace and dangling, so a path through a symlink
/// (and every call that follows one) ends in ENOENT on any filesystem.
pub const SYMLINK_PREFIX: &str = "/nonexistent-tessera-model/";

/// The bytes of a write or an xattr value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Pseudo-random bytes from a seed (`crate::bytes`).
    Random(u64),
    /// Zeros: whole zero blocks are holes in the engine.
    Zero,
    /// One byte repeated: equal blocks dedup.
    Byte(u8),
}

impl Fill {
    pub fn bytes(self, len: usize) -> Vec<u8> {
        match self {
            Fill::Random(seed) => crate::bytes(seed, len),
            Fill::Zero => vec![0; len],
            Fill::Byte(b) => vec![b; len],
        }
    }
}

/// Permission bits, shown in octal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0o{:o}", self.0)
    }
}

/// `renameat2` flavours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    Plain,
    NoReplace,
    Exchange,
}

/// `setxattr` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrFlag {
    Any,
    Create,
    Replace,
}

/// One step of a test. Paths are relative to the filesystem's root, slash-separated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `open(O_CREAT | O_EXCL)`.
    Create {
        path: String,
        perm: Mode,
    },
    Mkdir {
        path: String,
        perm: Mode,
    },
    Mkfifo {
        path: String,
        perm: Mode,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// `open(O_WRONLY)` + `pwrite` (follows symlinks).
    Write {
        path: String,
        offset: u64,
        len: usize,
        fill: Fill,
    },
    /// `truncate(2)` (follows symlinks).
    Truncate {
        path: String,
        size: u64,
    },
    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`.
    PunchHole {
        path: String,
        offset: u64,
        len: u64,
    },
    /// `fallocate(ZERO_RANGE)`, with KEEP_SIZE or without (then the size grows to cover it).
    ZeroRange {
        path: String,
        offset: u64,
        len: u64,
        keep_size: bool,
    },
    /// `fallocate(0)`: extends the size to cover the range.
    Allocate {
        path: String,
        offset: u64,
        len: u64,
    },
    Unlink {
        path: String,
    },
    Rmdir {
        path: String,
    },
    /// `rm -r`: a directory (not a symlink to one: ENOTDIR) emptied while it is being listed,
    /// then removed.
    RemoveTree {
        path: String,
    },
    Rename {
        from: String,
        to: String,
        mode: RenameMode,
    },
    /// `link(from, to)` (a symlink is linked itself).
    Link {
        from: String,
        to: String,
    },
    /// `chmod(2)` (follows symlinks).
    Chmod {
        path: String,
        mode: Mode,
    },
    /// `lchown(2)`.
    Chown {
        path: String,
        uid: u32,
        gid: u32,
    },
    /// `lsetxattr`.
    SetXattr {
        path: String,
        name: String,
        len: usize,
        fill: Fill,
        flag: XattrFlag,
    },
    /// `lremovexattr`.
    RemoveXattr {
        path: String,
        name: String,
    },
    /// `open(O_RDWR | O_NONBLOCK)`, with `O_TRUNC` when `truncate`, into handle `slot` (closing
    /// what the slot held). Handles are for regular files: a fifo answers ENXIO.
    Open {
        slot: u8,
        path: String,
        truncate: bool,
    },
    /// `pwrite` through a handle (EBADF when the slot is empty).
    WriteFd {
        slot: u8,
        offset: u64,
        len: usize,
        fill: Fill,
    },
    /// `ftruncate` through a handle.
    TruncateFd {
        slot: u8,
        size: u64,
    },
    Close {
        slot: u8,
    },
    /// `open(O_RDONLY | O_NONBLOCK)` + `fsync` (follows symlinks; a directory is fsyncdir'd, a
    /// fifo answers EINVAL): makes one file durable while others stay dirty.
    Fsync {
        path: String,
    },
    /// `fsync` through a handle.
    FsyncFd {
        slot: u8,
    },
    /// `syncfs`: everything durable.
    SyncAll,
    /// Reclaim every unreferenced block now (gc rewriting every pack with garbage), with files
    /// open and unflushed data held, as the background reclaimer does while a container works.
    Reclaim,
    /// Commit the container to a new image and continue on a fresh writable layer; with
    /// `close_first`, every handle is closed and the container's view with them.
    Commit {
        close_first: bool,
    },
    /// Close everything (handles, views and store) and open it again.
    Reopen,
}

/// A filesystem the ops run on. Each method is one system call's worth of work and returns
/// its result; `commit` and `reopen` are structural steps (nothing to do for a plain directory
/// but closing the handles, as `Op` says). Open handles are numbered by the ops (`slot`).
pub trait FsUnderTest {
    /// A short name for messages ("engine", "model", "mount").
    fn label(&self) -> &str;
    fn create(&mut self, path: &str, perm: u32) -> FsResult;
    fn mkdir(&mut self, path: &str, perm: u32) -> FsResult;
    fn mkfifo(&mut self, path: &str, perm: u32) -> FsResult;
    fn symlink(&mut self, path: &str, target: &str) -> FsResult;
    fn write(&mut self, path: &str, offset: u64, data: &[u8]) -> FsResult;
    fn truncate(&mut self, path: &str, size: u64) -> FsResult;
    /// `fallocate` in one of the modes the engine supports.
    fn fallocate(
        &mut self,
        path: &str,
        mode: tessera::Fallocate,
        offset: u64,
        len: u64,
    ) -> FsResult;
    fn unlink(&mut self, path: &str) -> FsResult;
    fn rmdir(&mut self, path: &str) -> FsResult;
    fn remove_tree(&mut self, path: &str) -> FsResult;
    fn rename(&mut self, from: &str, to: &str, mode: RenameMode) -> FsResult;
    fn link(&mut self, from: &str, to: &str) -> FsResult;
    fn chmod(&mut self, path: &str, mode: u32) -> FsResult;
    fn chown(&mut self, path: &str, uid: u32, gid: u32) -> FsResult;
    fn setxattr(&mut self, path: &str, name: &str, value: &[u8], flag: XattrFlag) -> FsResult;
    fn removexattr(&mut self, path: &str, name: &str) -> FsResult;
    fn open(&mut self, slot: u8, path: &str, truncate: bool) -> FsResult;
    fn write_fd(&mut self, slot: u8, offset: u64, data: &[u8]) -> FsResult;
    fn truncate_fd(&mut self, slot: u8, size: u64) -> FsResult;
    fn close(&mut self, slot: u8) -> FsResult;
    fn fsync(&mut self, path: &str) -> FsResult;
    fn fsync_fd(&mut self, slot: u8) -> FsResult;
    fn sync_all(&mut self) -> FsResult;
    fn reclaim(&mut self) -> FsResult;
    fn commit(&mut self, close_first: bool) -> FsResult;
    fn reopen(&mut self) -> FsResult;
    /// The whole visible tree, now.
    fn snapshot(&mut self) -> Snapshot;
}

/// Runs one op.
pub fn apply(fs: &mut dyn FsUnderTest, op: &Op) -> FsResult {
    match op {
        Op::Create { path, perm } => fs.create(path, perm.0),
        Op::Mkdir { path, perm } => fs.mkdir(path, perm.0),
        Op::Mkfifo { path, perm } => fs.mkfifo(path, perm.0),
        Op::Symlink { path, target } => fs.symlink(path, target),
        Op::Write {
            path,
            offset,
            len,
            fill,
        } => fs.write(path, *offset, &fill.bytes(*len)),
        Op::Truncate { path, size } => fs.truncate(path, *size),
        Op::PunchHole { path, offset, len } => {
            fs.fallocate(path, tessera::Fallocate::PunchHole, *offset, *len)
        }
        Op::ZeroRange {
            path,
            offset,
            len,
            keep_size,
        } => {
            let mode = tessera::Fallocate::ZeroRange {
                keep_size: *keep_size,
            };
            fs.fallocate(path, mode, *offset, *len)
        }
        Op::Allocate { path, offset, len } => {
            fs.fallocate(path, tessera::Fallocate::Allocate, *offset, *len)
        }
        Op::Unlink { path } => fs.unlink(path),
        Op::Rmdir { path } => fs.rmdir(path),
        Op::RemoveTree { path } => fs.remove_tree(path),
        Op::Rename { from, to, mode } => fs.rename(from, to, *mode),
        Op::Link { from, to } => fs.link(from, to),
        Op::Chmod { path, mode } => fs.chmod(path, mode.0),
        Op::Chown { path, uid, gid } => fs.chown(path, *uid, *gid),
        Op::SetXattr {
            path,
            name,
            len,
            fill,
            flag,
        } => fs.setxattr(path, name, &fill.bytes(*len), *flag),
        Op::RemoveXattr { path, name } => fs.removexattr(path, name),
        Op::Open {
            slot,
            path,
            truncate,
        } => fs.open(*slot, path, *truncate),
        Op::WriteFd {
            slot,
            offset,
            len,
            fill,
        } => fs.write_fd(*slot, *offset, &fill.bytes(*len)),
        Op::TruncateFd { slot, size } => fs.truncate_fd(*slot, *size),
        Op::Close { slot } => fs.close(*slot),
        Op::Fsync { path } => fs.fsync(path),
        Op::FsyncFd { slot } => fs.fsync_fd(*slot),
        Op::SyncAll => fs.sync_all(),
        Op::Reclaim => fs.reclaim(),
        Op::Commit { close_first } => fs.commit(*close_first),
        Op::Reopen => fs.reopen(),
    }
}

/// Runs op number `index` on both filesystems, then compares the results and the whole trees.
/// The error names the step, the op and every difference.
pub fn step(
    sut: &mut dyn FsUnderTest,
    model: &mut dyn FsUnderTest,
    index: usize,
    op: &Op,
) -> Result<(), String> {
    let got = apply(sut, op);
    let want = apply(model, op);
    if got != want {
        return Err(format!(
            "step {index}: {op:?}\n  {}: {}, {}: {}",
            sut.label(),
            show(got),
            model.label(),
            show(want)
        ));
    }
    let differences = compare(&sut.snapshot(), &model.snapshot());
    if differences.is_empty() {
        return Ok(());
    }
    Err(format!(
        "after step {index}: {op:?} ({})\n  {} differs from {}:\n  {}",
        show(got),
        sut.label(),
        model.label(),
        differences.join("\n  ")
    ))
}

/// Runs a whole sequence with [`step`], stopping at the first difference.
pub fn run(
    sut: &mut dyn FsUnderTest,
    model: &mut dyn FsUnderTest,
    ops: &[Op],
) -> Result<(), String> {
    for (index, op) in ops.iter().enumerate() {
        step(sut, model, index, op)?;
    }
    Ok(())
}

/// `Ok` or the errno's name.
pub fn show(result: FsResult) -> String {
    match result {
        Ok(()) => "Ok".into(),
        Err(errno) => errno_name(errno),
    }
}

/// The symbolic name of the errnos these tests meet (the number for others).
pub fn errno_name(errno: Errno) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EAGAIN => "EAGAIN",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENODATA => "ENODATA",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

/// `Ok` when `got` (a system under test) shows what `want` (the model) does; else every
/// difference, under `what`.
pub fn same(what: &str, got: &Snapshot, want: &Snapshot) -> Result<(), String> {
    let differences = compare(got, want);
    if differences.is_empty() {
        return Ok(());
    }
    Err(format!("{what} differs:\n  {}", differences.join("\n  ")))
}

/// The proptest settings of a model suite: `default_cases` cases unless `PROPTEST_CASES`
/// says otherwise.
pub fn proptest_config(default_cases: u32, max_shrink_iters: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    proptest::test_runner::Config {
        cases,
        max_shrink_iters,
        ..proptest::test_runner::Config::default()
    }
}

/// The end of a case: `store` passes `fsck --verify-data`, and every image made on the way
/// (`images`: name and the tree it showed when made) still shows that tree (`snapshot` of
/// an image by name).
pub fn check_store_and_images(
    store: &tessera::Store,
    images: &[(String, Snapshot)],
    snapshot: impl Fn(&str) -> Snapshot,
) -> Result<(), String> {
    // Everything unreferenced is reclaimed, nothing referenced is (fsck and the images below).
    reclaim_all(store).map_err(|e| format!("reclaim: {e}"))?;
    let stats = tessera::stats::stats(store, &Default::default()).map_err(|e| e.to_string())?;
    if stats.store.reclaimable_bytes != 0 {
        return Err(format!(
            "{} bytes still reclaimable after a full reclamation",
            stats.store.reclaimable_bytes
        ));
    }
    let report = store
        .fsck(&tessera::maintenance::FsckOptions { verify_data: true })
        .map_err(|e| format!("fsck: {e}"))?;
    if !report.is_clean() {
        return Err(format!("fsck: {}", report.problems.join("\n  ")));
    }
    for (image, snap) in images {
        same(&format!("image {image} at the end"), &snapshot(image), snap)?;
    }
    Ok(())
}

/// Reclaims every unreferenced block: gc rewriting every pack that holds garbage.
pub fn reclaim_all(store: &tessera::Store) -> tessera::Result<()> {
    let options = tessera::maintenance::GcOptions {
        dry_run: false,
        repack_below: 1.0,
    };
    store.gc(&options).map(|_| ())
}
