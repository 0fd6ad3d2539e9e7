//! Proptest strategies for op sequences. Paths come from a few names in up to three
//! levels, so ops keep meeting each other's files; offsets and sizes cluster around block
//! boundaries (4 KiB and 64 KiB) and reach far past the end of files; data is random, zero
//! (holes) or one repeated byte (dedup). Shrinking removes ops and simplifies their arguments,
//! so a failure reads as a short sequence.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::{Fill, Mode, Op, RenameMode, SYMLINK_PREFIX, XattrFlag};

/// Directories are named `a`, `b`, `c`, files `x`, `y`, `c`: `c` is where files and
/// directories meet (renames of one over the other, mkdir over a file).
pub const DIRS: [&str; 9] = ["a", "b", "c", "a/a", "a/b", "a/c", "b/a", "b/c", "a/b/c"];
const FILE_PARENTS: [&str; 5] = ["", "a", "b", "a/b", "c"];
const LEAVES: [&str; 3] = ["x", "y", "c"];

/// A test case: a tree imported as the base image, batches of ops each committed as one more
/// image layer (each in a new container), and the ops of the container under test.
#[derive(Clone, Debug)]
pub struct Case {
    pub tree: Vec<Op>,
    pub stacked: Vec<Vec<Op>>,
    pub ops: Vec<Op>,
}

/// Where a directory may be (up to three levels deep).
pub fn dir_path() -> impl Strategy<Value = String> {
    select(&DIRS[..]).prop_map(String::from)
}

/// A file name: mostly a short one, rarely the longest allowed (255 bytes) or one byte more
/// (ENAMETOOLONG).
fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => select(&LEAVES[..]).prop_map(String::from),
        1 => select(&[255usize, 256][..]).prop_map(|len| "n".repeat(len)),
    ]
}

/// Where a file may be (in the root or up to two levels down).
pub fn file_path() -> impl Strategy<Value = String> {
    (select(&FILE_PARENTS[..]), leaf()).prop_map(|(dir, leaf)| match dir {
        "" => leaf,
        dir => format!("{dir}/{leaf}"),
    })
}

/// Mostly where files are, sometimes where directories are.
pub fn path() -> impl Strategy<Value = String> {
    prop_oneof![3 => file_path(), 1 => dir_path()]
}

/// Mostly where directories are, sometimes where files are.
fn dir_or_file() -> impl Strategy<Value = String> {
    prop_oneof![3 => dir_path(), 1 => file_path()]
}

/// Both sides of a rename: files, directories, or one of each.
fn rename_paths() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        2 => (file_path(), file_path()),
        2 => (dir_path(), dir_path()),
        1 => (path(), dir_or_file()),
    ]
}

/// A file offset or size: small, near a block boundary, or far out (sparse).
pub fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..10_000,
        6 => (select(&[4096u64, 8192, 65536, 131072][..]), -40i64..40)
            .prop_map(|(base, delta)| base.saturating_add_signed(delta)),
        2 => (select(&[1u64 << 20, 3 << 20][..]), 0u64..70_000).prop_map(|(b, d)| b + d),
        // Past 128 blocks of 64 KiB: a second level of block-map pages.
        1 => (Just(9u64 << 20), 0u64..70_000).prop_map(|(b, d)| b + d),
    ]
}

/// A write or range length: tiny, a few blocks of 4 KiB, or a few blocks of 64 KiB.
pub fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0usize..100,
        4 => 1usize..10_000,
        1 => 60_000usize..140_000,
    ]
}

pub fn fill() -> impl Strategy<Value = Fill> {
    prop_oneof![
        4 => (0u64..1000).prop_map(Fill::Random),
        1 => Just(Fill::Zero),
        1 => (1u8..=255).prop_map(Fill::Byte),
    ]
}

fn file_perm() -> impl Strategy<Value = Mode> {
    select(&[0o644u32, 0o600, 0o755, 0o777, 0o4755, 0o2755][..]).prop_map(Mode)
}

fn dir_perm() -> impl Strategy<Value = Mode> {
    select(&[0o755u32, 0o700, 0o777, 0o1777][..]).prop_map(Mode)
}

fn chmod_mode() -> impl Strategy<Value = Mode> {
    select(
        &[
            0o644u32, 0o755, 0o600, 0o000, 0o2775, 0o4755, 0o1777, 0o2710,
        ][..],
    )
    .prop_map(Mode)
}

