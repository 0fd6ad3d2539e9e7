//! Replaying the intent log at open (see `intent_log`): for each node, the records made since
//! its last committed flush are applied in order through its container's view (when they were
//! made over the node's committed state), then everything is committed and the log starts
//! over.

use std::collections::BTreeMap;

use super::Store;
use super::intent_log::{self, Base, IntentLog, Range, Record};
use crate::error::Result;
use crate::ids::{LayerId, NodeId};
use crate::layer::lookup;
use crate::meta::records::Records;
use crate::tree::node::Content;
use crate::volume::{SetAttr, Volume};

impl Store {
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
        let mut newest = BTreeMap::new();
        for (key, chain) in chains {
            match self.committed_base(key.0, key.1)? {
                Some(base) if chain.iter().all(|r| r.base == base) => {
                    newest.insert(key, chain);
                }
                Some(_) => tracing::warn!(
                    "intent log: the records of node {} apply to another state; skipped",
                    key.1
                ),
                None => {}
            }
        }
        if !newest.is_empty() {
            tracing::info!(
                "replaying {} fsync'd files from the intent log",
                newest.len()
            );
            let containers = self.meta().read().containers()?;
            let mut views: BTreeMap<LayerId, Volume> = BTreeMap::new();
            for ((layer, _), chain) in &newest {
                if !views.contains_key(layer) {
                    let Some((name, _)) = containers.iter().find(|(_, c)| c.upper == *layer) else {
                        continue;
                    };
                    views.insert(*layer, self.open_container(name)?);
                }
                for record in chain {
                    apply(&views[layer], record)?;
                }
            }
            for view in views.values() {
                view.sync()?;
            }
        }
        log.restart()?;
        if !flushed.is_empty() {
            self.meta().write(intent_log::forget_flushed)?;
            self.commit_metadata()?;
        }
        Ok(())
    }

    /// The node's committed root, size and ctime as its container sees it, when the layer is
    /// still a container's writable layer and the node a file.
    fn committed_base(&self, layer: LayerId, node: NodeId) -> Result<Option<Base>> {
        let r = self.meta().read();
        let Some((_, container)) = r.containers()?.into_iter().find(|(_, c)| c.upper == layer)
        else {
            return Ok(None);
        };
        let mut layers = vec![layer];
        let mut below = container.base;
        while let Some(id) = below {
            layers.push(id);
            below = r.layer(id)?.and_then(|l| l.parent);
        }
        let Some((_, record)) = lookup::node(&r, &layers, node)? else {
            return Ok(None);
        };
        Ok(match record.content {
            Content::File { size, root, .. } => Some(Base { root, size }),
            _ => None,
        })
    }
}

fn apply(view: &Volume, record: &Record) -> Result<()> {
    let node = record.node;
    let resize = |size| {
        view.setattr(
            node,
            &SetAttr {
                size: Some(size),
                ..Default::default()
            },
        )
    };
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
    if let Some(mtime) = record.mtime {
        view.setattr(
            node,
            &SetAttr {
                mtime: Some(mtime),
                ..Default::default()
            },
        )?;
    }
    Ok(())
}
