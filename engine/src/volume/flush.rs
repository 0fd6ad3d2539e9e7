//! Flushing dirty file data. Under each file's lock only the generations are swapped: the dirty
//! blocks go in flight (reads still see them) and writes start a new generation. Then, with no
//! file locked: the blocks under patches are read (together, in pack order), new bytes hashed
//! (in parallel), the blocks the store lacks stored (dedup), the block-map pages on their paths
//! rewritten, the new roots recorded, and everything committed — packs synced first, then one
//! metadata transaction. Last, each file's base becomes the committed map. Also commit's
//! freeze of the writable layer, which flushes under the same lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Volume;
use super::dirty::{DirtyBlock, InFlight};
use super::file_data::NodeState;
use crate::error::{Error, Result};
use crate::ids::{BlockId, LayerId, MapRoot, NodeId, PageId};
use crate::layer::{Stack, lookup};
use crate::meta::records::Records;
use crate::store::BlockRead;
use crate::store_dir::Store;
use crate::store_dir::intent_log;
use crate::tree::block_map::{self, PageSource, block_count};
use crate::tree::node::Content;
use crate::tree::pages::MetaPages;

/// One file's generation in flight, and the base it applies to.
struct Flight {
    node: NodeId,
    state: Arc<NodeState>,
    blocks: Arc<InFlight>,
    base_root: MapRoot,
    base_size: u64,
    /// The seq of the node's newest intent-log record (0: none), made obsolete by this flush.
    logged: u64,
}

impl Volume {
    /// Flushes dirty data of one node (or all) into the store and metadata; the caller commits.
    pub(crate) fn flush_data(&self, only: Option<NodeId>) -> Result<()> {
        let store = &self.shared.store;
        let _flush = store.flush_guard();
        let stack = self.stack().clone();
        let states: Vec<_> = {
            let nodes = self.shared.nodes.lock().unwrap();
            nodes
                .iter()
                .filter(|(id, _)| only.is_none_or(|o| o == **id))
                .map(|(id, s)| (*id, s.clone()))
                .collect()
        };
        flush_locked(store, &stack, &states)?;
        self.evict_idle(&states);
        Ok(())
    }

    /// Forgets states that are clean and not open (their records say it all).
    fn evict_idle(&self, states: &[(NodeId, Arc<NodeState>)]) {
        let mut nodes = self.shared.nodes.lock().unwrap();
        for (id, state) in states {
            let idle = !state.is_open()
                && Arc::strong_count(state) <= 2
                && state.data.try_lock().is_ok_and(|fd| fd.is_clean());
            if idle {
                nodes.remove(id);
                self.shared.evictions.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Makes a file's data durable (`fsync`), reporting a background flush error once.
    pub fn fsync(&self, node: NodeId) -> Result<()> {
        if let Some(error) = self.shared.store.take_background_error() {
            return Err(Error::io(
                "an earlier background flush",
                std::io::Error::other(error),
            ));
        }
        match self.fsync_through_log(node) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::warn!("intent log: {e}; fsync takes the ordinary path"),
        }
        self.flush_data(Some(node))?;
        self.shared.store.commit_metadata()
    }

    /// Makes directory changes durable (`fsyncdir`): every metadata change so far, through
    /// the intent log when it can serve, else by a commit.
    pub fn fsyncdir(&self) -> Result<()> {
        let store = &self.shared.store;
        match store.log_durable(None) {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e) => tracing::warn!("intent log: {e}; fsyncdir commits"),
        }
        store.commit_metadata()
    }

    /// The commit of this (container's) view: flushes, freezes the writable layer as image
    /// `image`, and continues on a fresh writable layer. Returns the frozen layer.
    pub(crate) fn freeze(&self, image: &str) -> Result<LayerId> {
        let store = &self.shared.store;
        let container = self
            .container()
            .ok_or_else(|| Error::InvalidInput("only a container can be committed".into()))?;
        let _flush = store.flush_guard();
        let mut stack = self.shared.stack.write().unwrap();
        let states: Vec<_> = {
            let nodes = self.shared.nodes.lock().unwrap();
            nodes.iter().map(|(id, s)| (*id, s.clone())).collect()
        };
        flush_locked(store, &stack, &states)?;
        let (frozen, fresh) = store
            .meta()
            .write(|w| crate::store_dir::freeze_layer(w, &container, image))?;
        stack.layers.insert(0, fresh);
        for (_, state) in &states {
            state.data.lock().unwrap().copied_up = false;
        }
        Ok(frozen)
    }
}

/// Flushes the given states of a view (from a closing volume).
pub(crate) fn flush_states(
    store: &Store,
    stack: &Stack,
    states: Vec<(NodeId, Arc<NodeState>)>,
) -> Result<()> {
    let _flush = store.flush_guard();
    flush_locked(store, stack, &states)
}

/// Hashes blocks, in parallel when there are many.
fn hash_all(blocks: &[&[u8]]) -> Vec<BlockId> {
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    if total < (1 << 20) {
        return blocks.iter().map(|b| BlockId::of(b)).collect();
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 {
        return blocks.iter().map(|b| BlockId::of(b)).collect();
    }
    let chunk = blocks.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = blocks
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|b| BlockId::of(b)).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("hashing does not panic"))
            .collect()
    })
}

