//! fsync through the intent log (see `store_dir::intent_log`): when a file's unflushed state
//! is a plain overlay of its committed state, the fsync logs the file's dirty ranges and syncs
//! the log — one disk sync — instead of storing blocks and committing metadata.
//!
//! The plain case, checked under the file's lock: no flush of it is in flight; every dirty
//! block is bytes (whole, a patch over the committed block, or a punched hole), not a block
//! shared by `copy_file_range`; and every metadata change made so far is committed (so the
//! node exists after a crash, with the root, size and ctime the record names as its base).
//! Anything else takes the ordinary path. A later flush of the file records, with its data,
//! that the file's records are obsolete (`intent_log::record_flushed`).

use crate::error::Result;
use crate::ids::{BlockId, NodeId};
use crate::layer::lookup;
use crate::store_dir::intent_log::{Base, Range, Record};
use crate::tree::node::Content;

use super::Volume;
use super::dirty::DirtyBlock;

impl Volume {
    /// Makes the file durable through the intent log. `Ok(false)`: not the plain case (or no
    /// log); nothing was done and the caller takes the ordinary path.
    pub(super) fn fsync_through_log(&self, node: NodeId) -> Result<bool> {
        let store = &self.shared.store;
        let Some(log) = store.intent_log() else {
            return Ok(false);
        };
        let Some(state) = self.existing_state(node).filter(|s| s.is_file) else {
            return Ok(false);
        };
        let stack = self.stack();
        let Ok(layer) = stack.upper() else {
            return Ok(false);
        };
        let mut fd = state.data.lock().unwrap();
        if fd.inflight.is_some() || !store.meta().is_quiet() {
            return Ok(false);
        }
        if !fd.has_changes() {
            return Ok(true);
        }
        let record = {
            let r = store.meta().read();
            lookup::existing(&r, &stack.layers, node)?
        };
        let Content::File { size, root, .. } = record.content else {
            return Ok(false);
        };
        if (root, size) != (fd.base_root, fd.base_size) {
            return Ok(false);
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
                _ => return Ok(false),
            }
        }
        let mut entry = Record {
            seq: 0,
            run: 0,
            layer,
            node,
            base: Base { root, size },
            min_size: fd.log_min_size,
            size: fd.size,
            mtime: fd.mtime,
            ranges,
        };
        let logged = log.append(&mut entry)?;
        if logged {
            fd.logged = entry.seq;
            fd.log_since.clear();
            fd.log_min_size = fd.size;
        }
        Ok(logged)
    }
}
