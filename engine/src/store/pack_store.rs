//! The production block store: packs on disk, a sorted index per sealed pack (mapped), an
//! in-memory table for the open pack, an optional verified block cache.
//!
//! Opening recovers from crashes: packs are cut back to the lengths the metadata recorded,
//! packs the metadata never recorded are deleted, missing or damaged indexes of sealed packs
//! are rebuilt from the packs' self-describing segments.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use super::block_cache::BlockCache;
use super::compress::{self, Compression};
use super::pack_reader;
use super::pack_writer::{PackWriter, StoredBlock};
use super::reclaim::ReclaimPlan;
use super::staging::PackStaging;
use super::{BlockLocation, BlockRead, BlockStore, BlockStoreStats, Checkpoint, Staging};
use crate::error::{Error, IoContext, Result};
use crate::format::pack::PackHeader;
use crate::format::pack_index::{self, Entry, IndexView};
use crate::format::records::PackRecord;
use crate::ids::{BlockId, PackId};
use crate::io::{Io, IoFile, Mapped, OpenMode};
use crate::layout::{PackFile, StoreLayout};

/// How a pack store is set up.
#[derive(Debug, Clone)]
pub struct PackStoreConfig {
    pub block_size: u32,
    /// A pack is sealed once it reaches this many bytes.
    pub pack_target: u64,
    /// Bytes of verified blocks kept in memory (0: no cache).
    pub cache_bytes: usize,
    /// The store's format version: the packs and indexes it writes carry it.
    pub format_version: u32,
    /// How new blocks are kept (compression needs format version 2).
    pub compression: Compression,
}

pub struct PackStore {
    pub(super) io: Io,
    pub(super) layout: StoreLayout,
    pub(super) config: PackStoreConfig,
    pub(super) sealed: RwLock<BTreeMap<PackId, SealedPack>>,
    pub(super) open: RwLock<OpenPack>,
    pub(super) writer: Mutex<WriterState>,
    pub(super) cache: Option<BlockCache>,
    /// Sealed packs found damaged at open (short, or a bad header, or an index that could
    /// be neither read nor rebuilt): served as far as they go, reported by fsck, never
    /// rewritten by reclamation (what they lost cannot be copied). What was found, and which.
    pub(super) damaged: Mutex<(Vec<String>, HashSet<PackId>)>,
}

pub(super) struct SealedPack {
    pub(super) file: Arc<dyn IoFile>,
    pub(super) index: Mapped,
}

impl SealedPack {
    pub(super) fn view(&self) -> IndexView<'_> {
        IndexView::parse(&self.index, false).expect("validated when opened")
    }
}

#[derive(Default)]
pub(super) struct OpenPack {
    pub(super) id: Option<PackId>,
    file: Option<Arc<dyn IoFile>>,
    entries: HashMap<BlockId, Entry>,
}

pub(super) struct WriterState {
    pub(super) writer: Option<PackWriter>,
    pub(super) next_id: PackId,
    /// Pack records not yet acknowledged as recorded by the metadata.
    pub(super) pending: BTreeMap<PackId, PackRecord>,
    /// Packs reclamation took out of service whose records the metadata still holds.
    pub(super) retiring: BTreeSet<PackId>,
    /// Retired packs the metadata forgot: their files can go.
    pub(super) retired: Vec<PackId>,
}

