//! The attribute and argument types of the Volume API.

use serde::Serialize;

use crate::ids::NodeId;
use crate::tree::node::{FileKind, NodeRecord, TimeNs};

/// What `stat` shows of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub node: NodeId,
    pub kind: FileKind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte units referenced (zero blocks are holes).
    pub blocks: u64,
    pub atime: TimeNs,
    pub mtime: TimeNs,
    pub ctime: TimeNs,
    pub rdev: u64,
    /// Preferred I/O size: the store's block size.
    pub blksize: u32,
}

impl Attr {
    pub fn from_record(node: NodeId, record: &NodeRecord, block_size: u32) -> Attr {
        let stored = match record.content {
            crate::tree::node::Content::File { stored_blocks, .. } => stored_blocks,
            _ => 0,
        };
        Attr {
            node,
            kind: record.kind,
            perm: record.perm,
            nlink: record.nlink,
            uid: record.uid,
            gid: record.gid,
            size: record.size(),
            blocks: stored * (block_size as u64 / 512),
            atime: record.atime,
            mtime: record.mtime,
            ctime: record.ctime,
            rdev: record.rdev(),
            blksize: block_size,
        }
    }

    /// The full `st_mode`.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | self.perm as u32
    }
}

/// A `setattr` request: each `Some` field is changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (the file type part is ignored).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeNs>,
    pub mtime: Option<TimeNs>,
    /// The change time the caller's kernel gave the node (a writeback-cache mount keeps a
    /// file's times in the kernel and sends them); `None`: the time of the change.
    pub ctime: Option<TimeNs>,
    /// Drop the set-ID bits from a file that is not a directory, as a change of owner, and a
    /// write or truncation by a process without CAP_FSETID, must (the kernel leaves this to
    /// the filesystem under `FUSE_HANDLE_KILLPRIV_V2`): set-user-ID always; set-group-ID when
    /// the group may execute, or when this caller (not root) is not in the file's group.
    /// Only the caller's primary group is known, so a caller in the group through a
    /// supplementary group loses a non-executable set-group-ID bit that ext4 would keep. Alone,
    /// it changes nothing (not even ctime) when there is nothing to drop.
    pub kill_set_id: Option<Caller>,
}

/// The set-ID bits of `record` that [`SetAttr::kill_set_id`] drops for `caller`.
pub(crate) fn set_id_bits_to_drop(record: &NodeRecord, caller: Caller) -> u16 {
    if record.kind == FileKind::Dir {
        return 0;
    }
    let perm = record.perm;
    let mut drop = perm & 0o4000;
    let group_executes = perm & 0o010 != 0;
    let outsider = caller.uid != 0 && caller.gid != record.gid;
    if group_executes || outsider {
        drop |= perm & 0o2000;
    }
    drop
}

/// The credentials of the process making a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The umask a new node's mode is still to be masked with (FUSE_DONT_MASK: the kernel
    /// leaves it to the file system, which ignores it under a default ACL); `None` when the
    /// mode given is final.
    pub umask: Option<u16>,
}

impl Caller {
    pub const ROOT: Caller = Caller {
        uid: 0,
        gid: 0,
        umask: None,
    };
}

/// One entry of a directory listing. `offset` is where the next listing continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub node: NodeId,
    pub kind: FileKind,
    pub offset: u64,
}

/// How `setxattr` treats an existing attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrMode {
    #[default]
    Any,
    /// XATTR_CREATE: fail if it exists.
    Create,
    /// XATTR_REPLACE: fail if it does not.
    Replace,
}

/// What `lseek` looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTarget {
    Data,
    Hole,
}

/// `fallocate` modes the engine supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallocate {
    /// Mode 0: extend the size to cover the range.
    Allocate,
    /// FALLOC_FL_KEEP_SIZE: reserve without changing the size.
    KeepSize,
    /// FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: the range reads as zeros and stores nothing.
    PunchHole,
    /// FALLOC_FL_ZERO_RANGE: the range reads as zeros (whole blocks become holes, as a punch
    /// makes them), and the size grows to cover it unless `keep_size` (FALLOC_FL_KEEP_SIZE).
    ZeroRange { keep_size: bool },
}

/// File system figures for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FsStats {
    pub block_size: u32,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
    pub name_max: u32,
}

/// An open file of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileHandle(pub u64);

/// An open directory of a volume (its listing is a snapshot taken at open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirHandle(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    fn file(perm: u16, gid: u32) -> NodeRecord {
        NodeRecord::new(FileKind::File, perm, 0, gid, 0)
    }

    #[test]
    fn set_id_bits_dropped_as_the_kernel_would() {
        let root = Caller::ROOT;
        let member = Caller {
            uid: 1000,
            gid: 50,
            umask: None,
        };
        // Set-user-ID always; set-group-ID with group execute.
        assert_eq!(set_id_bits_to_drop(&file(0o6755, 50), root), 0o6000);
        assert_eq!(set_id_bits_to_drop(&file(0o4755, 50), member), 0o4000);
        // Without group execute, only for a caller outside the file's group.
        assert_eq!(set_id_bits_to_drop(&file(0o2644, 50), root), 0);
        assert_eq!(set_id_bits_to_drop(&file(0o2644, 50), member), 0);
        assert_eq!(set_id_bits_to_drop(&file(0o2644, 51), member), 0o2000);
        // Never from a directory; nothing when there is nothing.
        let dir = NodeRecord::new(FileKind::Dir, 0o6777, 0, 51, 0);
        assert_eq!(set_id_bits_to_drop(&dir, member), 0);
        assert_eq!(set_id_bits_to_drop(&file(0o777, 51), member), 0);
    }
}
