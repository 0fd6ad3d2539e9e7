//! containerd's snapshots API (a proxy plugin) over a Tessera store, served by
//! `tessera snapshotter`. A committed snapshot is a Tessera image, an active snapshot a
//! Tessera container on its parent's image (on an empty image without a parent), a view a
//! container mounted read-only. Mounts are `bind` mounts of the container's FUSE mount,
//! served by the store's daemon. Keys, kinds, parents and labels live in `db`.
//!
//! Every request is checked against the database before the store is touched, so a bad one
//! (unknown key, parent not committed, name taken, snapshot with children) changes nothing.
//!
//! Requests run at once: each holds the state's lock only to check and to record, and the
//! slow store steps (create, mount, commit, unmount, remove) run without it. A request marks
//! the keys it works on busy until it is done ([`Busy`]); another request on one of them waits
//! its turn, so the requests on one key keep their order. A snapshot being prepared counts as
//! its parent's child (`pending_children`), so its parent cannot be removed meanwhile; Cleanup
//! waits until nothing is under way and holds the lock throughout (a container being prepared
//! is in the store before the database names it: not a leftover).

// The service's errors are `tonic::Status` (what the `Snapshotter` trait returns and containerd
// reads the code of): large, but built only on the error path of a gRPC request.
#![allow(clippy::result_large_err)]

pub mod db;
pub mod filter;
mod requests;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use anyhow::Result;
use containerd_snapshots::api::types::Mount;
use containerd_snapshots::tonic::Status;
use containerd_snapshots::{Info, Usage};

use db::{Db, EMPTY_IMAGE, Kind, Record};
use filter::{Filters, Subject};
use tessera::store_dir::{ContainerInfo, ImageInfo};
use tessera_daemon::reply::DaemonStatus;
use tessera_daemon::{FromReply, Reply, Request, client};

/// The snapshotter: the store it serves and its own state directory.
pub struct TesseraSnapshotter {
    store: PathBuf,
    /// Where containers are mounted: `mounts/ID`.
    mounts_dir: PathBuf,
    state: Mutex<State>,
    /// Signalled whenever keys stop being busy.
    turns: Condvar,
}

struct State {
    db: Db,
    /// Mount points the daemon serves now.
    mounted: HashSet<PathBuf>,
    /// Keys a request is working on (see [`Busy`]).
    busy: HashSet<String>,
    /// Per parent key, the snapshots being prepared on it.
    pending_children: HashMap<String, usize>,
}

/// Keys a request works on, busy until it is dropped (on every path out of the request).
struct Busy<'a> {
    snapshotter: &'a TesseraSnapshotter,
    keys: Vec<String>,
    /// The parent of a snapshot being prepared.
    parent: Option<String>,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut state = self.snapshotter.state.lock().unwrap();
        for key in &self.keys {
            state.busy.remove(key);
        }
        if let Some(parent) = &self.parent
            && let Some(n) = state.pending_children.get_mut(parent)
        {
            *n -= 1;
            if *n == 0 {
                state.pending_children.remove(parent);
            }
        }
        self.snapshotter.turns.notify_all();
    }
}

fn internal(e: anyhow::Error) -> Status {
    Status::internal(tessera_daemon::error_line(&e))
}

/// What Walk's filters see of snapshot `key`.
fn subject<'a>(key: &'a str, r: &'a Record) -> Subject<'a> {
    Subject {
        name: key,
        kind: r.kind,
        parent: &r.parent,
        labels: &r.labels,
    }
}

fn not_found(key: &str) -> Status {
    Status::not_found(format!("snapshot {key:?} does not exist"))
}

/// The record of snapshot `key`, or containerd's NotFound.
fn record<'a>(db: &'a Db, key: &str) -> Result<&'a Record, Status> {
    db.snapshots.get(key).ok_or_else(|| not_found(key))
}

impl TesseraSnapshotter {
    /// Opens the snapshotter state in `root` (created if missing) for the store at `store`,
    /// whose daemon must already run (it serves the mounts).
    pub fn open(store: &Path, root: &Path) -> Result<TesseraSnapshotter> {
        let mounts_dir = root.join("mounts");
        std::fs::create_dir_all(&mounts_dir)?;
        let db = Db::load(&root.join("snapshots.json"))?;
        let status: DaemonStatus = client::call_for(store, Request::Status)?;
        let mounted = status.mounts.into_iter().map(|m| m.mountpoint).collect();
        let images: Vec<ImageInfo> = client::call_for(store, Request::Images)?;
        let has_empty = images.iter().any(|i| i.name == EMPTY_IMAGE);
        if !has_empty {
            // An empty directory makes the empty image.
            let empty = root.join("empty");
            std::fs::create_dir_all(&empty)?;
            client::call(
                store,
                Request::Import {
                    source: empty.clone(),
                    name: Some(EMPTY_IMAGE.into()),
                },
            )?;
            std::fs::remove_dir(&empty)?;
        }
        Ok(TesseraSnapshotter {
            store: store.to_path_buf(),
            mounts_dir,
            state: Mutex::new(State {
                db,
                mounted,
                busy: HashSet::new(),
                pending_children: HashMap::new(),
            }),
            turns: Condvar::new(),
        })
    }

