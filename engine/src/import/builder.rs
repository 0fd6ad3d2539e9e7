//! Building one layer from a stream of entries (a directory walk or a layer tar), on top of
//! the layers below it. The tree is kept in memory while the entries arrive (the data goes to
//! the block pipeline meanwhile), then written into the import's staging layer.
//!
//! Path rules: a leading `/` is stripped, `.` and empty components are skipped, a `..`
//! component or a name over 255 bytes is refused (naming the entry), and an entry placed
//! under a symlink (or any non-directory) is refused — nothing is ever followed. OCI whiteouts: `.wh.NAME` deletes NAME from the layers
//! below; `.wh..wh..opq` hides every entry the layers below have in that directory.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::pipeline::{ContentId, Contents};
use crate::error::{Error, Result};
use crate::format::records::Dirent;
use crate::ids::{LayerId, MapRoot, NodeId};
use crate::layer::{NAME_MAX, check_name, lookup, readdir};
use crate::meta::records::{NEXT_NODE, Records};
use crate::oci::whiteout;
use crate::store_dir::Store;
use crate::tree::block_map;
use crate::tree::node::{Content, FileKind, NodeRecord, TimeNs};
use crate::tree::pages::MetaPages;

/// Attributes an entry carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryMeta {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: TimeNs,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file whose blocks went to the pipeline as `content`.
    File {
        content: ContentId,
        size: u64,
    },
    Dir,
    Symlink(Vec<u8>),
    /// Another name for the (earlier) entry at this path.
    HardLink(Vec<u8>),
    Device(FileKind, u64),
    Fifo,
    Socket,
}

struct Pending {
    record: NodeRecord,
    content: Option<(ContentId, u64)>,
}

pub struct LayerBuilder<'a> {
    store: &'a Store,
    lower: Vec<LayerId>,
    layer: LayerId,
    nodes: HashMap<NodeId, Pending>,
    dirents: HashMap<NodeId, BTreeMap<Vec<u8>, Dirent>>,
    ids: std::ops::Range<u64>,
    now: TimeNs,
    /// Lower directories this layer's entries name (as a parent or as a directory entry):
    /// they belong to this layer too, so an opaque marker in their parent keeps them.
    mentioned: HashSet<NodeId>,
}

/// Splits an entry path into its components, applying the path rules.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(Error::InvalidInput(format!(
                    "entry {:?} has a '..' component",
                    String::from_utf8_lossy(path)
                )));
            }
            // A whiteout names a file whose name may itself be NAME_MAX bytes long.
            name if whiteout::hidden(name).unwrap_or(name).len() > NAME_MAX => {
                return Err(Error::InvalidInput(format!(
                    "entry {:?} has a name of {} bytes (the limit is {NAME_MAX})",
                    String::from_utf8_lossy(path),
                    name.len()
                )));
            }
            name => out.push(name),
        }
    }
    Ok(out)
}

fn show(path: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(path))
}

