//! `tessera diff`: what a container changed against its image — added, modified and deleted
//! paths, and for modified regular files the byte ranges whose blocks changed (block-granular:
//! the engine knows which blocks a write replaced, not which bytes inside them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{BlockId, LayerId, NodeId};
use crate::layer::walk;
use crate::meta::Reader;
use crate::meta::records::Records;
use crate::store_dir::Store;
use crate::tree::block_map::{self, block_count};
use crate::tree::node::{Content, FileKind, NodeRecord};
use crate::tree::pages::MetaPages;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffEntry {
    /// "A" (added), "M" (modified) or "D" (deleted).
    pub change: String,
    pub path: String,
    pub kind: String,
    /// Modified regular files: sizes before and after, and the changed ranges [start, end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizes: Option<(u64, u64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<(u64, u64)>,
}

struct Seen {
    node: NodeId,
    layer: LayerId,
    record: NodeRecord,
}

fn view(r: &Reader<'_>, layers: &[LayerId]) -> Result<BTreeMap<Vec<u8>, Seen>> {
    let mut out = BTreeMap::new();
    walk::walk(r, layers, &mut |v| {
        out.insert(
            v.path.to_vec(),
            Seen {
                node: v.node,
                layer: v.layer,
                record: v.record.clone(),
            },
        );
        Ok(())
    })?;
    Ok(out)
}

fn kind_name(kind: FileKind) -> String {
    format!("{kind:?}").to_lowercase()
}

impl Store {
    /// The changes of container `name` against the image it sits on.
    pub fn diff_container(&self, name: &str) -> Result<Vec<DiffEntry>> {
        self.push_kernel_caches(Some(name))?;
        self.sync()?;
        let r = self.meta().read();
        let container = r
            .container(name)?
            .ok_or_else(|| Error::NotFound(format!("container {name}")))?;
        let stack = r.stack_of(Some(container.upper))?;
        let upper = container.upper;
        let after = view(&r, &stack)?;
        let before = view(&r, &stack[1..])?;
        let bs = self.block_size() as u64;
        let mut out = Vec::new();
        for (path, new) in &after {
            let text = String::from_utf8_lossy(path).into_owned();
            let entry = |change: &str| DiffEntry {
                change: change.into(),
                path: text.clone(),
                kind: kind_name(new.record.kind),
                sizes: None,
                ranges: Vec::new(),
            };
            match before.get(path) {
                None => out.push(entry("A")),
                Some(old) if old.node != new.node || old.record.kind != new.record.kind => {
                    if old.record.kind != new.record.kind {
                        let mut deleted = entry("D");
                        deleted.kind = kind_name(old.record.kind);
                        out.push(deleted);
                        out.push(entry("A"));
                    } else {
                        out.push(self.modified(&r, entry("M"), &old.record, &new.record, bs)?);
                    }
                }
                Some(old) if new.layer == upper && !same_but_atime(&old.record, &new.record) => {
                    out.push(self.modified(&r, entry("M"), &old.record, &new.record, bs)?);
                }
                Some(_) => {}
            }
        }
        for (path, old) in &before {
            if !after.contains_key(path) {
                out.push(DiffEntry {
                    change: "D".into(),
                    path: String::from_utf8_lossy(path).into_owned(),
                    kind: kind_name(old.record.kind),
                    sizes: None,
                    ranges: Vec::new(),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path).then(b.change.cmp(&a.change)));
        Ok(out)
    }

    fn modified(
        &self,
        r: &Reader<'_>,
        mut entry: DiffEntry,
        old: &NodeRecord,
        new: &NodeRecord,
        bs: u64,
    ) -> Result<DiffEntry> {
        let (
            Content::File {
                size: old_size,
                root: old_root,
                ..
            },
            Content::File {
                size: new_size,
                root: new_root,
                ..
            },
        ) = (&old.content, &new.content)
        else {
            return Ok(entry);
        };
        entry.sizes = Some((*old_size, *new_size));
        if old_root == new_root && old_size == new_size {
            return Ok(entry);
        }
        let pages = MetaPages {
            meta: r,
            cache: self.pages(),
        };
        let ids = |size: u64, root| -> Result<Vec<BlockId>> {
            let n = block_count(size, bs);
            block_map::block_ids(&pages, root, n, 0, n)
        };
        let (before, after) = (ids(*old_size, *old_root)?, ids(*new_size, *new_root)?);
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (i, id) in after.iter().enumerate() {
            if before.get(i) == Some(id) && !(i + 1 == before.len() && old_size != new_size) {
                continue;
            }
            let start = i as u64 * bs;
            let end = (start + bs).min(*new_size);
            match ranges.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => ranges.push((start, end)),
            }
        }
        entry.ranges = ranges;
        Ok(entry)
    }
}

fn same_but_atime(a: &NodeRecord, b: &NodeRecord) -> bool {
    let mut b = b.clone();
    b.atime = a.atime;
    *a == b
}
