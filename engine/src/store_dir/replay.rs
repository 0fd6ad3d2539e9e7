//! Replaying the intent log at open (see `intent_log`): first the records of metadata changes
//! the last commit does not hold, in order, committed at once; then, for each node, the
//! records made since its last committed flush are applied in order through its container's
//! view (when they were made over the node's committed state), then everything is committed
//! and the log starts over.

use std::collections::BTreeMap;

use super::Store;
use super::intent_log::{self, Base, Entry, IntentLog, Range, Record};
use crate::error::Result;
use crate::ids::{LayerId, NodeId};
use crate::layer::lookup;
use crate::meta::Meta;
use crate::meta::records::Records;
use crate::tree::node::Content;
use crate::volume::{SetAttr, Volume};

impl Store {
    /// Opens the intent log and applies (and commits) its metadata changes; returns it with
    /// its records of file data, for `replay_log`.
    pub(super) fn open_log(&self) -> Result<(IntentLog, Vec<Record>)> {
        let (flushed, covered) = {
            let r = self.meta().read();
            (intent_log::flushed(&r)?, Meta::covered(&r)?)
        };
        let seen = flushed.into_values().max().unwrap_or(0).max(covered);
        let (log, entries) = IntentLog::open(&self.inner.io, &self.inner.layout, seen)?;
        let mut records = Vec::new();
        let mut applied = 0;
        for entry in entries {
            match entry {
                Entry::Data(record) => records.push(record),
                Entry::Meta(m) if m.seq > covered => {
                    self.meta().apply_logged(m.seq, &m.changes)?;
                    applied += 1;
                }
                Entry::Meta(_) => {}
            }
        }
        if applied > 0 {
            tracing::info!("replayed {applied} intent-log records of metadata changes");
            self.commit_metadata()?;
        }
        Ok((log, records))
    }

    pub(super) fn replay_log(&self, log: &IntentLog, records: Vec<Record>) -> Result<()> {
        let flushed = intent_log::flushed(&self.meta().read())?;
        // Each node's records since its last committed flush, in order: each carries what
        // changed since the one before, the first what changed since that flush.
        let mut chains: BTreeMap<(LayerId, NodeId), Vec<Record>> = BTreeMap::new();
        for record in records {
            let key = (record.layer, record.node);
            if flushed.get(&key).is_some_and(|seq| record.seq <= *seq) {
                continue;
            }
            chains.entry(key).or_default().push(record);
        }
        // The containers whose writable layers the records name.
        let containers: BTreeMap<LayerId, String> = self
            .meta()
            .read()
            .containers()?
            .into_iter()
            .map(|(name, c)| (c.upper, name))
            .filter(|(layer, _)| chains.keys().any(|(l, _)| l == layer))
            .collect();
        let mut views: BTreeMap<LayerId, Volume> = BTreeMap::new();
        for ((layer, node), chain) in &chains {
            let Some(name) = containers.get(layer) else {
                continue; // committed or removed since: its flush made the records obsolete
            };
            match self.committed_base(*layer, *node)? {
                Some(base) if chain.iter().all(|r| r.base == base) => {}
                Some(_) => {
                    tracing::warn!(
                        "intent log: the records of node {node} apply to another state; skipped"
                    );
                    continue;
                }
                None => continue,
            }
            if !views.contains_key(layer) {
                let view = self.open_container(name)?;
                // What the log holds was acknowledged: it is replayed whatever the limit.
                view.ignore_size_limit();
                views.insert(*layer, view);
            }
            tracing::info!(
                "replaying {} intent-log records of node {node}",
                chain.len()
            );
            apply(&views[layer], *node, chain)?;
        }
        for view in views.values() {
            view.sync()?;
        }
        log.restart()?;
        if !flushed.is_empty() {
            self.meta().write(intent_log::forget_flushed)?;
            self.commit_metadata()?;
        }
        Ok(())
    }

    /// The committed block-map root and size of a file as the view of a container whose
    /// writable layer is `layer` sees it (`None`: no such file).
    fn committed_base(&self, layer: LayerId, node: NodeId) -> Result<Option<Base>> {
        let r = self.meta().read();
        let layers = r.stack_of(Some(layer))?;
        Ok(match lookup::node(&r, &layers, node)? {
            Some((_, record)) => match record.content {
                Content::File { size, root, .. } => Some(Base { root, size }),
                _ => None,
            },
            None => None,
        })
    }
}

/// Applies a node's records in order, and leaves the file with the times of the last: the
/// time of its writes (or the kernel's write-back of it), or — when an explicit time set
/// after the writes took their place — the times the metadata holds.
fn apply(view: &Volume, node: NodeId, chain: &[Record]) -> Result<()> {
    let (mtime, ctime) = match chain.last().and_then(|r| r.mtime) {
        Some(t) => (t, t),
        None => {
            let attr = view.getattr(node)?;
            (attr.mtime, attr.ctime)
        }
    };
    let resize = |size| {
        view.setattr(
            node,
            &SetAttr {
                size: Some(size),
                ..Default::default()
            },
        )
    };
    for record in chain {
        resize(record.min_size)?;
        resize(record.size)?;
        for range in &record.ranges {
            match range {
                Range::Data { offset, bytes } => {
                    view.write(node, *offset, bytes)?;
                }
                Range::Zero { offset, len } => {
                    view.write(node, *offset, &vec![0u8; *len as usize])?;
                }
            }
        }
    }
    view.setattr(
        node,
        &SetAttr {
            mtime: Some(mtime),
            ctime: Some(ctime),
            ..Default::default()
        },
    )?;
    Ok(())
}