impl<'a> LayerBuilder<'a> {
    /// Builds `layer` (a staging layer) over `lower` (top first).
    pub fn new(store: &'a Store, lower: Vec<LayerId>, layer: LayerId) -> LayerBuilder<'a> {
        LayerBuilder {
            store,
            lower,
            layer,
            nodes: HashMap::new(),
            dirents: HashMap::new(),
            ids: 0..0,
            now: crate::volume::now_ns(),
            mentioned: HashSet::new(),
        }
    }

    fn new_id(&mut self) -> Result<NodeId> {
        if self.ids.is_empty() {
            const CHUNK: u64 = 4096;
            let first = self.store.meta().write(|w| {
                let first = w.next_id(NEXT_NODE, 2)?;
                w.put(
                    crate::meta::Table::Counters,
                    NEXT_NODE.as_bytes(),
                    &(first + CHUNK).to_le_bytes(),
                );
                Ok(first)
            })?;
            self.ids = first..first + CHUNK;
        }
        Ok(NodeId(self.ids.next().expect("refilled")))
    }

    /// What `name` in `dir` is, this layer first, then the layers below.
    fn entry(&self, dir: NodeId, name: &[u8]) -> Result<Option<(NodeId, FileKind)>> {
        if let Some(found) = self.dirents.get(&dir).and_then(|d| d.get(name)) {
            return Ok(match found {
                Dirent::Node(node, kind) => Some((*node, *kind)),
                Dirent::Whiteout => None,
            });
        }
        let r = self.store.meta().read();
        lookup::entry(&r, &self.lower, dir, name)
    }

    fn lower_record(&self, node: NodeId) -> Result<Option<NodeRecord>> {
        let r = self.store.meta().read();
        Ok(lookup::node(&r, &self.lower, node)?.map(|(_, record)| record))
    }

    fn new_dir_record(&self, parent: NodeId, perm: u16) -> NodeRecord {
        let mut record = NodeRecord::new(FileKind::Dir, perm, 0, 0, self.now);
        record.content = Content::Dir { parent };
        record
    }

    /// The directory at `parts`, creating missing ones (tar archives may omit them).
    fn dir_at(&mut self, parts: &[&[u8]], whole: &[u8]) -> Result<NodeId> {
        let mut dir = NodeId::ROOT;
        for (i, part) in parts.iter().enumerate() {
            check_name(part)?;
            dir = match self.entry(dir, part)? {
                Some((node, FileKind::Dir)) => {
                    self.mentioned.insert(node);
                    node
                }
                Some((_, kind)) => {
                    let what = if kind == FileKind::Symlink {
                        "symlink"
                    } else {
                        "non-directory"
                    };
                    return Err(Error::InvalidInput(format!(
                        "entry {} is placed under {what} {}",
                        show(whole),
                        show(&parts[..=i].join(&b'/'))
                    )));
                }
                None => {
                    let id = self.new_id()?;
                    let record = self.new_dir_record(dir, 0o755);
                    self.nodes.insert(
                        id,
                        Pending {
                            record,
                            content: None,
                        },
                    );
                    self.put_dirent(dir, part, Dirent::Node(id, FileKind::Dir));
                    id
                }
            };
        }
        Ok(dir)
    }

    fn put_dirent(&mut self, dir: NodeId, name: &[u8], entry: Dirent) {
        self.dirents
            .entry(dir)
            .or_default()
            .insert(name.to_vec(), entry);
    }

    /// This layer's (possibly copied-up) record of `node`, for a change.
    fn record_mut(&mut self, node: NodeId) -> Result<&mut Pending> {
        if !self.nodes.contains_key(&node) {
            let record = self
                .lower_record(node)?
                .ok_or_else(|| Error::Corrupt(format!("node {node} is missing below")))?;
            self.nodes.insert(
                node,
                Pending {
                    record,
                    content: None,
                },
            );
        }
        Ok(self.nodes.get_mut(&node).expect("just ensured"))
    }

    /// Takes `name` out of `dir`: a whiteout when a layer below has it.
    fn remove(&mut self, dir: NodeId, name: &[u8]) -> Result<()> {
        let Some((node, kind)) = self.entry(dir, name)? else {
            return Ok(());
        };
        let r = self.store.meta().read();
        let below = lookup::entry(&r, &self.lower, dir, name)?;
        drop(r);
        match below {
            Some(_) => self.put_dirent(dir, name, Dirent::Whiteout),
            None => {
                if let Some(entries) = self.dirents.get_mut(&dir) {
                    entries.remove(name);
                }
            }
        }
        if kind != FileKind::Dir {
            let pending = self.record_mut(node)?;
            pending.record.nlink = pending.record.nlink.saturating_sub(1);
            if pending.record.nlink == 0 {
                self.nodes.remove(&node);
            }
        }
        Ok(())
    }

    /// Adds one entry.
    pub fn add(&mut self, path: &[u8], kind: EntryKind, meta: EntryMeta) -> Result<()> {
        let parts = components(path)?;
        let Some((name, parents)) = parts.split_last() else {
            // The root itself: only its attributes can change.
            if kind == EntryKind::Dir {
                let pending = self.record_mut_root()?;
                apply_meta(&mut pending.record, &meta);
            }
            return Ok(());
        };
        let dir = self.dir_at(parents, path)?;
        if *name == whiteout::OPAQUE {
            return self.make_opaque(dir);
        }
        if let Some(hidden) = whiteout::hidden(name) {
            check_name(hidden)?;
            return self.remove(dir, hidden);
        }
        check_name(name)?;
        match kind {
            EntryKind::Dir => self.add_dir(dir, name, &meta),
            EntryKind::HardLink(target) => self.add_link(dir, name, &target, path),
            other => {
                let existing = self.entry(dir, name)?;
                if existing.is_some() {
                    self.remove(dir, name)?;
                }
                let (file_kind, content, data) = match other {
                    EntryKind::File { content, size } => (
                        FileKind::File,
                        Content::File {
                            size,
                            root: MapRoot::ZERO,
                            stored_blocks: 0,
                        },
                        Some((content, size)),
                    ),
                    EntryKind::Symlink(target) => {
                        (FileKind::Symlink, Content::Symlink(target), None)
                    }
                    EntryKind::Device(kind, rdev) => (kind, Content::Device(rdev), None),
                    EntryKind::Fifo => (FileKind::Fifo, Content::Special, None),
                    EntryKind::Socket => (FileKind::Socket, Content::Special, None),
                    EntryKind::Dir | EntryKind::HardLink(_) => unreachable!("handled above"),
                };
                let id = self.new_id()?;
                let mut record =
                    NodeRecord::new(file_kind, meta.perm, meta.uid, meta.gid, meta.mtime);
                record.content = content;
                apply_meta(&mut record, &meta);
                self.nodes.insert(
                    id,
                    Pending {
                        record,
                        content: data,
                    },
                );
                self.put_dirent(dir, name, Dirent::Node(id, file_kind));
                Ok(())
            }
        }
    }

    fn record_mut_root(&mut self) -> Result<&mut Pending> {
        if !self.nodes.contains_key(&NodeId::ROOT) && self.lower_record(NodeId::ROOT)?.is_none() {
            let record = self.new_dir_record(NodeId::ROOT, 0o755);
            self.nodes.insert(
                NodeId::ROOT,
                Pending {
                    record,
                    content: None,
                },
            );
        }
        self.record_mut(NodeId::ROOT)
    }

    fn add_dir(&mut self, dir: NodeId, name: &[u8], meta: &EntryMeta) -> Result<()> {
        let node = match self.entry(dir, name)? {
            Some((node, FileKind::Dir)) => {
                self.mentioned.insert(node);
                node
            }
            Some(_) => {
                self.remove(dir, name)?;
                self.new_dir(dir, name)?
            }
            None => self.new_dir(dir, name)?,
        };
        let pending = self.record_mut(node)?;
        apply_meta(&mut pending.record, meta);
        Ok(())
    }

    fn new_dir(&mut self, dir: NodeId, name: &[u8]) -> Result<NodeId> {
        let id = self.new_id()?;
        let record = self.new_dir_record(dir, 0o755);
        self.nodes.insert(
            id,
            Pending {
                record,
                content: None,
            },
        );
        self.put_dirent(dir, name, Dirent::Node(id, FileKind::Dir));
        Ok(id)
    }

    fn add_link(&mut self, dir: NodeId, name: &[u8], target: &[u8], path: &[u8]) -> Result<()> {
        let missing = || {
            Error::InvalidInput(format!(
                "hard link {} names {}, which is not an earlier entry",
                show(path),
                show(target)
            ))
        };
        let parts = components(target)?;
        let (target_name, target_parents) = parts.split_last().ok_or_else(missing)?;
        let mut target_dir = NodeId::ROOT;
        for part in target_parents {
            match self.entry(target_dir, part)? {
                Some((node, FileKind::Dir)) => target_dir = node,
                _ => return Err(missing()),
            }
        }
        let (node, kind) = self.entry(target_dir, target_name)?.ok_or_else(missing)?;
        if kind == FileKind::Dir {
            return Err(Error::InvalidInput(format!(
                "hard link {} names directory {}",
                show(path),
                show(target)
            )));
        }
        if let Some((existing, _)) = self.entry(dir, name)? {
            if existing == node {
                return Ok(());
            }
            self.remove(dir, name)?;
        }
        self.record_mut(node)?.record.nlink += 1;
        self.put_dirent(dir, name, Dirent::Node(node, kind));
        Ok(())
    }

    /// `.wh..wh..opq`: every entry the layers below have in `dir` is whited out. Entries of
    /// this layer stay, wherever the marker comes (OCI: whiteouts apply only to lower layers),
    /// including a lower directory this layer already named: it stays, opaque in turn.
    fn make_opaque(&mut self, dir: NodeId) -> Result<()> {
        let r = self.store.meta().read();
        let below = readdir::list(&r, &self.lower, dir)?;
        drop(r);
        let entries = self.dirents.entry(dir).or_default();
        let mut kept_dirs = Vec::new();
        for entry in below {
            if entries.contains_key(&entry.name) {
                continue;
            }
            if entry.kind == FileKind::Dir && self.mentioned.contains(&entry.node) {
                kept_dirs.push(entry.node);
            } else {
                entries.insert(entry.name, Dirent::Whiteout);
            }
        }
        for kept in kept_dirs {
            self.make_opaque(kept)?;
        }
        Ok(())
    }
}

fn apply_meta(record: &mut NodeRecord, meta: &EntryMeta) {
    record.perm = meta.perm & 0o7777;
    record.uid = meta.uid;
    record.gid = meta.gid;
    record.mtime = meta.mtime;
    record.atime = meta.mtime;
    record.ctime = meta.mtime;
    record.xattrs = meta.xattrs.clone();
    record.xattrs.sort();
}

impl LayerBuilder<'_> {
    /// Writes the layer's tree into the metadata: records (files with their size and a
    /// placeholder root, filled by [`fill_contents`] once the pipeline is done), link counts
    /// of every directory it touches, and entries. Commits in batches (the layer is staging,
    /// so a crash midway leaves nothing visible). Returns the files whose content is pending.
    pub fn finish_tree(mut self) -> Result<Vec<(NodeId, ContentId, u64)>> {
        // Directories whose entries change get a record here, so their link count is right.
        let touched: Vec<NodeId> = self.dirents.keys().copied().collect();
        for dir in touched {
            if dir == NodeId::ROOT {
                self.record_mut_root()?;
            } else {
                self.record_mut(dir)?;
            }
        }
        let mut files = Vec::new();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for chunk in ids.chunks(2048) {
            self.store.meta().write(|w| {
                for id in chunk {
                    let pending = &self.nodes[id];
                    let mut record = pending.record.clone();
                    if let Some((content, size)) = pending.content {
                        files.push((*id, content, size));
                    }
                    if record.kind == FileKind::Dir {
                        record.nlink = 2 + self.subdirs(w, *id)?;
                    }
                    w.put_node(self.layer, *id, &record);
                }
                Ok(())
            })?;
            commit_if_large(self.store)?;
        }
        let dirs: Vec<_> = self.dirents.drain().collect();
        for (dir, entries) in dirs {
            self.store.meta().write(|w| {
                for (name, entry) in &entries {
                    w.put_dirent(self.layer, dir, name, *entry);
                }
                Ok(())
            })?;
            commit_if_large(self.store)?;
        }
        Ok(files)
    }

