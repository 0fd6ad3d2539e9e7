//! Where a store's daemon can be reached: a Unix socket under `$XDG_RUNTIME_DIR/tessera` (or
//! `/run/tessera` as root), named by a hash of the store's canonical path — socket paths are
//! limited to 108 bytes, store paths are not. Its log sits beside it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

fn runtime_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/run/tessera");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("tessera"),
        None => {
            std::env::temp_dir().join(format!("tessera-{}", rustix::process::geteuid().as_raw()))
        }
    }
}

/// The socket, log and keeper paths of the daemon of the store at `store`.
pub struct DaemonPaths {
    pub socket: PathBuf,
    pub log: PathBuf,
    /// The keeper's socket (see `keeper`), and its pid while it runs.
    pub keeper: PathBuf,
    pub keeper_pid: PathBuf,
}

impl DaemonPaths {
    pub fn for_store(store: &Path) -> Result<DaemonPaths> {
        let canonical = std::fs::canonicalize(store).with_context(|| {
            format!(
                "store {} does not exist (run `tessera init`)",
                store.display()
            )
        })?;
        let hash = blake3::hash(canonical.as_os_str().as_encoded_bytes()).to_hex();
        let dir = runtime_dir();
        let name = &hash.as_str()[..16];
        Ok(DaemonPaths {
            socket: dir.join(format!("{name}.sock")),
            log: dir.join(format!("{name}.log")),
            keeper: dir.join(format!("{name}.keeper")),
            keeper_pid: dir.join(format!("{name}.keeper.pid")),
        })
    }

    /// Creates the sockets' directory, owner-only (whoever reaches a socket drives a daemon),
    /// and tightens one made before that rule.
    pub fn create_dir(&self) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = self.socket.parent().expect("socket has a directory");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))
                .with_context(|| format!("making {} owner-only", dir.display()))?;
        }
        Ok(())
    }
}
