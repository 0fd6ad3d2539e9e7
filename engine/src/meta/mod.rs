//! The metadata database: redb underneath, with an in-memory write-back layer on top so that
//! metadata operations cost microseconds and reach disk in group commits.
//!
//! Every change is made in a [`Writer`] (one at a time, atomically: a failed operation leaves
//! nothing behind) and lands in the overlay. [`Meta::commit`] writes the whole overlay in one
//! durable redb transaction together with the block store's checkpoint. Reads see the newest
//! value: the writer's own batch, then the overlay, then the part being committed, then redb.
//! A crash loses only uncommitted changes, and each operation is either wholly in a commit or
//! wholly absent.

mod logged;
mod overlay;
pub mod records;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::{Database, ReadTransaction, ReadableDatabase, TableDefinition};

use crate::error::Result;
use crate::format::records::{PackRecord, pack_key};
use crate::ids::PackId;
pub use logged::Unlogged;
use overlay::Changes;

/// The tables of the metadata database. Keys and values: see `format::records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Nodes = 0,
    Dirents,
    Orphans,
    Pages,
    Packs,
    Layers,
    Images,
    Containers,
    Counters,
}

impl Table {
    pub const COUNT: usize = 9;
    pub const ALL: [Table; Table::COUNT] = [
        Table::Nodes,
        Table::Dirents,
        Table::Orphans,
        Table::Pages,
        Table::Packs,
        Table::Layers,
        Table::Images,
        Table::Containers,
        Table::Counters,
    ];

    fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(match self {
            Table::Nodes => "nodes",
            Table::Dirents => "dirents",
            Table::Orphans => "orphans",
            Table::Pages => "pages",
            Table::Packs => "packs",
            Table::Layers => "layers",
            Table::Images => "images",
            Table::Containers => "containers",
            Table::Counters => "counters",
        })
    }
}

/// Reading the newest state of the metadata.
pub trait MetaRead {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
}

pub struct Meta {
    /// Replaced (under the overlay's write lock) when an I/O error left it refusing all work.
    db: RwLock<Arc<Database>>,
    overlay: RwLock<Overlay>,
    commit_lock: Mutex<()>,
    reopen: Option<Reopen>,
    /// Whether changes are tracked for the intent log (`Overlay::unlogged`).
    tracks_unlogged: std::sync::atomic::AtomicBool,
    /// The seq of the newest intent-log record holding changes; a commit records it as
    /// covered (`logged`).
    logged_seq: std::sync::atomic::AtomicU64,
}

/// Opens the database file again. redb fails every operation after one I/O error until it is
/// reopened, so a disk that was full for a moment would otherwise stop the store for good.
pub type Reopen = Box<dyn Fn() -> Result<Database> + Send + Sync>;

#[derive(Default)]
struct Overlay {
    active: Changes,
    /// Changes being written to redb by `commit`.
    committing: Option<Arc<Changes>>,
    /// Changes made since the intent log last took them (see `logged`): neither logged nor
    /// committed yet.
    unlogged: Changes,
    /// What `unlogged` held when the running commit began; back into it if the commit fails.
    committing_unlogged: Option<Changes>,
}

impl Meta {
    /// Wraps an opened database, creating missing tables.
    pub fn new(db: Database) -> Result<Meta> {
        let txn = db.begin_write()?;
        for table in Table::ALL {
            txn.open_table(table.definition())?;
        }
        txn.commit()?;
        Ok(Meta {
            db: RwLock::new(Arc::new(db)),
            overlay: RwLock::new(Overlay::default()),
            commit_lock: Mutex::new(()),
            reopen: None,
            tracks_unlogged: Default::default(),
            logged_seq: Default::default(),
        })
    }

    /// Lets a failed commit reopen the database (see [`Reopen`]).
    pub fn with_reopen(mut self, reopen: Reopen) -> Meta {
        self.reopen = Some(reopen);
        self
    }