impl PackStore {
    /// Opens the packs of a store, recovering to the pack records the metadata holds.
    pub fn open(
        io: Io,
        layout: StoreLayout,
        config: PackStoreConfig,
        records: &BTreeMap<PackId, PackRecord>,
    ) -> Result<PackStore> {
        let dir = layout.packs_dir();
        io.create_dir_all(&dir)
            .ctx(|| format!("creating {}", dir.display()))?;
        let mut max_id = records.keys().next_back().copied().unwrap_or(PackId(0));
        for name in io
            .list_dir(&dir)
            .ctx(|| format!("listing {}", dir.display()))?
        {
            let Some((id, kind)) = name.to_str().and_then(StoreLayout::parse_pack_name) else {
                continue;
            };
            max_id = max_id.max(id);
            if !records.contains_key(&id) || kind == PackFile::IndexTmp {
                let path = dir.join(&name);
                tracing::info!("removing crash leftover {}", path.display());
                io.remove_file(&path)
                    .ctx(|| format!("removing {}", path.display()))?;
            }
        }
        io.sync_dir(&dir)
            .ctx(|| format!("syncing {}", dir.display()))?;

        let cache = (config.cache_bytes > 0).then(|| BlockCache::new(config.cache_bytes));
        let store = PackStore {
            io,
            layout,
            config,
            sealed: RwLock::new(BTreeMap::new()),
            open: RwLock::new(OpenPack::default()),
            writer: Mutex::new(WriterState {
                writer: None,
                next_id: PackId(max_id.0 + 1),
                pending: BTreeMap::new(),
                retiring: BTreeSet::new(),
                retired: Vec::new(),
            }),
            cache,
            damaged: Default::default(),
        };
        let last_open = records
            .iter()
            .rev()
            .find(|(_, r)| !r.sealed)
            .map(|(id, _)| *id);
        for (&id, record) in records {
            store.recover_pack(id, *record, Some(id) == last_open)?;
        }
        Ok(store)
    }

    fn recover_pack(&self, id: PackId, record: PackRecord, is_open: bool) -> Result<()> {
        let path = self.layout.pack(id);
        let file = self
            .io
            .open(&path, OpenMode::ReadWrite)
            .map_err(|e| Error::Corrupt(format!("pack {id} is recorded but unreadable: {e}")))?;
        let len = file
            .len()
            .ctx(|| format!("reading length of {}", path.display()))?;
        // A sealed pack is read-only: a damaged one is kept and served as far as it goes (a
        // read of a block it lost fails, naming the pack and offset; every other file still
        // reads), and fsck names the files hit. The open pack is appended to: it must be whole.
        let damaged = |why: String| -> Result<()> {
            if !record.sealed {
                return Err(Error::Corrupt(format!("pack {id}: {why}")));
            }
            tracing::error!("pack {id} is damaged: {why}; its other blocks are still served");
            let mut damaged = self.damaged.lock().unwrap();
            damaged.0.push(format!("pack {id}: {why}"));
            damaged.1.insert(id);
            Ok(())
        };
        if len < record.len {
            damaged(format!(
                "holds {len} bytes but the metadata recorded {}: blocks past its end are lost",
                record.len
            ))?;
        }
        if len > record.len {
            tracing::info!("cutting pack {id} back from {len} to {} bytes", record.len);
            file.set_len(record.len)
                .and_then(|_| file.sync_data())
                .ctx(|| format!("cutting back {}", path.display()))?;
        }
        if let Err(e) = pack_reader::read_header(&*file, id) {
            damaged(e.to_string())?;
        }
        if record.sealed {
            let index = match self.load_index(id, record.len) {
                Ok(index) => index,
                Err(e) => {
                    tracing::warn!("rebuilding index of pack {id}: {e}");
                    match self.rebuild_index(id, &*file, record.len) {
                        Ok(index) => index,
                        Err(e) => {
                            damaged(format!("its index is lost and cannot be rebuilt: {e}"))?;
                            return Ok(());
                        }
                    }
                }
            };
            self.sealed
                .write()
                .unwrap()
                .insert(id, SealedPack { file, index });
            return Ok(());
        }
        let index_path = self.layout.index(id);
        if self.io.exists(&index_path) {
            self.io
                .remove_file(&index_path)
                .ctx(|| format!("removing {}", index_path.display()))?;
        }
        let (entries, _) = pack_reader::scan(
            &*file,
            id,
            self.config.format_version,
            self.config.block_size,
            record.len,
            true,
        )?;
        if is_open {
            let mut open = self.open.write().unwrap();
            open.id = Some(id);
            open.file = Some(file.clone());
            open.entries = entries.into_iter().collect();
            self.writer.lock().unwrap().writer = Some(PackWriter {
                id,
                file,
                len: record.len,
                unsynced: false,
                unkicked: 0,
            });
        } else {
            // An older unsealed pack (a crash between sealing and recording it): seal it now.
            let index = self.write_index(id, record.len, entries)?;
            self.sealed
                .write()
                .unwrap()
                .insert(id, SealedPack { file, index });
            let sealed = PackRecord {
                len: record.len,
                sealed: true,
            };
            self.writer.lock().unwrap().pending.insert(id, sealed);
        }
        Ok(())
    }

