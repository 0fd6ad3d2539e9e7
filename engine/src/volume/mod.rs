//! The filesystem-shaped API over one view: a container's (writable) or an image's (read-only).
//! FUSE calls it; tests call it directly. Node ids are inode numbers.
//!
//! Locking, in the only order locks are ever taken: the view's stack (read for every
//! operation, write only to commit) → a node's data lock → the metadata writer. The node map
//! and handle table locks are leaves: nothing is taken while holding them. A flush takes the
//! store's flush lock first and never waits on the stack while holding a node lock.

mod attr;
mod copy_range;
mod dirty;
mod file_data;
mod flush;
mod handles;
mod log_fsync;
mod namespace;
mod read;
mod size_limit;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use attr::{
    Attr, Caller, DirEntry, DirHandle, Fallocate, FileHandle, FsStats, SeekTarget, SetAttr,
    XattrMode,
};
pub(crate) use file_data::NodeState;
pub use handles::OpenHandles;

use crate::error::{Error, Result};
use crate::ids::{LayerId, NodeId};
use crate::layer::mutate::Ctx;
use crate::layer::{Stack, lookup};
use crate::meta::records::Records;
use crate::store_dir::Store;
use crate::tree::node::NodeRecord;
use handles::Handles;

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// One open view. Clones share it; the last one to go flushes its dirty data.
#[derive(Clone)]
pub struct Volume {
    shared: Arc<VolumeShared>,
}

pub(crate) struct VolumeShared {
    store: Store,
    target: Target,
    stack: RwLock<Stack>,
    nodes: Mutex<HashMap<NodeId, Arc<NodeState>>>,
    /// Counts removals from `nodes` (see `Volume::state`).
    evictions: AtomicU64,
    /// Whether reads keep every block in the store's block cache (share-memory mounts).
    cache_reads: AtomicBool,
    handles: Mutex<Handles>,
    /// Pushes what a kernel caches of this view (see [`KernelCache`]).
    kernel_cache: Mutex<Option<KernelCache>>,
    /// The container's size limit and what counts against it (see `size_limit`).
    limit: size_limit::Limit,
}

/// Pushes the changes a kernel holds for a view — a mount's dirty pages (writeback cache,
/// shared mappings) — to the view (given as the argument), and waits until they are there.
/// The mount registers it; whatever reads a container as a whole (commit, export, diff,
/// stats) calls it first, so it sees every write that returned. Called with no lock of the
/// view held, never from a thread that serves the mount's requests.
pub type KernelCache = Arc<dyn Fn(&Volume) -> std::io::Result<()> + Send + Sync>;

#[derive(Debug, Clone)]
enum Target {
    Container(String),
    Image(String),
}

impl VolumeShared {
    pub fn container_name(&self) -> Option<String> {
        match &self.target {
            Target::Container(name) => Some(name.clone()),
            Target::Image(_) => None,
        }
    }
}

impl Store {
    /// Opens a container's view for reading and writing. A container is open at most once.
    pub fn open_container(&self, name: &str) -> Result<Volume> {
        let mut volumes = self.inner.volumes.lock().unwrap();
        volumes.retain(|v| v.strong_count() > 0);
        if volumes
            .iter()
            .filter_map(|v| v.upgrade())
            .any(|v| v.container_name().as_deref() == Some(name))
        {
            return Err(Error::Busy(format!("container {name} is already mounted")));
        }
        let r = self.meta().read();
        let record = r
            .container(name)?
            .ok_or_else(|| Error::NotFound(format!("container {name}")))?;
        let layers = r.stack_of(Some(record.upper))?;
        drop(r);
        let volume = Volume::new(self, Target::Container(name.into()), layers, true);
        volume.shared.limit.set(record.size_limit);
        volumes.push(Arc::downgrade(&volume.shared));
        Ok(volume)
    }

