//! `copy_file_range`: whole blocks at block-aligned offsets in both files are shared (the
//! destination references the source's block ids; no data moves); the rest is copied.

use super::dirty::DirtyBlock;
use super::file_data::Below;
use super::{Volume, now_ns};
use crate::error::{Error, Result};
use crate::ids::{BlockId, NodeId};
use crate::tree::block_map::block_count;

/// Bytes copied per step when blocks cannot be shared.
const CHUNK: u64 = 1 << 20;

impl Volume {
    /// Blocks this view's unflushed state references by id (shared by `copy_range`): they
    /// are stored already and must survive a gc that runs before the next flush.
    pub(crate) fn unflushed_block_refs(&self) -> Vec<BlockId> {
        let states: Vec<_> = self
            .shared
            .nodes
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        let mut out = Vec::new();
        for state in states {
            let fd = state.data.lock().unwrap();
            let in_flight = fd.inflight.iter().flat_map(|f| f.blocks.values());
            out.extend(fd.dirty.values().chain(in_flight).filter_map(|b| match b {
                DirtyBlock::Id(id) if !id.is_zero() => Some(*id),
                DirtyBlock::Patch(patch) => patch.base.filter(|id| !id.is_zero()),
                _ => None,
            }));
        }
        out
    }

    /// Copies `len` bytes from `src` at `src_offset` to `dst` at `dst_offset`; returns the
    /// bytes copied (fewer when the source ends first).
    pub fn copy_range(
        &self,
        src: NodeId,
        src_offset: u64,
        dst: NodeId,
        dst_offset: u64,
        len: u64,
    ) -> Result<u64> {
        let src_size = self.getattr(src)?.size;
        let len = len.min(src_size.saturating_sub(src_offset));
        if len == 0 {
            return Ok(0);
        }
        if src == dst && src_offset < dst_offset + len && dst_offset < src_offset + len {
            return Err(Error::InvalidInput(
                "overlapping copy within one file".into(),
            ));
        }
        let bs = self.block_size() as u64;
        let mut done = 0;
        if src_offset.is_multiple_of(bs) && dst_offset.is_multiple_of(bs) && len >= bs {
            done = self.share_blocks(src, src_offset, dst, dst_offset, len / bs)?;
        }
        while done < len {
            let step = (len - done).min(CHUNK);
            let data = self.read(src, src_offset + done, step as usize)?;
            if data.is_empty() {
                break;
            }
            self.write(dst, dst_offset + done, &data)?;
            done += data.len() as u64;
        }
        Ok(done)
    }

    /// Makes `count` blocks of `dst` from `dst_offset` reference the source's blocks. Stops at
    /// the first block the source holds only as unflushed bytes; returns the bytes shared.
    fn share_blocks(
        &self,
        src: NodeId,
        src_offset: u64,
        dst: NodeId,
        dst_offset: u64,
        count: u64,
    ) -> Result<u64> {
        let bs = self.block_size() as u64;
        let stack = self.stack();
        stack.upper()?;
        let first = src_offset / bs;
        let ids: Vec<BlockId> = {
            let state = self.state(&stack, src)?;
            let fd = state.data.lock().unwrap();
            let base_end = (first + count).min(block_count(fd.base_size, bs));
            let base = if first < base_end {
                self.base_ids(&fd, first, base_end - first)?
            } else {
                Vec::new()
            };
            let mut ids = Vec::new();
            for index in first..first + count {
                let id = match self.layered(&fd, index) {
                    // Unflushed bytes have no id to share.
                    Some(DirtyBlock::Data(_)) | Some(DirtyBlock::Patch(_)) => break,
                    Some(DirtyBlock::Id(id)) => *id,
                    None => match self.below(&fd, index) {
                        Below::Base => base[(index - first) as usize],
                        _ => BlockId::ZERO,
                    },
                };
                ids.push(id);
            }
            ids
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let state = self.state(&stack, dst)?;
        if !state.is_file {
            return Err(Error::InvalidInput(format!(
                "node {dst} is not a regular file"
            )));
        }
        let mut fd = state.data.lock().unwrap();
        self.ensure_copied_up(&stack, dst, &mut fd)?;
        let end = dst_offset + ids.len() as u64 * bs;
        if end > fd.size {
            self.resize(&mut fd, end)?;
        }
        let dst_first = dst_offset / bs;
        for (i, id) in ids.iter().enumerate() {
            let index = dst_first + i as u64;
            self.forget_block(&mut fd, index);
            fd.dirty.insert(index, DirtyBlock::Id(*id));
            fd.changed(index);
        }
        fd.mtime = Some(now_ns());
        Ok(ids.len() as u64 * bs)
    }
}
