//! The packs of one remote that a store knows: their indexes (attached from the remote, kept
//! under `STORE/remote/URLHASH/`), the blocks they hold, verified fetches of single blocks, and
//! uploads of blocks the remote lacks. Used by the remote-backed store and by push and pull.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use super::Remote;
use super::bucket::{self, IndexEntries, PackName};
use crate::error::{IoContext, Result};
use crate::format::pack_index::Entry;
use crate::ids::BlockId;
use crate::io::Io;
use crate::layout::StoreLayout;

/// Where a block lives on the remote.
#[derive(Debug, Clone)]
pub(super) struct RemoteBlock {
    pub(super) pack: Arc<PackName>,
    pub(super) entry: Entry,
}

/// A block's place in its pack, in the pack's order.
pub(super) type Placed = (u64, u32, BlockId);

/// Per pack, how far reads through it in order have got, and how far fetches went ahead
/// (`RemotePacks::plan`, in fetch.rs).
#[derive(Default)]
pub(super) struct Streams(pub(super) Mutex<HashMap<Arc<PackName>, Stream>>);

#[derive(Clone, Copy)]
pub(super) struct Stream {
    /// Where the reads in order had got to.
    pub(super) last: u64,
    /// Where what was fetched or is in flight ends.
    pub(super) end: u64,
    /// The window fetched ahead, doubled by each read that continues the stream (0: none).
    pub(super) window: u64,
}

pub struct RemotePacks {
    pub(super) remote: Remote,
    pub(super) io: Io,
    pub(super) layout: StoreLayout,
    pub(super) block_size: u32,
    pub(super) pack_target: u64,
    /// Blocks of the attached packs.
    pub(super) known: RwLock<HashMap<BlockId, RemoteBlock>>,
    attached: RwLock<BTreeMap<PackName, Arc<PackName>>>,
    /// Each attached pack's blocks in the pack's order (for read-ahead).
    order: RwLock<HashMap<Arc<PackName>, Arc<Vec<Placed>>>>,
    pub(super) streams: Streams,
}

impl RemotePacks {
    /// What crossed the network since the store was opened.
    pub fn figures(&self) -> super::RemoteFigures {
        self.remote.figures()
    }

    /// The packs of `remote` this store attached earlier (local files only, no request).
    pub fn open(
        io: Io,
        layout: StoreLayout,
        block_size: u32,
        pack_target: u64,
        remote: Remote,
    ) -> Result<RemotePacks> {
        let packs = RemotePacks {
            remote,
            io,
            layout,
            block_size,
            pack_target,
            known: RwLock::new(HashMap::new()),
            attached: RwLock::new(BTreeMap::new()),
            order: RwLock::new(HashMap::new()),
            streams: Streams::default(),
        };
        for (name, entries) in packs.load_cached_indexes()? {
            packs.add_index(name, entries);
        }
        Ok(packs)
    }

    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// Whether the remote holds the block (as far as the attached indexes tell).
    pub fn holds(&self, id: &BlockId) -> bool {
        self.known.read().unwrap().contains_key(id)
    }

    /// The pack holding a block and the block's length.
    pub fn location(&self, id: &BlockId) -> Option<(PackName, u32)> {
        let known = self.known.read().unwrap();
        known.get(id).map(|b| ((*b.pack).clone(), b.entry.len))
    }

    /// An attached pack's blocks in its order (empty for a pack not attached).
    pub(super) fn order_of(&self, pack: &Arc<PackName>) -> Arc<Vec<Placed>> {
        let order = self.order.read().unwrap();
        order.get(pack).cloned().unwrap_or_default()
    }

    /// The attached packs.
    pub fn attached_packs(&self) -> Vec<PackName> {
        self.attached.read().unwrap().keys().cloned().collect()
    }

    /// Every block of the attached packs and its length.
    pub fn known_blocks(&self) -> Vec<(BlockId, u32)> {
        let known = self.known.read().unwrap();
        known.iter().map(|(id, b)| (*id, b.entry.len)).collect()
    }