/// Xattr ops go to a few paths only, so that they meet each other.
fn xattr_path() -> impl Strategy<Value = String> {
    select(&["a", "x", "c", "a/x", "a/b", "b/y"][..]).prop_map(String::from)
}

fn xattr_name() -> impl Strategy<Value = String> {
    select(&["user.a", "user.b", "user.tessera.long-name"][..]).prop_map(String::from)
}

fn target() -> impl Strategy<Value = String> {
    select(&["x", "y/z", "a-rather-long-target-name/that/goes/on"][..])
        .prop_map(|t| format!("{SYMLINK_PREFIX}{t}"))
}

fn rename_mode() -> impl Strategy<Value = RenameMode> {
    prop_oneof![
        3 => Just(RenameMode::Plain),
        1 => Just(RenameMode::NoReplace),
        2 => Just(RenameMode::Exchange),
    ]
}

fn xattr_flag() -> impl Strategy<Value = XattrFlag> {
    prop_oneof![
        3 => Just(XattrFlag::Any),
        1 => Just(XattrFlag::Create),
        1 => Just(XattrFlag::Replace),
    ]
}

fn create() -> impl Strategy<Value = Op> {
    (path(), file_perm()).prop_map(|(path, perm)| Op::Create { path, perm })
}

fn mkdir() -> impl Strategy<Value = Op> {
    (dir_or_file(), dir_perm()).prop_map(|(path, perm)| Op::Mkdir { path, perm })
}

fn mkfifo() -> impl Strategy<Value = Op> {
    (path(), file_perm()).prop_map(|(path, perm)| Op::Mkfifo { path, perm })
}

fn symlink() -> impl Strategy<Value = Op> {
    (path(), target()).prop_map(|(path, target)| Op::Symlink { path, target })
}

fn write() -> impl Strategy<Value = Op> {
    (path(), offset(), length(), fill()).prop_map(|(path, offset, len, fill)| Op::Write {
        path,
        offset,
        len,
        fill,
    })
}

fn truncate() -> impl Strategy<Value = Op> {
    (path(), offset()).prop_map(|(path, size)| Op::Truncate { path, size })
}

/// Ranges of at least one byte (the kernel refuses empty ones before the filesystem sees them).
fn range() -> impl Strategy<Value = (String, u64, u64)> {
    (path(), offset(), length()).prop_map(|(p, o, l)| (p, o, l.max(1) as u64))
}

fn link() -> impl Strategy<Value = Op> {
    (path(), path()).prop_map(|(from, to)| Op::Link { from, to })
}

fn chmod() -> impl Strategy<Value = Op> {
    (path(), chmod_mode()).prop_map(|(path, mode)| Op::Chmod { path, mode })
}

fn chown() -> impl Strategy<Value = Op> {
    (
        path(),
        select(&[0u32, 1000, 1001][..]),
        select(&[0u32, 100, 1000][..]),
    )
        .prop_map(|(path, uid, gid)| Op::Chown { path, uid, gid })
}

fn setxattr() -> impl Strategy<Value = Op> {
    // ext4 (the model) keeps a file's xattrs in one 4 KiB block: three values of up to 1000
    // bytes fit; larger ones would fail there (ENOSPC) and test ext4, not the engine.
    let len = prop_oneof![4 => 0usize..40, 1 => 500usize..1000];
    (xattr_path(), xattr_name(), len, fill(), xattr_flag()).prop_map(
        |(path, name, len, fill, flag)| Op::SetXattr {
            path,
            name,
            len,
            fill,
            flag,
        },
    )
}