    pub fn read(&self) -> Reader<'_> {
        let overlay = self.overlay.read().unwrap();
        Reader {
            overlay,
            db: self.db.read().unwrap().clone(),
            txn: Default::default(),
        }
    }

    /// Runs `f` as one atomic metadata operation: its changes land only if it returns `Ok`.
    pub fn write<T>(&self, f: impl FnOnce(&mut Writer<'_>) -> Result<T>) -> Result<T> {
        let overlay = self.overlay.write().unwrap();
        let mut writer = Writer {
            overlay,
            db: self.db.read().unwrap().clone(),
            txn: Default::default(),
            batch: Changes::default(),
        };
        let out = f(&mut writer)?;
        let Writer {
            mut overlay, batch, ..
        } = writer;
        if self
            .tracks_unlogged
            .load(std::sync::atomic::Ordering::Relaxed)
            && !batch.is_empty()
        {
            overlay.unlogged.absorb(batch.clone());
        }
        overlay.active.absorb(batch);
        Ok(out)
    }

    /// Bytes of changes waiting for a commit.
    /// Whether every change made so far is committed (none pending, none being committed).
    pub fn is_quiet(&self) -> bool {
        let overlay = self.overlay.read().unwrap();
        overlay.active.is_empty() && overlay.committing.is_none()
    }

    pub fn pending_bytes(&self) -> usize {
        self.overlay.read().unwrap().active.bytes
    }

    /// Writes every change made so far, plus the block store's pack records, in one durable
    /// redb transaction. The caller synced the packs those records describe.
    pub fn commit(&self, packs: &BTreeMap<PackId, PackRecord>) -> Result<()> {
        let _one_at_a_time = self.commit_lock.lock().unwrap();
        let (changes, db) = {
            let mut overlay = self.overlay.write().unwrap();
            if overlay.active.is_empty() && packs.is_empty() {
                return Ok(());
            }
            let changes = Arc::new(std::mem::take(&mut overlay.active));
            overlay.committing = Some(changes.clone());
            // Every change is in this commit or an earlier one: none needs logging once it
            // is durable.
            overlay.committing_unlogged = Some(std::mem::take(&mut overlay.unlogged));
            (changes, self.db.read().unwrap().clone())
        };
        let mut result = self.write_to_db(&db, &changes, packs);
        let mut fresh = None;
        if result.is_err() && db.begin_write().is_err() {
            // The database refuses all work after an I/O error: reopen it (it recovers to its
            // last commit) and try once more, since the error may predate this commit.
            if let Some(reopened) = self.reopen.as_ref().and_then(|reopen| reopen().ok()) {
                result = self.write_to_db(&reopened, &changes, packs);
                fresh = Some(Arc::new(reopened));
            }
        }
        let mut overlay = self.overlay.write().unwrap();
        if let Some(fresh) = fresh {
            *self.db.write().unwrap() = fresh;
        }
        overlay.committing = None;
        let unlogged = overlay.committing_unlogged.take().unwrap_or_default();
        if result.is_err() {
            // Keep the changes: put them back under anything written since.
            let newer = std::mem::take(&mut overlay.active);
            let mut restored = Arc::unwrap_or_clone(changes);
            restored.absorb(newer);
            overlay.active = restored;
            let newer = std::mem::take(&mut overlay.unlogged);
            let mut restored = unlogged;
            restored.absorb(newer);
            overlay.unlogged = restored;
        }
        result
    }

    fn write_to_db(
        &self,
        db: &Database,
        changes: &Changes,
        packs: &BTreeMap<PackId, PackRecord>,
    ) -> Result<()> {
        let txn = db.begin_write()?;
        for table in Table::ALL {
            let map = &changes.tables[table as usize];
            if map.is_empty() && table != Table::Packs && table != Table::Counters {
                continue;
            }
            let mut t = txn.open_table(table.definition())?;
            for (key, value) in map {
                match value {
                    Some(v) => t.insert(key.as_slice(), v.as_slice())?,
                    None => t.remove(key.as_slice())?,
                };
            }
            if table == Table::Packs {
                for (id, record) in packs {
                    t.insert(&pack_key(*id)[..], &record.encode()[..])?;
                }
            }
            if table == Table::Counters {
                logged::record_covered(&mut t, self.logged_seq())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// Lazily begun redb read transaction shared by the reads of one operation.
#[derive(Default)]
struct DbSnapshot(Option<ReadTransaction>);

impl DbSnapshot {
    fn txn(&mut self, db: &Database) -> Result<&ReadTransaction> {
        if self.0.is_none() {
            self.0 = Some(db.begin_read()?);
        }
        Ok(self.0.as_ref().expect("just begun"))
    }

    fn get(&mut self, db: &Database, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = self.txn(db)?.open_table(table.definition())?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    fn scan(
        &mut self,
        db: &Database,
        table: Table,
        prefix: &[u8],
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        let t = self.txn(db)?.open_table(table.definition())?;
        let mut out = BTreeMap::new();
        for entry in t.range::<&[u8]>(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.insert(k.value().to_vec(), v.value().to_vec());
        }
        Ok(out)
    }
}

fn layered_get(
    layers: &[&Changes],
    snapshot: &mut DbSnapshot,
    db: &Database,
    table: Table,
    key: &[u8],
) -> Result<Option<Vec<u8>>> {
    for layer in layers {
        if let Some(found) = layer.get(table, key) {
            return Ok(found.clone());
        }
    }
    snapshot.get(db, table, key)
}

fn layered_scan(
    layers: &[&Changes],
    snapshot: &mut DbSnapshot,
    db: &Database,
    table: Table,
    prefix: &[u8],
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut merged = snapshot.scan(db, table, prefix)?;
    for layer in layers.iter().rev() {
        layer.apply_range(table, prefix, &mut merged);
    }
    Ok(merged.into_iter().collect())
}

/// A consistent view for the length of one operation.
pub struct Reader<'a> {
    overlay: RwLockReadGuard<'a, Overlay>,
    db: Arc<Database>,
    txn: std::cell::RefCell<DbSnapshot>,
}

impl Reader<'_> {
    fn layers(&self) -> Vec<&Changes> {
        let mut layers = vec![&self.overlay.active];
        layers.extend(self.overlay.committing.as_deref());
        layers
    }
}

impl MetaRead for Reader<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        layered_get(
            &self.layers(),
            &mut self.txn.borrow_mut(),
            &self.db,
            table,
            key,
        )
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        layered_scan(
            &self.layers(),
            &mut self.txn.borrow_mut(),
            &self.db,
            table,
            prefix,
        )
    }
}

/// One atomic metadata operation in progress.
pub struct Writer<'a> {
    overlay: RwLockWriteGuard<'a, Overlay>,
    db: Arc<Database>,
    txn: std::cell::RefCell<DbSnapshot>,
    batch: Changes,
}