    /// The state, once none of `keys` is busy ("" is no key).
    fn lock_free(&self, keys: &[&str]) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap();
        while keys
            .iter()
            .any(|k| !k.is_empty() && state.busy.contains(*k))
        {
            state = self.turns.wait(state).unwrap();
        }
        state
    }

    /// Marks `keys` busy (the caller holds the state and checked they were free).
    fn occupy<'a>(&'a self, state: &mut State, keys: &[&str], parent: Option<&str>) -> Busy<'a> {
        for key in keys {
            state.busy.insert(key.to_string());
        }
        if let Some(parent) = parent {
            *state
                .pending_children
                .entry(parent.to_string())
                .or_default() += 1;
        }
        Busy {
            snapshotter: self,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            parent: parent.map(str::to_string),
        }
    }

    fn call(&self, request: Request) -> Result<Reply, Status> {
        client::call(&self.store, request).map_err(internal)
    }

    fn call_for<T: FromReply>(&self, request: Request) -> Result<T, Status> {
        self.call(request)?.report().map_err(internal)
    }

    fn mountpoint(&self, id: u64) -> PathBuf {
        self.mounts_dir.join(id.to_string())
    }

    /// Mounts the container of snapshot `record` (if the daemon does not serve it yet) and
    /// returns containerd's bind mount of it. The caller has the snapshot's key busy.
    fn ensure_mounted(&self, record: &Record) -> Result<Vec<Mount>, Status> {
        let path = self.mountpoint(record.id);
        if !self.state.lock().unwrap().mounted.contains(&path) {
            if tessera_fusefs::mounts::is_stale(&path) {
                tessera_fusefs::mounts::clear_stale(&path).map_err(|e| internal(e.into()))?;
            }
            std::fs::create_dir_all(&path).map_err(|e| internal(e.into()))?;
            self.call(Request::Mount {
                container: record.tessera_name(),
                mountpoint: path.clone(),
                share_memory: false,
                write_through: false,
            })?;
            self.state.lock().unwrap().mounted.insert(path.clone());
        }
        let mode = if record.kind == Kind::View {
            "ro"
        } else {
            "rw"
        };
        Ok(vec![Mount {
            r#type: "bind".into(),
            source: path.to_string_lossy().into_owned(),
            target: String::new(),
            options: vec!["rbind".into(), mode.into()],
        }])
    }

    /// Unmounts snapshot `id`'s container if the daemon serves it (`state`: the caller's,
    /// when it holds the lock throughout).
    fn unmount(&self, state: Option<&mut State>, id: u64) -> Result<(), Status> {
        let path = self.mountpoint(id);
        let served = match state {
            Some(state) => state.mounted.remove(&path),
            None => self.state.lock().unwrap().mounted.remove(&path),
        };
        if served {
            self.call(Request::Umount {
                mountpoint: path.clone(),
            })?;
        }
        let _ = std::fs::remove_dir(&path);
        Ok(())
    }

    /// Containers and images named `ctd-N` that the database does not name: what a crash
    /// between a store step and the database step left (design.md §9). Containers first (an
    /// image is removed once nothing is on it); returns how many went.
    fn remove_leftovers(&self, state: &mut State) -> Result<usize, Status> {
        let known: HashSet<String> = state
            .db
            .snapshots
            .values()
            .map(Record::tessera_name)
            .collect();
        let leftover = |names: Vec<String>| -> Vec<u64> {
            names
                .iter()
                .filter(|name| !known.contains(*name))
                .filter_map(|name| name.strip_prefix("ctd-")?.parse().ok())
                .collect()
        };
        let containers: Vec<ContainerInfo> = self.call_for(Request::Containers)?;
        let containers = leftover(containers.into_iter().map(|c| c.name).collect());
        for id in &containers {
            self.unmount(Some(&mut *state), *id)?;
            self.call(Request::Rm {
                name: db::tessera_name(*id),
            })?;
        }
        let images: Vec<ImageInfo> = self.call_for(Request::Images)?;
        let images = leftover(images.into_iter().map(|i| i.name).collect());
        for id in &images {
            self.call(Request::Rmi {
                name: db::tessera_name(*id),
            })?;
        }
        if containers.len() + images.len() > 0 {
            tracing::info!(
                "cleanup removed {} containers and {} images no snapshot names",
                containers.len(),
                images.len()
            );
        }
        Ok(containers.len() + images.len())
    }

    fn info(key: &str, r: &Record) -> Info {
        Info {
            kind: match r.kind {
                Kind::Active => containerd_snapshots::Kind::Active,
                Kind::View => containerd_snapshots::Kind::View,
                Kind::Committed => containerd_snapshots::Kind::Committed,
            },
            name: key.to_string(),
            parent: r.parent.clone(),
            labels: r.labels.clone(),
            created_at: r.created,
            updated_at: r.updated,
        }
    }
}

