//! Merged directory listings: every layer's entries of one directory node, top first; the
//! topmost entry of a name wins and a whiteout hides the name.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::format::records::Dirent;
use crate::ids::{LayerId, NodeId};
use crate::meta::records::Records;
use crate::tree::node::FileKind;

/// One visible entry of a merged directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub node: NodeId,
    pub kind: FileKind,
}

/// The visible entries of directory `dir`, sorted by name.
pub fn list<R: Records + ?Sized>(r: &R, layers: &[LayerId], dir: NodeId) -> Result<Vec<Entry>> {
    let mut merged: BTreeMap<Vec<u8>, Dirent> = BTreeMap::new();
    for layer in layers {
        for (name, dirent) in r.dirents(*layer, dir)? {
            merged.entry(name).or_insert(dirent);
        }
    }
    Ok(merged
        .into_iter()
        .filter_map(|(name, dirent)| match dirent {
            Dirent::Node(node, kind) => Some(Entry { name, node, kind }),
            Dirent::Whiteout => None,
        })
        .collect())
}

/// Whether directory `dir` shows no entries.
pub fn is_empty<R: Records + ?Sized>(r: &R, layers: &[LayerId], dir: NodeId) -> Result<bool> {
    Ok(list(r, layers, dir)?.is_empty())
}
