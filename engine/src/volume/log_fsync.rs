//! fsync through the intent log (see `store_dir::intent_log`): when a file's unflushed state
//! is a plain overlay of its recorded state, the fsync logs the file's dirty ranges, with
//! every metadata change not yet durable (a create, an unlink, a rename: `meta::logged`), and
//! syncs the log — one disk sync — instead of storing blocks and committing metadata.
//!
//! The plain case, checked under the file's lock: no flush of it is in flight, and every dirty
//! block is bytes (whole, a patch over the recorded block, or a punched hole), not a block
//! shared by `copy_file_range`; and the record is small (`LOG_BYTES_ALWAYS`) or much smaller
//! than what a flush would write. The node's record as it stands (the root and size the log
//! record names as its base) is durable once the append returns: committed, or in this or an
//! earlier record of metadata changes. Anything else takes the ordinary path. A later flush of
//! the file records, with its data, that the file's records are obsolete
//! (`intent_log::record_flushed`).

use crate::error::Result;
use crate::ids::{BlockId, LayerId, NodeId};
use crate::layer::{Stack, lookup};
use crate::store_dir::intent_log::{Base, Range, Record};
use crate::tree::node::Content;

use super::Volume;
use super::dirty::DirtyBlock;
use super::file_data::FileData;

/// A record of up to this many bytes always goes to the log; a bigger one only when a flush
/// would write more than twice as much (patches of blocks it writes whole).
const LOG_BYTES_ALWAYS: u64 = 1 << 20;

impl Volume {
    /// Makes the file durable through the intent log. `Ok(false)`: not the plain case (or no
    /// log); nothing was done and the caller takes the ordinary path.
    pub(super) fn fsync_through_log(&self, node: NodeId) -> Result<bool> {
        let store = &self.shared.store;
        if store.intent_log().is_none() {
            return Ok(false);
        }
        let Some(state) = self.existing_state(node).filter(|s| s.is_file) else {
            return Ok(false);
        };
        let stack = self.stack();
        let Ok(layer) = stack.upper() else {
            return Ok(false);
        };
        let mut fd = state.data.lock().unwrap();
        if fd.inflight.is_some() {
            return Ok(false);
        }
        let data = match fd.has_changes() {
            true => match self.log_record(node, layer, &stack, &fd)? {
                Some(record) => Some(record),
                None => return Ok(false),
            },
            false => None,
        };
        let Some(seq) = store.log_durable(data)? else {
            return Ok(false);
        };
        if seq > 0 {
            fd.logged = seq;
            fd.log_since.clear();
            fd.log_min_size = fd.size;
        }
        Ok(true)
    }

    /// The record of the file's changes since its previous record; `None` when they are not
    /// the plain case.
    fn log_record(
        &self,
        node: NodeId,
        layer: LayerId,
        stack: &Stack,
        fd: &FileData,
    ) -> Result<Option<Record>> {
        let record = {
            let r = self.shared.store.meta().read();
            lookup::existing(&r, &stack.layers, node)?
        };
        let Content::File { size, root, .. } = record.content else {
            return Ok(None);
        };
        if (root, size) != (fd.base_root, fd.base_size) {
            return Ok(None);
        }
        let bs = self.block_size() as u64;
        let end = fd.size;
        let mut ranges = Vec::with_capacity(fd.log_since.len());
        for (index, span) in &fd.log_since {
            let start = index * bs;
            // Cut off since (replay truncates to `log_min_size` first), or written over later.
            let Some(block) = fd.dirty.get(index).filter(|_| start < end) else {
                continue;
            };
            let len = (end - start).min(bs);
            match block {
                // The span written since the previous record (the rest of the block is the
                // committed bytes, or in an earlier record).
                DirtyBlock::Data(bytes) => {
                    let to = (span.end as u64).min(len) as usize;
                    let from = (span.start as usize).min(to);
                    ranges.push(Range::Data {
                        offset: start + from as u64,
                        bytes: bytes[from..to].to_vec(),
                    })
                }
                DirtyBlock::Id(id) if *id == BlockId::ZERO => {
                    ranges.push(Range::Zero { offset: start, len })
                }
                DirtyBlock::Patch(patch) if patch.base.is_none() => {
                    for (at, bytes) in patch.window(0, len as usize) {
                        ranges.push(Range::Data {
                            offset: start + at as u64,
                            bytes,
                        });
                    }
                }
                _ => return Ok(None),
            }
        }
        // Bytes go to the log and later to a pack: past a few, a flush that writes them once
        // costs less — unless they are small patches over blocks a flush writes whole.
        let logged: u64 = ranges
            .iter()
            .map(|r| match r {
                Range::Data { bytes, .. } => bytes.len() as u64,
                Range::Zero { .. } => 0,
            })
            .sum();
        if logged > LOG_BYTES_ALWAYS && logged > fd.dirty.len() as u64 * bs / 2 {
            return Ok(None);
        }
        Ok(Some(Record {
            seq: 0,
            run: 0,
            layer,
            node,
            base: Base { root, size },
            min_size: fd.log_min_size,
            size: fd.size,
            mtime: fd.mtime,
            ranges,
        }))
    }
}
