//! Walking a merged view depth-first, parents before children, names in byte order. Used by
//! stats, diff and fsck, which need every visible path without mounting anything.

use super::{lookup, readdir};
use crate::error::Result;
use crate::ids::{LayerId, NodeId};
use crate::meta::records::Records;
use crate::tree::node::{FileKind, NodeRecord};

/// One visible entry: its path (no leading slash), node, the layer its record comes from, and
/// the record.
pub struct Visit<'a> {
    pub path: &'a [u8],
    /// The directory holding this entry.
    pub parent: NodeId,
    pub node: NodeId,
    pub layer: LayerId,
    pub record: &'a NodeRecord,
}

/// Calls `visit` for every entry visible in the view of `layers` (top first), the root
/// excluded.
pub fn walk<R: Records + ?Sized>(
    r: &R,
    layers: &[LayerId],
    visit: &mut dyn FnMut(Visit<'_>) -> Result<()>,
) -> Result<()> {
    let mut path = Vec::new();
    walk_dir(r, layers, NodeId::ROOT, &mut path, visit)
}

fn walk_dir<R: Records + ?Sized>(
    r: &R,
    layers: &[LayerId],
    dir: NodeId,
    path: &mut Vec<u8>,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<()>,
) -> Result<()> {
    for entry in readdir::list(r, layers, dir)? {
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&entry.name);
        let Some((layer, record)) = lookup::node(r, layers, entry.node)? else {
            return Err(crate::error::Error::Corrupt(format!(
                "{:?} names node {}, which has no record",
                String::from_utf8_lossy(path),
                entry.node
            )));
        };
        visit(Visit {
            path,
            parent: dir,
            node: entry.node,
            layer,
            record: &record,
        })?;
        if entry.kind == FileKind::Dir {
            walk_dir(r, layers, entry.node, path, visit)?;
        }
        path.truncate(len);
    }
    Ok(())
}
