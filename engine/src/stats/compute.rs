//! Computing the figures of `StatsReport` from the metadata and the block store.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;
use crate::error::Result;
use crate::format::records::{LayerRecord, LayerState};
use crate::ids::{BlockId, LayerId, NodeId};
use crate::layer::{lookup, walk};
use crate::meta::Reader;
use crate::meta::records::Records;
use crate::store_dir::Store;
use crate::tree::block_map::{self, block_count};
use crate::tree::node::Content;
use crate::tree::pages::MetaPages;

/// Which owners to report (all when empty) and how many top files.
#[derive(Debug, Clone, Default)]
pub struct StatsOptions {
    pub names: Vec<String>,
    pub top: usize,
}

/// Copy-up of one layer: files replacing a lower version, bytes of their changed blocks, what
/// whole-file copy-up would write, and per file (node, size, changed bytes).
#[derive(Default)]
struct CopyUp {
    files: u64,
    copied: u64,
    whole_file: u64,
    per_file: Vec<(NodeId, u64, u64)>,
}

/// A file record's blocks: (index, id, length); zero blocks left out.
type Blocks = Vec<(u64, BlockId, u32)>;

struct Scan<'a> {
    store: &'a Store,
    r: Reader<'a>,
    bs: u64,
    /// Per layer: its file records' blocks.
    records: HashMap<LayerId, Vec<(NodeId, u64, Blocks)>>,
    /// Per layer: distinct blocks and their lengths.
    layer_blocks: HashMap<LayerId, HashMap<BlockId, u32>>,
    /// Records referencing each block.
    block_records: HashMap<BlockId, u32>,
    /// Bytes of each file record's non-zero blocks.
    nonzero: HashMap<(LayerId, NodeId), u64>,
}

/// Every image and container — (kind, name, layer stack) — with its distinct blocks, and
/// per block how many of them reference it.
struct Owners {
    owners: Vec<(String, String, Vec<LayerId>)>,
    sets: Vec<HashMap<BlockId, u32>>,
    count: HashMap<BlockId, u32>,
}

/// Bytes of the blocks container `name` references and no image or other container does —
/// its exclusive bytes, as `stats` reports them. Syncs the store first, but does not push
/// what kernels cache of mounts (the caller may be serving one).
pub fn exclusive_bytes(store: &Store, name: &str) -> Result<u64> {
    store.sync()?;
    let (scan, _) = Scan::all(store)?;
    let owners = scan.owners()?;
    let at = owners
        .owners
        .iter()
        .position(|(kind, n, _)| kind == "container" && n == name)
        .ok_or_else(|| crate::error::Error::NotFound(format!("container {name}")))?;
    Ok(owners.sets[at]
        .iter()
        .filter(|(id, _)| owners.count.get(id) == Some(&1))
        .map(|(_, len)| *len as u64)
        .sum())
}

impl<'a> Scan<'a> {
    /// Scans every published layer.
    fn all(store: &'a Store) -> Result<(Scan<'a>, BTreeMap<LayerId, LayerRecord>)> {
        let mut scan = Scan {
            store,
            r: store.meta().read(),
            bs: store.block_size() as u64,
            records: HashMap::new(),
            layer_blocks: HashMap::new(),
            block_records: HashMap::new(),
            nonzero: HashMap::new(),
        };
        let layers: BTreeMap<LayerId, _> = scan
            .r
            .layers()?
            .into_iter()
            .filter(|(_, l)| l.state != LayerState::Staging)
            .collect();
        for layer in layers.keys() {
            scan.scan_layer(*layer)?;
        }
        Ok((scan, layers))
    }

    fn owners(&self) -> Result<Owners> {
        let mut owners: Vec<(String, String, Vec<LayerId>)> = Vec::new();
        for (name, image) in self.r.images()? {
            owners.push(("image".into(), name, self.r.stack_of(Some(image.top))?));
        }
        for (name, c) in self.r.containers()? {
            owners.push(("container".into(), name, self.r.stack_of(Some(c.upper))?));
        }
        let mut count: HashMap<BlockId, u32> = HashMap::new();
        let mut sets = Vec::new();
        for (_, _, stack) in &owners {
            let mut set: HashMap<BlockId, u32> = HashMap::new();
            for layer in stack {
                set.extend(self.layer_blocks.get(layer).into_iter().flatten());
            }
            for id in set.keys() {
                *count.entry(*id).or_default() += 1;
            }
            sets.push(set);
        }
        Ok(Owners {
            owners,
            sets,
            count,
        })
    }
}