    fn load_index(&self, id: PackId, pack_len: u64) -> Result<Mapped> {
        let path = self.layout.index(id);
        let file = self
            .io
            .open(&path, OpenMode::ReadOnly)
            .ctx(|| format!("opening {}", path.display()))?;
        let index = file.map().ctx(|| format!("mapping {}", path.display()))?;
        let view = IndexView::parse(&index, true)?;
        if view.pack_id != id.0 || view.pack_len != pack_len {
            return Err(Error::Corrupt(format!(
                "index {} describes another pack",
                path.display()
            )));
        }
        Ok(index)
    }

    fn rebuild_index(&self, id: PackId, file: &dyn IoFile, len: u64) -> Result<Mapped> {
        let (entries, _) = pack_reader::scan(
            file,
            id,
            self.config.format_version,
            self.config.block_size,
            len,
            true,
        )?;
        self.write_index(id, len, entries)
    }

    /// Writes a sealed pack's index under a temporary name, syncs it and renames it into place.
    pub(super) fn write_index(
        &self,
        id: PackId,
        pack_len: u64,
        entries: Vec<(BlockId, Entry)>,
    ) -> Result<Mapped> {
        let mut entries = entries;
        let bytes = pack_index::encode(self.config.format_version, id.0, pack_len, &mut entries);
        let tmp = self.layout.index_tmp(id);
        let path = self.layout.index(id);
        let file = self
            .io
            .open(&tmp, OpenMode::Create)
            .ctx(|| format!("creating {}", tmp.display()))?;
        file.set_len(0)
            .and_then(|_| file.write_all_at(&bytes, 0))
            .and_then(|_| file.sync_data())
            .ctx(|| format!("writing {}", tmp.display()))?;
        self.io
            .rename(&tmp, &path)
            .and_then(|_| self.io.sync_dir(&self.layout.packs_dir()))
            .ctx(|| format!("renaming {} into place", tmp.display()))?;
        self.load_index(id, pack_len)
    }

    pub(super) fn locate(&self, id: &BlockId) -> Option<(PackId, Entry, Arc<dyn IoFile>)> {
        {
            let open = self.open.read().unwrap();
            if let (Some(entry), Some(pack), Some(file)) =
                (open.entries.get(id), open.id, open.file.as_ref())
            {
                return Some((pack, *entry, file.clone()));
            }
        }
        let sealed = self.sealed.read().unwrap();
        sealed.iter().rev().find_map(|(pack, sp)| {
            sp.view()
                .find(id)
                .map(|entry| (*pack, entry, sp.file.clone()))
        })
    }

    /// Seals the open pack: its index is written and it is never appended to again.
    pub(super) fn seal(&self, state: &mut WriterState) -> Result<()> {
        // The writer stays open until the index is in place: a failed seal (ENOSPC) must not
        // forget the pack whose blocks the open table still lists.
        let Some(writer) = state.writer.as_mut() else {
            return Ok(());
        };
        writer.sync()?;
        let entries: Vec<_> = {
            let open = self.open.read().unwrap();
            open.entries.iter().map(|(id, e)| (*id, *e)).collect()
        };
        let index = self.write_index(writer.id, writer.len, entries)?;
        let writer = state.writer.take().expect("checked above");
        {
            let mut open = self.open.write().unwrap();
            self.sealed.write().unwrap().insert(
                writer.id,
                SealedPack {
                    file: writer.file.clone(),
                    index,
                },
            );
            *open = OpenPack::default();
        }
        let record = PackRecord {
            len: writer.len,
            sealed: true,
        };
        state.pending.insert(writer.id, record);
        tracing::debug!(pack = writer.id.0, len = writer.len, "sealed pack");
        Ok(())
    }

