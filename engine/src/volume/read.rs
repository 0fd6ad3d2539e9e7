//! Reading a file of a view: the dirty bytes are copied under the file's lock, then the blocks
//! still needed (in flight by id, or the base's) are read without it, adjacent blocks of one
//! pack in one read, and patched bytes are laid over them. Also SEEK_DATA / SEEK_HOLE.

use std::sync::atomic::Ordering;

use super::Volume;
use super::dirty::DirtyBlock;
use super::file_data::{Below, FileData};
use crate::error::{Error, Result};
use crate::ids::{BlockId, NodeId};
use crate::store::BlockRead;
use crate::tree::block_map::{self, block_count};
use crate::tree::node::{Content, FileKind};
use crate::tree::pages::MetaPages;
use crate::volume::SeekTarget;

/// A read's buffer with the dirty bytes in place, the blocks still to read into it, and the
/// patched bytes to lay over those (offset in the buffer, bytes).
type ReadPlan = (Vec<u8>, Vec<Fetch>, Vec<(usize, Vec<u8>)>);

/// Where one block of a read comes from.
struct Fetch {
    index: u64,
    id: BlockId,
}

impl Volume {
    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub fn read(&self, node: NodeId, offset: u64, len: usize) -> Result<Vec<u8>> {
        let stack = self.stack();
        let store = &self.shared.store;
        // From here until the blocks are read, reclamation keeps what the plan names.
        let reading;
        let ((mut out, fetch, overlays), size) = match self.existing_state(node) {
            Some(state) if state.is_file => {
                let fd = state.data.lock().unwrap();
                reading = store.read_guard();
                (self.plan_read(&fd, offset, len)?, fd.size)
            }
            _ => {
                reading = store.read_guard();
                let record = self.record(&stack, node)?;
                let Content::File { size, root, .. } = record.content else {
                    return Err(match record.kind {
                        FileKind::Dir => Error::IsDir(format!("node {node}")),
                        _ => Error::InvalidInput(format!("node {node} is not a regular file")),
                    });
                };
                (
                    self.plan_read(&FileData::at(size, root), offset, len)?,
                    size,
                )
            }
        };
        drop(stack);
        // The file's blocks after this read: a store fetching ahead goes no further.
        let bs = self.block_bytes();
        let following = size
            .div_ceil(bs)
            .saturating_sub((offset + out.len() as u64).div_ceil(bs));
        self.fetch(offset, &mut out, fetch, following)?;
        drop(reading);
        for (at, bytes) in overlays {
            out[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        Ok(out)
    }

    /// Reads the planned blocks into their places in `out` (which starts at file `offset`),
    /// adjacent blocks of one pack in one read; `following` blocks of the file come after.
    fn fetch(
        &self,
        offset: u64,
        out: &mut [u8],
        mut fetch: Vec<Fetch>,
        following: u64,
    ) -> Result<()> {
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
        let blocks = self.shared.store.blocks();
        blocks.read_file_blocks(&mut reads, cached, following)
    }

    /// Copies the bytes held in memory for the range into a new buffer and lists the blocks
    /// still to read, and the patched bytes to lay over them once read.
    fn plan_read(&self, fd: &FileData, offset: u64, len: usize) -> Result<ReadPlan> {
        let bs = self.block_bytes();
        let end = offset.saturating_add(len as u64).min(fd.size);
        if offset >= end {
            return Ok((Vec::new(), Vec::new(), Vec::new()));
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let (first, last) = (offset / bs, (end - 1) / bs);
        let mut fetch = Vec::new();
        let mut from_base = Vec::new();
        let mut overlays = Vec::new();
        for index in first..=last {
            let block_start = index * bs;
            let (s, e) = (offset.max(block_start), end.min(block_start + bs));
            let (in_block, in_out) = ((s - block_start) as usize, (s - offset) as usize);
            let Some(block) = self.layered(fd, index) else {
                if let Below::Base = self.below(fd, index) {
                    from_base.push(index);
                }
                continue;
            };
            match block {
                DirtyBlock::Data(buf) => {
                    out[in_out..in_out + (e - s) as usize]
                        .copy_from_slice(&buf[in_block..(e - block_start) as usize]);
                }
                DirtyBlock::Id(id) => fetch.push(Fetch { index, id: *id }),
                DirtyBlock::Patch(patch) => {
                    for (at, bytes) in patch.window(in_block, (e - block_start) as usize) {
                        overlays.push((in_out + at - in_block, bytes));
                    }
                    // A patch without a base id lies over the base (see `write_block`).
                    match patch.base {
                        Some(id) => fetch.push(Fetch { index, id }),
                        None => from_base.push(index),
                    }
                }
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
        let base_n = block_count(fd.base_size, bs);
        let store = &self.shared.store;
        let r = store.meta().read();
        let pages = MetaPages {
            meta: &r,
            cache: store.pages(),
        };
        let want_zero = target == SeekTarget::Hole;
        // The base is readable below this index (a truncation of either generation cuts it).
        let mut base_end = fd.base_size.min(fd.min_size);
        if let Some(flight) = &fd.inflight {
            base_end = base_end.min(flight.min_size);
        }
        let base_end = block_count(base_end, bs);
        // Indices where something above the base decides, in order.
        let mut above: Vec<u64> = fd
            .dirty
            .keys()
            .chain(fd.inflight.iter().flat_map(|f| f.blocks.keys()))
            .copied()
            .collect();
        above.sort_unstable();
        above.dedup();
        let next_above = |from: u64| {
            let i = above.partition_point(|x| *x < from);
            above.get(i).copied().unwrap_or(n)
        };
        let mut index = offset / bs;
        let found = loop {
            if index >= n {
                break None;
            }
            let is_zero = match self.layered(&fd, index) {
                Some(DirtyBlock::Data(_)) | Some(DirtyBlock::Patch(_)) => Some(false),
                Some(DirtyBlock::Id(id)) => Some(id.is_zero()),
                // Zeros up to the next block decided above the base: jump there rather than
                // step block by block (a sparse 1 TiB file has 2^28).
                None if index >= base_end && !want_zero => {
                    index = next_above(index + 1);
                    continue;
                }
                None if index >= base_end => Some(true),
                None => None,
            };
            if let Some(is_zero) = is_zero {
                if is_zero == want_zero {
                    break Some(index);
                }
                index += 1;
                continue;
            }
            // A stretch of the base: jump to the next matching base block, unless a block
            // decided above the base or the base's readable end comes first.
            let limit = next_above(index).min(base_end);
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use crate::maintenance::GcOptions;
    use crate::{Caller, Store, StoreOptions};

    /// A read resolves a file's block ids, then reads the blocks. A flush and a gc that both
    /// finish in between must not free what it resolved: gc waits for the read (the race
    /// that once made a reader in tests/tests/gc_concurrency.rs find a block "referenced but
    /// not stored"), and the read gets the old bytes.
    #[test]
    fn gc_waits_for_a_read_between_resolving_and_reading_its_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::default()
            .block_size(4096)
            .flush_interval(None);
        let store = Arc::new(Store::init(dir.path().join("store"), options).unwrap());
        store.create_empty_image("empty").unwrap();
        store.create_container("c", "empty").unwrap();
        let v = store.open_container("c").unwrap();
        let node = v.create(v.root(), b"f", 0o644, Caller::ROOT).unwrap().node;
        let handle = v.open(node, false).unwrap();
        v.write(node, 0, &[1u8; 8192]).unwrap();
        v.sync().unwrap();

        // The first half of a read: resolved, registered, not yet read.
        let reading = store.read_guard();
        let (mut out, fetch, _) = {
            let state = v.existing_state(node).unwrap();
            let fd = state.data.lock().unwrap();
            v.plan_read(&fd, 0, 8192).unwrap()
        };
        assert_eq!(fetch.len(), 2, "both blocks come from the store");

        // Meanwhile the file is rewritten and flushed, and gc runs.
        v.write(node, 0, &[2u8; 8192]).unwrap();
        v.sync().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let gc = {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let options = GcOptions {
                    dry_run: false,
                    repack_below: 1.01,
                };
                let report = store.gc(&options).unwrap();
                done.store(true, Ordering::SeqCst);
                report
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        assert!(!done.load(Ordering::SeqCst), "gc did not wait for the read");
        v.fetch(0, &mut out, fetch, 0).unwrap();
        assert_eq!(out, [1u8; 8192], "the read gets the generation it resolved");
        drop(reading);
        let report = gc.join().unwrap();
        assert!(
            report.bytes_freed > 0,
            "the old generation went after the read: {report:?}"
        );
        assert_eq!(v.read(node, 0, 8192).unwrap(), [2u8; 8192]);
        v.release(handle).unwrap();
    }
}
