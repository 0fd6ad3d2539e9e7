//! The store as a whole: one directory holding the header, the packs, the metadata database
//! and the lock. [`Store`] opens it (recovering from crashes), hands out volumes, makes changes
//! durable, and runs the background flusher.
//!
//! Durability: every metadata commit is preceded by a sync of the packs, and records the pack
//! lengths it covers (see `store::BlockStore`). Changes become durable at `Store::sync`, at a
//! volume's `fsync`, `commit`, and within `flush_interval` (default 2 s) otherwise.

mod backing;
mod durable;
mod flusher;
pub(crate) mod intent_log;
mod lifecycle;
mod lock;
mod options;
mod private;
mod read_epochs;
mod replay;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, Weak};

pub(crate) use backing::{
    backing_url, existing_hold_id, hold_id, record_backing, record_cache_limit,
};
pub(crate) use lifecycle::freeze_layer;
pub use lifecycle::{ContainerInfo, ImageInfo, check_object_name};
pub use options::{StoreOptions, parse_size};

use crate::error::{Error, IoContext, Result};
use crate::format::store_header::{self, StoreHeader};
use crate::format::{FORMAT_VERSION, OLDEST_FORMAT_VERSION};
use crate::ids::PageId;
use crate::io::{Io, IoBackend, OpenMode, RealIo};
use crate::layout::StoreLayout;
use crate::meta::Meta;
use crate::meta::records::Records;
use crate::store::{BlockCache, BlockStore, Compression};
use crate::volume::VolumeShared;
use lock::StoreLock;

/// A handle to an open store; clones share it.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    pub layout: StoreLayout,
    pub io: Io,
    pub block_size: u32,
    /// The store's format version and how it keeps blocks (from its header).
    pub format: (u32, Compression),
    pub meta: Meta,
    pub blocks: Box<dyn BlockStore>,
    pub pages: BlockCache<PageId>,
    pub dirty: DirtyBudget,
    /// Serializes flushes and layer freezes (commit).
    pub flush_lock: Mutex<()>,
    /// Held shared by whatever may reference a stored block that no layer references yet
    /// (an import deduplicating against the store, fsck listing blocks) and exclusively by
    /// reclamation from its mark until its commit. Reads never take it: reclamation copies a
    /// live block before it retires the pack that held it.
    pub reclaim_lock: RwLock<()>,
    /// Held while this store's hold on its remote is computed and written
    /// (`transfer::hold`): a lazy pull publishing an image, a gc shrinking the hold.
    pub hold_lock: Mutex<()>,
    /// Reads of views in progress, from the moment they resolve a file's block ids until
    /// they have the blocks; reclamation waits for them once (`wait_for_reads`).
    pub reads: read_epochs::ReadEpochs,
    pub volumes: Mutex<Vec<Weak<VolumeShared>>>,
    /// The last error of a background flush, reported by the next fsync.
    pub background_error: Mutex<Option<String>>,
    flusher: flusher::Flusher,
    pub reclaimer: crate::maintenance::reclaimer::Reclaimer,
    /// Metadata commits so far (the reclaimer's sign of change).
    commits: AtomicU64,
    /// Set once replay at open is done (fsyncs take the ordinary path until then).
    log: std::sync::OnceLock<intent_log::IntentLog>,
    _lock: Option<StoreLock>,
}

/// Bytes of dirty file data held in memory, against a limit.
pub(crate) struct DirtyBudget {
    bytes: AtomicU64,
    pub limit: u64,
    /// Free bytes of the store's file system at the last check, the dirty bytes then, and when.
    free: Mutex<(u64, u64, std::time::Instant)>,
}

/// Space kept free beyond dirty data for metadata and pack headers.
const SPACE_MARGIN: u64 = 16 << 20;

