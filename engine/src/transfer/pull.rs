//! `pull`: makes a remote image usable locally. The manifest is read, the indexes of the packs
//! it names are attached, its layers are written as staging layers (node ids kept, layer ids
//! new), the blocks the store lacks are fetched (each verified) into an import's staging, and
//! one metadata transaction publishes the image — all or nothing, like an import.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::lease::{Lease, LeaseKind};
use super::manifest::{Manifest, from_hex};
use crate::error::{Error, Result};
use crate::format::node;
use crate::format::records::{self as rec, Dirent};
use crate::ids::{BlockId, LayerId, NodeId, PageId};
use crate::meta::Table;
use crate::meta::records::{NEXT_NODE, Records};
use crate::store::remote::{PackName, Remote, RemotePacks, bucket};
use crate::store_dir::{Store, backing_url, check_object_name, record_backing};
use crate::tree::block_map::{self, block_count};
use crate::tree::node::Content;
use crate::tree::pages::MetaPages;

/// Blocks fetched together by a pull (256 blocks of 64 KiB: 16 MiB in memory at most).
const FETCH_BATCH: usize = 256;

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullReport {
    pub image: String,
    pub remote: String,
    pub layers: usize,
    pub blocks: u64,
    /// Blocks the store lacked, fetched from the remote.
    pub fetched_blocks: u64,
    /// Every byte read from the remote (manifest, indexes, blocks).
    pub bytes_fetched: u64,
    /// What `--prefetch` read, when paths were named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetched: Option<super::PrefetchReport>,
    /// A lazy pull: the id of the store's hold on the remote (`hold.rs`), which keeps
    /// `gc --remote` off the packs it relies on; `None` when it could not be written (the
    /// credentials may read only): then a gc may delete them once their image is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
}

/// Reads the manifest of a remote image.
pub fn read_manifest(remote: &Remote, name: &str) -> Result<Manifest> {
    let bytes = remote.get(&bucket::image_key(name)).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(format!("image {name} on {}", remote.url())),
        e => e,
    })?;
    Manifest::decode(&bytes, name)
}

/// The names of the images a remote holds.
pub fn remote_images(remote: &Remote) -> Result<Vec<String>> {
    let mut names = remote.list(&bucket::images_dir())?;
    names.sort();
    Ok(names)
}

/// One image of a remote, as `tessera images --remote` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteImageInfo {
    pub name: String,
    pub layers: usize,
    pub blocks: u64,
    pub block_bytes: u64,
    pub created: i64,
}

/// The images of a remote with what their manifests say (one GET each).
pub fn remote_images_info(remote: &Remote) -> Result<Vec<RemoteImageInfo>> {
    remote_images(remote)?
        .into_iter()
        .map(|name| {
            let m = read_manifest(remote, &name)?;
            Ok(RemoteImageInfo {
                name,
                layers: m.layers.len(),
                blocks: m.blocks,
                block_bytes: m.block_bytes,
                created: m.created,
            })
        })
        .collect()
}

impl Store {
    /// Pulls remote image `name` as local image `local`, fetching every block it lacks.
    pub fn pull(&self, packs: &RemotePacks, name: &str, local: &str) -> Result<PullReport> {
        self.pull_with(packs, name, local, true)
    }

    /// Pulls remote image `name` as local image `local` lazily: its metadata only; its blocks
    /// are fetched on first read. The store must be open over the remote
    /// (`StoreOptions::remote`, or a store backed by it already), and is backed by it from now
    /// on (`STORE/remote/backing`, written before the image is published).
    pub fn pull_lazy(&self, name: &str, local: &str) -> Result<PullReport> {
        let packs = self.blocks().remote_packs().ok_or_else(|| {
            Error::Unsupported(
                "a lazy pull into a store open without a remote (a daemon that runs for it: \
                 stop it, then pull)"
                    .into(),
            )
        })?;
        let url = packs.remote().url();
        // The store will read the image's packs for as long as it holds the image: a lease
        // keeps gcs off until its hold names them (a gc under way is waited for first).
        let lease = match Lease::take(packs.remote(), LeaseKind::Pull) {
            Ok(mut lease) => {
                lease.wait_for_gc()?;
                Some(lease)
            }
            Err(e) => {
                tracing::warn!(
                    "no hold on {url} ({e}): gc --remote may delete the packs this store \
                     relies on once their image is removed from the remote"
                );
                None
            }
        };
        if backing_url(&self.inner.io, &self.inner.layout)?.as_ref() != Some(url) {
            record_backing(&self.inner.io, &self.inner.layout, url)?;
        }
        // No gc of this store rewrites its hold between the image's publication and ours.
        let _hold = self.inner.hold_lock.lock().unwrap();
        let mut report = self.pull_with(packs, name, local, false)?;
        if let Some(lease) = lease {
            let held = lease.check_fresh().and_then(|()| {
                let (id, _) = self.write_own_hold(true)?.ok_or_else(|| {
                    Error::Unsupported("a hold for a store without a remote".into())
                })?;
                Ok(id)
            });
            match held {
                Ok(id) => report.hold = Some(id),
                Err(e) => {
                    // All or nothing, like the rest of a pull.
                    self.remove_image(local).ok();
                    return Err(e);
                }
            }
            lease.release();
        }
        Ok(report)
    }

