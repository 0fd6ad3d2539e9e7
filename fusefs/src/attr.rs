//! Engine attributes as the kernel wants them, and the cache lifetimes the kernel may keep them
//! for. Every change to a mounted view goes through this mount, so the kernel's caches stay
//! right for as long as we let it keep them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, Generation, INodeNo};
use tessera::{Attr, FileKind};

/// How long the kernel may cache names and attributes.
pub const ENTRY_TTL: Duration = Duration::from_secs(5);
pub const ATTR_TTL: Duration = Duration::from_secs(5);
/// How long the kernel may remember that a name does not exist.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Node ids are never reused for another file (they skip ahead when a daemon inherits
/// mounts), so every entry has the same generation.
pub const GENERATION: Generation = Generation(0);

pub fn kind(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

pub fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

pub fn nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

pub fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.node.0),
        size: attr.size,
        blocks: attr.blocks,
        atime: time(attr.atime),
        mtime: time(attr.mtime),
        ctime: time(attr.ctime),
        crtime: time(attr.ctime),
        kind: kind(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: attr.rdev as u32,
        blksize: attr.blksize,
        flags: 0,
    }
}

/// The reply for a name that does not exist: inode 0, cached for `NEGATIVE_TTL`.
pub fn negative() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// The reply to the kernel's write-back of the times of a regular file the volume no longer
/// has (unlinked, and closed): unlinked, with the mtime the kernel sent.
pub fn gone(ino: INodeNo, mtime: i64) -> FileAttr {
    FileAttr {
        ino,
        mtime: time(mtime),
        ctime: time(mtime),
        ..negative()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_both_sides_of_the_epoch() {
        for ns in [0, 1, 1_700_000_000_123_456_789, -5_000_000_001] {
            assert_eq!(nanos(time(ns)), ns);
        }
    }
}
