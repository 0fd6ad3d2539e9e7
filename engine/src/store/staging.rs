//! Staging packs: an import writes its blocks into packs of its own, which the store adopts
//! (sealed, indexed, recorded) in the import's publishing transaction, or deletes when the
//! import fails. So a failed import leaves the packs exactly as they were, and a crash leaves
//! only unrecorded pack files, which the next open deletes.

use std::collections::{HashMap, HashSet};

use super::pack_store::{PackStore, SealedPack};
use super::pack_writer::{PackWriter, StoredBlock};
use super::{Staging, compress};
use crate::error::Result;
use crate::format::pack::PackHeader;
use crate::format::pack_index::Entry;
use crate::format::records::PackRecord;
use crate::ids::{BlockId, PackId};

pub struct PackStaging<'a> {
    pub(super) store: &'a PackStore,
    pub(super) writer: Option<PackWriter>,
    /// Finished staging packs and their entries.
    pub(super) full: Vec<(PackWriter, Vec<(BlockId, Entry)>)>,
    pub(super) entries: HashMap<BlockId, Entry>,
    pub(super) all_ids: HashSet<BlockId>,
    pub(super) adopted: bool,
}

impl<'a> PackStaging<'a> {
    pub(super) fn new(store: &'a PackStore) -> PackStaging<'a> {
        PackStaging {
            store,
            writer: None,
            full: Vec::new(),
            entries: HashMap::new(),
            all_ids: HashSet::new(),
            adopted: false,
        }
    }

    pub(super) fn pack_ids(&self) -> Vec<PackId> {
        self.full
            .iter()
            .map(|(w, _)| w.id)
            .chain(self.writer.as_ref().map(|w| w.id))
            .collect()
    }
}

impl Drop for PackStaging<'_> {
    fn drop(&mut self) {
        if self.adopted {
            return;
        }
        for id in self.pack_ids() {
            let path = self.store.layout.pack(id);
            if let Err(e) = self.store.io.remove_file(&path) {
                tracing::warn!("removing staging pack {}: {e}", path.display());
            }
        }
    }
}

impl Staging for PackStaging<'_> {
    /// Stores blocks the store and this import do not hold yet; returns the bytes added.
    fn put(&mut self, blocks: &[(BlockId, &[u8])]) -> Result<u64> {
        let mut fresh = Vec::new();
        for (id, data) in blocks {
            if id.is_zero() || self.all_ids.contains(id) || self.store.holds(id) {
                continue;
            }
            self.all_ids.insert(*id);
            fresh.push((*id, *data));
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        if self.writer.is_none() {
            let id = self.store.allocate_pack_id();
            let header = PackHeader {
                version: self.store.config.format_version,
                block_size: self.store.block_size_u32(),
                pack_id: id.0,
            };
            self.writer = Some(PackWriter::create(
                &*self.store.io,
                &self.store.layout,
                id,
                header,
            )?);
        }
        let frames = compress::compress_all(self.store.config.compression, &fresh);
        let writer = self.writer.as_mut().expect("just created");
        let placed = writer.append(&StoredBlock::pair(&fresh, &frames))?;
        self.entries.extend(placed);
        if writer.len >= self.store.pack_target() {
            let writer = self.writer.take().expect("present");
            let entries = std::mem::take(&mut self.entries).into_iter().collect();
            self.full.push((writer, entries));
        }
        Ok(fresh.iter().map(|(_, d)| d.len() as u64).sum())
    }

    /// Whether this import stored the block.
    fn holds(&self, id: &BlockId) -> bool {
        self.all_ids.contains(id)
    }

    /// Seals the staging packs into the store. Their records join the next checkpoint, so
    /// they become durable with the metadata commit that publishes the import.
    fn adopt(mut self: Box<Self>) -> Result<()> {
        let mut packs = std::mem::take(&mut self.full);
        if let Some(writer) = self.writer.take() {
            let entries = std::mem::take(&mut self.entries).into_iter().collect();
            packs.push((writer, entries));
        }
        for (mut writer, entries) in packs {
            writer.sync()?;
            let index = self.store.write_index(writer.id, writer.len, entries)?;
            self.store.sealed.write().unwrap().insert(
                writer.id,
                SealedPack {
                    file: writer.file.clone(),
                    index,
                },
            );
            let record = PackRecord {
                len: writer.len,
                sealed: true,
            };
            self.store
                .writer
                .lock()
                .unwrap()
                .pending
                .insert(writer.id, record);
        }
        self.adopted = true;
        Ok(())
    }
}
