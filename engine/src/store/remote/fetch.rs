//! Fetching blocks from the remote: many at once (the ranges of one pack coalesced into few
//! ranged GETs, several GETs in flight), each verified against its id, and read-ahead along a
//! pack for reads that go through it in order (a pack holds an imported file's blocks in file
//! order).

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::bucket::{self, PackName};
use super::remote_packs::{RemoteBlock, RemotePacks};
use crate::error::{Error, Result};
use crate::ids::BlockId;

/// The smallest read-ahead once reads go through a pack in order; it doubles with each
/// further fetch that continues the previous one, up to `MAX_WINDOW`.
const MIN_WINDOW: u64 = 256 * 1024;
const MAX_WINDOW: u64 = 4 << 20;
/// What a short block brings along (see `read_ahead`).
const NEIGHBOURS: u64 = 1 << 20;
/// A fetch that starts this close after where the previous one of its pack ended continues
/// it (block padding and segment headers lie between neighbours).
const SLACK: u64 = 8 * 1024;

/// Per pack, where the last fetch from it ended and the read-ahead it had.
#[derive(Default)]
pub(super) struct Streams(Mutex<HashMap<Arc<PackName>, Stream>>);

#[derive(Clone, Copy)]
struct Stream {
    end: u64,
    window: u64,
}

/// A block's place in its pack, in the pack's order.
pub(super) type Placed = (u64, u32, BlockId);

impl RemotePacks {
    /// Fetches blocks: per pack, the ranges are coalesced into as few ranged GETs as gaps of
    /// under a block allow, and the GETs of all packs run at once. Each block is verified
    /// against its id; its result says whether it came (a block no attached pack holds, or
    /// whose bytes do not match, is `Corrupt`; an unreachable remote fails them all).
    pub fn fetch_many(&self, ids: &[BlockId]) -> Vec<(BlockId, Result<Vec<u8>>)> {
        let mut results = Vec::with_capacity(ids.len());
        let mut by_pack: HashMap<Arc<PackName>, Vec<(BlockId, RemoteBlock)>> = HashMap::new();
        {
            let known = self.known.read().unwrap();
            for id in ids {
                match known.get(id) {
                    Some(at) if at.entry.len == 0 || at.entry.len > self.block_size => {
                        results.push((*id, Err(invalid_length(id, at))));
                    }
                    Some(at) => by_pack
                        .entry(at.pack.clone())
                        .or_default()
                        .push((*id, at.clone())),
                    None => results.push((
                        *id,
                        Err(Error::Corrupt(format!(
                            "block {id} is referenced but not stored"
                        ))),
                    )),
                }
            }
        }
        let requests: Vec<(String, Vec<Range<u64>>)> = by_pack
            .iter()
            .map(|(pack, blocks)| {
                let ranges = blocks
                    .iter()
                    .map(|(_, at)| at.entry.offset..at.entry.offset + at.entry.len as u64)
                    .collect();
                (bucket::pack_key(pack), ranges)
            })
            .collect();
        let fetched = self.remote.get_ranges_of(&requests);
        for ((_, blocks), got) in by_pack.into_iter().zip(fetched) {
            match got {
                Ok(datas) => {
                    for ((id, at), data) in blocks.into_iter().zip(datas) {
                        results.push((id, self.verify(&id, &at, data)));
                    }
                }
                Err(e) => {
                    let line = e.to_string();
                    for (id, _) in blocks {
                        results.push((id, Err(Error::Remote(line.clone()))));
                    }
                }
            }
        }
        results
    }

    /// Blocks worth fetching with `missing`: when a fetch from a pack starts where the
    /// previous one from it ended, the blocks that follow in the pack, up to a window that
    /// doubles while the reads stay in order. A short block (a small file, or a file's end)
    /// brings the `NEIGHBOURS` after it in any case: an import writes a directory's files
    /// one after the other, and they are read together (a directory walk, a program's
    /// start-up), not in the pack's order. Blocks `is_local` says are held are skipped.
    pub fn read_ahead(
        &self,
        missing: &[BlockId],
        is_local: &dyn Fn(&BlockId) -> bool,
    ) -> Vec<BlockId> {
        // Per pack: the span the missing blocks cover, and whether one of them is short.
        let mut spans: HashMap<Arc<PackName>, (u64, u64, bool)> = HashMap::new();
        {
            let known = self.known.read().unwrap();
            for id in missing {
                if let Some(at) = known.get(id) {
                    let (start, end) = (at.entry.offset, at.entry.offset + at.entry.len as u64);
                    let short = !at.entry.compressed && at.entry.len < self.block_size;
                    let span = spans.entry(at.pack.clone()).or_insert((start, end, short));
                    *span = (span.0.min(start), span.1.max(end), span.2 || short);
                }
            }
        }
        let wanted: HashSet<&BlockId> = missing.iter().collect();
        let mut extra = Vec::new();
        let mut streams = self.streams.0.lock().unwrap();
        for (pack, (start, end, short)) in spans {
            let window = match streams.get(&pack) {
                Some(s) if start >= s.end && start <= s.end + SLACK => {
                    (s.window * 2).clamp(MIN_WINDOW, MAX_WINDOW)
                }
                _ if short => NEIGHBOURS,
                _ => 0,
            };
            let mut upto = end;
            if window > 0 {
                let order = self.order_of(&pack);
                let from = order.partition_point(|(offset, _, _)| *offset < end);
                for (offset, len, id) in &order[from..] {
                    let block_end = offset + *len as u64;
                    if block_end > end + window {
                        break;
                    }
                    if !wanted.contains(id) && !is_local(id) {
                        extra.push(*id);
                    }
                    upto = block_end;
                }
            }
            streams.insert(pack, Stream { end: upto, window });
        }
        extra
    }

    /// Checks fetched bytes against the block's id (decoding a compressed block).
    fn verify(&self, id: &BlockId, at: &RemoteBlock, mut data: Vec<u8>) -> Result<Vec<u8>> {
        if at.entry.compressed && data.len() == at.entry.len as usize {
            // This build uploads plain blocks; a compressed one is decoded all the same.
            let mut block = vec![0u8; self.block_size as usize];
            let n = super::super::compress::decompress(&data, &mut block).unwrap_or(0);
            block.truncate(n);
            data = block;
        } else if data.len() != at.entry.len as usize {
            data.clear();
        }
        if data.is_empty() || BlockId::of(&data) != *id {
            tracing::error!(
                "block {id} fetched from {}/{} at offset {} does not match its id",
                self.remote.url(),
                bucket::pack_key(&at.pack),
                at.entry.offset
            );
            return Err(Error::Corrupt(format!(
                "block {id} in remote pack {} at offset {} does not match its id",
                at.pack.0, at.entry.offset
            )));
        }
        tracing::debug!(block = %id, pack = %at.pack.0, offset = at.entry.offset, "fetched");
        self.remote.count_block_fetched();
        Ok(data)
    }
}

fn invalid_length(id: &BlockId, at: &RemoteBlock) -> Error {
    Error::Corrupt(format!(
        "block {id} in remote pack {} has invalid length {}",
        at.pack.0, at.entry.len
    ))
}
