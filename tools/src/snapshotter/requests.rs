//! The bodies of the requests that touch the store (Prepare, View, Mounts, Usage, Commit,
//! Remove): each checks and records under the state's lock, marks the keys it works on busy,
//! and runs the store steps without the lock (see the module above).

use std::collections::HashMap;
use std::time::SystemTime;

use containerd_snapshots::Usage;
use containerd_snapshots::api::types::Mount;
use containerd_snapshots::tonic::Status;
use tessera::stats::StatsReport;
use tessera_daemon::Request;

use super::db::{EMPTY_IMAGE, Kind, Record};
use super::{TesseraSnapshotter, internal, not_found, record};

impl TesseraSnapshotter {
    /// Prepare and View: a container on the parent's image.
    pub(super) fn create(
        &self,
        kind: Kind,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Status> {
        let mut state = self.lock_free(&[&key, &parent]);
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
        let pending_parent = (!parent.is_empty()).then(|| parent.clone());
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
        let _busy = self.occupy(&mut state, &[&key], pending_parent.as_deref());
        drop(state);
        // The store first: the database names only what the store holds.
        self.call(Request::Create {
            name: record.tessera_name(),
            image,
            size_limit: None,
        })?;
        {
            let mut state = self.state.lock().unwrap();
            state.db.snapshots.insert(key, record.clone());
            state.db.save().map_err(internal)?;
        }
        self.ensure_mounted(&record)
    }

    pub(super) fn mounts_of(&self, key: &str) -> Result<Vec<Mount>, Status> {
        let mut state = self.lock_free(&[key]);
        let record = state
            .db
            .snapshots
            .get(key)
            .cloned()
            .ok_or_else(|| not_found(key))?;
        if record.kind == Kind::Committed {
            return Err(Status::failed_precondition(format!(
                "snapshot {key:?} is committed: it has no mounts"
            )));
        }
        let _busy = self.occupy(&mut state, &[key], None);
        drop(state);
        self.ensure_mounted(&record)
    }

    pub(super) fn usage_of(&self, key: &str) -> Result<Usage, Status> {
        let (name, path) = {
            let state = self.lock_free(&[key]);
            let r = state.db.snapshots.get(key).ok_or_else(|| not_found(key))?;
            let path = self.mountpoint(r.id);
            (
                r.tessera_name(),
                state.mounted.contains(&path).then_some(path),
            )
        };
        if let Some(path) = path {
            // What the kernel still caches (writeback) counts too: hand it to the daemon.
            let dir = std::fs::File::open(&path).map_err(|e| internal(e.into()))?;
            rustix::fs::syncfs(&dir).map_err(|e| internal(e.into()))?;
        }
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

    pub(super) fn commit_as(
        &self,
        name: String,
        key: String,
        labels: HashMap<String, String>,
    ) -> Result<(), Status> {
        let mut state = self.lock_free(&[&key, &name]);
        let active = record(&state.db, &key)?.clone();
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
        let _busy = self.occupy(&mut state, &[&key, &name], None);
        drop(state);
        self.unmount(None, active.id)?;
        // Metadata only: the container's layer becomes the image's top layer.
        self.call(Request::Commit {
            container: active.tessera_name(),
            image: committed.tessera_name(),
        })?;
        // The database names only what the store holds: the image before it, the container
        // after it.
        {
            let mut state = self.state.lock().unwrap();
            state.db.snapshots.remove(&key);
            state.db.snapshots.insert(name, committed);
            state.db.save().map_err(internal)?;
        }
        self.call(Request::Rm {
            name: active.tessera_name(),
        })?;
        Ok(())
    }

    pub(super) fn remove_snapshot(&self, key: String) -> Result<(), Status> {
        let mut state = self.lock_free(&[&key]);
        let record = record(&state.db, &key)?.clone();
        if state.db.has_children(&key) || state.pending_children.contains_key(&key) {
            return Err(Status::failed_precondition(format!(
                "snapshot {key:?} has children"
            )));
        }
        // Out of the database first: it never names what the store no longer holds.
        state.db.snapshots.remove(&key);
        state.db.save().map_err(internal)?;
        let _busy = self.occupy(&mut state, &[&key], None);
        drop(state);
        match record.kind {
            Kind::Committed => {
                self.call(Request::Rmi {
                    name: record.tessera_name(),
                })?;
            }
            Kind::Active | Kind::View => {
                self.unmount(None, record.id)?;
                self.call(Request::Rm {
                    name: record.tessera_name(),
                })?;
            }
        }
        Ok(())
    }
}
