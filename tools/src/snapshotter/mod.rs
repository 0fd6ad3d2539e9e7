//! containerd's snapshots API (a proxy plugin) over a Tessera store, served by
//! `tessera snapshotter`. A committed snapshot is a Tessera image, an active snapshot a
//! Tessera container on its parent's image (on an empty image without a parent), a view a
//! container mounted read-only. Mounts are `bind` mounts of the container's FUSE mount,
//! served by the store's daemon. Keys, kinds, parents and labels live in `db`.
//!
//! Every request is checked against the database before the store is touched, so a bad one
//! (unknown key, parent not committed, name taken, snapshot with children) changes nothing.

// The service's errors are `tonic::Status` (what the `Snapshotter` trait returns and containerd
// reads the code of): large, but built only on the error path of a gRPC request.
#![allow(clippy::result_large_err)]

pub mod db;
pub mod filter;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Result;
use containerd_snapshots::api::types::Mount;
use containerd_snapshots::tonic::Status;
use containerd_snapshots::{Info, Usage};

use db::{Db, EMPTY_IMAGE, Kind, Record};
use filter::{Filters, Subject};
use tessera::stats::StatsReport;
use tessera::store_dir::{ContainerInfo, ImageInfo};
use tessera_daemon::reply::DaemonStatus;
use tessera_daemon::{FromReply, Reply, Request, client};

/// The snapshotter: the store it serves and its own state directory.
pub struct TesseraSnapshotter {
    store: PathBuf,
    /// Where containers are mounted: `mounts/ID`.
    mounts_dir: PathBuf,
    state: Mutex<State>,
}