impl Scan<'_> {
    fn file_blocks(&self, size: u64, root: crate::ids::MapRoot) -> Result<Blocks> {
        let pages = MetaPages {
            meta: &self.r,
            cache: self.store.pages(),
        };
        let mut out = Vec::new();
        let bs = self.bs;
        block_map::visit(
            &pages,
            root,
            block_count(size, bs),
            &mut |_| true,
            &mut |i, id| {
                out.push((i, id, (size - i * bs).min(bs) as u32));
            },
        )?;
        Ok(out)
    }

    fn scan_layer(&mut self, layer: LayerId) -> Result<()> {
        let mut records = Vec::new();
        let mut set = HashMap::new();
        for (node, record) in self.r.layer_nodes(layer)? {
            let Content::File { size, root, .. } = record.content else {
                continue;
            };
            let blocks = self.file_blocks(size, root)?;
            for (_, id, len) in &blocks {
                set.insert(*id, *len);
                *self.block_records.entry(*id).or_default() += 1;
            }
            let nonzero = blocks.iter().map(|(_, _, len)| *len as u64).sum();
            self.nonzero.insert((layer, node), nonzero);
            records.push((node, size, blocks));
        }
        self.records.insert(layer, records);
        self.layer_blocks.insert(layer, set);
        Ok(())
    }

    /// Copy-up figures of one layer against the layers below it.
    fn copy_up(&self, stack: &[LayerId]) -> Result<CopyUp> {
        let Some((&layer, lower)) = stack.split_first() else {
            return Ok(CopyUp::default());
        };
        let mut totals = CopyUp::default();
        for (node, size, blocks) in self.records.get(&layer).into_iter().flatten() {
            let Some((_, below)) = lookup::node(&self.r, lower, *node)? else {
                continue;
            };
            let Content::File {
                size: old_size,
                root,
                ..
            } = below.content
            else {
                continue;
            };
            let old: HashMap<u64, BlockId> = self
                .file_blocks(old_size, root)?
                .into_iter()
                .map(|(i, id, _)| (i, id))
                .collect();
            let copied: u64 = blocks
                .iter()
                .filter(|(i, id, _)| old.get(i) != Some(id))
                .map(|(_, _, len)| *len as u64)
                .sum();
            totals.files += 1;
            totals.copied += copied;
            totals.whole_file += size;
            totals.per_file.push((*node, *size, copied));
        }
        Ok(totals)
    }
}

