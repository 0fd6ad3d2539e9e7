//! Node records as stored in the `nodes` table.
//!
//! ```text
//! version u8 (=1) | kind u8 | perm u16 | uid u32 | gid u32 | nlink u32 |
//! atime i64 | mtime i64 | ctime i64 (nanoseconds since the epoch) | flags u8 (reserved, 0) |
//! content:  file: size u64 | map root [32] | stored blocks u64
//!           dir: parent node u64;  symlink: target (u32 length + bytes)
//!           char/block device: rdev u64;  fifo/socket: nothing
//! xattr count u32 | count × (name: u32 length + bytes | value: u32 length + bytes)
//! ```

use super::codec::{Decoder, Encoder};
use crate::error::Result;
use crate::ids::{MapRoot, NodeId};
use crate::tree::node::{Content, FileKind, NodeRecord};

const VERSION: u8 = 1;

pub fn encode(node: &NodeRecord) -> Vec<u8> {
    let mut e = Encoder::with_capacity(96);
    e.u8(VERSION)
        .u8(node.kind.code())
        .u16(node.perm)
        .u32(node.uid)
        .u32(node.gid)
        .u32(node.nlink)
        .i64(node.atime)
        .i64(node.mtime)
        .i64(node.ctime)
        .u8(0);
    match &node.content {
        Content::File {
            size,
            root,
            stored_blocks,
        } => {
            e.u64(*size).raw(root.as_bytes()).u64(*stored_blocks);
        }
        Content::Dir { parent } => {
            e.u64(parent.0);
        }
        Content::Symlink(target) => {
            e.bytes(target);
        }
        Content::Device(rdev) => {
            e.u64(*rdev);
        }
        Content::Special => {}
    }
    e.u32(node.xattrs.len() as u32);
    for (name, value) in &node.xattrs {
        e.bytes(name).bytes(value);
    }
    e.finish()
}

pub fn decode(bytes: &[u8]) -> Result<NodeRecord> {
    let mut d = Decoder::new(bytes, "node record");
    let version = d.u8()?;
    if version != VERSION {
        return Err(d.corrupt(&format!("unknown version {version}")));
    }
    let code = d.u8()?;
    let kind = FileKind::from_code(code).ok_or_else(|| d.corrupt("unknown kind"))?;
    let perm = d.u16()?;
    let uid = d.u32()?;
    let gid = d.u32()?;
    let nlink = d.u32()?;
    let atime = d.i64()?;
    let mtime = d.i64()?;
    let ctime = d.i64()?;
    if d.u8()? != 0 {
        return Err(d.corrupt("unknown flags"));
    }
    let content = match kind {
        FileKind::File => Content::File {
            size: d.u64()?,
            root: MapRoot(d.array()?),
            stored_blocks: d.u64()?,
        },
        FileKind::Dir => Content::Dir {
            parent: NodeId(d.u64()?),
        },
        FileKind::Symlink => Content::Symlink(d.bytes()?.to_vec()),
        FileKind::CharDev | FileKind::BlockDev => Content::Device(d.u64()?),
        FileKind::Fifo | FileKind::Socket => Content::Special,
    };
    let count = d.u32()? as usize;
    let mut xattrs = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = d.bytes()?.to_vec();
        let value = d.bytes()?.to_vec();
        xattrs.push((name, value));
    }
    d.finish()?;
    Ok(NodeRecord {
        kind,
        perm,
        uid,
        gid,
        nlink,
        atime,
        mtime,
        ctime,
        content,
        xattrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let mut file = NodeRecord::new(FileKind::File, 0o4755, 1, 2, 123);
        file.content = Content::File {
            size: 1 << 40,
            root: MapRoot([9; 32]),
            stored_blocks: 7,
        };
        file.set_xattr(b"security.capability", Some(b"\x01\x02"));
        file.set_xattr(b"user.a", Some(b""));
        let mut link = NodeRecord::new(FileKind::Symlink, 0o777, 0, 0, -5);
        link.content = Content::Symlink(b"/etc/passwd".to_vec());
        let dir = NodeRecord::new(FileKind::Dir, 0o1777, 0, 0, 0);
        let mut dev = NodeRecord::new(FileKind::CharDev, 0o600, 0, 0, 0);
        dev.content = Content::Device(0x0501);
        let fifo = NodeRecord::new(FileKind::Fifo, 0o644, 0, 0, 0);
        for node in [file, link, dir, dev, fifo] {
            assert_eq!(decode(&encode(&node)).unwrap(), node);
        }
    }

    #[test]
    fn truncated_records_are_corrupt_not_panics() {
        let node = NodeRecord::new(FileKind::File, 0o644, 0, 0, 0);
        let bytes = encode(&node);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
    }
}
