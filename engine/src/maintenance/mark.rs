//! Marking: every block and block-map page reachable from a layer (images, containers,
//! staging imports and orphans all live in layers), plus blocks that live views reference
//! only from memory (shared by `copy_file_range`, not yet flushed). What is not marked is
//! garbage.

use std::collections::HashSet;

use crate::error::Result;
use crate::ids::{BlockId, LayerId, PageId};
use crate::meta::records::Records;
use crate::store_dir::Store;
use crate::tree::block_map::{self, block_count};
use crate::tree::node::Content;
use crate::tree::pages::MetaPages;

#[derive(Debug, Default)]
pub struct Marks {
    pub blocks: HashSet<BlockId>,
    pub pages: HashSet<PageId>,
}

/// Blocks live views reference only from memory.
pub fn unflushed(store: &Store) -> Vec<BlockId> {
    store
        .live_volumes()
        .into_iter()
        .flat_map(|v| crate::volume::Volume::from_shared(v).unflushed_block_refs())
        .collect()
}

/// Marks what every layer references. Pages already marked are not walked again (layers
/// share most of their pages).
pub fn mark(store: &Store) -> Result<Marks> {
    mark_layers(store, None)
}

/// Blocks the writable layers of containers reference, flushed or only in memory: what a
/// cache eviction never drops.
pub fn writable_blocks(store: &Store) -> Result<HashSet<BlockId>> {
    let uppers: Vec<LayerId> = {
        let r = store.meta().read();
        r.containers()?.into_iter().map(|(_, c)| c.upper).collect()
    };
    let mut blocks = mark_layers(store, Some(&uppers))?.blocks;
    blocks.extend(unflushed(store));
    Ok(blocks)
}

/// Marks what the given layers (all: `None`) reference.
fn mark_layers(store: &Store, only: Option<&[LayerId]>) -> Result<Marks> {
    let mut marks = Marks::default();
    let bs = store.block_size() as u64;
    let r = store.meta().read();
    let pages = MetaPages {
        meta: &r,
        cache: store.pages(),
    };
    for (layer, _) in r.layers()? {
        if only.is_some_and(|only| !only.contains(&layer)) {
            continue;
        }
        for (_, record) in r.layer_nodes(layer)? {
            let Content::File { size, root, .. } = record.content else {
                continue;
            };
            let Marks {
                blocks,
                pages: seen,
            } = &mut marks;
            block_map::visit(
                &pages,
                root,
                block_count(size, bs),
                &mut |page| seen.insert(page),
                &mut |_, id| {
                    blocks.insert(id);
                },
            )?;
        }
    }
    Ok(marks)
}
