//! A regular file's contents as a view sees them: the persisted block map (the base), the
//! dirty blocks a flush took over and is storing (in flight), and the dirty blocks writes
//! change now — read top down (`Volume::layered`). Reads live in `read.rs`, writes and size
//! changes in `write.rs`, flushing in `flush.rs`. Content is canonical: the last block is
//! stored at the file's length, so equal contents give equal roots.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::dirty::{DirtyBlock, InFlight};
use super::{Attr, Volume};
use crate::error::{Error, Result};
use crate::ids::{BlockId, MapRoot, NodeId};
use crate::layer::Stack;
use crate::tree::block_map::{self, block_count};
use crate::tree::node::{Content, FileKind, NodeRecord, TimeNs};
use crate::tree::pages::MetaPages;

/// The largest file the engine accepts (16 TiB), so offsets never overflow.
pub const MAX_FILE_SIZE: u64 = 1 << 44;

/// A regular file's contents as this view sees them.
pub(crate) struct FileData {
    /// The persisted block map everything else applies to.
    pub base_size: u64,
    pub base_root: MapRoot,
    /// Dirty blocks a flush is storing, readable until it commits.
    pub inflight: Option<Arc<InFlight>>,
    /// The smallest size since the generation of `dirty` began (the last flush's start, or
    /// the base): blocks from there on below `dirty` are gone.
    pub min_size: u64,
    pub size: u64,
    pub dirty: BTreeMap<u64, DirtyBlock>,
    /// Modification time of unflushed writes (also the ctime).
    pub mtime: Option<TimeNs>,
    /// Whether the writable layer holds the node's record.
    pub copied_up: bool,
    /// The seq of the newest intent-log record of the file (0: none).
    pub logged: u64,
    /// Blocks changed since the newest record (or since the last flush took the dirty
    /// generation over), each with the byte range within it that changed: what the next
    /// record must carry.
    pub log_since: BTreeMap<u64, Range<u32>>,
    /// The smallest size since then.
    pub log_min_size: u64,
}

impl FileData {
    pub(super) fn at(size: u64, root: MapRoot) -> FileData {
        FileData {
            base_size: size,
            base_root: root,
            inflight: None,
            min_size: size,
            size,
            dirty: BTreeMap::new(),
            mtime: None,
            copied_up: false,
            logged: 0,
            log_since: BTreeMap::new(),
            log_min_size: size,
        }
    }

    /// Nothing to flush (and nothing being flushed).
    pub fn is_clean(&self) -> bool {
        self.inflight.is_none() && !self.has_changes()
    }

    /// Notes a change of all of block `index` for the next intent-log record.
    pub fn changed(&mut self, index: u64) {
        self.log_since.insert(index, 0..u32::MAX);
    }

    /// Notes a write of bytes `range` of block `index` for the next intent-log record: the
    /// record carries the span of what was written since the one before (the bytes around it
    /// are the committed ones, or were in an earlier record).
    pub fn changed_bytes(&mut self, index: u64, range: Range<u32>) {
        let span = self.log_since.entry(index).or_insert(range.clone());
        *span = span.start.min(range.start)..span.end.max(range.end);
    }

    /// Changes a flush would take over.
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
            || self.size != self.generation_size()
            || self.min_size != self.generation_size()
            || self.mtime.is_some()
    }

    /// The size the current generation of dirty blocks started from.
    fn generation_size(&self) -> u64 {
        self.inflight.as_ref().map_or(self.base_size, |f| f.size)
    }
}

/// What lies under the dirty blocks at one index.
pub(crate) enum Below<'a> {
    /// A block of the generation in flight.
    InFlight(&'a DirtyBlock),
    /// The base block map's block there.
    Base,
    /// Zeros: past a truncation or past the base.
    Zero,
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
            data: Mutex::new(FileData::at(size, root)),
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
        let pending = fd.mtime.or(fd.inflight.as_ref().and_then(|f| f.mtime));
        if let Some(t) = pending {
            attr.mtime = t;
            attr.ctime = t;
        }
        Some(fd)
    }
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

    pub(super) fn block_bytes(&self) -> u64 {
        self.block_size() as u64
    }

    /// What lies under the dirty blocks at `index`: the generation in flight, the base, or
    /// zeros where a truncation (of either generation) or the base's end cut the file.
    pub(crate) fn below<'a>(&self, fd: &'a FileData, index: u64) -> Below<'a> {
        let bs = self.block_bytes();
        if index >= block_count(fd.min_size, bs) {
            return Below::Zero;
        }
        let mut base_end = fd.base_size;
        if let Some(flight) = &fd.inflight {
            if let Some(block) = flight.blocks.get(&index) {
                return Below::InFlight(block);
            }
            base_end = base_end.min(flight.min_size);
        }
        if index < block_count(base_end, bs) {
            Below::Base
        } else {
            Below::Zero
        }
    }

    /// The block at `index` as the file holds it now, above the base: the dirty one, else the
    /// one in flight (`None`: the base's, or zeros — see [`Volume::below`]).
    pub(crate) fn layered<'a>(&self, fd: &'a FileData, index: u64) -> Option<&'a DirtyBlock> {
        match fd.dirty.get(&index) {
            Some(block) => Some(block),
            None => match self.below(fd, index) {
                Below::InFlight(block) => Some(block),
                _ => None,
            },
        }
    }

    /// Non-zero blocks a file with unflushed changes references: the base's that are still
    /// visible, plus the blocks above it (new bytes count as non-zero until a flush hashes
    /// them).
    pub(crate) fn referenced_blocks(&self, fd: &FileData, base_stored: u64) -> Result<u64> {
        let bs = self.block_bytes();
        let base_n = block_count(fd.base_size, bs);
        let n = block_count(fd.size, bs);
        let mut kept = block_count(fd.base_size.min(fd.min_size), bs).min(n);
        if let Some(flight) = &fd.inflight {
            kept = kept.min(block_count(flight.min_size, bs));
        }
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
        // Indices where something above the base decides the block.
        let mut above: BTreeMap<u64, bool> = BTreeMap::new();
        for index in fd
            .inflight
            .iter()
            .flat_map(|f| f.blocks.keys())
            .chain(fd.dirty.keys())
        {
            if *index < n
                && let Some(block) = self.layered(fd, *index)
            {
                let nonzero = match block {
                    DirtyBlock::Data(_) | DirtyBlock::Patch(_) => true,
                    DirtyBlock::Id(id) => !id.is_zero(),
                };
                above.insert(*index, nonzero);
            }
        }
        let shadowed: Vec<u64> = above.range(..kept).map(|(i, _)| *i).collect();
        if let (Some(&lo), Some(&hi)) = (shadowed.first(), shadowed.last()) {
            let ids = block_map::block_ids(&pages, fd.base_root, base_n, lo, hi - lo + 1)?;
            let replaced = shadowed
                .iter()
                .filter(|i| !ids[(**i - lo) as usize].is_zero())
                .count() as u64;
            count = count.saturating_sub(replaced);
        }
        count += above.values().filter(|nonzero| **nonzero).count() as u64;
        Ok(count)
    }

    /// A regular file's state, locked.
    pub(super) fn file_state(&self, stack: &Stack, node: NodeId) -> Result<Arc<NodeState>> {
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

    /// Ids of the base's blocks `[first, first + count)`.
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
}