impl DirtyBudget {
    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
    pub fn release(&self, n: u64) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }
    pub fn held(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

fn check_block_size(block_size: u32) -> Result<()> {
    if !block_size.is_power_of_two() || !(4096..=1 << 20).contains(&block_size) {
        return Err(Error::InvalidInput(format!(
            "block size {block_size} is not a power of two from 4K to 1M"
        )));
    }
    Ok(())
}

fn open_db(io: &Io, layout: &StoreLayout, options: &StoreOptions, create: bool) -> Result<Meta> {
    let path = layout.meta();
    let mode = if create {
        OpenMode::Create
    } else {
        OpenMode::ReadWrite
    };
    let (io, cache_bytes) = (io.clone(), options.db_cache_bytes);
    let open = move |mode| -> Result<redb::Database> {
        let file = io
            .open(&path, mode)
            .ctx(|| format!("opening metadata database {}", path.display()))?;
        let mut builder = redb::Database::builder();
        builder.set_cache_size(cache_bytes);
        Ok(builder.create_with_backend(IoBackend(file))?)
    };
    let db = open(mode)?;
    Ok(Meta::new(db)?.with_reopen(Box::new(move || open(OpenMode::ReadWrite))))
}

impl Store {
    /// Creates a new, empty store at `path` (the directory may exist but must not hold a store).
    pub fn init(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let path = path.as_ref();
        check_block_size(options.block_size)?;
        let io = options.io.clone().unwrap_or_else(|| RealIo::new() as Io);
        let layout = StoreLayout::new(path);
        io.create_dir_all(path)
            .ctx(|| format!("creating {}", path.display()))?;
        private::keep_private_if_real(&options, path)?;
        let lock = lock_if_real(&options, &layout)?;
        if io.exists(&layout.header()) {
            return Err(Error::Exists(format!("a store at {}", path.display())));
        }
        io.create_dir_all(&layout.packs_dir())
            .ctx(|| format!("creating {}", layout.packs_dir().display()))?;
        let meta = open_db(&io, &layout, &options, true)?;
        meta.commit(&Default::default())?;
        drop(meta);
        let header = StoreHeader {
            version: FORMAT_VERSION,
            block_size: options.block_size,
            pack_target: options.pack_target,
            compression: options.compression,
        };
        // The header is written last: a store without one is an unfinished init.
        let file = io
            .open(&layout.header(), OpenMode::Create)
            .ctx(|| format!("creating {}", layout.header().display()))?;
        file.write_all_at(&header.encode(), 0)
            .and_then(|_| file.sync_data())
            .and_then(|_| io.sync_dir(path))
            .ctx(|| format!("writing {}", layout.header().display()))?;
        drop(lock);
        Store::open(path, options)
    }

    /// Opens an existing store, recovering from any crash.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let path = path.as_ref();
        let io = options.io.clone().unwrap_or_else(|| RealIo::new() as Io);
        let layout = StoreLayout::new(path);
        if !io.exists(&layout.header()) {
            return Err(Error::NotFound(format!(
                "tessera store at {} (run `tessera init` first)",
                path.display()
            )));
        }
        let lock = lock_if_real(&options, &layout)?;
        private::keep_private_if_real(&options, path)?;
        let header = read_header(&io, &layout)?;
        let meta = open_db(&io, &layout, &options, false)?;
        let records = meta.read().packs()?;
        let blocks = backing::open_blocks(&io, &layout, &options, &header, &records)?;
        let inner = Arc::new(StoreInner {
            layout,
            io,
            block_size: header.block_size,
            format: (header.version, header.compression),
            meta,
            blocks,
            pages: BlockCache::new(options.page_cache_bytes),
            dirty: DirtyBudget {
                bytes: AtomicU64::new(0),
                limit: options.dirty_limit,
                free: Mutex::new((u64::MAX, 0, std::time::Instant::now())),
            },
            flush_lock: Mutex::new(()),
            reclaim_lock: RwLock::new(()),
            hold_lock: Mutex::new(()),
            reads: Default::default(),
            volumes: Mutex::new(Vec::new()),
            background_error: Mutex::new(None),
            flusher: flusher::Flusher::default(),
            reclaimer: Default::default(),
            commits: AtomicU64::new(0),
            log: std::sync::OnceLock::new(),
            _lock: lock,
        });
        let store = Store { inner };
        // Logged metadata changes first: the sweep and the replay of file data see the
        // namespace as it was when the last fsync returned.
        let log = match options.intent_log {
            true => Some(store.open_log()?),
            false => None,
        };
        store.sweep_leftovers(options.inherited_mounts)?;
        if let Some((log, records)) = log {
            store.replay_log(&log, records)?;
            let _ = store.inner.log.set(log);
            store.meta().track_unlogged();
        }
        if let Some(interval) = options.flush_interval {
            flusher::start(&store, interval, options.background_reclaim);
        }
        Ok(store)
    }

    /// How far node ids skip ahead when a process inherits mounts: more than any process
    /// gives out between two commits (one per 2 s at most, unless it creates 2^32 files).
    const NODE_ID_SKIP: u64 = 1 << 32;

    /// Removes what a crash left unreachable: unpublished import layers and orphaned nodes
    /// (open-but-unlinked files whose last close never came) — unless `inherited` mounts may
    /// still have them open; those make node ids skip ahead instead (`inherited_mounts`).
    fn sweep_leftovers(&self, inherited: bool) -> Result<()> {
        let meta = &self.inner.meta;
        let swept = meta.write(|w| {
            let mut swept = 0;
            if inherited {
                w.skip_ids(crate::meta::records::NEXT_NODE, Self::NODE_ID_SKIP)?;
            }
            for (layer, node) in w.all_orphans()?.into_iter().filter(|_| !inherited) {
                w.delete_node(layer, node);
                w.delete_orphan(layer, node);
                swept += 1;
            }
            for (id, record) in w.layers()? {
                if record.state == crate::format::records::LayerState::Staging {
                    w.delete_layer(id)?;
                    swept += 1;
                }
            }
            Ok(swept)
        })?;
        if swept > 0 {
            tracing::info!("swept {swept} crash leftovers");
        }
        if swept > 0 || inherited {
            self.commit_metadata()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        self.inner.layout.root()
    }

    pub fn block_size(&self) -> u32 {
        self.inner.block_size
    }

    /// The store's format version and how it keeps new blocks.
    pub fn format(&self) -> (u32, Compression) {
        self.inner.format
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    pub(crate) fn blocks(&self) -> &dyn BlockStore {
        &*self.inner.blocks
    }

    pub(crate) fn flush_guard(&self) -> MutexGuard<'_, ()> {
        self.inner.flush_lock.lock().unwrap()
    }

    /// Keeps reclamation from freeing stored blocks the caller may start to reference.
    pub(crate) fn reclaim_guard(&self) -> RwLockReadGuard<'_, ()> {
        self.inner.reclaim_lock.read().unwrap()
    }

    /// Keeps reclamation from freeing the blocks and pages a read has resolved but not yet
    /// read, until dropped. Never waits.
    pub(crate) fn read_guard(&self) -> read_epochs::Reading<'_> {
        self.inner.reads.enter()
    }

    /// Waits for the reads in progress (not for those that start meanwhile). A read resolves
    /// block ids from the generation of a file it sees, which a flush may replace before the
    /// read has the blocks; reclamation, once flushes are held off, waits here so that no
    /// read still holds ids its mark missed.
    pub(crate) fn wait_for_reads(&self) {
        self.inner.reads.wait();
    }

    /// Syncs the packs and commits every metadata change with the pack lengths they need
    /// (and without the records of packs reclamation retired).
    pub(crate) fn commit_metadata(&self) -> Result<()> {
        let checkpoint = self.inner.blocks.sync()?;
        forget_retired(&self.inner.meta, &checkpoint)?;
        self.inner.meta.commit(&checkpoint.packs)?;
        self.inner.blocks.acknowledge(&checkpoint);
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Metadata commits since the store was opened.
    pub fn commit_count(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Makes every change so far durable: dirty file data of every open volume, then metadata.
    /// Every intent-log record made before is then obsolete.
    pub fn sync(&self) -> Result<()> {
        let logged = self.intent_log().map(|log| log.next_seq());
        for volume in self.live_volumes() {
            crate::volume::Volume::from_shared(volume).flush_data(None)?;
        }
        self.commit_metadata()?;
        if let (Some(log), Some(seq)) = (self.intent_log(), logged) {
            log.covered(seq);
        }
        Ok(())
    }

    pub(crate) fn intent_log(&self) -> Option<&intent_log::IntentLog> {
        self.inner.log.get()
    }

    /// For a store backed by a remote: what crossed the network since it was opened, and the
    /// bytes its local packs (the remote's cache) occupy.
    pub fn remote_figures(&self) -> Option<(crate::store::remote::RemoteFigures, u64)> {
        let remote = self.blocks().remote_packs()?;
        Some((remote.figures(), self.blocks().stats().pack_bytes))
    }

    /// fsyncs the intent log served (one disk sync each) since the store was opened.
    pub fn intent_log_fsyncs(&self) -> u64 {
        self.intent_log().map_or(0, |log| log.appended())
    }

    /// Pushes what kernels cache of open views (see [`crate::volume::KernelCache`]) to them:
    /// `container`'s view, or every view.
    pub fn push_kernel_caches(&self, container: Option<&str>) -> Result<()> {
        for shared in self.live_volumes() {
            if container.is_none() || shared.container_name().as_deref() == container {
                crate::volume::Volume::from_shared(shared).push_kernel_cache()?;
            }
        }
        Ok(())
    }

    pub(crate) fn live_volumes(&self) -> Vec<Arc<VolumeShared>> {
        let mut volumes = self.inner.volumes.lock().unwrap();
        volumes.retain(|v| v.strong_count() > 0);
        volumes.iter().filter_map(Weak::upgrade).collect()
    }

    /// Blocks until dirty data is below the limit, flushing if it is not. Called by writers
    /// before they take any lock.
    pub(crate) fn make_room(&self, incoming: u64) -> Result<()> {
        let dirty = &self.inner.dirty;
        if dirty.held() + incoming > dirty.limit / 2 {
            // The background flusher stores what is dirty while writers go on.
            self.inner.flusher.nudge();
        }
        if dirty.held() + incoming > dirty.limit {
            self.flush_all()?;
        }
        if !self.has_space_for(incoming)? {
            // Flushing turns dirty blocks into (deduplicated) pack bytes: look again after it.
            self.flush_all()?;
            if !self.has_space_for(incoming)? {
                return Err(Error::NoSpace(format!(
                    "the file system of store {} is full",
                    self.path().display()
                )));
            }
        }
        Ok(())
    }

    fn flush_all(&self) -> Result<()> {
        for volume in self.live_volumes() {
            crate::volume::Volume::from_shared(volume).flush_data(None)?;
        }
        self.commit_metadata()?;
        // The packs grew: the free space known before the flush is stale.
        *self.inner.dirty.free.lock().unwrap() = (0, 0, std::time::Instant::now());
        Ok(())
    }

    /// Whether the disk can take `incoming` more bytes on top of the dirty data held, so a
    /// write that cannot be stored fails at write(2) with ENOSPC rather than at a later flush.
    /// The file system is asked again when a second passed or 32 MiB more became dirty.
    fn has_space_for(&self, incoming: u64) -> Result<bool> {
        let dirty = &self.inner.dirty;
        let held = dirty.held();
        let mut free = dirty.free.lock().unwrap();
        let (known, held_then, when) = *free;
        let stale = when.elapsed() > std::time::Duration::from_secs(1)
            || held > held_then + (32 << 20)
            || known < held + incoming + SPACE_MARGIN;
        if stale {
            let available = self
                .inner
                .io
                .available_space(self.path())
                .ctx(|| format!("checking free space of {}", self.path().display()))?;
            *free = (available, held, std::time::Instant::now());
        }
        Ok(free.0 >= held + incoming + SPACE_MARGIN)
    }

    /// Takes the error a background flush hit, if any (reported once).
    pub fn take_background_error_message(&self) -> Option<String> {
        self.take_background_error()
    }

    pub(crate) fn take_background_error(&self) -> Option<String> {
        self.inner.background_error.lock().unwrap().take()
    }

    pub(crate) fn pages(&self) -> &BlockCache<PageId> {
        &self.inner.pages
    }

    /// Bytes the store occupies on disk (allocated blocks of the packs and the database).
    pub fn disk_usage(&self) -> Result<u64> {
        let io = &self.inner.io;
        let layout = &self.inner.layout;
        let mut total = io
            .allocated_bytes(&layout.meta())
            .ctx(|| format!("measuring {}", layout.meta().display()))?;
        for name in io
            .list_dir(&layout.packs_dir())
            .ctx(|| "listing packs".to_string())?
        {
            let path: PathBuf = layout.packs_dir().join(name);
            total += io.allocated_bytes(&path).unwrap_or(0);
        }
        Ok(total)
    }

    /// The block cache's (bytes held, hits, misses), when the store has one.
    pub fn block_cache_figures(&self) -> Option<(usize, u64, u64)> {
        self.inner.blocks.cache_figures()
    }

    /// Empties the block cache (benchmarks start cold reads with it).
    pub fn drop_block_cache(&self) {
        self.inner.blocks.drop_cache();
    }

    /// Bytes the metadata database occupies on disk.
    pub fn metadata_bytes(&self) -> u64 {
        self.inner
            .io
            .allocated_bytes(&self.inner.layout.meta())
            .unwrap_or(0)
    }

    /// Bytes of file data written and not yet flushed.
    pub fn dirty_bytes(&self) -> u64 {
        self.inner.dirty.held()
    }

    /// The view of a container: the open one if it is mounted, else a newly opened one.
    pub fn container_view(&self, name: &str) -> Result<crate::volume::Volume> {
        let live = self
            .live_volumes()
            .into_iter()
            .find(|v| v.container_name().as_deref() == Some(name));
        match live {
            Some(shared) => {
                let volume = crate::volume::Volume::from_shared(shared);
                volume.push_kernel_cache()?;
                Ok(volume)
            }
            None => self.open_container(name),
        }
    }

    pub fn block_store_stats(&self) -> crate::store::BlockStoreStats {
        self.inner.blocks.stats()
    }
}

/// Deletes the records of retired packs in the pending metadata changes, so the commit that
/// records the copies also forgets the packs they came from.
fn forget_retired(meta: &Meta, checkpoint: &crate::store::Checkpoint) -> Result<()> {
    if checkpoint.retired.is_empty() {
        return Ok(());
    }
    meta.write(|w| {
        for id in &checkpoint.retired {
            w.delete(
                crate::meta::Table::Packs,
                &crate::format::records::pack_key(*id),
            );
        }
        Ok(())
    })
}

fn lock_if_real(options: &StoreOptions, layout: &StoreLayout) -> Result<Option<StoreLock>> {
    match options.io {
        Some(_) => Ok(None),
        None => StoreLock::acquire(&layout.lock(), layout.root()).map(Some),
    }
}

fn read_header(io: &Io, layout: &StoreLayout) -> Result<StoreHeader> {
    let path = layout.header();
    let file = io
        .open(&path, OpenMode::ReadOnly)
        .ctx(|| format!("opening {}", path.display()))?;
    let mut bytes = vec![0u8; store_header::LEN];
    file.read_exact_at(&mut bytes, 0)
        .ctx(|| format!("reading {}", path.display()))?;
    let header = StoreHeader::decode(&bytes)?;
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&header.version) {
        return Err(Error::Unsupported(format!(
            "store format version {} (this build reads versions {OLDEST_FORMAT_VERSION} to \
             {FORMAT_VERSION})",
            header.version
        )));
    }
    if header.version < 2 && header.compression != Compression::None {
        return Err(Error::Corrupt(
            "store header: compression in a version 1 store".into(),
        ));
    }
    check_block_size(header.block_size)?;
    Ok(header)
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        self.flusher.stop();
        let checkpoint = match self.blocks.sync() {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                tracing::error!("closing store: syncing packs failed: {e}");
                return;
            }
        };
        let forgotten = forget_retired(&self.meta, &checkpoint);
        if let Err(e) = forgotten.and_then(|_| self.meta.commit(&checkpoint.packs)) {
            tracing::error!("closing store: committing metadata failed: {e}");
        }
    }
}
