//! Flushing dirty file data: hash the dirty blocks (in parallel), store the ones the store
//! lacks (dedup), rewrite the block-map pages on their paths, record the new roots, and commit
//! — packs synced first, then one metadata transaction. Also commit's freeze of the writable
//! layer, which must flush under the same lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use super::Volume;
use super::dirty::DirtyBlock;
use super::file_data::{FileData, NodeState};
use crate::error::{Error, Result};
use crate::ids::{BlockId, LayerId, MapRoot, NodeId, PageId};
use crate::layer::{Stack, lookup};
use crate::meta::records::Records;
use crate::store::{BlockRead, BlockStore};
use crate::store_dir::Store;
use crate::tree::block_map::{self, PageSource, block_count};
use crate::tree::node::Content;
use crate::tree::pages::MetaPages;

/// What one node's flush changes.
struct Plan {
    node: NodeId,
    old_n: u64,
    kept_n: u64,
    new_n: u64,
    size: u64,
    changes: BTreeMap<u64, BlockId>,
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
        self.flush_data(Some(node))?;
        self.shared.store.commit_metadata()
    }

    /// Makes directory changes durable (`fsyncdir`).
    pub fn fsyncdir(&self) -> Result<()> {
        self.shared.store.commit_metadata()
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

/// Turns every patch into whole bytes: the blocks under the patches are read together (runs of
/// adjacent blocks in one read each), then the written ranges are laid over them.
fn merge_patches(store: &Store, guards: &mut [(NodeId, MutexGuard<'_, FileData>)]) -> Result<()> {
    let bs = store.block_size() as u64;
    let mut work: Vec<(usize, u64, BlockId)> = Vec::new();
    {
        let r = store.meta().read();
        let pages = MetaPages {
            meta: &r,
            cache: store.pages(),
        };
        for (g, (_, fd)) in guards.iter().enumerate() {
            let readable = block_count(fd.base_size.min(fd.min_size), bs);
            let base_n = block_count(fd.base_size, bs);
            for (index, block) in fd.dirty.iter() {
                let DirtyBlock::Patch(patch) = block else {
                    continue;
                };
                let base = match patch.base {
                    Some(id) => id,
                    None if *index < readable => {
                        block_map::block_ids(&pages, fd.base_root, base_n, *index, 1)?[0]
                    }
                    None => BlockId::ZERO,
                };
                work.push((g, *index, base));
            }
        }
    }
    if work.is_empty() {
        return Ok(());
    }
    let mut blocks: Vec<Box<[u8]>> = work
        .iter()
        .map(|_| vec![0u8; bs as usize].into_boxed_slice())
        .collect();
    let mut reads: Vec<BlockRead<'_>> = work
        .iter()
        .zip(blocks.iter_mut())
        .filter(|((_, _, base), _)| !base.is_zero())
        .map(|((_, _, base), block)| BlockRead {
            id: *base,
            dst: &mut block[..],
            skip: 0,
        })
        .collect();
    store.blocks().read_blocks(&mut reads, false)?;
    drop(reads);
    for ((g, index, _), mut block) in work.into_iter().zip(blocks) {
        let fd = &mut guards[g].1;
        if let Some(DirtyBlock::Patch(patch)) = fd.dirty.remove(&index) {
            patch.apply(&mut block);
            fd.dirty.insert(index, DirtyBlock::Data(block));
        }
    }
    Ok(())
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
    let bs = store.block_size() as u64;
    let mut sorted: Vec<_> = states.iter().filter(|(_, s)| s.is_file).collect();
    sorted.sort_by_key(|(id, _)| *id);
    let mut guards: Vec<(NodeId, MutexGuard<'_, FileData>)> = sorted
        .iter()
        .map(|(id, s)| (*id, s.data.lock().unwrap()))
        .filter(|(_, fd)| !fd.is_clean())
        .collect();
    if guards.is_empty() {
        return Ok(());
    }

    // 1. Merge patches with the blocks under them, then hash new bytes and store the blocks
    //    the store lacks.
    merge_patches(store, &mut guards)?;
    let mut plans = Vec::with_capacity(guards.len());
    {
        let mut slices: Vec<&[u8]> = Vec::new();
        let mut owners: Vec<(usize, u64)> = Vec::new();
        for (g, (node, fd)) in guards.iter().enumerate() {
            let mut changes = BTreeMap::new();
            for (index, block) in fd.dirty.iter() {
                let start = index * bs;
                if start >= fd.size {
                    continue;
                }
                match block {
                    DirtyBlock::Data(buf) => {
                        slices.push(&buf[..(fd.size - start).min(bs) as usize]);
                        owners.push((g, *index));
                    }
                    DirtyBlock::Id(id) => {
                        changes.insert(*index, *id);
                    }
                    DirtyBlock::Patch(_) => unreachable!("patches are merged before hashing"),
                }
            }
            plans.push(Plan {
                node: *node,
                old_n: block_count(fd.base_size, bs),
                kept_n: block_count(fd.base_size.min(fd.min_size), bs),
                new_n: block_count(fd.size, bs),
                size: fd.size,
                changes,
            });
        }
        let ids = hash_all(&slices);
        let blocks: Vec<(BlockId, &[u8])> =
            ids.iter().copied().zip(slices.iter().copied()).collect();
        store.blocks().put(&blocks)?;
        for ((g, index), id) in owners.into_iter().zip(ids) {
            plans[g].changes.insert(index, id);
        }
    }

    // 2. Record the new block maps (one metadata operation for every node).
    let mtimes: Vec<_> = guards.iter().map(|(_, fd)| fd.mtime).collect();
    let roots = store.meta().write(|w| {
        let mut roots = Vec::with_capacity(plans.len());
        for (plan, mtime) in plans.iter().zip(&mtimes) {
            let Some((_, mut record)) = lookup::node(w, &stack.layers, plan.node)? else {
                roots.push(None); // deleted while dirty: the data goes with it
                continue;
            };
            let Content::File {
                root,
                stored_blocks,
                ..
            } = record.content
            else {
                return Err(Error::Corrupt(format!(
                    "node {} stopped being a file",
                    plan.node
                )));
            };
            let (new_root, stored, pages) = {
                let mut src = FreshPages {
                    fresh: HashMap::new(),
                    stored: MetaPages {
                        meta: &*w,
                        cache: store.pages(),
                    },
                };
                let cut = block_map::update(&src, root, plan.old_n, plan.kept_n, &BTreeMap::new())?;
                for (id, page) in &cut.pages {
                    src.fresh.insert(*id, Arc::from(page.as_slice()));
                }
                let grown =
                    block_map::update(&src, cut.root, plan.kept_n, plan.new_n, &plan.changes)?;
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
                size: plan.size,
                root: new_root,
                stored_blocks: stored,
            };
            if let Some(t) = mtime {
                record.mtime = *t;
                record.ctime = *t;
            }
            w.put_node(stack.upper()?, plan.node, &record);
            roots.push(Some(new_root));
        }
        Ok(roots)
    })?;

    // 3. Durable: packs synced, then the metadata committed with their lengths.
    store.commit_metadata()?;

    // 4. The dirty blocks are now the base.
    let mut released = 0;
    for ((_, fd), (plan, root)) in guards.iter_mut().zip(plans.iter().zip(roots)) {
        released += fd
            .dirty
            .values()
            .filter(|b| b.holds_bytes())
            .count() as u64;
        fd.dirty.clear();
        fd.mtime = None;
        fd.size = plan.size;
        fd.base_size = plan.size;
        fd.min_size = plan.size;
        fd.base_root = root.unwrap_or(MapRoot::ZERO);
    }
    store.inner.dirty.release(released * bs);
    Ok(())
}
