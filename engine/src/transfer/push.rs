//! `push`: publishes a local image on a remote. The blocks the remote lacks are uploaded first
//! (deduplicated against every pack on the remote, whichever image or host put it there), then
//! the manifest — last, so a push that stops half way publishes nothing. A push holds a lease
//! on the remote throughout, so no `gc --remote` deletes a pack it relies on (`lease.rs`).

use std::collections::{BTreeSet, HashSet};

use super::lease::{Lease, LeaseKind};
use super::manifest::{MANIFEST_VERSION, Manifest, ManifestLayer, to_hex};
use crate::error::{Error, Result};
use crate::format::records as rec;
use crate::ids::{BlockId, LayerId, PageId};
use crate::meta::records::Records;
use crate::meta::{MetaRead, Table};
use crate::store::remote::{RemotePacks, UploadReport, bucket};
use crate::store_dir::Store;
use crate::tree::block_map::{self, block_count};
use crate::tree::node::Content;
use crate::tree::pages::MetaPages;

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushReport {
    pub image: String,
    pub remote: String,
    pub layers: usize,
    /// The image's distinct non-zero blocks, and how many of them the remote lacked.
    pub blocks: u64,
    pub uploaded: UploadReport,
    pub manifest_bytes: u64,
    /// Every byte written to the remote (packs, indexes, format, lease, manifest).
    pub bytes_sent: u64,
}

/// The metadata of an image, read in one consistent view.
pub(super) struct Collected {
    pub(super) manifest: Manifest,
    pub(super) blocks: Vec<BlockId>,
}

pub(super) fn collect(store: &Store, name: &str) -> Result<Collected> {
    let r = store.meta().read();
    let image = r
        .image(name)?
        .ok_or_else(|| Error::NotFound(format!("image {name}")))?;
    let mut stack = r.stack_of(Some(image.top))?;
    stack.reverse();
    let pages_src = MetaPages {
        meta: &r,
        cache: store.pages(),
    };
    let bs = store.block_size() as u64;
    let mut pages: BTreeSet<PageId> = BTreeSet::new();
    // In file order (layers bottom up, nodes in id order — an import's walk order — and each
    // file's blocks in order): the upload packs them so, and lazy reads of a file then go
    // through a pack in order, which is what read-ahead follows.
    let (mut blocks, mut seen): (Vec<BlockId>, HashSet<BlockId>) = Default::default();
    let mut layers = Vec::new();
    let mut max_node = 0;
    for layer in &stack {
        let record = r
            .layer(*layer)?
            .ok_or_else(|| Error::Corrupt(format!("layer {layer} is missing")))?;
        let (nodes, node_max) = layer_nodes(&r, *layer)?;
        max_node = max_node.max(node_max);
        for (node, record) in r.layer_nodes(*layer)? {
            let Content::File { size, root, .. } = record.content else {
                continue;
            };
            block_map::visit(
                &pages_src,
                root,
                block_count(size, bs),
                &mut |page| pages.insert(page),
                &mut |_, id| {
                    if seen.insert(id) {
                        blocks.push(id);
                    }
                },
            )
            .map_err(|e| Error::Corrupt(format!("node {node} of layer {layer}: {e}")))?;
        }
        layers.push(ManifestLayer {
            created: record.created,
            diff_id: record.diff_id,
            nodes,
            dirents: layer_dirents(&r, *layer)?,
        });
    }
    let pages = pages
        .iter()
        .map(|id| Ok(to_hex(&r.page_bytes(id)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Collected {
        manifest: Manifest {
            manifest: MANIFEST_VERSION,
            block_size: store.block_size(),
            created: image.created,
            config: image.config,
            layers,
            pages,
            packs: Vec::new(),
            blocks: blocks.len() as u64,
            block_bytes: 0,
            max_node,
        },
        blocks,
    })
}

fn layer_nodes(r: &dyn MetaRead, layer: LayerId) -> Result<(Vec<(u64, String)>, u64)> {
    let mut max = 0;
    let mut out = Vec::new();
    for (key, value) in r.scan(Table::Nodes, &rec::layer_prefix(layer))? {
        let node = rec::split_node_key(&key)?.1;
        max = max.max(node.0);
        out.push((node.0, to_hex(&value)));
    }
    Ok((out, max))
}

fn layer_dirents(r: &dyn MetaRead, layer: LayerId) -> Result<Vec<(u64, String, String)>> {
    r.scan(Table::Dirents, &rec::layer_prefix(layer))?
        .into_iter()
        .map(|(key, value)| {
            let (_, parent, name) = rec::split_dirent_key(&key)?;
            Ok((parent.0, to_hex(name), to_hex(&value)))
        })
        .collect()
}

impl Store {
    /// Publishes image `name` on the remote under the same name.
    pub fn push(&self, name: &str, packs: &RemotePacks) -> Result<PushReport> {
        let sent_before = packs.remote().figures().bytes_sent;
        // Blocks the image references stay while they are read for the upload.
        let _blocks_stay = self.reclaim_guard();
        let Collected {
            mut manifest,
            blocks,
        } = collect(self, name)?;
        // No gc deletes from the remote while this push decides what it relies on (lease.rs).
        let mut lease = Lease::take(packs.remote(), LeaseKind::Push)?;
        lease.wait_for_gc()?;
        packs.refresh()?;
        let uploaded = packs.upload_with(&blocks, self.blocks(), &mut || lease.renew_if_due())?;
        let mut names = BTreeSet::new();
        for id in &blocks {
            let at = packs.location(id).ok_or_else(|| {
                Error::Corrupt(format!("block {id} is neither uploaded nor on the remote"))
            })?;
            manifest.block_bytes += at.1 as u64;
            names.insert(at.0.0);
        }
        manifest.packs = names.into_iter().collect();
        let bytes = manifest.encode()?;
        let manifest_bytes = bytes.len() as u64;
        lease.check_fresh()?;
        packs.remote().put(&bucket::image_key(name), bytes)?;
        lease.release();
        Ok(PushReport {
            image: name.to_string(),
            remote: packs.remote().url().to_string(),
            layers: manifest.layers.len(),
            blocks: blocks.len() as u64,
            uploaded,
            manifest_bytes,
            bytes_sent: packs.remote().figures().bytes_sent - sent_before,
        })
    }
}