    fn open_writer<'a>(&self, state: &'a mut WriterState) -> Result<&'a mut PackWriter> {
        if state.writer.is_none() {
            let id = state.next_id;
            state.next_id = PackId(id.0 + 1);
            let header = PackHeader {
                version: self.config.format_version,
                block_size: self.config.block_size,
                pack_id: id.0,
            };
            let writer = PackWriter::create(&*self.io, &self.layout, id, header)?;
            let mut open = self.open.write().unwrap();
            open.id = Some(id);
            open.file = Some(writer.file.clone());
            open.entries.clear();
            state.writer = Some(writer);
        }
        Ok(state.writer.as_mut().expect("just created"))
    }

    /// Refuses blocks larger than a block.
    fn check_sizes(&self, blocks: &[(BlockId, &[u8])]) -> Result<()> {
        match blocks
            .iter()
            .find(|(_, d)| d.len() > self.config.block_size as usize)
        {
            Some((id, data)) => Err(Error::InvalidInput(format!(
                "block {id} is {} bytes, larger than the block size",
                data.len()
            ))),
            None => Ok(()),
        }
    }

    /// Compresses `blocks` (outside the writer's lock: it is the costly part), then appends
    /// those `keep` still accepts once the lock is held (a racing put may have stored some).
    /// Returns the bytes of block data added.
    fn store_blocks(
        &self,
        blocks: &[(BlockId, &[u8])],
        keep: &dyn Fn(&BlockId) -> bool,
    ) -> Result<u64> {
        if blocks.is_empty() {
            return Ok(0);
        }
        self.check_sizes(blocks)?;
        let frames = compress::compress_all(self.config.compression, blocks);
        let mut state = self.writer.lock().unwrap();
        let mut added = 0;
        let fresh: Vec<StoredBlock<'_>> = StoredBlock::pair(blocks, &frames)
            .into_iter()
            .zip(blocks)
            .filter(|(block, _)| keep(&block.id))
            .map(|(block, (_, data))| {
                added += data.len() as u64;
                block
            })
            .collect();
        self.append(&mut state, &fresh)?;
        Ok(added)
    }

    /// Appends stored blocks to the open pack (sealing it when full).
    fn append(&self, state: &mut WriterState, fresh: &[StoredBlock<'_>]) -> Result<()> {
        if fresh.is_empty() {
            return Ok(());
        }
        let writer = self.open_writer(state)?;
        let placed = writer.append(fresh)?;
        let full = writer.len >= self.config.pack_target;
        self.open.write().unwrap().entries.extend(placed);
        if full {
            self.seal(state)?;
        }
        Ok(())
    }

    /// Stores copies of blocks that only packs in `leaving` hold (reclamation).
    pub(super) fn put_copies(
        &self,
        blocks: &[(BlockId, &[u8])],
        leaving: &HashSet<PackId>,
    ) -> Result<u64> {
        let held_elsewhere = |id: &BlockId| {
            self.open.read().unwrap().entries.contains_key(id)
                || self
                    .sealed
                    .read()
                    .unwrap()
                    .iter()
                    .any(|(pack, sp)| !leaving.contains(pack) && sp.view().find(id).is_some())
        };
        let fresh: Vec<(BlockId, &[u8])> = blocks
            .iter()
            .filter(|(id, _)| !held_elsewhere(id))
            .map(|(id, data)| (*id, *data))
            .collect();
        self.store_blocks(&fresh, &|id| !held_elsewhere(id))
    }

    pub(super) fn holds(&self, id: &BlockId) -> bool {
        self.locate(id).is_some()
    }

    pub(super) fn allocate_pack_id(&self) -> PackId {
        let mut state = self.writer.lock().unwrap();
        let id = state.next_id;
        state.next_id = PackId(id.0 + 1);
        id
    }

    pub(super) fn block_size_u32(&self) -> u32 {
        self.config.block_size
    }

    pub(super) fn pack_target(&self) -> u64 {
        self.config.pack_target
    }
}

impl BlockStore for PackStore {
    fn block_size(&self) -> usize {
        self.config.block_size as usize
    }

    fn contains(&self, id: &BlockId) -> Result<bool> {
        Ok(id.is_zero() || self.locate(id).is_some())
    }