impl Writer<'_> {
    fn layers(&self) -> Vec<&Changes> {
        let mut layers = vec![&self.batch, &self.overlay.active];
        layers.extend(self.overlay.committing.as_deref());
        layers
    }

    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.batch.put(table, key.to_vec(), Some(value.to_vec()));
    }

    pub fn delete(&mut self, table: Table, key: &[u8]) {
        self.batch.put(table, key.to_vec(), None);
    }
}

impl MetaRead for Writer<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        layered_get(
            &self.layers(),
            &mut self.txn.borrow_mut(),
            &self.db,
            table,
            key,
        )
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        layered_scan(
            &self.layers(),
            &mut self.txn.borrow_mut(),
            &self.db,
            table,
            prefix,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        Meta::new(db).unwrap()
    }

    #[test]
    fn reads_see_uncommitted_and_committed_changes() {
        let meta = meta();
        meta.write(|w| {
            w.put(Table::Nodes, b"a1", b"x");
            w.put(Table::Nodes, b"a2", b"y");
            Ok(())
        })
        .unwrap();
        meta.commit(&BTreeMap::new()).unwrap();
        meta.write(|w| {
            w.delete(Table::Nodes, b"a1");
            w.put(Table::Nodes, b"a3", b"z");
            assert_eq!(w.get(Table::Nodes, b"a1").unwrap(), None);
            Ok(())
        })
        .unwrap();
        let r = meta.read();
        assert_eq!(r.get(Table::Nodes, b"a2").unwrap(), Some(b"y".to_vec()));
        let keys: Vec<_> = r
            .scan(Table::Nodes, b"a")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"a2".to_vec(), b"a3".to_vec()]);
    }

    #[test]
    fn a_failed_operation_leaves_nothing() {
        let meta = meta();
        let result: Result<()> = meta.write(|w| {
            w.put(Table::Images, b"img", b"1");
            Err(crate::Error::InvalidInput("no".into()))
        });
        assert!(result.is_err());
        assert_eq!(meta.read().get(Table::Images, b"img").unwrap(), None);
    }

    /// Regression: redb refuses every operation after one I/O error until it is reopened, so
    /// one commit that met a full disk stopped the store for good. A failed commit reopens it.
    #[test]
    fn a_commit_after_an_io_error_reopens_the_database() {
        use crate::io::{IoBackend, OpenMode, SimIo, SimOptions, StorageIo};
        let path = std::path::Path::new("/m/meta.redb");
        let open_on = |sim: Arc<SimIo>| {
            move |mode| -> Result<Database> {
                let file = sim
                    .open(path, mode)
                    .map_err(|e| crate::Error::io("meta", e))?;
                Ok(Database::builder().create_with_backend(IoBackend(file))?)
            }
        };
        let sim = SimIo::new(SimOptions::default());
        sim.create_dir_all(path.parent().unwrap()).unwrap();
        let open = open_on(sim.clone());
        let db = open(OpenMode::Create).unwrap();
        sim.sync_dir(path.parent().unwrap()).unwrap();
        let meta = Meta::new(db)
            .unwrap()
            .with_reopen(Box::new(move || open(OpenMode::ReadWrite)));
        let put = |key: &[u8]| {
            meta.write(|w| {
                w.put(Table::Nodes, key, b"v");
                Ok(())
            })
            .unwrap()
        };
        put(b"a");
        meta.commit(&BTreeMap::new()).unwrap();
        put(b"b");
        sim.fail_after(0);
        assert!(meta.commit(&BTreeMap::new()).is_err());
        sim.heal();
        meta.commit(&BTreeMap::new()).unwrap();
        assert_eq!(
            meta.read().get(Table::Nodes, b"b").unwrap(),
            Some(b"v".to_vec())
        );
        drop(meta);
        let db = open_on(sim.crash(1))(OpenMode::ReadWrite).unwrap();
        let meta = Meta::new(db).unwrap();
        for key in [&b"a"[..], b"b"] {
            assert_eq!(
                meta.read().get(Table::Nodes, key).unwrap(),
                Some(b"v".to_vec())
            );
        }
    }
}
