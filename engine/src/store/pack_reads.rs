//! Reading blocks out of packs: one at a time through the cache, or in batches where runs of
//! blocks stored next to each other in one pack are read with one direct read.

use std::sync::Arc;

use super::BlockRead;
use super::pack_reader;
use super::pack_store::PackStore;
use crate::error::{Error, Result};
use crate::format::pack_index::Entry;
use crate::ids::{BlockId, PackId};
use crate::io::IoFile;

impl PackStore {
    /// Reads a verified block into `out`. With `use_cache`, through the block cache (when the
    /// store has one): a hit costs a copy, a miss is read, verified and kept. Without, the
    /// cache is not filled (the kernel's page cache above the mount is the only cache then).
    pub(crate) fn read_block(
        &self,
        id: &BlockId,
        out: &mut [u8],
        use_cache: bool,
    ) -> Result<usize> {
        let cache = self.cache.as_ref().filter(|_| use_cache);
        if let Some(cached) = cache.and_then(|c| c.get(id)) {
            if out.len() < cached.len() {
                return Err(Error::Corrupt(format!(
                    "block {id} is longer than its place"
                )));
            }
            out[..cached.len()].copy_from_slice(&cached);
            return Ok(cached.len());
        }
        let (pack, entry, file) = self
            .locate(id)
            .ok_or_else(|| Error::Corrupt(format!("block {id} is referenced but not stored")))?;
        let room = if entry.compressed {
            self.config.block_size
        } else {
            entry.len
        };
        if out.len() < room as usize {
            return Err(Error::Corrupt(format!(
                "block {id} in pack {pack} is longer ({} bytes) than its place in the file",
                entry.len
            )));
        }
        let len = pack_reader::read_block(&*file, pack, entry, id, out)?;
        if let Some(cache) = cache {
            cache.insert(*id, Arc::from(&out[..len]));
        }
        Ok(len)
    }

    /// Reads many blocks. A block the cache holds is copied from it. With `fill_cache`, every
    /// other block is read through the cache; without, only a read of part of a block is
    /// (read-around: the kernel asks for one 4 KiB page of a random read, the block has been
    /// read and verified whole to serve it, and its neighbours are the likely next reads), and
    /// whole blocks pass it by (the kernel's page cache holds those). What is left, runs of
    /// blocks stored next to each other in one pack, is read with one direct read each (up to
    /// 1 MiB), then each block is verified. Each request copies bytes `[skip, skip +
    /// dst.len())` of its block into `dst` (zero past the block's end).
    pub(super) fn read_batch(&self, reads: &mut [BlockRead<'_>], fill_cache: bool) -> Result<()> {
        let mut located = Vec::with_capacity(reads.len());
        let mut scratch = Vec::new();
        for (i, read) in reads.iter_mut().enumerate() {
            let (pack, entry, file) = self.locate(&read.id).ok_or_else(|| {
                Error::Corrupt(format!("block {} is referenced but not stored", read.id))
            })?;
            // (A compressed block's length is known once it is decompressed: a read of less
            // than a block counts as partial.)
            let whole = match entry.compressed {
                true => self.config.block_size,
                false => entry.len,
            };
            let partial = read.skip > 0 || read.dst.len() < whole as usize;
            // A read the cache is for counts a miss; a whole-block read takes a hit if there
            // is one (a block kept by an earlier partial read) and otherwise passes by.
            let held = self
                .cache
                .as_ref()
                .and_then(|c| match fill_cache || partial {
                    true => c.get(&read.id),
                    false => c.get_if_held(&read.id),
                });
            if let Some(block) = held {
                read.fill(&block);
                continue;
            }
            if let Some(cache) = self.cache.as_ref().filter(|_| fill_cache || partial) {
                if entry.len > self.config.block_size {
                    return Err(Error::Corrupt(format!(
                        "block {} in pack {pack} is longer ({} bytes) than a block",
                        read.id, entry.len
                    )));
                }
                scratch.resize(whole as usize, 0);
                let n = pack_reader::read_block(&*file, pack, entry, &read.id, &mut scratch)?;
                let block: Arc<[u8]> = Arc::from(&scratch[..n]);
                read.fill(&block);
                cache.insert(read.id, block);
                continue;
            }
            located.push((pack, entry, file, i));
        }
        self.read_runs(reads, located)
    }

    /// Reads located blocks past the cache, runs of neighbours in one pack with one read.
    fn read_runs(
        &self,
        reads: &mut [BlockRead<'_>],
        mut located: Vec<(PackId, Entry, Arc<dyn IoFile>, usize)>,
    ) -> Result<()> {
        const MAX_RUN: u64 = 1 << 20;
        let mut scratch = vec![0u8; self.config.block_size as usize];
        located.sort_by_key(|(pack, entry, _, _)| (*pack, entry.offset));
        let mut start = 0;
        while start < located.len() {
            let (pack, first, file, _) = &located[start];
            let mut end = start + 1;
            let mut run_end = first.offset + crate::format::pack::aligned(first.len as u64);
            while end < located.len() {
                let (next_pack, next, _, _) = &located[end];
                let next_end = next.offset + crate::format::pack::aligned(next.len as u64);
                if next_pack != pack || next.offset != run_end || next_end - first.offset > MAX_RUN
                {
                    break;
                }
                run_end = next_end;
                end += 1;
            }
            let run = &located[start..end];
            pack_reader::read_run(
                &**file,
                *pack,
                first.offset,
                (run_end - first.offset) as usize,
                &mut |bytes| {
                    for (_, entry, _, i) in run {
                        let at = (entry.offset - first.offset) as usize;
                        let stored = &bytes[at..at + entry.len as usize];
                        let read = &mut reads[*i];
                        let data =
                            pack_reader::verified(&read.id, stored, *entry, *pack, &mut scratch)?;
                        read.fill(data);
                    }
                    Ok(())
                },
            )?;
            start = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_past_the_end_of_a_short_block_gives_zeros() {
        for (skip, block, want) in [(3, &[1u8][..], [0u8; 4]), (1, &[1, 2, 3][..], [2, 3, 0, 0])] {
            let mut dst = [7u8; 4];
            let (id, dst_ref) = (BlockId::ZERO, &mut dst[..]);
            BlockRead {
                id,
                dst: dst_ref,
                skip,
            }
            .fill(block);
            assert_eq!(dst, want);
        }
    }
}
