//! Copy-up: a container's first change to a node of a lower layer. Only the record is copied
//! into the writable layer; for a regular file it carries the lower block-map root, so no data
//! moves and the cost is the same for any file size. Blocks are replaced one by one later, by
//! writes (see `volume::file_data`).

use super::{Stack, lookup};
use crate::error::Result;
use crate::ids::NodeId;
use crate::meta::Writer;
use crate::meta::records::Records;
use crate::tree::node::NodeRecord;

/// The node's newest record, for a change that will be written to the writable layer with
/// [`store`]. Fails with `ReadOnly` on image views and `NotFound` for unknown nodes.
pub fn record(w: &Writer<'_>, stack: &Stack, node: NodeId) -> Result<NodeRecord> {
    stack.upper()?;
    lookup::existing(w, &stack.layers, node)
}

/// Writes a changed record into the writable layer (copying the node up if it was lower).
pub fn store(w: &mut Writer<'_>, stack: &Stack, node: NodeId, record: &NodeRecord) -> Result<()> {
    w.put_node(stack.upper()?, node, record);
    Ok(())
}

/// Whether the writable layer already holds the node.
pub fn is_up(w: &Writer<'_>, stack: &Stack, node: NodeId) -> Result<bool> {
    Ok(w.node(stack.upper()?, node)?.is_some())
}