#[containerd_snapshots::tonic::async_trait]
impl containerd_snapshots::Snapshotter for TesseraSnapshotter {
    type Error = Status;

    async fn stat(&self, key: String) -> Result<Info, Status> {
        let state = self.state.lock().unwrap();
        Ok(Self::info(&key, record(&state.db, &key)?))
    }

    async fn update(&self, info: Info, fieldpaths: Option<Vec<String>>) -> Result<Info, Status> {
        let key = info.name.clone();
        let mut state = self.lock_free(&[&key]);
        let mut record = record(&state.db, &key)?.clone();
        let paths = fieldpaths.unwrap_or_default();
        if paths.is_empty() {
            record.labels = info.labels.clone();
        }
        for path in &paths {
            if path == "labels" {
                record.labels = info.labels.clone();
            } else if let Some(label) = path.strip_prefix("labels.") {
                match info.labels.get(label) {
                    Some(value) => record.labels.insert(label.into(), value.clone()),
                    None => record.labels.remove(label),
                };
            } else {
                return Err(Status::invalid_argument(format!(
                    "cannot update field {path:?} of snapshot {key:?}"
                )));
            }
        }
        record.updated = SystemTime::now();
        state.db.snapshots.insert(key.clone(), record.clone());
        state.db.save().map_err(internal)?;
        Ok(Self::info(&key, &record))
    }

    async fn usage(&self, key: String) -> Result<Usage, Status> {
        tokio::task::block_in_place(|| self.usage_of(&key))
    }

    async fn mounts(&self, key: String) -> Result<Vec<Mount>, Status> {
        tokio::task::block_in_place(|| self.mounts_of(&key))
    }

    async fn prepare(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Status> {
        tokio::task::block_in_place(|| self.create(Kind::Active, key, parent, labels))
    }

    async fn view(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Status> {
        tokio::task::block_in_place(|| self.create(Kind::View, key, parent, labels))
    }

    async fn commit(
        &self,
        name: String,
        key: String,
        labels: HashMap<String, String>,
    ) -> Result<(), Status> {
        tokio::task::block_in_place(|| self.commit_as(name, key, labels))
    }

    /// Cleanup: removes what a crash left in the store that no snapshot names, once no
    /// request is under way (holding the state throughout, so none starts).
    async fn clear(&self) -> Result<(), Status> {
        tokio::task::block_in_place(|| {
            let mut state = self.state.lock().unwrap();
            while !state.busy.is_empty() {
                state = self.turns.wait(state).unwrap();
            }
            self.remove_leftovers(&mut state).map(drop)
        })
    }

    async fn remove(&self, key: String) -> Result<(), Status> {
        tokio::task::block_in_place(|| self.remove_snapshot(key))
    }

    type InfoStream = tokio_stream::Iter<std::vec::IntoIter<Result<Info, Status>>>;

    /// Walk: the snapshots matching any of `filters` (containerd's filter language, see
    /// `filter`); all of them when there is none. A malformed filter is InvalidArgument.
    async fn list(
        &self,
        _snapshotter: String,
        filters: Vec<String>,
    ) -> Result<Self::InfoStream, Status> {
        let filters =
            Filters::parse(&filters).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let state = self.state.lock().unwrap();
        let infos: Vec<Result<Info, Status>> = state
            .db
            .snapshots
            .iter()
            .filter(|(k, r)| filters.matches(&subject(k, r)))
            .map(|(k, r)| Ok(Self::info(k, r)))
            .collect();
        Ok(tokio_stream::iter(infos))
    }
}
