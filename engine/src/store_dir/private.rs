//! A store is its owner's alone: its packs hold every block of every image and container,
//! readable whatever the modes of the files inside the containers (Docker keeps its overlay
//! directories root-only for the same reason). The store creates its directories 0700 and
//! its files 0600 whatever the umask (`RealIo`), tightens the directory of a store made
//! before that rule when it opens it, and `fsck` reports anything in it other users could
//! read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{Store, StoreOptions};
use crate::error::{IoContext, Result};

pub(super) fn keep_private_if_real(options: &StoreOptions, root: &Path) -> Result<()> {
    if options.io.is_some() {
        return Ok(());
    }
    let mode = std::fs::metadata(root)
        .ctx(|| format!("reading the mode of {}", root.display()))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let private = mode & !0o077;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(private))
        .ctx(|| format!("making {} private (mode {private:o})", root.display()))?;
    tracing::info!(
        "store {}: mode {mode:o} -> {private:o} (only its owner may read its packs)",
        root.display()
    );
    Ok(())
}

impl Store {
    /// Everything in the store (on disk) whose mode lets other users read, write or enter
    /// it, as fsck findings: "PATH: mode M lets other users in (chmod N)".
    pub(crate) fn open_to_others(&self) -> Result<Vec<String>> {
        if self.inner._lock.is_none() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        let mut dirs = vec![self.inner.layout.root().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            check(&dir, &mut found)?;
            let entries = std::fs::read_dir(&dir).ctx(|| format!("listing {}", dir.display()))?;
            for entry in entries {
                let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
                let kind = entry
                    .file_type()
                    .ctx(|| format!("{}", entry.path().display()))?;
                if kind.is_dir() {
                    dirs.push(entry.path());
                } else if !kind.is_symlink() {
                    check(&entry.path(), &mut found)?;
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

fn check(path: &Path, found: &mut Vec<String>) -> Result<()> {
    let mode = std::fs::symlink_metadata(path)
        .ctx(|| format!("reading the mode of {}", path.display()))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        found.push(format!(
            "{}: mode {mode:o} lets other users in (chmod {:o}: the store holds every \
             container's data)",
            path.display(),
            mode & !0o077
        ));
    }
    Ok(())
}