/// Any op but the structural ones.
pub fn fs_op() -> BoxedStrategy<Op> {
    prop_oneof![
        4 => create(),
        4 => mkdir(),
        1 => mkfifo(),
        2 => symlink(),
        8 => write(),
        3 => truncate(),
        2 => range().prop_map(|(path, offset, len)| Op::PunchHole { path, offset, len }),
        2 => (range(), any::<bool>()).prop_map(|((path, offset, len), keep_size)| Op::ZeroRange {
            path,
            offset,
            len,
            keep_size
        }),
        1 => range().prop_map(|(path, offset, len)| Op::Allocate { path, offset, len }),
        3 => path().prop_map(|path| Op::Unlink { path }),
        2 => dir_or_file().prop_map(|path| Op::Rmdir { path }),
        1 => dir_path().prop_map(|path| Op::RemoveTree { path }),
        6 => (rename_paths(), rename_mode())
            .prop_map(|((from, to), mode)| Op::Rename { from, to, mode }),
        3 => link(),
        2 => chmod(),
        2 => chown(),
        3 => setxattr(),
        2 => (xattr_path(), xattr_name()).prop_map(|(path, name)| Op::RemoveXattr { path, name }),
        2 => path().prop_map(|path| Op::Fsync { path }),
    ]
    .boxed()
}

/// An op on an open handle (slots 0 to 2).
fn handle_op() -> BoxedStrategy<Op> {
    let slot = || 0u8..3;
    prop_oneof![
        3 => (slot(), file_path(), proptest::bool::weighted(0.2))
            .prop_map(|(slot, path, truncate)| Op::Open { slot, path, truncate }),
        4 => (slot(), offset(), length(), fill())
            .prop_map(|(slot, offset, len, fill)| Op::WriteFd { slot, offset, len, fill }),
        1 => (slot(), offset()).prop_map(|(slot, size)| Op::TruncateFd { slot, size }),
        2 => slot().prop_map(|slot| Op::Close { slot }),
        1 => slot().prop_map(|slot| Op::FsyncFd { slot }),
    ]
    .boxed()
}

/// Any op: handles, `Commit` and `Reopen` included.
pub fn op() -> BoxedStrategy<Op> {
    prop_oneof![
        24 => fs_op(),
        6 => handle_op(),
        1 => any::<bool>().prop_map(|close_first| Op::Commit { close_first }),
        1 => Just(Op::Reopen),
        1 => Just(Op::SyncAll),
        1 => Just(Op::Reclaim),
    ]
    .boxed()
}

/// What one file path of the initial tree holds: a file with data, a symlink or a fifo.
fn tree_file(path: String) -> impl Strategy<Value = Vec<Op>> {
    prop_oneof![
        6 => (Just(path.clone()), file_perm(), offset(), length(), fill()).prop_map(
            |(path, perm, offset, len, fill)| vec![
                Op::Create { path: path.clone(), perm },
                Op::Write { path, offset, len, fill },
            ]
        ),
        1 => (Just(path.clone()), target()).prop_map(|(path, target)| vec![Op::Symlink { path, target }]),
        1 => (Just(path), file_perm()).prop_map(|(path, perm)| vec![Op::Mkfifo { path, perm }]),
    ]
}

/// The initial tree: most directories and files of the namespace exist (so that ops meet
/// them), then a few hard links, mode, owner and xattr changes.
pub fn tree() -> impl Strategy<Value = Vec<Op>> {
    let dirs = vec((proptest::bool::weighted(0.7), dir_perm()), DIRS.len());
    let files: Vec<_> = FILE_PARENTS
        .iter()
        .flat_map(|dir| LEAVES.iter().map(move |leaf| (*dir, *leaf)))
        .map(|(dir, leaf)| {
            let path = match dir {
                "" => leaf.to_string(),
                dir => format!("{dir}/{leaf}"),
            };
            proptest::option::weighted(0.6, tree_file(path))
        })
        .collect();
    let extra = prop_oneof![2 => link(), 1 => chmod(), 1 => chown(), 2 => setxattr()];
    (dirs, files, vec(extra, 0..10)).prop_map(|(dirs, files, extra)| {
        let mut ops: Vec<Op> = DIRS
            .iter()
            .zip(dirs)
            .filter(|(_, (exists, _))| *exists)
            .map(|(path, (_, perm))| Op::Mkdir {
                path: path.to_string(),
                perm,
            })
            .collect();
        ops.extend(files.into_iter().flatten().flatten());
        ops.extend(extra);
        ops
    })
}

/// A whole case with up to `max_ops` ops in the container under test.
pub fn case(max_ops: usize) -> impl Strategy<Value = Case> {
    (
        tree(),
        vec(vec(fs_op(), 1..10), 0..3),
        vec(op(), 1..max_ops),
    )
        .prop_map(|(tree, stacked, ops)| Case { tree, stacked, ops })
}
