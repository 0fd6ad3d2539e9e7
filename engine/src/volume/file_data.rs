//! File contents in a view: reads, writes, truncation, hole punching and SEEK_DATA/SEEK_HOLE,
//! over a node's persisted block map plus its dirty blocks.
//!
//! A write copies up the node's record (metadata only) and then changes blocks in memory: a
//! fully written block is replaced, a partly written one is patched without being read
//! (`dirty.rs`). Dirty blocks are hashed and stored by the next flush (`flush.rs`), which
//! rewrites only the block-map pages on their paths. Content is canonical: the last block is
//! stored at the file's length, so equal contents give equal roots.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::dirty::{DirtyBlock, Patch};
use super::{Attr, Fallocate, SeekTarget, Volume, now_ns};
use crate::error::{Error, Result};
use crate::ids::{BlockId, MapRoot, NodeId};
use crate::layer::{Stack, lookup};
use crate::meta::records::Records;
use crate::store::BlockRead;
use crate::tree::block_map::{self, block_count};
use crate::tree::node::{Content, FileKind, NodeRecord, TimeNs};
use crate::tree::pages::MetaPages;

/// The largest file the engine accepts (16 TiB), so offsets never overflow.
pub const MAX_FILE_SIZE: u64 = 1 << 44;

/// A regular file's contents as this view sees them.
pub(crate) struct FileData {
    /// The persisted block map the dirty blocks apply to.
    pub base_size: u64,
    pub base_root: MapRoot,
    /// The smallest size since the last flush: base blocks from there on read as zeros.
    pub min_size: u64,
    pub size: u64,
    pub dirty: BTreeMap<u64, DirtyBlock>,
    /// Modification time of unflushed writes (also the ctime).
    pub mtime: Option<TimeNs>,
    /// Whether the writable layer holds the node's record.
    pub copied_up: bool,
}

impl FileData {
    pub fn is_clean(&self) -> bool {
        self.dirty.is_empty()
            && self.size == self.base_size
            && self.min_size == self.base_size
            && self.mtime.is_none()
    }
}

/// What a view keeps of a node it is using: open handles, and a file's unflushed data.
pub(crate) struct NodeState {
    pub data: Mutex<FileData>,
    pub open: AtomicU32,
    pub is_file: bool,
}

impl NodeState {
    pub fn from_record(record: &NodeRecord) -> NodeState {
        let (size, root) = match &record.content {
            Content::File { size, root, .. } => (*size, *root),
            _ => (0, MapRoot::ZERO),
        };
        NodeState {
            data: Mutex::new(FileData {
                base_size: size,
                base_root: root,
                min_size: size,
                size,
                dirty: BTreeMap::new(),
                mtime: None,
                copied_up: false,
            }),
            open: AtomicU32::new(0),
            is_file: record.kind == FileKind::File,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst) > 0
    }

    /// Applies unflushed size and times to attributes read from the record.
    pub fn apply_times(&self, attr: &mut Attr) -> Option<std::sync::MutexGuard<'_, FileData>> {
        if !self.is_file {
            return None;
        }
        let fd = self.data.lock().unwrap();
        attr.size = fd.size;
        if let Some(t) = fd.mtime {
            attr.mtime = t;
            attr.ctime = t;
        }
        Some(fd)
    }
}

/// A read's buffer with the dirty bytes in place, the blocks still to read into it, and the
/// patched bytes to lay over those (offset in the buffer, bytes).
type ReadPlan = (Vec<u8>, Vec<Fetch>, Vec<(usize, Vec<u8>)>);

/// Where one block of a read comes from.
struct Fetch {
    index: u64,
    id: BlockId,
}

impl Volume {
    pub(crate) fn existing_state(&self, node: NodeId) -> Option<Arc<NodeState>> {
        self.shared.nodes.lock().unwrap().get(&node).cloned()
    }

