//! Checking a store: layer chains, images and containers, every node record and directory
//! entry, every block map (pages present, verified, shaped right; blocks present), link counts
//! of every view, orphans, and with `verify_data` every stored block against its hash. A
//! problem is reported, never repaired silently.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::records::{Dirent, LayerState};
use crate::ids::{BlockId, LayerId, NodeId};
use crate::layer::{lookup, walk};
use crate::meta::Reader;
use crate::meta::records::Records;
use crate::store_dir::Store;
use crate::tree::block_map::{self, block_count};
use crate::tree::node::{Content, FileKind};
use crate::tree::pages::MetaPages;

#[derive(Debug, Clone, Copy, Default)]
pub struct FsckOptions {
    /// Also read every stored block and check it against its id.
    pub verify_data: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FsckReport {
    pub problems: Vec<String>,
    pub layers: u64,
    pub nodes: u64,
    pub entries: u64,
    pub views: u64,
    pub blocks_referenced: u64,
    pub blocks_verified: u64,
    pub bytes_verified: u64,
    pub seconds: f64,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

struct Checker<'a> {
    store: &'a Store,
    r: Reader<'a>,
    report: FsckReport,
    referenced: HashSet<BlockId>,
    /// Referenced blocks that are missing or fail verification.
    damaged: HashSet<BlockId>,
    /// Problems not listed (past `MAX_PROBLEMS`).
    unlisted: u64,
}

/// The report lists at most this many problems, the files hit by damage first.
const MAX_PROBLEMS: usize = 1000;

impl Checker<'_> {
    fn problem(&mut self, text: String) {
        if self.report.problems.len() < MAX_PROBLEMS {
            self.report.problems.push(text);
        } else {
            self.unlisted += 1;
        }
    }

    fn check_lifecycle(&mut self) -> Result<Vec<(String, Vec<LayerId>)>> {
        let mut views = Vec::new();
        let layers: HashMap<LayerId, _> = self.r.layers()?.into_iter().collect();
        self.report.layers = layers.len() as u64;
        for (id, record) in &layers {
            if let Some(parent) = record.parent
                && !layers.contains_key(&parent)
            {
                self.problem(format!("layer {id}: parent layer {parent} is missing"));
            }
        }
        for (name, image) in self.r.images()? {
            match layers.get(&image.top) {
                None => self.problem(format!("image {name}: top layer {} is missing", image.top)),
                Some(l) if l.state != LayerState::Committed => self.problem(format!(
                    "image {name}: top layer {} is not committed",
                    image.top
                )),
                Some(_) => match self.r.stack_of(Some(image.top)) {
                    Ok(stack) => views.push((format!("image {name}"), stack)),
                    Err(e) => self.problem(format!("image {name}: {e}")),
                },
            }
        }
        for (name, c) in self.r.containers()? {
            match layers.get(&c.upper) {
                None => self.problem(format!("container {name}: layer {} is missing", c.upper)),
                Some(l) if l.parent != c.base => self.problem(format!(
                    "container {name}: layer {} does not sit on its base",
                    c.upper
                )),
                Some(_) => match self.r.stack_of(Some(c.upper)) {
                    Ok(stack) => views.push((format!("container {name}"), stack)),
                    Err(e) => self.problem(format!("container {name}: {e}")),
                },
            }
        }
        Ok(views)
    }

    /// Records and entries of one layer, and the block maps of its files.
    fn check_layer(&mut self, layer: LayerId) -> Result<()> {
        let stack = match self.r.stack_of(Some(layer)) {
            Ok(stack) => stack,
            Err(e) => {
                self.problem(format!("layer {layer}: {e}"));
                return Ok(());
            }
        };
        let bs = self.store.block_size() as u64;
        let nodes = match self.r.layer_nodes(layer) {
            Ok(nodes) => nodes,
            Err(e) => {
                self.problem(format!("layer {layer}: unreadable node records: {e}"));
                return Ok(());
            }
        };
        self.report.nodes += nodes.len() as u64;
        for (node, record) in nodes {
            let Content::File {
                size,
                root,
                stored_blocks,
            } = record.content
            else {
                continue;
            };
            let pages = MetaPages {
                meta: &self.r,
                cache: self.store.pages(),
            };
            let mut found = Vec::new();
            let walked = block_map::visit(
                &pages,
                root,
                block_count(size, bs),
                &mut |_| true,
                &mut |_, id| found.push(id),
            );
            if let Err(e) = walked {
                self.problem(format!("layer {layer} node {node}: block map: {e}"));
                continue;
            }
            if found.len() as u64 != stored_blocks {
                self.problem(format!(
                    "layer {layer} node {node}: records {stored_blocks} stored blocks, maps {}",
                    found.len()
                ));
            }
            for id in found {
                if self.referenced.insert(id) && !self.store.blocks().contains(&id)? {
                    self.damaged.insert(id);
                    self.problem(format!(
                        "layer {layer} node {node}: block {id} is referenced but not stored"
                    ));
                }
            }
        }
        let dirents = match self.r.layer_dirents(layer) {
            Ok(dirents) => dirents,
            Err(e) => {
                self.problem(format!("layer {layer}: unreadable directory entries: {e}"));
                return Ok(());
            }
        };
        self.report.entries += dirents.len() as u64;
        for (parent, name, entry) in dirents {
            let Dirent::Node(child, kind) = entry else {
                continue;
            };
            match lookup::node(&self.r, &stack, child)? {
                None => self.problem(format!(
                    "layer {layer}: entry {:?} in directory {parent} names node {child}, which has no record",
                    String::from_utf8_lossy(&name)
                )),
                Some((_, record)) if record.kind != kind => self.problem(format!(
                    "layer {layer}: entry {:?} says {kind:?} but node {child} is {:?}",
                    String::from_utf8_lossy(&name),
                    record.kind
                )),
                Some(_) => {}
            }
        }
        for orphan in self.r.orphans(layer)? {
            match self.r.node(layer, orphan)? {
                Some(record) if record.nlink == 0 => {}
                _ => self.problem(format!(
                    "layer {layer}: orphan {orphan} is not an unlinked node"
                )),
            }
        }
        Ok(())
    }

