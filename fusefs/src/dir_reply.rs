//! Directory listings as the kernel reads them: `.` and `..` at offsets 1 and 2, then the
//! volume's merged entries with their own offsets shifted by two, so an offset handed out
//! stays valid while entries are removed.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use fuser::{FileHandle, INodeNo, ReplyDirectory, ReplyDirectoryPlus};
use tessera::volume::DirHandle;
use tessera::{NodeId, Volume};

use crate::attr::{self, ENTRY_TTL, GENERATION};
use crate::convert::node;
use crate::errno::errno;

/// One directory entry as replied: (offset of the next entry, node, kind, name).
type Listed = (u64, NodeId, tessera::FileKind, Vec<u8>);

/// The entries of directory `ino` (open as `fh`) after `offset`. Offsets 1 and 2 are `.` and
/// `..`; the volume's own offsets follow, shifted by two.
fn listing(
    volume: &Volume,
    ino: INodeNo,
    fh: FileHandle,
    offset: u64,
) -> tessera::Result<Vec<Listed>> {
    let mut out = Vec::new();
    if offset < 1 {
        out.push((1, node(ino), tessera::FileKind::Dir, b".".to_vec()));
    }
    if offset < 2 {
        let parent = volume.parent_of(node(ino)).unwrap_or(node(ino));
        out.push((2, parent, tessera::FileKind::Dir, b"..".to_vec()));
    }
    let entries = volume.readdir(node(ino), DirHandle(fh.0), offset.saturating_sub(2))?;
    out.extend(
        entries
            .into_iter()
            .map(|e| (e.offset + 2, e.node, e.kind, e.name)),
    );
    Ok(out)
}

/// Replies to READDIR with the entries of `ino` (open as `fh`) after `offset`.
pub(crate) fn fill(
    volume: &Volume,
    ino: INodeNo,
    fh: FileHandle,
    offset: u64,
    mut reply: ReplyDirectory,
) {
    match listing(volume, ino, fh, offset) {
        Ok(entries) => {
            for (next, id, kind, name) in entries {
                let name = OsStr::from_bytes(&name);
                if reply.add(INodeNo(id.0), next, attr::kind(kind), name) {
                    break;
                }
            }
            reply.ok()
        }
        Err(e) => reply.error(errno(&e)),
    }
}

/// Replies to READDIRPLUS: the same entries, each with its attributes.
pub(crate) fn fill_plus(
    volume: &Volume,
    ino: INodeNo,
    fh: FileHandle,
    offset: u64,
    mut reply: ReplyDirectoryPlus,
) {
    let entries = match listing(volume, ino, fh, offset) {
        Ok(entries) => entries,
        Err(e) => return reply.error(errno(&e)),
    };
    for (next, id, _, name) in entries {
        let attr = match volume.getattr(id) {
            Ok(attr) => attr,
            // Removed since the listing was taken: skip it, keep the offsets valid.
            Err(e) if e.kind() == tessera::ErrorKind::NotFound => continue,
            Err(e) => return reply.error(errno(&e)),
        };
        let (name, attr) = (OsStr::from_bytes(&name), attr::file_attr(&attr));
        if reply.add(INodeNo(id.0), next, name, &ENTRY_TTL, &attr, GENERATION) {
            break;
        }
    }
    reply.ok()
}