    pub(super) fn add_index(&self, name: PackName, entries: IndexEntries) {
        let mut attached = self.attached.write().unwrap();
        let pack = attached
            .entry(name.clone())
            .or_insert_with(|| Arc::new(name))
            .clone();
        let mut placed: Vec<Placed> = entries
            .iter()
            .map(|(id, entry)| (entry.offset, entry.len, *id))
            .collect();
        placed.sort_unstable();
        self.order
            .write()
            .unwrap()
            .insert(pack.clone(), Arc::new(placed));
        let mut known = self.known.write().unwrap();
        for (id, entry) in entries {
            known.entry(id).or_insert(RemoteBlock {
                pack: pack.clone(),
                entry,
            });
        }
    }

    /// Attaches every remote pack not attached yet: one listing of the packs' directory and
    /// one GET per new index (a push dedups against what other hosts uploaded). Attached packs
    /// whose index the listing lacks (deleted by `gc --remote`) are detached: nothing relies
    /// on them any more.
    pub fn refresh(&self) -> Result<usize> {
        let mut listed = HashSet::new();
        for file in self.remote.list(&bucket::packs_dir())? {
            if let Some((name, true)) = PackName::from_file_name(&file) {
                listed.insert(name);
            }
        }
        let gone: Vec<PackName> = self
            .attached_packs()
            .into_iter()
            .filter(|name| !listed.contains(name))
            .collect();
        if !gone.is_empty() {
            self.detach(&gone)?;
        }
        let listed: Vec<PackName> = listed.into_iter().collect();
        self.attach_all(&listed)
    }

    /// Attaches the listed packs not attached yet: their indexes are fetched at once (several
    /// GETs in flight), checked and kept, with one directory sync for all. Returns how many
    /// were new. A pack whose index fails stops the call; those kept before it stay attached.
    pub fn attach_all(&self, names: &[PackName]) -> Result<usize> {
        let mut seen = HashSet::new();
        let new: Vec<&PackName> = {
            let attached = self.attached.read().unwrap();
            names
                .iter()
                .filter(|n| !attached.contains_key(*n) && seen.insert(*n))
                .collect()
        };
        let keys: Vec<String> = new.iter().map(|n| bucket::index_key(n)).collect();
        let fetched = self.remote.get_many(&keys);
        let mut added = 0;
        let mut failed = None;
        for (name, bytes) in new.into_iter().zip(fetched) {
            let kept = bytes.and_then(|bytes| {
                let entries = bucket::decode_index(name, &bytes)?;
                self.keep_index_unsynced(name, &bytes)?;
                Ok(entries)
            });
            match kept {
                Ok(entries) => {
                    self.add_index(name.clone(), entries);
                    added += 1;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if added > 0 {
            self.sync_kept_indexes()?;
        }
        failed.map_or(Ok(added), Err)
    }

    /// Forgets packs that left the remote: their kept indexes are removed and the blocks they
    /// held are known again only through the other attached packs.
    fn detach(&self, gone: &[PackName]) -> Result<()> {
        let url = self.remote.url().to_string();
        for name in gone {
            tracing::info!(pack = %name.0, "detaching a pack the remote no longer lists");
            let path = self.layout.remote_index(&url, &name.0);
            if self.io.exists(&path) {
                self.io
                    .remove_file(&path)
                    .ctx(|| format!("removing {}", path.display()))?;
            }
        }
        let mut attached = self.attached.write().unwrap();
        let mut known = self.known.write().unwrap();
        for name in gone {
            attached.remove(name);
        }
        self.order
            .write()
            .unwrap()
            .retain(|pack, _| attached.contains_key(&**pack));
        known.retain(|_, block| attached.contains_key(&*block.pack));
        drop((attached, known));
        // A block of a detached pack may also lie in a pack still attached.
        for (name, entries) in self.load_cached_indexes()? {
            if self.attached.read().unwrap().contains_key(&name) {
                self.add_index(name, entries);
            }
        }
        Ok(())
    }
}