    fn put(&self, blocks: &[(BlockId, &[u8])]) -> Result<u64> {
        let mut seen = HashSet::new();
        let fresh: Vec<(BlockId, &[u8])> = blocks
            .iter()
            .filter(|(id, _)| !id.is_zero() && seen.insert(*id) && self.locate(id).is_none())
            .map(|(id, data)| (*id, *data))
            .collect();
        self.store_blocks(&fresh, &|id| self.locate(id).is_none())
    }

    fn get(&self, id: &BlockId, out: &mut [u8]) -> Result<usize> {
        self.read_block(id, out, false)
    }

    fn read_blocks(&self, reads: &mut [BlockRead<'_>], fill_cache: bool) -> Result<()> {
        self.read_batch(reads, fill_cache)
    }

    fn stage(&self) -> Result<Box<dyn Staging + '_>> {
        Ok(Box::new(PackStaging::new(self)))
    }

    fn sync(&self) -> Result<Checkpoint> {
        let mut state = self.writer.lock().unwrap();
        if let Some(writer) = state.writer.as_mut() {
            // Only a pack that grew needs a new record: re-recording an unchanged length would
            // cost every metadata commit (each fsync, each flusher tick) a database write.
            // A record not yet acknowledged stays pending until a commit takes it.
            let grew = writer.unsynced;
            writer.sync()?;
            if grew {
                let record = PackRecord {
                    len: writer.len,
                    sealed: false,
                };
                let id = writer.id;
                state.pending.insert(id, record);
            }
        }
        Ok(Checkpoint {
            packs: state.pending.clone(),
            retired: state.retiring.clone(),
        })
    }

    fn acknowledge(&self, checkpoint: &Checkpoint) {
        let mut state = self.writer.lock().unwrap();
        for (id, record) in &checkpoint.packs {
            if state.pending.get(id) == Some(record) {
                state.pending.remove(id);
            }
        }
        for id in &checkpoint.retired {
            if state.retiring.remove(id) {
                state.retired.push(*id);
            }
        }
    }

    fn is_settled(&self) -> bool {
        let state = self.writer.lock().unwrap();
        let synced = state.writer.as_ref().is_none_or(|w| !w.unsynced);
        synced && state.pending.is_empty() && state.retiring.is_empty()
    }

    fn stats(&self) -> BlockStoreStats {
        let mut stats = BlockStoreStats::default();
        for (_, location) in self.locations().unwrap_or_default() {
            stats.blocks += 1;
            stats.block_bytes += location.len as u64;
        }
        let sealed = self.sealed.read().unwrap();
        for sp in sealed.values() {
            stats.packs += 1;
            stats.pack_bytes += sp.view().pack_len;
        }
        if let Some(writer) = &self.writer.lock().unwrap().writer {
            stats.packs += 1;
            stats.pack_bytes += writer.len;
        }
        stats
    }

    fn locations(&self) -> Result<Vec<(BlockId, BlockLocation)>> {
        let mut out = Vec::new();
        for (pack, sp) in self.sealed.read().unwrap().iter() {
            out.extend(sp.view().iter().map(|(id, e)| {
                (
                    id,
                    BlockLocation {
                        pack: *pack,
                        offset: e.offset,
                        len: e.len,
                    },
                )
            }));
        }
        let open = self.open.read().unwrap();
        if let Some(pack) = open.id {
            out.extend(open.entries.iter().map(|(id, e)| {
                (
                    *id,
                    BlockLocation {
                        pack,
                        offset: e.offset,
                        len: e.len,
                    },
                )
            }));
        }
        Ok(out)
    }

    fn plan_reclaim(&self, live: &dyn Fn(&BlockId) -> bool) -> Result<ReclaimPlan> {
        self.plan(live)
    }

    fn reclaim(&self, plan: &ReclaimPlan) -> Result<()> {
        self.carry_out(plan)
    }

    fn delete_retired(&self) -> Result<u64> {
        self.delete_retired_packs()
    }

    fn cache_figures(&self) -> Option<(usize, u64, u64)> {
        self.cache.as_ref().map(|c| c.figures())
    }

    fn damage(&self) -> Vec<String> {
        self.damaged.lock().unwrap().0.clone()
    }

    fn drop_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }
}