/// Pages of this flush not yet in the metadata, in front of the stored ones.
struct FreshPages<'a> {
    fresh: HashMap<PageId, Arc<[u8]>>,
    stored: MetaPages<'a>,
}

impl PageSource for FreshPages<'_> {
    fn load(&self, id: &PageId) -> Result<Arc<[u8]>> {
        match self.fresh.get(id) {
            Some(page) => Ok(page.clone()),
            None => self.stored.load(id),
        }
    }
}

fn flush_locked(store: &Store, stack: &Stack, states: &[(NodeId, Arc<NodeState>)]) -> Result<()> {
    let flights = take_off(states);
    if flights.is_empty() {
        return Ok(());
    }
    let stored = store_flights(store, stack, &flights);
    land(store, &flights, stored.as_ref().ok());
    stored.map(|_| ())
}

/// Swaps generations: each changed file's dirty blocks go in flight, under its lock only for
/// that moment.
fn take_off(states: &[(NodeId, Arc<NodeState>)]) -> Vec<Flight> {
    let mut sorted: Vec<_> = states.iter().filter(|(_, s)| s.is_file).collect();
    sorted.sort_by_key(|(id, _)| *id);
    let mut flights = Vec::new();
    for (node, state) in sorted {
        let mut fd = state.data.lock().unwrap();
        debug_assert!(fd.inflight.is_none(), "flushes are serialized");
        if fd.inflight.is_some() || !fd.has_changes() {
            continue;
        }
        let blocks = Arc::new(InFlight {
            blocks: std::mem::take(&mut fd.dirty),
            size: fd.size,
            min_size: fd.min_size,
            mtime: fd.mtime.take(),
        });
        fd.inflight = Some(blocks.clone());
        fd.min_size = fd.size;
        // The flush carries every change so far: the next record starts from here.
        fd.log_since.clear();
        fd.log_min_size = fd.size;
        flights.push(Flight {
            node: *node,
            state: state.clone(),
            blocks,
            base_root: fd.base_root,
            base_size: fd.base_size,
            logged: fd.logged,
        });
    }
    flights
}

/// Stores every flight's blocks and records the new block maps; returns each file's new root
/// (`None`: the node was deleted meanwhile, its data goes with it).
fn store_flights(store: &Store, stack: &Stack, flights: &[Flight]) -> Result<Vec<Option<MapRoot>>> {
    let bs = store.block_size() as u64;
    let merged = merge_patches(store, flights)?;
    let mut changes: Vec<BTreeMap<u64, BlockId>> = vec![BTreeMap::new(); flights.len()];
    {
        let mut slices: Vec<&[u8]> = Vec::new();
        let mut owners: Vec<(usize, u64)> = Vec::new();
        for (f, flight) in flights.iter().enumerate() {
            let size = flight.blocks.size;
            for (index, block) in &flight.blocks.blocks {
                let start = index * bs;
                if start >= size {
                    continue;
                }
                let len = (size - start).min(bs) as usize;
                match block {
                    DirtyBlock::Data(buf) => slices.push(&buf[..len]),
                    DirtyBlock::Patch(_) => slices.push(&merged[&(f, *index)][..len]),
                    DirtyBlock::Id(id) => {
                        changes[f].insert(*index, *id);
                        continue;
                    }
                }
                owners.push((f, *index));
            }
        }
        let ids = hash_all(&slices);
        let blocks: Vec<(BlockId, &[u8])> =
            ids.iter().copied().zip(slices.iter().copied()).collect();
        let stored = store.blocks().put(&blocks)?;
        store.inner.reclaimer.stored(stored);
        for ((f, index), id) in owners.into_iter().zip(ids) {
            changes[f].insert(index, id);
        }
    }
    let roots = store.meta().write(|w| {
        let mut roots = Vec::with_capacity(flights.len());
        for (flight, changes) in flights.iter().zip(&changes) {
            roots.push(record_flight(store, stack, w, flight, changes)?);
            if flight.logged > 0 {
                intent_log::record_flushed(w, stack.upper()?, flight.node, flight.logged);
            }
        }
        Ok(roots)
    })?;
    store.commit_metadata()?;
    Ok(roots)
}