    /// The node's state, created from its newest record when the view has none yet.
    pub(crate) fn state(&self, stack: &Stack, node: NodeId) -> Result<Arc<NodeState>> {
        loop {
            if let Some(state) = self.existing_state(node) {
                return Ok(state);
            }
            // A state evicted between reading the record and inserting would make this one
            // stale: retry when any eviction happened meanwhile.
            let generation = self.shared.evictions.load(Ordering::SeqCst);
            let record = self.record(stack, node)?;
            let state = Arc::new(NodeState::from_record(&record));
            let mut nodes = self.shared.nodes.lock().unwrap();
            if self.shared.evictions.load(Ordering::SeqCst) == generation {
                return Ok(nodes.entry(node).or_insert(state).clone());
            }
        }
    }

    /// Non-zero blocks a file with unflushed changes references: the base's, less those the
    /// dirty blocks replace or a truncation dropped, plus the dirty ones (new bytes count as
    /// non-zero until a flush hashes them).
    pub(crate) fn referenced_blocks(&self, fd: &FileData, base_stored: u64) -> Result<u64> {
        let bs = self.block_bytes();
        let base_n = block_count(fd.base_size, bs);
        let kept = block_count(fd.base_size.min(fd.min_size), bs).min(block_count(fd.size, bs));
        let store = &self.shared.store;
        let r = store.meta().read();
        let pages = MetaPages {
            meta: &r,
            cache: store.pages(),
        };
        let dropped = if kept < base_n {
            block_map::count_nonzero(&pages, fd.base_root, base_n, kept, base_n)?
        } else {
            0
        };
        let mut count = base_stored.saturating_sub(dropped);
        let shadowed: Vec<u64> = fd.dirty.range(..kept).map(|(i, _)| *i).collect();
        if let (Some(&lo), Some(&hi)) = (shadowed.first(), shadowed.last()) {
            let ids = block_map::block_ids(&pages, fd.base_root, base_n, lo, hi - lo + 1)?;
            let replaced = shadowed
                .iter()
                .filter(|i| !ids[(**i - lo) as usize].is_zero())
                .count() as u64;
            count = count.saturating_sub(replaced);
        }
        let n = block_count(fd.size, bs);
        count += fd
            .dirty
            .range(..n)
            .filter(|(_, b)| match b {
                DirtyBlock::Data(_) | DirtyBlock::Patch(_) => true,
                DirtyBlock::Id(id) => !id.is_zero(),
            })
            .count() as u64;
        Ok(count)
    }

    /// A regular file's state, locked.
    fn file_state(&self, stack: &Stack, node: NodeId) -> Result<Arc<NodeState>> {
        let state = self.state(stack, node)?;
        if !state.is_file {
            let record = self.record(stack, node)?;
            return Err(match record.kind {
                FileKind::Dir => Error::IsDir(format!("node {node}")),
                _ => Error::InvalidInput(format!("node {node} is not a regular file")),
            });
        }
        Ok(state)
    }