/// Computes the report.
pub fn stats(store: &Store, options: &StatsOptions) -> Result<StatsReport> {
    // What mounts hold in the kernel's cache and in memory counts, as on disk.
    store.push_kernel_caches(None)?;
    store.sync()?;
    let (scan, layers) = Scan::all(store)?;
    let Owners {
        owners,
        sets: owner_sets,
        count: owner_count,
    } = scan.owners()?;

    let mut report = StatsReport {
        block_size: store.block_size(),
        ..Default::default()
    };
    report.store.compression = store.format().1.to_string();
    // What each block takes in the packs (less than its length when compressed).
    let mut stored: HashMap<BlockId, u32> = HashMap::new();
    for (id, location) in store.blocks().locations()? {
        stored.insert(id, location.len);
    }
    let mut paths: HashMap<(LayerId, NodeId), (String, String)> = HashMap::new();
    let mut copied_files: Vec<FileFigure> = Vec::new();
    for ((kind, name, stack), set) in owners.iter().zip(&owner_sets) {
        let mut figures = OwnerFigures {
            kind: kind.clone(),
            name: name.clone(),
            layers: stack.len() as u64,
            ..Default::default()
        };
        walk::walk(&scan.r, stack, &mut |v| {
            if let Content::File { size, .. } = v.record.content {
                figures.files += 1;
                figures.logical_bytes += size;
                let nonzero = scan.nonzero.get(&(v.layer, v.node)).copied().unwrap_or(0);
                figures.zero_bytes += size.saturating_sub(nonzero);
                paths.entry((v.layer, v.node)).or_insert_with(|| {
                    (name.clone(), String::from_utf8_lossy(v.path).into_owned())
                });
            }
            Ok(())
        })?;
        for (id, len) in set {
            figures.referenced_bytes += *len as u64;
            // A block not held here (a lazily pulled image's) counts at its length.
            figures.stored_bytes += stored.get(id).copied().unwrap_or(*len) as u64;
            if owner_count.get(id) == Some(&1) {
                figures.exclusive_bytes += *len as u64;
            }
        }
        figures.shared_bytes = figures.referenced_bytes - figures.exclusive_bytes;
        // Copy-up: every layer of the view but the bottom one, each against those below it.
        for i in 0..stack.len().saturating_sub(1) {
            let copy_up = scan.copy_up(&stack[i..])?;
            figures.copied_up_files += copy_up.files;
            figures.copied_up_bytes += copy_up.copied;
            figures.whole_file_copy_up_bytes += copy_up.whole_file;
        }
        if options.names.is_empty() || options.names.contains(name) {
            report.owners.push(figures.clone());
        }
        report.store.files += figures.files;
        report.store.logical_bytes += figures.logical_bytes;
        report.store.zero_bytes += figures.zero_bytes;
        if kind == "image" {
            report.store.images += 1;
        } else {
            report.store.containers += 1;
        }
    }

    // Per layer, and the copy-up files for the top list.
    let all: HashSet<BlockId> = scan
        .layer_blocks
        .values()
        .flat_map(|s| s.keys().copied())
        .collect();
    let mut layer_count: HashMap<BlockId, u64> = HashMap::new();
    for (layer, record) in &layers {
        let set = &scan.layer_blocks[layer];
        for id in set.keys() {
            *layer_count.entry(*id).or_default() += 1;
        }
        let stack = scan.r.stack_of(Some(*layer))?;
        let below: HashSet<BlockId> = stack[1..]
            .iter()
            .flat_map(|l| {
                scan.layer_blocks
                    .get(l)
                    .into_iter()
                    .flat_map(|s| s.keys().copied())
            })
            .collect();
        let copy_up = scan.copy_up(&stack)?;
        for (node, size, bytes) in copy_up.per_file {
            if let Some((owner, path)) = paths.get(&(*layer, node)) {
                copied_files.push(FileFigure {
                    owner: owner.clone(),
                    path: path.clone(),
                    size,
                    bytes,
                    whole_file_bytes: size,
                });
            }
        }
        report.layers.push(LayerFigures {
            layer: layer.0,
            parent: record.parent.map(|p| p.0),
            records: scan.records[layer].len() as u64,
            referenced_bytes: set.values().map(|l| *l as u64).sum(),
            new_bytes: set
                .iter()
                .filter(|(id, _)| !below.contains(id))
                .map(|(_, l)| *l as u64)
                .sum(),
            copied_up_files: copy_up.files,
            copied_up_bytes: copy_up.copied,
            whole_file_copy_up_bytes: copy_up.whole_file,
        });
    }

    let lengths: HashMap<BlockId, u32> = scan
        .layer_blocks
        .values()
        .flat_map(|s| s.iter().map(|(id, len)| (*id, *len)))
        .collect();
    let mut buckets: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (id, count) in &layer_count {
        let bucket = buckets.entry(*count).or_default();
        bucket.0 += 1;
        bucket.1 += lengths[id] as u64;
    }
    report.sharing = buckets
        .into_iter()
        .map(|(layers, (blocks, bytes))| SharingBucket {
            layers,
            blocks,
            bytes,
        })
        .collect();

    report.store.referenced_blocks = all.len() as u64;
    report.store.referenced_bytes = all.iter().map(|id| lengths[id] as u64).sum();
    report.store.stored_blocks = stored.len() as u64;
    report.store.stored_block_bytes = stored.values().map(|l| *l as u64).sum();
    report.store.reclaimable_bytes = stored
        .iter()
        .filter(|(id, _)| !all.contains(id))
        .map(|(_, l)| *l as u64)
        .sum();
    let (held_logical, held_stored) = stored
        .iter()
        .filter_map(|(id, l)| lengths.get(id).map(|len| (*len as u64, *l as u64)))
        .fold((0, 0), |(a, b), (l, s)| (a + l, b + s));
    report.store.compression_ratio = if held_stored == 0 {
        1.0
    } else {
        held_logical as f64 / held_stored as f64
    };
    report.store.pack_bytes = store.blocks().stats().pack_bytes;
    if let Some((figures, local_pack_bytes)) = store.remote_figures() {
        let remote_only: Vec<&BlockId> = all.iter().filter(|id| !stored.contains_key(id)).collect();
        report.remote = Some(RemoteStatsFigures {
            remote_only_blocks: remote_only.len() as u64,
            remote_only_bytes: remote_only.iter().map(|id| lengths[*id] as u64).sum(),
            local_pack_bytes,
            cache_limit: store.cache_limit(),
            blocks_fetched: figures.blocks_fetched,
            bytes_fetched: figures.bytes_fetched,
            requests: figures.requests,
            bytes_sent: figures.bytes_sent,
        });
    }
    report.store.metadata_bytes = store.metadata_bytes();
    let nonzero = report.store.logical_bytes - report.store.zero_bytes;
    report.store.dedup_ratio = if report.store.referenced_bytes == 0 {
        0.0
    } else {
        nonzero as f64 / report.store.referenced_bytes as f64
    };

    report.top_shared_files = top_shared(&scan, &paths, options.top);
    copied_files.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.path.cmp(&b.path)));
    copied_files.truncate(options.top);
    report.top_copied_up_files = copied_files;
    Ok(report)
}

/// Files whose blocks other file records reference too, most shared bytes first.
fn top_shared(
    scan: &Scan<'_>,
    paths: &HashMap<(LayerId, NodeId), (String, String)>,
    top: usize,
) -> Vec<FileFigure> {
    let mut out = Vec::new();
    for (layer, records) in &scan.records {
        for (node, size, blocks) in records {
            let Some((owner, path)) = paths.get(&(*layer, *node)) else {
                continue;
            };
            let shared: u64 = blocks
                .iter()
                .filter(|(_, id, _)| scan.block_records.get(id).copied().unwrap_or(0) > 1)
                .map(|(_, _, len)| *len as u64)
                .sum();
            if shared > 0 {
                out.push(FileFigure {
                    owner: owner.clone(),
                    path: path.clone(),
                    size: *size,
                    bytes: shared,
                    whole_file_bytes: 0,
                });
            }
        }
    }
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.path.cmp(&b.path)));
    out.truncate(top);
    out
}