/// Rewrites one file's block map for its flight and records it (size, root, stored blocks,
/// modification time).
fn record_flight(
    store: &Store,
    stack: &Stack,
    w: &mut crate::meta::Writer<'_>,
    flight: &Flight,
    changes: &BTreeMap<u64, BlockId>,
) -> Result<Option<MapRoot>> {
    let bs = store.block_size() as u64;
    let Some((_, mut record)) = lookup::node(w, &stack.layers, flight.node)? else {
        return Ok(None);
    };
    let Content::File {
        root,
        stored_blocks,
        ..
    } = record.content
    else {
        return Err(Error::Corrupt(format!(
            "node {} stopped being a file",
            flight.node
        )));
    };
    let size = flight.blocks.size;
    let old_n = block_count(flight.base_size, bs);
    let kept_n = block_count(flight.base_size.min(flight.blocks.min_size), bs);
    let new_n = block_count(size, bs);
    let (new_root, stored, pages) = {
        let mut src = FreshPages {
            fresh: HashMap::new(),
            stored: MetaPages {
                meta: &*w,
                cache: store.pages(),
            },
        };
        let cut = block_map::update(&src, root, old_n, kept_n, &BTreeMap::new())?;
        for (id, page) in &cut.pages {
            src.fresh.insert(*id, Arc::from(page.as_slice()));
        }
        let grown = block_map::update(&src, cut.root, kept_n, new_n, changes)?;
        let stored = (stored_blocks as i64 + cut.stored_delta + grown.stored_delta).max(0);
        let mut pages = cut.pages;
        pages.extend(grown.pages);
        (grown.root, stored as u64, pages)
    };
    for (id, page) in pages {
        if !w.has_page(&id)? {
            w.put_page(&id, &page);
        }
    }
    record.content = Content::File {
        size,
        root: new_root,
        stored_blocks: stored,
    };
    if let Some(t) = flight.blocks.mtime {
        record.mtime = t;
        record.ctime = t;
    }
    w.put_node(stack.upper()?, flight.node, &record);
    Ok(Some(new_root))
}

/// Whole blocks made from patches, by (flight, block index).
type Merged = HashMap<(usize, u64), Box<[u8]>>;

/// The whole bytes of every patch in flight: the blocks under the patches are read together
/// (runs of adjacent blocks in one read each), then the written ranges laid over them.
fn merge_patches(store: &Store, flights: &[Flight]) -> Result<Merged> {
    let bs = store.block_size() as u64;
    let mut work: Vec<((usize, u64), BlockId)> = Vec::new();
    {
        let r = store.meta().read();
        let pages = MetaPages {
            meta: &r,
            cache: store.pages(),
        };
        for (f, flight) in flights.iter().enumerate() {
            let base_n = block_count(flight.base_size, bs);
            for (index, block) in &flight.blocks.blocks {
                let DirtyBlock::Patch(patch) = block else {
                    continue;
                };
                // A patch without a base id lies over the base (see `Volume::start_dirty`).
                let base = match patch.base {
                    Some(id) => id,
                    None if *index < base_n => {
                        block_map::block_ids(&pages, flight.base_root, base_n, *index, 1)?[0]
                    }
                    None => BlockId::ZERO,
                };
                work.push(((f, *index), base));
            }
        }
    }
    let mut blocks: Vec<Box<[u8]>> = work
        .iter()
        .map(|_| vec![0u8; bs as usize].into_boxed_slice())
        .collect();
    let mut reads: Vec<BlockRead<'_>> = work
        .iter()
        .zip(blocks.iter_mut())
        .filter(|((_, base), _)| !base.is_zero())
        .map(|((_, base), block)| BlockRead {
            id: *base,
            dst: &mut block[..],
            skip: 0,
        })
        .collect();
    store.blocks().read_blocks(&mut reads, false)?;
    drop(reads);
    let mut out = HashMap::with_capacity(work.len());
    for (((f, index), _), mut block) in work.into_iter().zip(blocks) {
        if let Some(DirtyBlock::Patch(patch)) = flights[f].blocks.blocks.get(&index) {
            patch.apply(&mut block);
        }
        out.insert((f, index), block);
    }
    Ok(out)
}

/// Ends the flights. Stored: each file's base becomes its committed map. Failed: the blocks go
/// back under the newer dirty ones, to be flushed again.
fn land(store: &Store, flights: &[Flight], roots: Option<&Vec<Option<MapRoot>>>) {
    let bs = store.block_size() as u64;
    let mut released = 0;
    for (f, flight) in flights.iter().enumerate() {
        let mut fd = flight.state.data.lock().unwrap();
        fd.inflight = None;
        match roots {
            Some(roots) => {
                fd.base_root = roots[f].unwrap_or(MapRoot::ZERO);
                fd.base_size = flight.blocks.size;
                released += flight
                    .blocks
                    .blocks
                    .values()
                    .map(|b| b.charge(bs))
                    .sum::<u64>();
            }
            None => {
                // The generation in flight lies under the dirty one again: blocks the dirty
                // generation replaced or cut off are dropped.
                let cut = block_count(fd.min_size, bs);
                for (index, block) in &flight.blocks.blocks {
                    if fd.dirty.contains_key(index) || *index >= cut {
                        released += block.charge(bs);
                    } else {
                        fd.dirty.insert(*index, block.copy());
                        // Not flushed after all: the next record carries it again.
                        fd.changed(*index);
                    }
                }
                fd.min_size = fd.min_size.min(flight.blocks.min_size);
                fd.log_min_size = fd.log_min_size.min(flight.blocks.min_size);
                fd.mtime = fd.mtime.or(flight.blocks.mtime);
            }
        }
    }
    store.inner.dirty.release(released);
}