    /// Opens an image's view, read-only.
    pub fn open_image(&self, name: &str) -> Result<Volume> {
        let r = self.meta().read();
        let image = r
            .image(name)?
            .ok_or_else(|| Error::NotFound(format!("image {name}")))?;
        let layers = r.stack_of(Some(image.top))?;
        drop(r);
        let volume = Volume::new(self, Target::Image(name.into()), layers, false);
        self.inner
            .volumes
            .lock()
            .unwrap()
            .push(Arc::downgrade(&volume.shared));
        Ok(volume)
    }
}

impl Volume {
    fn new(store: &Store, target: Target, layers: Vec<LayerId>, writable: bool) -> Volume {
        Volume {
            shared: Arc::new(VolumeShared {
                store: store.clone(),
                target,
                stack: RwLock::new(Stack { layers, writable }),
                nodes: Mutex::new(HashMap::new()),
                evictions: AtomicU64::new(0),
                cache_reads: AtomicBool::new(false),
                limit: Default::default(),
                handles: Mutex::new(Handles::default()),
                kernel_cache: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn from_shared(shared: Arc<VolumeShared>) -> Volume {
        Volume { shared }
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The container this view belongs to, if it is a container's.
    pub fn container(&self) -> Option<String> {
        self.shared.container_name()
    }

    /// The image this view shows, if it is an image's.
    pub fn image(&self) -> Option<String> {
        match &self.shared.target {
            Target::Image(name) => Some(name.clone()),
            Target::Container(_) => None,
        }
    }

    pub fn is_writable(&self) -> bool {
        self.stack().writable
    }

    /// The layers this view reads, top first.
    pub fn layers(&self) -> Vec<LayerId> {
        self.stack().layers.clone()
    }

    /// Keep every block a read loads in the store's verified block cache, shared by every view
    /// that does (share-memory mode). Off by default: only blocks of which a read asked a part
    /// are kept (read-around), and the kernel's page cache holds the rest.
    pub fn set_cache_reads(&self, on: bool) {
        self.shared.cache_reads.store(on, Ordering::Relaxed);
    }

    /// Registers (or, with `None`, removes) what pushes a kernel's cached changes of this view.
    pub fn set_kernel_cache(&self, cache: Option<KernelCache>) {
        *self.shared.kernel_cache.lock().unwrap() = cache;
    }

    /// Pushes the kernel's cached changes of this view to it (nothing when none is registered).
    pub fn push_kernel_cache(&self) -> Result<()> {
        let cache = self.shared.kernel_cache.lock().unwrap().clone();
        match cache {
            Some(push) => {
                push(self).map_err(|e| Error::io("pushing the kernel's cached writes", e))
            }
            None => Ok(()),
        }
    }

    pub fn root(&self) -> NodeId {
        NodeId::ROOT
    }

    pub fn block_size(&self) -> u32 {
        self.shared.store.block_size()
    }

    fn stack(&self) -> RwLockReadGuard<'_, Stack> {
        self.shared.stack.read().unwrap()
    }

    fn ctx(caller: Caller) -> Ctx {
        Ctx {
            uid: caller.uid,
            gid: caller.gid,
            now: now_ns(),
            umask: caller.umask,
        }
    }

    /// The node's newest record.
    fn record(&self, stack: &Stack, node: NodeId) -> Result<NodeRecord> {
        let r = self.shared.store.meta().read();
        lookup::existing(&r, &stack.layers, node)
    }

    /// The node's attributes, with unflushed writes (size, times) applied.
    fn attr_of(&self, node: NodeId, record: &NodeRecord) -> Attr {
        let mut attr = Attr::from_record(node, record, self.block_size());
        let Some(state) = self.existing_state(node) else {
            return attr;
        };
        let Some(fd) = state.apply_times(&mut attr) else {
            return attr;
        };
        if !fd.is_clean() {
            let stored = match record.content {
                crate::tree::node::Content::File { stored_blocks, .. } => stored_blocks,
                _ => 0,
            };
            match self.referenced_blocks(&fd, stored) {
                Ok(blocks) => attr.blocks = blocks * (self.block_size() as u64 / 512),
                Err(e) => tracing::warn!("counting blocks of node {node}: {e}"),
            }
        }
        attr
    }

    pub fn getattr(&self, node: NodeId) -> Result<Attr> {
        let stack = self.stack();
        let record = self.record(&stack, node)?;
        Ok(self.attr_of(node, &record))
    }

    pub fn lookup(&self, parent: NodeId, name: &[u8]) -> Result<Attr> {
        crate::layer::check_name(name)?;
        let stack = self.stack();
        let r = self.shared.store.meta().read();
        let (node, _) = lookup::entry(&r, &stack.layers, parent, name)?
            .ok_or_else(|| Error::NotFound(format!("{:?}", String::from_utf8_lossy(name))))?;
        let record = lookup::existing(&r, &stack.layers, node)?;
        drop(r);
        Ok(self.attr_of(node, &record))
    }

    /// Resolves a slash-separated path from the root, following no symlinks.
    pub fn resolve(&self, path: &[u8]) -> Result<Attr> {
        let stack = self.stack();
        let r = self.shared.store.meta().read();
        let (node, _) = lookup::path(&r, &stack.layers, path)?
            .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(path).into_owned()))?;
        let record = lookup::existing(&r, &stack.layers, node)?;
        drop(r);
        Ok(self.attr_of(node, &record))
    }

    /// The directory a directory sits in (itself for the root); `None` for other kinds.
    pub fn parent_of(&self, node: NodeId) -> Option<NodeId> {
        let stack = self.stack();
        match self.record(&stack, node).ok()?.content {
            crate::tree::node::Content::Dir { parent } => Some(parent),
            _ => None,
        }
    }

    pub fn readlink(&self, node: NodeId) -> Result<Vec<u8>> {
        let stack = self.stack();
        match self.record(&stack, node)?.content {
            crate::tree::node::Content::Symlink(target) => Ok(target),
            _ => Err(Error::InvalidInput(format!("node {node} is not a symlink"))),
        }
    }

    /// Makes every change of this view durable.
    pub fn sync(&self) -> Result<()> {
        self.flush_data(None)?;
        self.shared.store.commit_metadata()
    }

    /// File system figures: the store's file system, in the store's block size.
    pub fn statfs(&self) -> Result<FsStats> {
        let store = &self.shared.store;
        let bs = store.block_size() as u64;
        let stat = rustix::fs::statvfs(store.path());
        let (total, free, avail, files, ffree) = match stat {
            Ok(s) => (
                s.f_blocks * s.f_frsize,
                s.f_bfree * s.f_frsize,
                s.f_bavail * s.f_frsize,
                s.f_files,
                s.f_ffree,
            ),
            Err(_) => (0, 0, 0, 0, 0),
        };
        // A container with a size limit looks like a file system of that size.
        let (total, free, avail) = match self.size_limit_use()? {
            Some((limit, used)) => {
                let left = limit.saturating_sub(used);
                (limit, left.min(free), left.min(avail))
            }
            None => (total, free, avail),
        };
        Ok(FsStats {
            block_size: bs as u32,
            blocks: total / bs,
            blocks_free: free / bs,
            blocks_available: avail / bs,
            files,
            files_free: ffree,
            name_max: crate::layer::NAME_MAX as u32,
        })
    }
}

impl Drop for VolumeShared {
    fn drop(&mut self) {
        let volume_stack = self.stack.read().unwrap().clone();
        if !volume_stack.writable {
            return;
        }
        // The last handle to a container's view: make its changes durable.
        let states: Vec<_> = self.nodes.lock().unwrap().drain().collect();
        if let Err(e) = flush::flush_states(&self.store, &volume_stack, states) {
            tracing::error!("flushing a closed volume failed: {e}");
        }
        if let Err(e) = self.store.commit_metadata() {
            tracing::error!("committing a closed volume failed: {e}");
        }
    }
}
