//! Nodes: what a layer records about a file, directory, symlink, device, fifo or socket.
//! A node keeps its `NodeId` in every layer it appears in, so the id is the inode number.

use crate::ids::{MapRoot, NodeId};

/// Nanoseconds since the Unix epoch.
pub type TimeNs = i64;

/// The type of a node (the `S_IFMT` part of a mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

impl FileKind {
    pub fn code(self) -> u8 {
        match self {
            FileKind::File => 1,
            FileKind::Dir => 2,
            FileKind::Symlink => 3,
            FileKind::CharDev => 4,
            FileKind::BlockDev => 5,
            FileKind::Fifo => 6,
            FileKind::Socket => 7,
        }
    }

    pub fn from_code(code: u8) -> Option<FileKind> {
        Some(match code {
            1 => FileKind::File,
            2 => FileKind::Dir,
            3 => FileKind::Symlink,
            4 => FileKind::CharDev,
            5 => FileKind::BlockDev,
            6 => FileKind::Fifo,
            7 => FileKind::Socket,
            _ => return None,
        })
    }

    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::CharDev => libc::S_IFCHR,
            FileKind::BlockDev => libc::S_IFBLK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
        }
    }

    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFCHR => FileKind::CharDev,
            libc::S_IFBLK => FileKind::BlockDev,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            _ => return None,
        })
    }
}

/// What a node holds besides its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A regular file: its length, its block-map root and how many of its blocks are not zero
    /// blocks (for `st_blocks`).
    File {
        size: u64,
        root: MapRoot,
        stored_blocks: u64,
    },
    /// A directory and the directory it sits in (itself for the root).
    Dir {
        parent: NodeId,
    },
    Symlink(Vec<u8>),
    /// A character or block device number.
    Device(u64),
    /// Fifos and sockets hold nothing.
    Special,
}

/// One node as one layer records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub kind: FileKind,
    /// Permission bits, setuid/setgid/sticky included (`mode & 0o7777`).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// Names this node has in the view of the layer stack that holds this record.
    pub nlink: u32,
    pub atime: TimeNs,
    pub mtime: TimeNs,
    pub ctime: TimeNs,
    pub content: Content,
    /// Extended attributes of every namespace, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl NodeRecord {
    /// A fresh node of `kind` with empty content, owned by `uid:gid`, all times `now`.
    pub fn new(kind: FileKind, perm: u16, uid: u32, gid: u32, now: TimeNs) -> NodeRecord {
        let content = match kind {
            FileKind::File => Content::File {
                size: 0,
                root: MapRoot::ZERO,
                stored_blocks: 0,
            },
            FileKind::Dir => Content::Dir {
                parent: NodeId::ROOT,
            },
            FileKind::Symlink => Content::Symlink(Vec::new()),
            FileKind::CharDev | FileKind::BlockDev => Content::Device(0),
            FileKind::Fifo | FileKind::Socket => Content::Special,
        };
        NodeRecord {
            kind,
            perm: perm & 0o7777,
            uid,
            gid,
            nlink: if kind == FileKind::Dir { 2 } else { 1 },
            atime: now,
            mtime: now,
            ctime: now,
            content,
            xattrs: Vec::new(),
        }
    }

    /// The full `st_mode`.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | self.perm as u32
    }

    /// File length in bytes (symlinks: target length; others 0).
    pub fn size(&self) -> u64 {
        match &self.content {
            Content::File { size, .. } => *size,
            Content::Symlink(target) => target.len() as u64,
            _ => 0,
        }
    }

    pub fn rdev(&self) -> u64 {
        match self.content {
            Content::Device(rdev) => rdev,
            _ => 0,
        }
    }

    pub fn xattr(&self, name: &[u8]) -> Option<&[u8]> {
        self.xattrs
            .binary_search_by(|(n, _)| n.as_slice().cmp(name))
            .ok()
            .map(|i| self.xattrs[i].1.as_slice())
    }

    /// Sets (or with `None` removes) one xattr, keeping them sorted. Returns whether it existed.
    pub fn set_xattr(&mut self, name: &[u8], value: Option<&[u8]>) -> bool {
        match (
            self.xattrs
                .binary_search_by(|(n, _)| n.as_slice().cmp(name)),
            value,
        ) {
            (Ok(i), Some(v)) => {
                self.xattrs[i].1 = v.to_vec();
                true
            }
            (Ok(i), None) => {
                self.xattrs.remove(i);
                true
            }
            (Err(i), Some(v)) => {
                self.xattrs.insert(i, (name.to_vec(), v.to_vec()));
                false
            }
            (Err(_), None) => false,
        }
    }
}
