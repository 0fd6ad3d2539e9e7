//! Fetching blocks from the remote: many at once (the ranges of one pack coalesced into few
//! ranged GETs, several GETs in flight), each verified against its id, and the plan of what
//! to fetch ahead of reads that go through a pack in order (a pack holds an imported file's
//! blocks in file order): windows fetched in the background (`flights.rs`).

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use super::bucket::{self, PackName};
use super::remote_packs::{RemoteBlock, RemotePacks, Stream};
use crate::error::{Error, Result};
use crate::ids::BlockId;

/// The first window fetched ahead once reads go through a pack in order; it doubles with each
/// further read that continues them, up to `MAX_WINDOW`.
const MIN_WINDOW: u64 = 256 * 1024;
const MAX_WINDOW: u64 = 4 << 20;
/// What a short block brings along (see `RemotePacks::plan`).
const NEIGHBOURS: u64 = 1 << 20;
/// A read that starts this close after where the reads of its pack had got continues them
/// (block padding and segment headers lie between neighbours).
const SLACK: u64 = 8 * 1024;

/// How many windows a stream keeps fetched or in flight ahead of its reader.
const AHEAD: u64 = 4;

/// What a read fetches besides its blocks (see `RemotePacks::plan`).
#[derive(Default)]
pub(super) struct Plan {
    /// Fetched with the read.
    pub(super) now: Vec<BlockId>,
    /// Windows fetched in the background, one ranged GET each.
    pub(super) later: Vec<Vec<BlockId>>,
}

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

    /// What to fetch with a read of `touched` (the read's blocks the remote holds, local or
    /// not; `missing` are those to fetch) from a file that holds `following` more blocks
    /// (`u64::MAX`: not known): `now`, blocks fetched with the read, and `later`, windows to
    /// fetch in the background, at most `budget` of them.
    ///
    /// Per pack (a pack holds an imported file's blocks in file order), a stream follows the
    /// reads: a read that starts where the reads of the pack had got to continues it, and
    /// the stream keeps up to `AHEAD` windows fetched or in flight past it — each window a
    /// ranged GET, so several are in flight at once while the reader takes what came — but
    /// no further than the file's `following` blocks (a pack holds a pushed image's files one
    /// after another) — unless the read ends the file with a short block: reading on from one
    /// file's end into the next in the pack's order is a walk through the image's files (a
    /// directory walk, a program starting), and the stream goes on into the files after it.
    /// The window starts at `MIN_WINDOW` and doubles to `MAX_WINDOW`. A read inside what the
    /// stream covers but out of order (another thread of the same reader, a backwards read)
    /// changes nothing; a read elsewhere starts the pack's stream over, fetching exactly its
    /// blocks — unless one is short (a small file, or a file's end): then the `NEIGHBOURS`
    /// after it come with it, since an import writes a directory's files one after another
    /// and they are read together (a directory walk, a program starting), in no particular
    /// order. Blocks `is_local` says are held are never asked for.
    pub(super) fn plan(
        &self,
        touched: &[BlockId],
        missing: &[BlockId],
        is_local: &dyn Fn(&BlockId) -> bool,
        mut budget: usize,
        following: u64,
    ) -> Plan {
        // Per pack: the span the read covers, whether one of its blocks is short (the end of a
        // file), and whether one of those is missing.
        let mut spans: HashMap<Arc<PackName>, (u64, u64, bool, bool)> = HashMap::new();
        let wanted: HashSet<&BlockId> = missing.iter().collect();
        {
            let known = self.known.read().unwrap();
            for id in touched {
                if let Some(at) = known.get(id) {
                    let (start, end) = (at.entry.offset, at.entry.offset + at.entry.len as u64);
                    let short = !at.entry.compressed && at.entry.len < self.block_size;
                    let fetch_short = short && wanted.contains(id);
                    let span =
                        spans
                            .entry(at.pack.clone())
                            .or_insert((start, end, short, fetch_short));
                    *span = (
                        span.0.min(start),
                        span.1.max(end),
                        span.2 || short,
                        span.3 || fetch_short,
                    );
                }
            }
        }
        let mut plan = Plan::default();
        let mut streams = self.streams.0.lock().unwrap();
        for (pack, (start, end, short, fetch_short)) in spans {
            let blocks_from = |from: u64, to: u64, out: &mut Vec<BlockId>| -> u64 {
                let order = self.order_of(&pack);
                let first = order.partition_point(|(offset, _, _)| *offset < from);
                let mut upto = from;
                for (offset, len, id) in &order[first..] {
                    let block_end = offset + *len as u64;
                    if block_end > to {
                        break;
                    }
                    if !wanted.contains(id) && !is_local(id) {
                        out.push(*id);
                    }
                    upto = block_end;
                }
                upto
            };
            // Where the file's `following` blocks end in the pack's order.
            let limit = match following {
                0 => end,
                u64::MAX => u64::MAX,
                n => {
                    let order = self.order_of(&pack);
                    let after = order.partition_point(|(offset, _, _)| *offset < end);
                    let last = (after + n as usize).min(order.len()).saturating_sub(1);
                    order
                        .get(last)
                        .map_or(end, |(o, len, _)| (o + *len as u64).max(end))
                }
            };
            match streams.get_mut(&pack) {
                // Continues the stream: keep `AHEAD` windows ahead of the reader.
                Some(s) if start + SLACK >= s.last && start <= s.end + SLACK => {
                    s.last = s.last.max(end);
                    s.end = s.end.max(end);
                    s.window = (s.window * 2).clamp(MIN_WINDOW, MAX_WINDOW);
                    // The end of a file (a short block) reached in the pack's order: a walk
                    // through the image's files, which goes on into the files after it.
                    let limit = match short {
                        true => u64::MAX,
                        false => limit,
                    };
                    while budget > 0 && s.end < limit && s.end < s.last + AHEAD * s.window {
                        let mut batch = Vec::new();
                        let upto = blocks_from(s.end, (s.end + s.window).min(limit), &mut batch);
                        if upto == s.end {
                            break; // the pack's end
                        }
                        s.end = upto;
                        if !batch.is_empty() {
                            plan.later.push(batch);
                            budget -= 1;
                        }
                    }
                    // Every background slot busy (other streams) and nothing ahead: the
                    // window comes with the read, as it would have without the stream.
                    if budget == 0 && s.end <= s.last + SLACK && s.end < limit {
                        let to = (s.end + s.window).min(limit);
                        s.end = blocks_from(s.end, to, &mut plan.now).max(s.end);
                    }
                }
                // Inside what the stream covers, out of order: nothing changes.
                Some(s) if end + MAX_WINDOW >= s.last && start <= s.end + SLACK => {}
                _ => {
                    let upto = match fetch_short {
                        true => blocks_from(end, end + NEIGHBOURS, &mut plan.now),
                        false => end,
                    };
                    let stream = Stream {
                        last: end,
                        end: upto.max(end),
                        window: 0,
                    };
                    streams.insert(pack, stream);
                }
            }
        }
        plan
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
