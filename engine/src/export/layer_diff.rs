//! One layer as an OCI layer tar: what the view of the layer and the layers below it shows
//! differently from the view of the layers below alone, as path-based tar entries.
//!
//! Tessera layers are keyed by node, OCI layers by path, so the two views are walked side by
//! side from the root. In a directory both views show as the same node:
//! - a name the lower view shows and the upper does not is whited out (`.wh.NAME`);
//! - a name showing the same node in both is emitted when the layer changed the node's
//!   record in a way a tar can carry (attributes, xattrs, content — with its full content:
//!   OCI has no metadata-only entries), and descended into when it is a directory;
//! - a name showing another node is emitted with its whole subtree (a renamed directory
//!   thus becomes a whiteout at the old path plus the subtree at the new one); where the
//!   lower view had a directory and the upper shows a different directory, the new one is
//!   opaque (`.wh..wh..opq` right after it); where a directory and a non-directory trade
//!   places, the old name is whited out first.
//!
//! Whiteouts come before the other entries of their directory (as the image spec asks).
//! Hard links: the first name of a node this tar writes carries the data, later names are
//! link entries to it; a node the layer did not change, written under a new name, is a
//! link to a name it keeps in the lower view (a layer tar may link to a lower layer's
//! path). Sockets have no tar form and are left out (as GNU tar does).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, Result};
use crate::ids::{BlockId, LayerId, MapRoot, NodeId};
use crate::layer::{lookup, readdir};
use crate::meta::records::Records;
use crate::oci::whiteout;
use crate::store_dir::Store;
use crate::tree::block_map;
use crate::tree::node::{Content, FileKind, NodeRecord};
use crate::tree::pages::MetaPages;

/// What one layer tar holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffCounts {
    pub entries: u64,
    pub file_bytes: u64,
}

enum Step {
    /// `.wh.NAME` for this path.
    Whiteout(Vec<u8>),
    /// `.wh..wh..opq` in this directory.
    Opaque(Vec<u8>),
    Node {
        path: Vec<u8>,
        node: NodeId,
        record: NodeRecord,
        /// The layer left the node as the lower view has it (a new name only).
        unchanged: bool,
    },
}

/// For nodes of several names: a name each keeps unchanged in the lower view.
type KeptNames = HashMap<NodeId, Vec<u8>>;

/// The diff of `view[0]` over `view[1..]` (top first).
pub struct LayerDiff<'s> {
    store: &'s Store,
    view: Vec<LayerId>,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

/// Whether two records of a node differ in what a tar entry carries.
fn differs(a: &NodeRecord, b: &NodeRecord) -> bool {
    let content = match (&a.content, &b.content) {
        (
            Content::File {
                size: sa, root: ra, ..
            },
            Content::File {
                size: sb, root: rb, ..
            },
        ) => sa != sb || ra != rb,
        (Content::Dir { .. }, Content::Dir { .. }) => false,
        (x, y) => x != y,
    };
    content
        || a.kind != b.kind
        || a.perm != b.perm
        || a.uid != b.uid
        || a.gid != b.gid
        || a.mtime.div_euclid(1_000_000_000) != b.mtime.div_euclid(1_000_000_000)
        || a.xattrs != b.xattrs
}

