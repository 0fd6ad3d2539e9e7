//! Keys and values of the metadata tables other than nodes.
//!
//! Binary, for the hot tables (keys big-endian so redb's byte order is numeric order):
//! - `nodes` key: layer u64 BE | node u64 BE; value: `format::node`.
//! - `dirents` key: layer u64 BE | parent node u64 BE | name bytes;
//!   value: child node u64 LE | kind u8 (0 = whiteout, else `FileKind::code`).
//! - `orphans` key: layer u64 BE | node u64 BE; value: empty.
//! - `pages` key: page id [32]; value: the page (concatenated child ids).
//! - `packs` key: pack id u64 BE; value: valid length u64 LE | sealed u8.
//!
//! JSON (versioned by a `v` field), for the small lifecycle records: layers, images,
//! containers.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{LayerId, NodeId, PackId};
use crate::tree::node::FileKind;

pub fn node_key(layer: LayerId, node: NodeId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&layer.0.to_be_bytes());
    key[8..].copy_from_slice(&node.0.to_be_bytes());
    key
}

pub fn split_node_key(key: &[u8]) -> Result<(LayerId, NodeId)> {
    if key.len() != 16 {
        return Err(Error::Corrupt("node key has the wrong length".into()));
    }
    Ok((
        LayerId(u64::from_be_bytes(key[..8].try_into().unwrap())),
        NodeId(u64::from_be_bytes(key[8..].try_into().unwrap())),
    ))
}

/// The key prefix of every record of one layer.
pub fn layer_prefix(layer: LayerId) -> [u8; 8] {
    layer.0.to_be_bytes()
}

pub fn dirent_key(layer: LayerId, parent: NodeId, name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + name.len());
    key.extend_from_slice(&node_key(layer, parent));
    key.extend_from_slice(name);
    key
}

/// Splits a dirent key into (layer, parent, name).
pub fn split_dirent_key(key: &[u8]) -> Result<(LayerId, NodeId, &[u8])> {
    if key.len() < 16 {
        return Err(Error::Corrupt("directory entry key too short".into()));
    }
    let (layer, parent) = split_node_key(&key[..16])?;
    Ok((layer, parent, &key[16..]))
}

/// A directory entry as one layer records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dirent {
    /// The name refers to this node.
    Node(NodeId, FileKind),
    /// The name is deleted in this layer (and hides every lower layer's entry).
    Whiteout,
}

impl Dirent {
    pub fn encode(&self) -> [u8; 9] {
        let mut out = [0u8; 9];
        if let Dirent::Node(node, kind) = self {
            out[..8].copy_from_slice(&node.0.to_le_bytes());
            out[8] = kind.code();
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Dirent> {
        if bytes.len() != 9 {
            return Err(Error::Corrupt(
                "directory entry has the wrong length".into(),
            ));
        }
        if bytes[8] == 0 {
            return Ok(Dirent::Whiteout);
        }
        let kind = FileKind::from_code(bytes[8])
            .ok_or_else(|| Error::Corrupt("directory entry of unknown kind".into()))?;
        Ok(Dirent::Node(
            NodeId(u64::from_le_bytes(bytes[..8].try_into().unwrap())),
            kind,
        ))
    }
}

pub fn pack_key(pack: PackId) -> [u8; 8] {
    pack.0.to_be_bytes()
}

/// What the metadata knows of a pack: how much of it is valid, and whether it is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackRecord {
    pub len: u64,
    pub sealed: bool,
}

impl PackRecord {
    pub fn encode(&self) -> [u8; 9] {
        let mut out = [0u8; 9];
        out[..8].copy_from_slice(&self.len.to_le_bytes());
        out[8] = self.sealed as u8;
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<PackRecord> {
        if bytes.len() != 9 {
            return Err(Error::Corrupt("pack record has the wrong length".into()));
        }
        Ok(PackRecord {
            len: u64::from_le_bytes(bytes[..8].try_into().unwrap()),
            sealed: bytes[8] == 1,
        })
    }
}

/// Where a layer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerState {
    /// Being imported; swept at the next open unless published.
    Staging,
    /// A container's top layer.
    Writable,
    /// Immutable: part of an image.
    Committed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub v: u32,
    pub parent: Option<LayerId>,
    pub state: LayerState,
    pub created: i64,
    /// The uncompressed digest of the layer tar it came from (OCI diff_id), when imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub v: u32,
    pub top: LayerId,
    pub created: i64,
    /// The OCI image config (env, entrypoint, cmd, workdir, user), when the source had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub v: u32,
    /// The image it was created from (informational: the image may be removed or re-tagged).
    pub image: String,
    /// The top layer of the image below the writable layer (`None`: an empty base).
    pub base: Option<LayerId>,
    pub upper: LayerId,
    pub created: i64,
    /// The most bytes the container may hold exclusively (`None`: no limit). Added without a
    /// version change: older records read as unlimited, and older builds ignore the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<u64>,
}

pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

pub fn from_json<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{what} record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirent_keys_sort_by_layer_then_parent_then_name() {
        let a = dirent_key(LayerId(1), NodeId(300), b"z");
        let b = dirent_key(LayerId(2), NodeId(1), b"a");
        let c = dirent_key(LayerId(2), NodeId(1), b"b");
        assert!(a < b && b < c);
        let (layer, parent, name) = split_dirent_key(&c).unwrap();
        assert_eq!((layer, parent, name), (LayerId(2), NodeId(1), &b"b"[..]));
    }

    #[test]
    fn dirents_round_trip() {
        for d in [Dirent::Whiteout, Dirent::Node(NodeId(77), FileKind::Socket)] {
            assert_eq!(Dirent::decode(&d.encode()).unwrap(), d);
        }
        assert!(Dirent::decode(&[0; 3]).is_err());
    }
}
