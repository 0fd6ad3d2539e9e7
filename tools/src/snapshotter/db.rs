//! The snapshotter's own small database: every snapshot's key, kind, parent, labels and times,
//! and the number naming its Tessera container or image. One JSON file, replaced whole on each
//! change (written to a temporary name, fsynced, renamed, directory fsynced), so a restart
//! finds exactly what the last answered request left.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What containerd calls a snapshot's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A writable Tessera container on its parent's image.
    Active,
    /// A Tessera container on its parent's image, mounted read-only.
    View,
    /// A Tessera image (a committed layer).
    Committed,
}

impl Kind {
    /// The kind as containerd spells it in filters (`kind==committed`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// Names the Tessera container (active, view) or image (committed): `ctd-ID`.
    pub id: u64,
    pub kind: Kind,
    /// The parent snapshot's key ("" for none).
    pub parent: String,
    pub labels: HashMap<String, String>,
    pub created: SystemTime,
    pub updated: SystemTime,
}

impl Record {
    /// The Tessera container or image holding this snapshot.
    pub fn tessera_name(&self) -> String {
        tessera_name(self.id)
    }
}

pub fn tessera_name(id: u64) -> String {
    format!("ctd-{id}")
}

/// The image every snapshot without a parent starts from: an empty tree.
pub const EMPTY_IMAGE: &str = "ctd-empty";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Db {
    pub next_id: u64,
    pub snapshots: BTreeMap<String, Record>,
    #[serde(skip)]
    path: PathBuf,
}

impl Db {
    /// Loads the database at `path` (empty when the file does not exist yet).
    pub fn load(path: &Path) -> Result<Db> {
        let mut db = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Db>(&bytes)
                .with_context(|| format!("decoding {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Db::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        db.path = path.to_path_buf();
        Ok(db)
    }

    /// Writes the database durably (temporary file, fsync, rename, directory fsync).
    pub fn save(&self) -> Result<()> {
        let dir = self
            .path
            .parent()
            .context("database path has no directory")?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(&serde_json::to_vec_pretty(self)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("renaming {} into place", tmp.display()))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    pub fn allocate_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Whether some snapshot has `key` as its parent.
    pub fn has_children(&self, key: &str) -> bool {
        self.snapshots.values().any(|r| r.parent == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_database_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshots.json");
        let mut db = Db::load(&path).unwrap();
        assert!(db.snapshots.is_empty());
        let id = db.allocate_id();
        let now = SystemTime::now();
        db.snapshots.insert(
            "default/1/sha256:abc".into(),
            Record {
                id,
                kind: Kind::Committed,
                parent: String::new(),
                labels: HashMap::from([("a".into(), "b".into())]),
                created: now,
                updated: now,
            },
        );
        db.save().unwrap();
        let back = Db::load(&path).unwrap();
        assert_eq!(back.next_id, 1);
        let r = &back.snapshots["default/1/sha256:abc"];
        assert_eq!(r.kind, Kind::Committed);
        assert_eq!(r.labels["a"], "b");
        assert_eq!(r.tessera_name(), "ctd-1");
        assert!(!back.has_children("x"));
    }
}
