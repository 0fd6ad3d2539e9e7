//! The store lock: one process at a time opens a store read-write. An advisory `flock` on
//! `STORE/lock`, released by the kernel when the process dies (so a killed daemon never leaves
//! a stale lock). The holder's pid is written into the file for the error message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use crate::error::{Error, IoContext, Result};

#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub fn acquire(path: &Path, store: &Path) -> Result<StoreLock> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .ctx(|| format!("opening lock file {}", path.display()))?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::Locked(format!(
                "store {} is in use by another process{} (a running tessera daemon or command)",
                store.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                }
            )));
        }
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .ctx(|| format!("writing lock file {}", path.display()))?;
        Ok(StoreLock { _file: file })
    }
}

impl Drop for StoreLock {
    /// Unlocks explicitly before the descriptor closes: a child that another thread forked
    /// meanwhile shares the lock's open file description until its exec closes it, and closing
    /// our descriptor alone would leave the store locked that long (an open right after a
    /// close, as `Store::init` does, then failed with "in use by another process").
    fn drop(&mut self) {
        let _ = flock(&self._file, FlockOperation::Unlock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_lock_is_free_while_a_copy_of_its_descriptor_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let lock = StoreLock::acquire(&path, dir.path()).unwrap();
        assert!(StoreLock::acquire(&path, dir.path()).is_err(), "held");
        // What a concurrently forked child holds until its exec.
        let forked_copy = lock._file.try_clone().unwrap();
        drop(lock);
        let again = StoreLock::acquire(&path, dir.path());
        assert!(again.is_ok(), "{:?}", again.err());
        drop(forked_copy);
    }
}
