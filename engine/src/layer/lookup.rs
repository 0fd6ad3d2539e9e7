//! Finding names and nodes in a stack of layers, top first.

use crate::error::{Error, Result};
use crate::format::records::Dirent;
use crate::ids::{LayerId, NodeId};
use crate::meta::records::Records;
use crate::tree::node::{FileKind, NodeRecord};

/// The record of `node` from the topmost layer that has one, and that layer.
pub fn node<R: Records + ?Sized>(
    r: &R,
    layers: &[LayerId],
    node: NodeId,
) -> Result<Option<(LayerId, NodeRecord)>> {
    for layer in layers {
        if let Some(record) = r.node(*layer, node)? {
            return Ok(Some((*layer, record)));
        }
    }
    if node == NodeId::ROOT {
        // A stack whose layers never recorded the root still has one.
        let root = NodeRecord::new(FileKind::Dir, 0o755, 0, 0, 0);
        return Ok(layers.last().map(|bottom| (*bottom, root)));
    }
    Ok(None)
}

/// Like [`node`], but a missing node is `NotFound`.
pub fn existing<R: Records + ?Sized>(r: &R, layers: &[LayerId], id: NodeId) -> Result<NodeRecord> {
    node(r, layers, id)?
        .map(|(_, record)| record)
        .ok_or_else(|| Error::NotFound(format!("node {id}")))
}

/// What `name` in directory `parent` refers to: `None` when absent or whited out.
pub fn entry<R: Records + ?Sized>(
    r: &R,
    layers: &[LayerId],
    parent: NodeId,
    name: &[u8],
) -> Result<Option<(NodeId, FileKind)>> {
    for layer in layers {
        match r.dirent(*layer, parent, name)? {
            Some(Dirent::Node(node, kind)) => return Ok(Some((node, kind))),
            Some(Dirent::Whiteout) => return Ok(None),
            None => {}
        }
    }
    Ok(None)
}

/// Resolves a slash-separated path from the root (no symlinks are followed).
pub fn path<R: Records + ?Sized>(
    r: &R,
    layers: &[LayerId],
    path: &[u8],
) -> Result<Option<(NodeId, FileKind)>> {
    let mut current = (NodeId::ROOT, FileKind::Dir);
    for part in path
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
    {
        if current.1 != FileKind::Dir {
            return Ok(None);
        }
        match entry(r, layers, current.0, part)? {
            Some(found) => current = found,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// Whether `ancestor` is `node` or one of the directories above it.
pub fn is_ancestor<R: Records + ?Sized>(
    r: &R,
    layers: &[LayerId],
    ancestor: NodeId,
    node: NodeId,
) -> Result<bool> {
    let mut current = node;
    for _ in 0..100_000 {
        if current == ancestor {
            return Ok(true);
        }
        if current == NodeId::ROOT {
            return Ok(false);
        }
        let record = existing(r, layers, current)?;
        current = match record.content {
            crate::tree::node::Content::Dir { parent } => parent,
            _ => return Ok(false),
        };
    }
    Err(Error::Corrupt(format!(
        "directory {node}: parent chain loops"
    )))
}