    fn block_bytes(&self) -> u64 {
        self.block_size() as u64
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub fn read(&self, node: NodeId, offset: u64, len: usize) -> Result<Vec<u8>> {
        let _blocks_stay = self.shared.store.block_read_guard();
        let stack = self.stack();
        let (mut out, fetch, overlays) = match self.existing_state(node) {
            Some(state) if state.is_file => {
                let fd = state.data.lock().unwrap();
                self.plan_read(&fd, offset, len)?
            }
            _ => {
                let record = self.record(&stack, node)?;
                let Content::File { size, root, .. } = record.content else {
                    return Err(match record.kind {
                        FileKind::Dir => Error::IsDir(format!("node {node}")),
                        _ => Error::InvalidInput(format!("node {node} is not a regular file")),
                    });
                };
                let base = FileData {
                    base_size: size,
                    base_root: root,
                    min_size: size,
                    size,
                    dirty: BTreeMap::new(),
                    mtime: None,
                    copied_up: false,
                };
                self.plan_read(&base, offset, len)?
            }
        };
        drop(stack);
        self.fetch(offset, &mut out, fetch)?;
        for (at, bytes) in overlays {
            out[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        Ok(out)
    }

    /// Reads the planned blocks into their places in `out` (which starts at file `offset`),
    /// adjacent blocks of one pack in one read.
    fn fetch(&self, offset: u64, out: &mut [u8], mut fetch: Vec<Fetch>) -> Result<()> {
        let bs = self.block_bytes();
        fetch.retain(|f| !f.id.is_zero());
        fetch.sort_by_key(|f| f.index);
        let end = offset + out.len() as u64;
        let mut reads = Vec::with_capacity(fetch.len());
        let mut rest: &mut [u8] = out;
        let mut rest_at = offset;
        for Fetch { index, id } in fetch {
            let block_start = index * bs;
            let (s, e) = (offset.max(block_start), end.min(block_start + bs));
            let (_, tail) = std::mem::take(&mut rest).split_at_mut((s - rest_at) as usize);
            let (dst, tail) = tail.split_at_mut((e - s) as usize);
            rest = tail;
            rest_at = e;
            reads.push(BlockRead {
                id,
                dst,
                skip: (s - block_start) as usize,
            });
        }
        let cached = self.shared.cache_reads.load(Ordering::Relaxed);
        self.shared.store.blocks().read_blocks(&mut reads, cached)
    }

    /// Copies dirty bytes of the range into a new buffer and lists the blocks still to read,
    /// and the patched bytes to lay over them once read (offset in the buffer, bytes).
    fn plan_read(&self, fd: &FileData, offset: u64, len: usize) -> Result<ReadPlan> {
        let bs = self.block_bytes();
        let end = offset.saturating_add(len as u64).min(fd.size);
        if offset >= end {
            return Ok((Vec::new(), Vec::new(), Vec::new()));
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let (first, last) = (offset / bs, (end - 1) / bs);
        let readable = block_count(fd.base_size.min(fd.min_size), bs);
        let mut fetch = Vec::new();
        let mut from_base = Vec::new();
        let mut overlays = Vec::new();
        for index in first..=last {
            let block_start = index * bs;
            let (s, e) = (offset.max(block_start), end.min(block_start + bs));
            let (in_block, in_out) = ((s - block_start) as usize, (s - offset) as usize);
            match fd.dirty.get(&index) {
                Some(DirtyBlock::Data(buf)) => {
                    out[in_out..in_out + (e - s) as usize]
                        .copy_from_slice(&buf[in_block..(e - block_start) as usize]);
                }
                Some(DirtyBlock::Id(id)) => fetch.push(Fetch { index, id: *id }),
                Some(DirtyBlock::Patch(patch)) => {
                    for (at, bytes) in patch.window(in_block, (e - block_start) as usize) {
                        overlays.push((in_out + at - in_block, bytes));
                    }
                    match patch.base {
                        Some(id) => fetch.push(Fetch { index, id }),
                        None if index < readable => from_base.push(index),
                        None => {}
                    }
                }
                None if index < readable => from_base.push(index),
                None => {}
            }
        }
        if let (Some(&lo), Some(&hi)) = (from_base.first(), from_base.last()) {
            let ids = self.base_ids(fd, lo, hi - lo + 1)?;
            for index in from_base {
                fetch.push(Fetch {
                    index,
                    id: ids[(index - lo) as usize],
                });
            }
        }
        Ok((out, fetch, overlays))
    }

    pub(super) fn base_ids(&self, fd: &FileData, first: u64, count: u64) -> Result<Vec<BlockId>> {
        let store = &self.shared.store;
        let r = store.meta().read();
        let pages = MetaPages {
            meta: &r,
            cache: store.pages(),
        };
        let n = block_count(fd.base_size, self.block_bytes());
        block_map::block_ids(&pages, fd.base_root, n, first, count)
    }

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
        // Taken before the node's lock (see `write_block`), after `make_room`: a flush
        // must never wait behind gc while holding it.
        let _blocks_stay = self.shared.store.block_read_guard();
        let stack = self.stack();
        stack.upper()?;
        let state = self.file_state(&stack, node)?;
        let mut fd = state.data.lock().unwrap();
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
    /// written in part is patched, its stored bytes not read (see `dirty.rs`). The caller holds
    /// the store's block-read guard, taken before the node's lock: taken after it, a reader
    /// holding the guard and waiting for the node, and gc waiting for the guard exclusively,
    /// would deadlock with this writer.
    fn write_block(&self, fd: &mut FileData, index: u64, at: usize, bytes: &[u8]) -> Result<()> {
        let bs = self.block_bytes() as usize;
        if at == 0 && bytes.len() == bs {
            let fresh = !fd.dirty.get(&index).is_some_and(DirtyBlock::holds_bytes);
            fd.dirty.insert(index, DirtyBlock::Data(bytes.to_vec().into_boxed_slice()));
            if fresh {
                self.shared.store.inner.dirty.add(bs as u64);
            }
            return Ok(());
        }
        let readable = block_count(fd.base_size.min(fd.min_size), bs as u64);
        let underneath = match fd.dirty.get(&index) {
            Some(DirtyBlock::Data(_)) | Some(DirtyBlock::Patch(_)) => None,
            Some(DirtyBlock::Id(id)) if id.is_zero() => Some(None),
            Some(DirtyBlock::Id(id)) => Some(Some(Some(*id))),
            None if index < readable => Some(Some(None)),
            None => Some(None),
        };
        if let Some(base) = underneath {
            // Nothing in memory yet: zeros need no base; a stored block is patched over.
            self.shared.store.inner.dirty.add(bs as u64);
            let block = match base {
                None => DirtyBlock::Data(vec![0u8; bs].into_boxed_slice()),
                Some(base) => DirtyBlock::Patch(Patch::new(base, bs)),
            };
            fd.dirty.insert(index, block);
        }
        let complete = match fd.dirty.get_mut(&index) {
            Some(DirtyBlock::Data(buf)) => {
                buf[at..at + bytes.len()].copy_from_slice(bytes);
                false
            }
            Some(DirtyBlock::Patch(patch)) => {
                patch.write(at, bytes);
                patch.is_complete()
            }
            _ => unreachable!("block {index} was just made dirty"),
        };
        if complete {
            // Every byte written: the stored block is not needed any more.
            if let Some(DirtyBlock::Patch(patch)) = fd.dirty.remove(&index) {
                fd.dirty.insert(index, DirtyBlock::Data(patch.bytes));
            }
        }
        Ok(())
    }

    /// Marks a stored block dirty without changing it, so the next flush stores it again (at a
    /// new length: the file's old partial last block, when the file grows past it).
    fn touch_block(&self, fd: &mut FileData, index: u64) {
        let bs = self.block_bytes();
        let readable = block_count(fd.base_size.min(fd.min_size), bs);
        if index < readable && !fd.dirty.contains_key(&index) {
            self.shared.store.inner.dirty.add(bs);
            fd.dirty.insert(index, DirtyBlock::Patch(Patch::new(None, bs as usize)));
        }
    }

    /// Drops a dirty block, returning its budget.
    pub(super) fn forget_block(&self, fd: &mut FileData, index: u64) {
        if fd.dirty.remove(&index).is_some_and(|b| b.holds_bytes()) {
            self.shared.store.inner.dirty.release(self.block_bytes());
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
        let _blocks_stay = self.shared.store.block_read_guard();
        let state = self.file_state(stack, node)?;
        let mut fd = state.data.lock().unwrap();
        self.ensure_copied_up(stack, node, &mut fd)?;
        self.resize(&mut fd, size)?;
        fd.mtime = Some(now_ns());
        Ok(())
    }

    /// `fallocate`: extend, reserve, or punch a hole.
    pub fn fallocate(&self, node: NodeId, mode: Fallocate, offset: u64, len: u64) -> Result<()> {
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= MAX_FILE_SIZE)
            .ok_or_else(|| Error::TooLarge("fallocate past the largest file size".into()))?;
        let _blocks_stay = self.shared.store.block_read_guard();
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
            } else {
                let zeros = vec![0u8; (e - s) as usize];
                self.write_block(fd, index, (s - block_start) as usize, &zeros)?;
            }
        }
        Ok(())
    }

    /// `lseek` with SEEK_DATA or SEEK_HOLE. Zero blocks are holes; the end of the file is a
    /// hole. `NotFound` (ENXIO) when there is no such place at or after `offset`.
    pub fn seek(&self, node: NodeId, offset: u64, target: SeekTarget) -> Result<u64> {
        let stack = self.stack();
        let state = self.file_state(&stack, node)?;
        let fd = state.data.lock().unwrap();
        if offset >= fd.size {
            return Err(Error::NotFound(format!(
                "no data or hole past offset {offset}"
            )));
        }
        let bs = self.block_bytes();
        let n = block_count(fd.size, bs);
        let readable = block_count(fd.base_size.min(fd.min_size), bs);
        let base_n = block_count(fd.base_size, bs);
        let store = &self.shared.store;
        let r = store.meta().read();
        let pages = MetaPages {
            meta: &r,
            cache: store.pages(),
        };
        let want_zero = target == SeekTarget::Hole;
        let mut index = offset / bs;
        let found = loop {
            if index >= n {
                break None;
            }
            let is_zero = match fd.dirty.get(&index) {
                Some(DirtyBlock::Data(_)) | Some(DirtyBlock::Patch(_)) => Some(false),
                Some(DirtyBlock::Id(id)) => Some(id.is_zero()),
                // Past the readable base everything up to the next dirty block is a hole:
                // jump there rather than step block by block (a sparse 1 TiB file has 2^28).
                None if index >= readable && !want_zero => {
                    index = fd.dirty.range(index..).next().map_or(n, |(i, _)| *i);
                    continue;
                }
                None if index >= readable => Some(true),
                None => None,
            };
            if let Some(is_zero) = is_zero {
                if is_zero == want_zero {
                    break Some(index);
                }
                index += 1;
                continue;
            }
            // A clean stretch of the base: jump to the next matching base block, unless a
            // dirty block or the readable end comes first.
            let next_dirty = fd.dirty.range(index..).next().map(|(i, _)| *i).unwrap_or(n);
            let limit = next_dirty.min(readable);
            match block_map::find_block(&pages, fd.base_root, base_n, index, want_zero)? {
                Some(found) if found < limit => break Some(found),
                _ => index = limit,
            }
        };
        let position = match (found, target) {
            (Some(index), _) => (index * bs).max(offset),
            (None, SeekTarget::Hole) => fd.size,
            (None, SeekTarget::Data) => {
                return Err(Error::NotFound(format!("no data past offset {offset}")));
            }
        };
        Ok(position.min(fd.size))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Caller, SeekTarget, Store, StoreOptions};

    #[test]
    fn seek_data_jumps_over_an_unflushed_sparse_stretch() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::default()
            .block_size(4096)
            .flush_interval(None);
        let store = Store::init(dir.path().join("store"), options).unwrap();
        store.create_empty_image("empty").unwrap();
        store.create_container("c", "empty").unwrap();
        let v = store.open_container("c").unwrap();
        let node = v.create(v.root(), b"f", 0o644, Caller::ROOT).unwrap().node;
        v.write(node, 1 << 40, b"far").unwrap();
        // 2^28 blocks of hole before the data: stepping block by block took 16 s here.
        let started = std::time::Instant::now();
        assert_eq!(v.seek(node, 0, SeekTarget::Data).unwrap(), 1 << 40);
        assert_eq!(v.seek(node, 5, SeekTarget::Hole).unwrap(), 5);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}
