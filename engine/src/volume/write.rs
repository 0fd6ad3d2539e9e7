//! Writing a file of a view: copy-up of the record (metadata only), then block changes in
//! memory (whole blocks replaced, partial ones patched without reading, see `dirty.rs`),
//! truncation, extension, fallocate and hole punching. Every write is checked against the
//! dirty limit and the disk's free space first (`Store::make_room`).

use std::sync::MutexGuard;

use super::dirty::{DirtyBlock, Patch};
use super::file_data::{Below, FileData, MAX_FILE_SIZE};
use super::{Fallocate, Volume, now_ns};
use crate::error::{Error, Result};
use crate::ids::{BlockId, NodeId};
use crate::layer::{Stack, lookup};
use crate::meta::records::Records;

impl Volume {
    /// Writes `data` at `offset`; returns the bytes written (all of them).
    pub fn write(&self, node: NodeId, offset: u64, data: &[u8]) -> Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|end| *end <= MAX_FILE_SIZE)
            .ok_or_else(|| Error::TooLarge("write past the largest file size".into()))?;
        let bs = self.block_bytes();
        let touched = end.div_ceil(bs) - offset / bs;
        self.shared.store.make_room(touched * bs)?;
        let stack = self.stack();
        stack.upper()?;
        let state = self.file_state(&stack, node)?;
        let fd = state.data.lock().unwrap();
        let mut fd = self.charge_write(&state, fd, offset, data)?;
        self.ensure_copied_up(&stack, node, &mut fd)?;
        if end > fd.size {
            self.resize(&mut fd, end)?;
        }
        for index in offset / bs..end.div_ceil(bs) {
            let block_start = index * bs;
            let (s, e) = (offset.max(block_start), end.min(block_start + bs));
            let bytes = &data[(s - offset) as usize..(e - offset) as usize];
            self.write_block(&mut fd, index, (s - block_start) as usize, bytes)?;
        }
        fd.mtime = Some(now_ns());
        Ok(data.len())
    }

    /// Copies the node's record into the writable layer once (metadata only).
    pub(crate) fn ensure_copied_up(
        &self,
        stack: &Stack,
        node: NodeId,
        fd: &mut MutexGuard<'_, FileData>,
    ) -> Result<()> {
        if fd.copied_up {
            return Ok(());
        }
        let upper = stack.upper()?;
        self.shared.store.meta().write(|w| {
            if w.node(upper, node)?.is_none() {
                let record = lookup::existing(w, &stack.layers, node)?;
                w.put_node(upper, node, &record);
            }
            Ok(())
        })?;
        fd.copied_up = true;
        Ok(())
    }

    /// Writes `bytes` at `at` within block `index`. A block written whole is replaced; one
    /// written in part is patched, its stored bytes not read (see `dirty.rs`).
    fn write_block(&self, fd: &mut FileData, index: u64, at: usize, bytes: &[u8]) -> Result<()> {
        let bs = self.block_bytes();
        fd.changed_bytes(index, at as u32..(at + bytes.len()) as u32);
        let before = fd.dirty.get(&index).map_or(0, |b| b.charge(bs));
        if at == 0 && bytes.len() as u64 == bs {
            fd.dirty
                .insert(index, DirtyBlock::Data(bytes.to_vec().into_boxed_slice()));
        } else {
            if !matches!(
                fd.dirty.get(&index),
                Some(DirtyBlock::Data(_)) | Some(DirtyBlock::Patch(_))
            ) {
                let block = self.start_dirty(fd, index);
                fd.dirty.insert(index, block);
            }
            let complete = match fd.dirty.get_mut(&index) {
                Some(DirtyBlock::Data(buf)) => {
                    buf[at..at + bytes.len()].copy_from_slice(bytes);
                    None
                }
                // Every byte written: the block underneath is not needed any more.
                Some(DirtyBlock::Patch(patch)) => {
                    patch.write(at, bytes);
                    patch.complete()
                }
                _ => unreachable!("block {index} was just made dirty"),
            };
            if let Some(whole) = complete {
                fd.dirty.insert(index, DirtyBlock::Data(whole));
            }
        }
        let after = fd.dirty.get(&index).map_or(0, |b| b.charge(bs));
        self.recharge(before, after);
        Ok(())
    }

    /// Moves the dirty budget from what a block held to what it holds.
    fn recharge(&self, before: u64, after: u64) {
        let budget = &self.shared.store.inner.dirty;
        if after > before {
            budget.add(after - before);
        } else {
            budget.release(before - after);
        }
    }

    /// A dirty block holding bytes, to write into, for `index` as the file holds it now: a
    /// copy of the block in flight, zeros where the file reads zeros, a patch over a stored
    /// block (never read here). A patch without a base id always lies over the base.
    fn start_dirty(&self, fd: &FileData, index: u64) -> DirtyBlock {
        let bs = self.block_bytes() as usize;
        let zeros = || DirtyBlock::Data(vec![0u8; bs].into_boxed_slice());
        let current = match fd.dirty.get(&index) {
            Some(block) => Some(block),
            None => match self.below(fd, index) {
                Below::InFlight(block) => Some(block),
                Below::Base => return DirtyBlock::Patch(Patch::new(None, bs)),
                Below::Zero => None,
            },
        };
        match current {
            None => zeros(),
            Some(DirtyBlock::Id(id)) if id.is_zero() => zeros(),
            Some(DirtyBlock::Id(id)) => DirtyBlock::Patch(Patch::new(Some(*id), bs)),
            Some(block) => block.copy(),
        }
    }

    /// Marks the block at `index` dirty without changing it, so the next flush stores it again
    /// (at a new length: the file's old partial last block, when the file grows past it).
    fn touch_block(&self, fd: &mut FileData, index: u64) {
        if fd.dirty.contains_key(&index) || matches!(self.below(fd, index), Below::Zero) {
            return;
        }
        let block = self.start_dirty(fd, index);
        self.recharge(0, block.charge(self.block_bytes()));
        fd.dirty.insert(index, block);
        fd.changed(index);
    }

    /// Drops a dirty block, returning its budget.
    pub(super) fn forget_block(&self, fd: &mut FileData, index: u64) {
        if let Some(block) = fd.dirty.remove(&index) {
            self.recharge(block.charge(self.block_bytes()), 0);
        }
    }

    /// Changes the size, keeping content canonical: the old partial last block is stored again
    /// (longer) when the file grows past it; the new partial last block gets its tail zeroed
    /// when it shrinks.
    pub(super) fn resize(&self, fd: &mut FileData, new_size: u64) -> Result<()> {
        let bs = self.block_bytes();
        if new_size > fd.size {
            if !fd.size.is_multiple_of(bs) {
                self.touch_block(fd, fd.size / bs);
            }
        } else if new_size < fd.size {
            let keep = new_size.div_ceil(bs);
            let dropped: Vec<u64> = fd.dirty.range(keep..).map(|(i, _)| *i).collect();
            for index in dropped {
                self.forget_block(fd, index);
            }
            if !new_size.is_multiple_of(bs) {
                let cut = (new_size % bs) as usize;
                let zeros = vec![0u8; bs as usize - cut];
                self.write_block(fd, new_size / bs, cut, &zeros)?;
            }
            fd.min_size = fd.min_size.min(new_size);
            fd.log_min_size = fd.log_min_size.min(new_size);
        }
        fd.size = new_size;
        Ok(())
    }

    /// Sets a regular file's size (truncate or extend with zeros).
    pub(crate) fn truncate(&self, stack: &Stack, node: NodeId, size: u64) -> Result<()> {
        if size > MAX_FILE_SIZE {
            return Err(Error::TooLarge(format!(
                "size {size} exceeds the largest file size"
            )));
        }
        stack.upper()?;
        let state = self.file_state(stack, node)?;
        let mut fd = state.data.lock().unwrap();
        self.ensure_copied_up(stack, node, &mut fd)?;
        self.resize(&mut fd, size)?;
        fd.mtime = Some(now_ns());
        Ok(())
    }

    /// `fallocate`: extend, reserve, or punch a hole.
    pub fn fallocate(&self, node: NodeId, mode: Fallocate, offset: u64, len: u64) -> Result<()> {
        self.shared.limit.note_freed();
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= MAX_FILE_SIZE)
            .ok_or_else(|| Error::TooLarge("fallocate past the largest file size".into()))?;
        let stack = self.stack();
        stack.upper()?;
        let state = self.file_state(&stack, node)?;
        let mut fd = state.data.lock().unwrap();
        match mode {
            // Content-addressed blocks cannot be reserved ahead; extending is what is visible.
            Fallocate::KeepSize => Ok(()),
            Fallocate::Allocate => {
                if end > fd.size {
                    self.ensure_copied_up(&stack, node, &mut fd)?;
                    self.resize(&mut fd, end)?;
                    fd.mtime = Some(now_ns());
                }
                Ok(())
            }
            Fallocate::PunchHole => {
                self.ensure_copied_up(&stack, node, &mut fd)?;
                let end = end.min(fd.size);
                self.punch(&mut fd, offset, end)?;
                fd.mtime = Some(now_ns());
                Ok(())
            }
            Fallocate::ZeroRange { keep_size } => {
                self.ensure_copied_up(&stack, node, &mut fd)?;
                let inside = end.min(fd.size);
                self.punch(&mut fd, offset, inside)?;
                if !keep_size && end > fd.size {
                    self.resize(&mut fd, end)?;
                }
                fd.mtime = Some(now_ns());
                Ok(())
            }
        }
    }

    fn punch(&self, fd: &mut FileData, start: u64, end: u64) -> Result<()> {
        let bs = self.block_bytes();
        if start >= end {
            return Ok(());
        }
        for index in start / bs..end.div_ceil(bs) {
            let block_start = index * bs;
            let block_end = (block_start + bs).min(fd.size);
            let (s, e) = (start.max(block_start), end.min(block_end));
            if s == block_start && e == block_end {
                self.forget_block(fd, index);
                fd.dirty.insert(index, DirtyBlock::Id(BlockId::ZERO));
                fd.changed(index);
            } else {
                let zeros = vec![0u8; (e - s) as usize];
                self.write_block(fd, index, (s - block_start) as usize, &zeros)?;
            }
        }
        Ok(())
    }
}