    /// Subdirectories `dir` shows once this layer is on top.
    fn subdirs(&self, r: &dyn crate::meta::MetaRead, dir: NodeId) -> Result<u32> {
        let mine = self.dirents.get(&dir);
        let mut count = 0;
        if let Some(entries) = mine {
            count += entries
                .values()
                .filter(|e| matches!(e, Dirent::Node(_, FileKind::Dir)))
                .count() as u32;
        }
        for entry in readdir::list(r, &self.lower, dir)? {
            let shadowed = mine.is_some_and(|m| m.contains_key(&entry.name));
            if !shadowed && entry.kind == FileKind::Dir {
                count += 1;
            }
        }
        Ok(count)
    }
}

fn commit_if_large(store: &Store) -> Result<()> {
    if store.meta().pending_bytes() > 64 << 20 {
        store.commit_metadata()?;
    }
    Ok(())
}

/// Sets the block maps of imported files, in every layer holding a record of them (a later
/// layer may hold a hard link's copied-up record).
pub fn fill_contents(
    store: &Store,
    layers: &[LayerId],
    files: &[(NodeId, ContentId, u64)],
    contents: &Contents,
) -> Result<()> {
    let bs = store.block_size() as u64;
    let empty = BTreeMap::new();
    for chunk in files.chunks(2048) {
        store.meta().write(|w| {
            for (node, content, size) in chunk {
                let changes = contents.get(content).unwrap_or(&empty);
                let n = block_map::block_count(*size, bs);
                let up = {
                    let pages = MetaPages {
                        meta: &*w,
                        cache: store.pages(),
                    };
                    block_map::update(&pages, MapRoot::ZERO, 0, n, changes)?
                };
                for (page, bytes) in &up.pages {
                    if !w.has_page(page)? {
                        w.put_page(page, bytes);
                    }
                }
                let content = Content::File {
                    size: *size,
                    root: up.root,
                    stored_blocks: up.stored_delta.max(0) as u64,
                };
                for layer in layers {
                    if let Some(mut record) = w.node(*layer, *node)? {
                        record.content = content.clone();
                        w.put_node(*layer, *node, &record);
                    }
                }
            }
            Ok(())
        })?;
        commit_if_large(store)?;
    }
    Ok(())
}
