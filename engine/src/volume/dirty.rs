//! Dirty blocks: what a view changed in a file's blocks and has not flushed yet.
//!
//! Two generations of them exist per file: the dirty blocks writes change now, and the ones a
//! flush took over (`InFlight`) and is storing, which reads still see until its commit. So a
//! flush holds a file's lock only to swap the generations, never across its I/O.
//!
//! A write that covers a whole block replaces it (`Data`). A write that covers part of a
//! stored block does not read it: the written ranges are kept as a `Patch` over the block, and
//! the stored bytes are merged in only when someone reads the block or the flush stores it —
//! where blocks are read together, in pack order. So random small writes cost a memory copy,
//! not a disk read each (`tessera bench mount`, fio randwrite).

use std::collections::BTreeMap;

use crate::ids::BlockId;

/// A block changed in memory and not yet flushed.
pub(crate) enum DirtyBlock {
    /// The block's whole new content, `block_size` long (bytes past the end of the file are
    /// zero).
    Data(Box<[u8]>),
    /// An existing block, by id (a punched hole is `BlockId::ZERO`).
    Id(BlockId),
    /// Written ranges over a stored block that was not read.
    Patch(Patch),
}

impl DirtyBlock {
    /// Whether the block holds bytes in memory (and counts against the dirty limit).
    pub fn holds_bytes(&self) -> bool {
        matches!(self, DirtyBlock::Data(_) | DirtyBlock::Patch(_))
    }

    /// A new dirty block starting from this one (a block of the generation in flight that a
    /// write changes again): bytes are copied, ids referenced.
    pub fn copy(&self) -> DirtyBlock {
        match self {
            DirtyBlock::Data(bytes) => DirtyBlock::Data(bytes.clone()),
            DirtyBlock::Id(id) => DirtyBlock::Id(*id),
            DirtyBlock::Patch(patch) => DirtyBlock::Patch(Patch {
                base: patch.base,
                bytes: patch.bytes.clone(),
                valid: patch.valid.clone(),
            }),
        }
    }
}

/// The dirty blocks a flush took over, with the file's size and truncation point at that
/// moment. Immutable; dropped when the flush committed them.
pub(crate) struct InFlight {
    pub blocks: BTreeMap<u64, DirtyBlock>,
    pub size: u64,
    /// The smallest size since the previous flush: stored blocks from there on are gone.
    pub min_size: u64,
    /// The modification time to record.
    pub mtime: Option<i64>,
}

/// Bytes written over part of a stored block.
pub(crate) struct Patch {
    /// The block underneath: the file's block at this index when it was patched, or `None`
    /// for the one its persisted block map holds there.
    pub base: Option<BlockId>,
    /// `block_size` bytes; only the `valid` ranges mean anything.
    pub bytes: Box<[u8]>,
    /// Written byte ranges `[start, end)` within the block, sorted and disjoint.
    pub valid: Vec<(usize, usize)>,
}

impl Patch {
    pub fn new(base: Option<BlockId>, block_size: usize) -> Patch {
        Patch {
            base,
            bytes: vec![0u8; block_size].into_boxed_slice(),
            valid: Vec::new(),
        }
    }

    /// Writes `data` at `at` within the block.
    pub fn write(&mut self, at: usize, data: &[u8]) {
        let end = at + data.len();
        self.bytes[at..end].copy_from_slice(data);
        let mut merged = Vec::with_capacity(self.valid.len() + 1);
        let (mut start, mut stop) = (at, end);
        for &(s, e) in &self.valid {
            if e < start || s > stop {
                merged.push((s, e));
            } else {
                start = start.min(s);
                stop = stop.max(e);
            }
        }
        merged.push((start, stop));
        merged.sort_unstable();
        self.valid = merged;
    }

    /// Whether the written ranges cover the whole block.
    pub fn is_complete(&self) -> bool {
        self.valid == [(0, self.bytes.len())]
    }

    /// Lays the written ranges over `block`, a full buffer holding the base's bytes.
    pub fn apply(&self, block: &mut [u8]) {
        for &(s, e) in &self.valid {
            block[s..e].copy_from_slice(&self.bytes[s..e]);
        }
    }

    /// The written bytes inside `[from, to)` of the block, as (offset in the block, bytes).
    pub fn window(&self, from: usize, to: usize) -> Vec<(usize, Vec<u8>)> {
        self.valid
            .iter()
            .filter_map(|&(s, e)| {
                let (s, e) = (s.max(from), e.min(to));
                (s < e).then(|| (s, self.bytes[s..e].to_vec()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_apply_over_the_base() {
        let mut p = Patch::new(None, 16);
        p.write(2, b"ab");
        p.write(8, b"cd");
        assert_eq!(p.valid, vec![(2, 4), (8, 10)]);
        p.write(3, b"XYZWV");
        assert_eq!(p.valid, vec![(2, 10)]);
        let mut block = [b'.'; 16];
        p.apply(&mut block);
        assert_eq!(&block, b"..aXYZWVcd......");
        assert_eq!(p.window(0, 4), vec![(2, b"aX".to_vec())]);
        assert!(!p.is_complete());
        p.write(0, &[1; 16]);
        assert!(p.is_complete());
    }
}
