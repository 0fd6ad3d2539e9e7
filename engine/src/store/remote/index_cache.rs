//! The indexes of attached remote packs, kept under `STORE/remote/URLHASH/` so that opening a
//! remote-backed store reads local files only. A kept index is a copy: a missing or damaged
//! one is dropped (and fetched again when a pull names its pack), never trusted.

use super::RemotePacks;
use super::bucket::IndexEntries;
use super::bucket::{self, PackName};
use crate::error::{IoContext, Result};
use crate::io::OpenMode;

impl RemotePacks {
    /// Every kept index that decodes; leftovers and damaged copies are removed.
    pub(super) fn load_cached_indexes(&self) -> Result<Vec<(PackName, IndexEntries)>> {
        let dir = self.layout.remote_dir(&self.remote.url().to_string());
        let mut out = Vec::new();
        if !self.io.exists(&dir) {
            // Made by the first index kept: a store that never attached a pack is unchanged.
            return Ok(out);
        }
        for file in self
            .io
            .list_dir(&dir)
            .ctx(|| format!("listing {}", dir.display()))?
        {
            let path = dir.join(&file);
            let name = file.to_str().and_then(PackName::from_file_name);
            let loaded = match name {
                Some((name, true)) => self.read_kept(&path, &name).map(|e| (name, e)),
                _ => Err("not an index".to_string()),
            };
            match loaded {
                Ok(index) => out.push(index),
                Err(why) => {
                    tracing::warn!("dropping {}: {why}", path.display());
                    self.io
                        .remove_file(&path)
                        .ctx(|| format!("removing {}", path.display()))?;
                }
            }
        }
        Ok(out)
    }

    fn read_kept(&self, path: &std::path::Path, name: &PackName) -> Result<IndexEntries, String> {
        let bytes = self
            .io
            .open(path, OpenMode::ReadOnly)
            .and_then(|f| f.map())
            .map_err(|e| e.to_string())?;
        bucket::decode_index(name, &bytes).map_err(|e| e.to_string())
    }

    /// Keeps a fetched (or uploaded) index: written under a temporary name, synced, renamed.
    pub(super) fn keep_index(&self, name: &PackName, bytes: &[u8]) -> Result<()> {
        self.keep_index_unsynced(name, bytes)?;
        self.sync_kept_indexes()
    }

    /// Syncs the directory of the kept indexes (their renames).
    pub(super) fn sync_kept_indexes(&self) -> Result<()> {
        let dir = self.layout.remote_dir(&self.remote.url().to_string());
        self.io
            .sync_dir(&dir)
            .ctx(|| format!("syncing {}", dir.display()))
    }

    /// Keeps an index (synced, renamed into place); the rename is durable once
    /// `sync_kept_indexes` returns.
    pub(super) fn keep_index_unsynced(&self, name: &PackName, bytes: &[u8]) -> Result<()> {
        let url = self.remote.url().to_string();
        // One level at a time: `create_dir_all` makes only its last directory private.
        for dir in [self.layout.remotes_dir(), self.layout.remote_dir(&url)] {
            self.io
                .create_dir_all(&dir)
                .ctx(|| format!("creating {}", dir.display()))?;
        }
        let tmp = self.layout.remote_index_tmp(&url, &name.0);
        let path = self.layout.remote_index(&url, &name.0);
        let file = self
            .io
            .open(&tmp, OpenMode::Create)
            .ctx(|| format!("creating {}", tmp.display()))?;
        file.set_len(0)
            .and_then(|_| file.write_all_at(bytes, 0))
            .and_then(|_| file.sync_data())
            .ctx(|| format!("writing {}", tmp.display()))?;
        self.io
            .rename(&tmp, &path)
            .ctx(|| format!("renaming {} into place", tmp.display()))
    }
}