impl<'s> LayerDiff<'s> {
    /// `view`: the layer and every layer below it, top first.
    pub fn new(store: &'s Store, view: Vec<LayerId>) -> LayerDiff<'s> {
        LayerDiff { store, view }
    }

    fn layer(&self) -> LayerId {
        self.view[0]
    }

    fn lower(&self) -> &[LayerId] {
        &self.view[1..]
    }

    /// The node's record in the upper view, and whether this layer holds it.
    fn upper_record(&self, node: NodeId) -> Result<(NodeRecord, bool)> {
        let r = self.store.meta().read();
        let (layer, record) = lookup::node(&r, &self.view, node)?
            .ok_or_else(|| Error::Corrupt(format!("node {node} has no record")))?;
        Ok((record, layer == self.layer()))
    }

    fn lower_record(&self, node: NodeId) -> Result<Option<NodeRecord>> {
        let r = self.store.meta().read();
        Ok(lookup::node(&r, self.lower(), node)?.map(|(_, record)| record))
    }

    /// Lists the steps of the diff, and for nodes of several names a name each keeps
    /// unchanged in the lower view.
    fn plan(&self) -> Result<(Vec<Step>, KeptNames)> {
        let mut steps = Vec::new();
        let mut kept = HashMap::new();
        let root = {
            let r = self.store.meta().read();
            r.node(self.layer(), NodeId::ROOT)?
        };
        if let Some(record) = root {
            let lower = self.lower_record(NodeId::ROOT)?;
            if self.lower().is_empty() || lower.is_none_or(|l| differs(&record, &l)) {
                steps.push(Step::Node {
                    path: Vec::new(),
                    node: NodeId::ROOT,
                    record,
                    unchanged: false,
                });
            }
        }
        self.kept_dir(NodeId::ROOT, &[], &mut steps, &mut kept)?;
        Ok((steps, kept))
    }

    /// A directory both views show as the same node.
    fn kept_dir(
        &self,
        dir: NodeId,
        path: &[u8],
        steps: &mut Vec<Step>,
        kept: &mut KeptNames,
    ) -> Result<()> {
        let (upper, lower) = {
            let r = self.store.meta().read();
            (
                readdir::list(&r, &self.view, dir)?,
                readdir::list(&r, self.lower(), dir)?,
            )
        };
        let lower: BTreeMap<Vec<u8>, readdir::Entry> =
            lower.into_iter().map(|e| (e.name.clone(), e)).collect();
        let upper_names: BTreeMap<&[u8], &readdir::Entry> =
            upper.iter().map(|e| (e.name.as_slice(), e)).collect();
        for (name, old) in &lower {
            let hidden = match upper_names.get(name.as_slice()) {
                None => true,
                Some(new) => {
                    new.node != old.node
                        && (new.kind == FileKind::Dir) != (old.kind == FileKind::Dir)
                }
            };
            if hidden {
                steps.push(Step::Whiteout(join(path, name)));
            }
        }
        for entry in &upper {
            let child = join(path, &entry.name);
            let (record, mine) = self.upper_record(entry.node)?;
            match lower.get(&entry.name) {
                Some(old) if old.node == entry.node => {
                    let changed = mine
                        && self
                            .lower_record(entry.node)?
                            .is_none_or(|l| differs(&record, &l));
                    let is_dir = record.kind == FileKind::Dir;
                    if changed {
                        steps.push(Step::Node {
                            path: child.clone(),
                            node: entry.node,
                            record,
                            unchanged: false,
                        });
                    } else if !is_dir && record.nlink > 1 {
                        kept.entry(entry.node).or_insert_with(|| child.clone());
                    }
                    if is_dir {
                        self.kept_dir(entry.node, &child, steps, kept)?;
                    }
                }
                old => {
                    let opaque = old.is_some_and(|o| o.kind == FileKind::Dir)
                        && record.kind == FileKind::Dir;
                    self.push_new(entry.node, record, &child, steps)?;
                    if opaque {
                        steps.push(Step::Opaque(child.clone()));
                    }
                    if entry.kind == FileKind::Dir {
                        self.new_dir(entry.node, &child, steps)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn push_new(
        &self,
        node: NodeId,
        record: NodeRecord,
        path: &[u8],
        steps: &mut Vec<Step>,
    ) -> Result<()> {
        let unchanged = record.kind != FileKind::Dir
            && record.nlink > 1
            && self
                .lower_record(node)?
                .is_some_and(|l| !differs(&record, &l));
        steps.push(Step::Node {
            path: path.to_vec(),
            node,
            record,
            unchanged,
        });
        Ok(())
    }

    /// A directory the lower view does not have at this path: everything in it.
    fn new_dir(&self, dir: NodeId, path: &[u8], steps: &mut Vec<Step>) -> Result<()> {
        let entries = {
            let r = self.store.meta().read();
            readdir::list(&r, &self.view, dir)?
        };
        for entry in entries {
            let child = join(path, &entry.name);
            let (record, _) = self.upper_record(entry.node)?;
            self.push_new(entry.node, record, &child, steps)?;
            if entry.kind == FileKind::Dir {
                self.new_dir(entry.node, &child, steps)?;
            }
        }
        Ok(())
    }

    /// Writes the layer tar to `out`.
    pub fn write(&self, out: impl Write) -> Result<DiffCounts> {
        let (steps, kept) = self.plan()?;
        let mut builder = ::tar::Builder::new(out);
        builder.follow_symlinks(false);
        let mut counts = DiffCounts::default();
        let mut first: HashMap<NodeId, Vec<u8>> = HashMap::new();
        for step in steps {
            match step {
                Step::Whiteout(path) => {
                    let (dir, name) = match path.iter().rposition(|b| *b == b'/') {
                        Some(i) => (&path[..i], &path[i + 1..]),
                        None => (&b""[..], &path[..]),
                    };
                    marker(&mut builder, &join(dir, &whiteout::of(name)))?;
                }
                Step::Opaque(dir) => marker(&mut builder, &join(&dir, whiteout::OPAQUE))?,
                Step::Node {
                    path,
                    node,
                    record,
                    unchanged,
                } => {
                    if record.kind == FileKind::Socket {
                        continue; // no tar form
                    }
                    if record.kind != FileKind::Dir {
                        let target = first
                            .get(&node)
                            .cloned()
                            .or_else(|| unchanged.then(|| kept.get(&node).cloned()).flatten());
                        if let Some(target) = target {
                            first.entry(node).or_insert_with(|| target.clone());
                            link(&mut builder, &path, &target, &record)?;
                            counts.entries += 1;
                            continue;
                        }
                        first.insert(node, path.clone());
                    }
                    self.entry(&mut builder, &path, &record)?;
                    counts.entries += 1;
                    counts.file_bytes += match record.content {
                        Content::File { size, .. } => size,
                        _ => 0,
                    };
                }
            }
        }
        builder
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| Error::io("finishing the layer tar", e))?;
        Ok(counts)
    }

    /// Writes one full entry (not of a socket).
    fn entry<W: Write>(
        &self,
        builder: &mut ::tar::Builder<W>,
        path: &[u8],
        record: &NodeRecord,
    ) -> Result<()> {
        let shown = String::from_utf8_lossy(path).into_owned();
        let fail = |e: std::io::Error| Error::io(format!("writing tar entry {shown:?}"), e);
        let mut header = header_of(record);
        if !record.xattrs.is_empty() {
            let keys: Vec<String> = record
                .xattrs
                .iter()
                .map(|(k, _)| format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)))
                .collect();
            let pairs = keys
                .iter()
                .zip(&record.xattrs)
                .map(|(k, (_, v))| (k.as_str(), v.as_slice()));
            builder.append_pax_extensions(pairs).map_err(fail)?;
        }
        let empty: &[u8] = &[];
        match &record.content {
            Content::File { size, root, .. } => {
                header.set_entry_type(::tar::EntryType::Regular);
                header.set_size(*size);
                let data = RecordData::new(self.store, *root, *size);
                builder.append_data(&mut header, os(path), data)
            }
            Content::Dir { .. } => {
                header.set_entry_type(::tar::EntryType::Directory);
                let dir = if path.is_empty() {
                    b"./".to_vec()
                } else {
                    [path, b"/"].concat()
                };
                builder.append_data(&mut header, os(&dir), empty)
            }
            Content::Symlink(target) => {
                header.set_entry_type(::tar::EntryType::Symlink);
                builder.append_link(&mut header, os(path), os(target))
            }
            Content::Device(rdev) => {
                header.set_entry_type(if record.kind == FileKind::CharDev {
                    ::tar::EntryType::Char
                } else {
                    ::tar::EntryType::Block
                });
                header
                    .set_device_major(libc::major(*rdev))
                    .and_then(|_| header.set_device_minor(libc::minor(*rdev)))
                    .map_err(fail)?;
                builder.append_data(&mut header, os(path), empty)
            }
            Content::Special => {
                header.set_entry_type(::tar::EntryType::Fifo);
                builder.append_data(&mut header, os(path), empty)
            }
        }
        .map_err(fail)?;
        Ok(())
    }
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

fn header_of(record: &NodeRecord) -> ::tar::Header {
    let mut header = ::tar::Header::new_gnu();
    header.set_mode(record.perm as u32);
    header.set_uid(record.uid as u64);
    header.set_gid(record.gid as u64);
    header.set_mtime(record.mtime.div_euclid(1_000_000_000).max(0) as u64);
    header.set_size(0);
    header
}

/// An empty regular file: a whiteout or an opaque marker.
fn marker<W: Write>(builder: &mut ::tar::Builder<W>, path: &[u8]) -> Result<()> {
    let mut header = ::tar::Header::new_gnu();
    header.set_entry_type(::tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(0);
    header.set_mtime(0);
    builder
        .append_data(&mut header, os(path), &[][..])
        .map_err(|e| {
            let shown = String::from_utf8_lossy(path);
            Error::io(format!("writing tar entry {shown:?}"), e)
        })
}

fn link<W: Write>(
    builder: &mut ::tar::Builder<W>,
    path: &[u8],
    target: &[u8],
    record: &NodeRecord,
) -> Result<()> {
    let mut header = header_of(record);
    header.set_entry_type(::tar::EntryType::Link);
    builder
        .append_link(&mut header, os(path), os(target))
        .map_err(|e| {
            let shown = String::from_utf8_lossy(path);
            Error::io(format!("writing tar entry {shown:?}"), e)
        })
}

/// A file's bytes, read from its block map (not through a view).
pub struct RecordData<'s> {
    store: &'s Store,
    root: MapRoot,
    size: u64,
    blocks: u64,
    /// Next block to load.
    next: u64,
    ids: std::collections::VecDeque<BlockId>,
    buf: Vec<u8>,
    at: usize,
}

impl<'s> RecordData<'s> {
    pub fn new(store: &'s Store, root: MapRoot, size: u64) -> RecordData<'s> {
        RecordData {
            store,
            root,
            size,
            blocks: block_map::block_count(size, store.block_size() as u64),
            next: 0,
            ids: Default::default(),
            buf: Vec::new(),
            at: 0,
        }
    }

    fn load(&mut self) -> Result<()> {
        let bs = self.store.block_size() as u64;
        if self.ids.is_empty() {
            let r = self.store.meta().read();
            let pages = MetaPages {
                meta: &r,
                cache: self.store.pages(),
            };
            self.ids.extend(block_map::block_ids(
                &pages,
                self.root,
                self.blocks,
                self.next,
                256,
            )?);
        }
        let id = self
            .ids
            .pop_front()
            .ok_or_else(|| Error::Corrupt(format!("block map {} ends early", self.root)))?;
        let len = (self.size - self.next * bs).min(bs) as usize;
        self.buf.clear();
        self.buf.resize(bs as usize, 0);
        if !id.is_zero() {
            self.store.blocks().get(&id, &mut self.buf)?;
        }
        self.buf.truncate(len);
        self.at = 0;
        self.next += 1;
        Ok(())
    }
}

impl Read for RecordData<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            if self.next >= self.blocks {
                return Ok(0);
            }
            self.load().map_err(std::io::Error::other)?;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