    /// Link counts of a view: names per file, subdirectories per directory.
    fn check_links(&mut self, what: &str, stack: &[LayerId]) -> Result<()> {
        let mut names: HashMap<NodeId, (u32, u32)> = HashMap::new();
        let mut subdirs: HashMap<NodeId, u32> = HashMap::new();
        let mut dirs: Vec<(NodeId, u32, Vec<u8>)> = Vec::new();
        let result = walk::walk(&self.r, stack, &mut |v| {
            if v.record.kind == FileKind::Dir {
                *subdirs.entry(v.parent).or_default() += 1;
                dirs.push((v.node, v.record.nlink, v.path.to_vec()));
            } else {
                names.entry(v.node).or_insert((0, v.record.nlink)).0 += 1;
            }
            Ok(())
        });
        if let Err(e) = result {
            self.problem(format!("{what}: {e}"));
            return Ok(());
        }
        for (node, (seen, recorded)) in names {
            if seen != recorded {
                self.problem(format!(
                    "{what}: node {node} has {seen} names but nlink {recorded}"
                ));
            }
        }
        for (node, recorded, path) in dirs {
            let expected = 2 + subdirs.get(&node).copied().unwrap_or(0);
            if recorded != expected {
                self.problem(format!(
                    "{what}: directory {:?} has nlink {recorded}, expected {expected}",
                    String::from_utf8_lossy(&path)
                ));
            }
        }
        Ok(())
    }

    fn verify_blocks(&mut self) -> Result<()> {
        let bs = self.store.block_size() as usize;
        let mut buf = vec![0u8; bs];
        for (id, location) in self.store.blocks().locations()? {
            match self.store.blocks().get(&id, &mut buf) {
                Ok(n) => {
                    self.report.blocks_verified += 1;
                    self.report.bytes_verified += n as u64;
                }
                Err(e) => {
                    self.damaged.insert(id);
                    self.problem(format!(
                        "block {id} (pack {}, offset {}): {e}",
                        location.pack, location.offset
                    ))
                }
            }
        }
        Ok(())
    }

    /// Names every file of every image and container that reads a damaged block: what a
    /// user restores or rebuilds.
    fn report_damaged_files(&mut self, views: &[(String, Vec<LayerId>)]) -> Result<()> {
        let bs = self.store.block_size() as u64;
        let mut hits = Vec::new();
        for (what, stack) in views {
            let pages = MetaPages {
                meta: &self.r,
                cache: self.store.pages(),
            };
            let damaged = &self.damaged;
            let walked = walk::walk(&self.r, stack, &mut |v| {
                let Content::File { size, root, .. } = &v.record.content else {
                    return Ok(());
                };
                let mut lost = Vec::new();
                block_map::visit(
                    &pages,
                    *root,
                    block_count(*size, bs),
                    &mut |_| true,
                    &mut |index, id| {
                        if damaged.contains(&id) {
                            lost.push(index);
                        }
                    },
                )?;
                if let Some(first) = lost.first() {
                    hits.push(format!(
                        "{what}: file {:?} is damaged: {} of its blocks unreadable (the first at byte {})",
                        String::from_utf8_lossy(v.path),
                        lost.len(),
                        first * bs
                    ));
                }
                Ok(())
            });
            if let Err(e) = walked {
                hits.push(format!("{what}: {e}"));
            }
        }
        // What a user acts on comes first: the files, ahead of the blocks and pages behind.
        let keep = MAX_PROBLEMS.saturating_sub(hits.len().min(MAX_PROBLEMS));
        let others = std::mem::take(&mut self.report.problems);
        self.unlisted +=
            (others.len().saturating_sub(keep) + hits.len().saturating_sub(MAX_PROBLEMS)) as u64;
        self.report.problems = hits;
        self.report.problems.truncate(MAX_PROBLEMS);
        self.report.problems.extend(others.into_iter().take(keep));
        Ok(())
    }
}

impl Store {
    /// Checks the store; problems are listed in the report (a clean store has none).
    pub fn fsck(&self, options: &FsckOptions) -> Result<FsckReport> {
        let started = Instant::now();
        self.sync()?;
        let _blocks_stay = self.reclaim_guard();
        let mut checker = Checker {
            store: self,
            r: self.meta().read(),
            report: FsckReport::default(),
            referenced: HashSet::new(),
            damaged: HashSet::new(),
            unlisted: 0,
        };
        let views = checker.check_lifecycle()?;
        let layers: Vec<LayerId> = checker.r.layers()?.into_iter().map(|(id, _)| id).collect();
        for layer in layers {
            checker.check_layer(layer)?;
        }
        checker.report.views = views.len() as u64;
        for (what, stack) in &views {
            checker.check_links(what, stack)?;
        }
        checker.report.blocks_referenced = checker.referenced.len() as u64;
        checker.report.problems.extend(self.open_to_others()?);
        if options.verify_data {
            checker.verify_blocks()?;
        }
        for damage in self.blocks().damage() {
            checker.problem(damage);
        }
        if !checker.damaged.is_empty() {
            checker.report_damaged_files(&views)?;
        }
        if checker.unlisted > 0 {
            let more = format!("… and {} more problems not listed", checker.unlisted);
            checker.report.problems.push(more);
        }
        let mut report = checker.report;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}
