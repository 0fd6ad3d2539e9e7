//! The production I/O: `std::fs` with positioned reads and writes, O_DIRECT block reads, and
//! `posix_fadvise(DONTNEED)` on written packs so block data is never cached twice (once in the
//! kernel's page cache below us and once in the FUSE page cache above).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::{AlignedBuf, IoFile, Mapped, OpenMode, StorageIo};

#[derive(Debug, Default)]
pub struct RealIo;

impl RealIo {
    pub fn new() -> Arc<RealIo> {
        Arc::new(RealIo)
    }
}

impl StorageIo for RealIo {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn IoFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::ReadWrite => options.read(true).write(true),
            // Owner-only whatever the umask: these are a store's files (see store_dir/private.rs).
            OpenMode::Create => options.read(true).write(true).create(true).mode(0o600),
            OpenMode::ReadOnly => options.read(true),
        };
        let file = options.open(path)?;
        Ok(Arc::new(RealFile {
            path: path.to_path_buf(),
            file,
            direct: OnceLock::new(),
            direct_write: OnceLock::new(),
        }))
    }

    /// Every missing directory owner-only (0700, whatever the umask): a store's directories,
    /// nested ones too, and the parents of a store made where none were — as the XDG base
    /// directory spec asks of `~/.local/share`. Existing directories are left as they are.
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    fn available_space(&self, path: &Path) -> io::Result<u64> {
        let stat = rustix::fs::statvfs(path)?;
        Ok(stat.f_bavail * stat.f_frsize)
    }

    fn allocated_bytes(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.blocks() * 512)
    }
}

#[derive(Debug)]
struct RealFile {
    path: PathBuf,
    file: File,
    /// A second descriptor opened with O_DIRECT, or `None` when the file system refuses it.
    direct: OnceLock<Option<File>>,
    /// The same for writing.
    direct_write: OnceLock<Option<File>>,
}

impl RealFile {
    fn direct_fd(&self) -> Option<&File> {
        self.direct
            .get_or_init(|| {
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(&self.path)
                    .ok()
            })
            .as_ref()
    }
}

impl IoFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn read_direct(&self, buf: &mut AlignedBuf, offset: u64) -> io::Result<()> {
        match self.direct_fd() {
            Some(direct) => match direct.read_exact_at(buf, offset) {
                // Some file systems accept O_DIRECT at open and refuse it at read time.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.file.read_exact_at(buf, offset)
                }
                other => other,
            },
            None => self.file.read_exact_at(buf, offset),
        }
    }

    fn write_direct(&self, buf: &AlignedBuf, offset: u64) -> io::Result<()> {
        let direct = self.direct_write.get_or_init(|| {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&self.path)
                .ok()
        });
        match direct {
            Some(direct) => match direct.write_all_at(buf, offset) {
                // Some file systems accept O_DIRECT at open and refuse it at write time.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.file.write_all_at(buf, offset)
                }
                other => other,
            },
            None => self.file.write_all_at(buf, offset),
        }
    }

    fn map(&self) -> io::Result<Mapped> {
        Mapped::map_immutable(&self.file)
    }

    fn drop_cache(&self) {
        // Advice only: a failure changes nothing but memory use.
        let _ = rustix::fs::fadvise(&self.file, 0, None, rustix::fs::Advice::DontNeed);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn every_directory_it_makes_is_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        RealIo.create_dir_all(&deep).unwrap();
        RealIo.create_dir_all(&deep).unwrap();
        for dir in ["a", "a/b", "a/b/c"] {
            let mode = fs::metadata(tmp.path().join(dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{dir}");
        }
    }
}