    fn pull_with(
        &self,
        packs: &RemotePacks,
        name: &str,
        local: &str,
        fetch: bool,
    ) -> Result<PullReport> {
        check_object_name("image", local)?;
        if self.meta().read().image(local)?.is_some() {
            return Err(Error::Exists(format!("image {local}")));
        }
        let fetched_before = packs.remote().figures().bytes_fetched;
        let manifest = read_manifest(packs.remote(), name)?;
        if manifest.block_size != self.block_size() {
            return Err(Error::InvalidInput(format!(
                "image {name} has blocks of {} bytes, this store {}",
                manifest.block_size,
                self.block_size()
            )));
        }
        let mut names = Vec::with_capacity(manifest.packs.len());
        for pack in &manifest.packs {
            let (pack, _) = PackName::from_file_name(&format!("{pack}.idx"))
                .ok_or_else(|| Error::Corrupt(format!("manifest of {name}: pack {pack:?}")))?;
            names.push(pack);
        }
        packs.attach_all(&names)?;
        // Dedup may reference stored blocks no layer references yet: reclamation waits.
        let _blocks_stay = self.reclaim_guard();
        let mut made: Vec<LayerId> = Vec::new();
        let outcome = self.pull_into_staging(packs, &manifest, &mut made, fetch);
        let (blocks, fetched_blocks) = match outcome {
            Ok(done) => done,
            Err(e) => {
                self.discard_layers(&made);
                return Err(e);
            }
        };
        if let Err(e) = self.publish_image(local, &made, manifest.config.clone()) {
            self.discard_layers(&made);
            return Err(e);
        }
        Ok(PullReport {
            image: local.to_string(),
            remote: packs.remote().url().to_string(),
            layers: made.len(),
            blocks,
            fetched_blocks,
            bytes_fetched: packs.remote().figures().bytes_fetched - fetched_before,
            prefetched: None,
            hold: None,
        })
    }

    /// Writes the manifest's layers as staging layers and (with `fetch`) fetches the blocks
    /// the store lacks into an adopted staging. Returns (blocks of the image, blocks fetched).
    fn pull_into_staging(
        &self,
        packs: &RemotePacks,
        manifest: &Manifest,
        made: &mut Vec<LayerId>,
        fetch: bool,
    ) -> Result<(u64, u64)> {
        for layer in &manifest.layers {
            let id = self.new_staging_layer(made.last().copied())?;
            made.push(id);
            self.meta().write(|w| {
                let mut record = w
                    .layer(id)?
                    .ok_or_else(|| Error::Corrupt(format!("staging layer {id} vanished")))?;
                record.created = layer.created;
                record.diff_id = layer.diff_id.clone();
                w.put_layer(id, &record);
                for (node_id, value) in &layer.nodes {
                    let value = from_hex(value, "manifest node")?;
                    node::decode(&value)?;
                    w.put(Table::Nodes, &rec::node_key(id, NodeId(*node_id)), &value);
                }
                for (parent, name, value) in &layer.dirents {
                    let name = from_hex(name, "manifest entry name")?;
                    let value = from_hex(value, "manifest entry")?;
                    Dirent::decode(&value)?;
                    w.put(
                        Table::Dirents,
                        &rec::dirent_key(id, NodeId(*parent), &name),
                        &value,
                    );
                }
                Ok(())
            })?;
        }
        self.meta().write(|w| {
            for page in &manifest.pages {
                let bytes = from_hex(page, "manifest page")?;
                w.put_page(&PageId::of(&bytes), &bytes);
            }
            // Nodes a container on this image creates get ids above the image's.
            let next = w.counter(NEXT_NODE)?.max(manifest.max_node + 1);
            w.put(Table::Counters, NEXT_NODE.as_bytes(), &next.to_le_bytes());
            Ok(())
        })?;
        let blocks = self.blocks_of_layers(made)?;
        let mut staging = self.blocks().stage()?;
        let mut wanted = Vec::new();
        for id in &blocks {
            if !packs.holds(id) && !self.blocks().contains(id)? {
                return Err(Error::Corrupt(format!(
                    "block {id} is neither in the store nor in the packs the manifest names"
                )));
            }
            if fetch && !self.blocks().contains(id)? && !staging.holds(id) {
                wanted.push(*id);
            }
        }
        // Batches of blocks, each fetched with coalesced ranged GETs in flight together.
        for batch in wanted.chunks(FETCH_BATCH) {
            for (id, data) in packs.fetch_many(batch) {
                staging.put(&[(id, &data?)])?;
            }
        }
        staging.adopt()?;
        Ok((blocks.len() as u64, wanted.len() as u64))
    }

    /// The distinct non-zero blocks the files of these layers use.
    fn blocks_of_layers(&self, layers: &[LayerId]) -> Result<Vec<BlockId>> {
        let r = self.meta().read();
        let pages = MetaPages {
            meta: &r,
            cache: self.pages(),
        };
        let bs = self.block_size() as u64;
        let mut blocks = HashSet::new();
        for layer in layers {
            for (_, record) in r.layer_nodes(*layer)? {
                if let Content::File { size, root, .. } = record.content {
                    block_map::visit(
                        &pages,
                        root,
                        block_count(size, bs),
                        &mut |_| true,
                        &mut |_, id| {
                            blocks.insert(id);
                        },
                    )?;
                }
            }
        }
        Ok(blocks.into_iter().collect())
    }
}