struct State {
    db: Db,
    /// Mount points the daemon serves now.
    mounted: HashSet<PathBuf>,
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
            state: Mutex::new(State { db, mounted }),
        })
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
    /// returns containerd's bind mount of it.
    fn ensure_mounted(&self, state: &mut State, record: &Record) -> Result<Vec<Mount>, Status> {
        let path = self.mountpoint(record.id);
        if !state.mounted.contains(&path) {
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
            state.mounted.insert(path.clone());
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

    fn unmount(&self, state: &mut State, id: u64) -> Result<(), Status> {
        let path = self.mountpoint(id);
        if state.mounted.remove(&path) {
            self.call(Request::Umount {
                mountpoint: path.clone(),
            })?;
        }
        let _ = std::fs::remove_dir(&path);
        Ok(())
    }

    /// Prepare and View: a container on the parent's image.
    fn create(
        &self,
        kind: Kind,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Status> {
        let mut state = self.state.lock().unwrap();
        if state.db.snapshots.contains_key(&key) {
            return Err(Status::already_exists(format!(
                "snapshot {key:?} already exists"
            )));
        }
        let image = if parent.is_empty() {
            EMPTY_IMAGE.to_string()
        } else {
            match state.db.snapshots.get(&parent) {
                None => return Err(not_found(&parent)),
                Some(p) if p.kind != Kind::Committed => {
                    return Err(Status::failed_precondition(format!(
                        "parent {parent:?} is not committed"
                    )));
                }
                Some(p) => p.tessera_name(),
            }
        };
        let id = state.db.allocate_id();
        let now = SystemTime::now();
        let record = Record {
            id,
            kind,
            parent,
            labels,
            created: now,
            updated: now,
        };
        self.call(Request::Create {
            name: record.tessera_name(),
            image,
            size_limit: None,
        })?;
        state.db.snapshots.insert(key, record.clone());
        state.db.save().map_err(internal)?;
        self.ensure_mounted(&mut state, &record)
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
            self.unmount(state, *id)?;
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
        let r = state
            .db
            .snapshots
            .get(&key)
            .ok_or_else(|| not_found(&key))?;
        Ok(Self::info(&key, r))
    }

    async fn update(&self, info: Info, fieldpaths: Option<Vec<String>>) -> Result<Info, Status> {
        let mut state = self.state.lock().unwrap();
        let key = info.name.clone();
        let mut record = state
            .db
            .snapshots
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(&key))?;
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
        let name = {
            let state = self.state.lock().unwrap();
            let r = state
                .db
                .snapshots
                .get(&key)
                .ok_or_else(|| not_found(&key))?;
            let path = self.mountpoint(r.id);
            if state.mounted.contains(&path) {
                // What the kernel still caches (writeback) counts too: hand it to the daemon.
                let dir = std::fs::File::open(&path).map_err(|e| internal(e.into()))?;
                rustix::fs::syncfs(&dir).map_err(|e| internal(e.into()))?;
            }
            r.tessera_name()
        };
        let stats: StatsReport = self.call_for(Request::Stats {
            names: vec![name.clone()],
            top: 0,
        })?;
        let owner = stats
            .owners
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| Status::internal(format!("no figures for {name}")))?;
        Ok(Usage {
            size: owner.exclusive_bytes.try_into().unwrap_or(i64::MAX),
            inodes: owner.files.try_into().unwrap_or(i64::MAX),
        })
    }

    async fn mounts(&self, key: String) -> Result<Vec<Mount>, Status> {
        let mut state = self.state.lock().unwrap();
        let record = state
            .db
            .snapshots
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(&key))?;
        if record.kind == Kind::Committed {
            return Err(Status::failed_precondition(format!(
                "snapshot {key:?} is committed: it has no mounts"
            )));
        }
        self.ensure_mounted(&mut state, &record)
    }

    async fn prepare(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Status> {
        self.create(Kind::Active, key, parent, labels)
    }

    async fn view(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Status> {
        self.create(Kind::View, key, parent, labels)
    }

    async fn commit(
        &self,
        name: String,
        key: String,
        labels: HashMap<String, String>,
    ) -> Result<(), Status> {
        let mut state = self.state.lock().unwrap();
        let active = state
            .db
            .snapshots
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(&key))?;
        if active.kind != Kind::Active {
            return Err(Status::failed_precondition(format!(
                "snapshot {key:?} is not active"
            )));
        }
        if state.db.snapshots.contains_key(&name) {
            return Err(Status::already_exists(format!(
                "snapshot {name:?} already exists"
            )));
        }
        self.unmount(&mut state, active.id)?;
        let id = state.db.allocate_id();
        let now = SystemTime::now();
        let committed = Record {
            id,
            kind: Kind::Committed,
            parent: active.parent.clone(),
            labels,
            created: now,
            updated: now,
        };
        // Metadata only: the container's layer becomes the image's top layer.
        self.call(Request::Commit {
            container: active.tessera_name(),
            image: committed.tessera_name(),
        })?;
        // The database names only what the store holds: the image before it, the container
        // after it.
        state.db.snapshots.remove(&key);
        state.db.snapshots.insert(name, committed);
        state.db.save().map_err(internal)?;
        self.call(Request::Rm {
            name: active.tessera_name(),
        })?;
        Ok(())
    }

    /// Cleanup: removes what a crash left in the store that no snapshot names.
    async fn clear(&self) -> Result<(), Status> {
        let mut state = self.state.lock().unwrap();
        self.remove_leftovers(&mut state).map(drop)
    }

    async fn remove(&self, key: String) -> Result<(), Status> {
        let mut state = self.state.lock().unwrap();
        let record = state
            .db
            .snapshots
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(&key))?;
        if state.db.has_children(&key) {
            return Err(Status::failed_precondition(format!(
                "snapshot {key:?} has children"
            )));
        }
        // Out of the database first: it never names what the store no longer holds.
        state.db.snapshots.remove(&key);
        state.db.save().map_err(internal)?;
        match record.kind {
            Kind::Committed => {
                self.call(Request::Rmi {
                    name: record.tessera_name(),
                })?;
            }
            Kind::Active | Kind::View => {
                self.unmount(&mut state, record.id)?;
                self.call(Request::Rm {
                    name: record.tessera_name(),
                })?;
            }
        }
        Ok(())
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
