//! Shared by the invariant tests (`tests/tests/invariant_*.rs`): sizing and creating files by
//! path, and how much block data and pack space an operation added.

use tessera::volume::Volume;
use tessera::{Caller, NodeId, SetAttr, Store};

use crate::node_at;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;

pub fn set_size(v: &Volume, node: NodeId, size: u64) {
    let change = SetAttr {
        size: Some(size),
        ..Default::default()
    };
    v.setattr(node, &change).unwrap();
}

pub fn create(v: &Volume, path: &str) -> NodeId {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    v.create(node_at(v, dir), name.as_bytes(), 0o644, Caller::ROOT)
        .unwrap()
        .node
}

/// Bytes of block data the store holds, and of its packs.
pub fn held(store: &Store) -> (u64, u64) {
    let stats = store.block_store_stats();
    (stats.block_bytes, stats.pack_bytes)
}

/// Runs `f` and returns how much block data and pack space it added.
pub fn growth(store: &Store, f: impl FnOnce()) -> (u64, u64) {
    let before = held(store);
    f();
    let after = held(store);
    (after.0 - before.0, after.1 - before.1)
}
