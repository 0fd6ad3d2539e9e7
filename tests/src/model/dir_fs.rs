//! A filesystem under test that is a real directory, driven with the system calls a program
//! would make (std::fs, and libc for `renameat2`, `fallocate`, `mkfifo` and the `l*xattr`
//! calls). Over a plain temporary directory it is the model; over a FUSE mount of a container
//! it tests the mount. It never assumes which: it knows only its root path, and leaves
//! `commit` and `reopen` to an optional hook.
//!
//! The process umask is set to 0 (once, for the whole test process) so that the modes the ops
//! ask for are the modes files get, as with the engine's API.

// The calls above have no safe wrapper in std; each use passes NUL-terminated paths that live
// across the call and buffers with their true lengths.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Once;

use super::snapshot::{Entry, Kind, Snapshot};
use super::{Errno, FsResult, FsUnderTest, Op, RenameMode, XattrFlag};

/// What `commit` and `reopen` do for this directory (the op is `Commit` or `Reopen`).
pub type StructuralHook = Box<dyn FnMut(&Op) -> FsResult>;

pub struct DirFs {
    root: PathBuf,
    label: String,
    hook: Option<StructuralHook>,
    handles: BTreeMap<u8, fs::File>,
}

static UMASK: Once = Once::new();

fn errno(e: io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The errno of a libc call that returned `ret`.
fn check(ret: libc::c_int) -> FsResult {
    if ret == 0 {
        Ok(())
    } else {
        Err(errno(io::Error::last_os_error()))
    }
}

impl DirFs {
    /// The model: a directory where `commit` and `reopen` change nothing.
    pub fn new(root: impl AsRef<Path>) -> DirFs {
        // SAFETY: umask only swaps the process's file-creation mask.
        UMASK.call_once(|| unsafe {
            libc::umask(0);
        });
        DirFs {
            root: root.as_ref().to_path_buf(),
            label: "model".into(),
            hook: None,
            handles: BTreeMap::new(),
        }
    }

    /// A directory whose structural steps are carried out by `hook` (a mount, say).
    pub fn with_hook(root: impl AsRef<Path>, label: &str, hook: StructuralHook) -> DirFs {
        let mut fs = DirFs::new(root);
        fs.label = label.into();
        fs.hook = Some(hook);
        fs
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn cpath(&self, rel: &str) -> CString {
        CString::new(self.path(rel).as_os_str().as_bytes()).expect("paths hold no NUL")
    }

    /// `open(O_WRONLY | O_NONBLOCK)`: a fifo without a reader fails (ENXIO) instead of waiting.
    fn open_write(&self, rel: &str) -> Result<fs::File, Errno> {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.path(rel))
            .map_err(errno)
    }

    fn handle(&self, slot: u8) -> Result<&fs::File, Errno> {
        self.handles.get(&slot).ok_or(libc::EBADF)
    }

    fn structural(&mut self, op: Op) -> FsResult {
        if matches!(op, Op::Reopen | Op::Commit { close_first: true }) {
            self.handles.clear();
        }
        match &mut self.hook {
            Some(hook) => hook(&op),
            None => Ok(()),
        }
    }
}

impl FsUnderTest for DirFs {
    fn label(&self) -> &str {
        &self.label
    }

    fn create(&mut self, path: &str, perm: u32) -> FsResult {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(perm)
            .open(self.path(path))
            .map(drop)
            .map_err(errno)
    }

    fn mkdir(&mut self, path: &str, perm: u32) -> FsResult {
        fs::DirBuilder::new()
            .mode(perm)
            .create(self.path(path))
            .map_err(errno)
    }

    fn mkfifo(&mut self, path: &str, perm: u32) -> FsResult {
        let p = self.cpath(path);
        // SAFETY: `p` is a valid C string for the duration of the call.
        check(unsafe { libc::mkfifo(p.as_ptr(), perm as libc::mode_t) })
    }

    fn symlink(&mut self, path: &str, target: &str) -> FsResult {
        std::os::unix::fs::symlink(target, self.path(path)).map_err(errno)
    }

    fn write(&mut self, path: &str, offset: u64, data: &[u8]) -> FsResult {
        let file = self.open_write(path)?;
        file.write_all_at(data, offset).map_err(errno)
    }

    fn truncate(&mut self, path: &str, size: u64) -> FsResult {
        let p = self.cpath(path);
        // SAFETY: `p` is a valid C string for the duration of the call.
        check(unsafe { libc::truncate(p.as_ptr(), size as libc::off_t) })
    }

    fn fallocate(
        &mut self,
        path: &str,
        mode: tessera::Fallocate,
        offset: u64,
        len: u64,
    ) -> FsResult {
        let file = self.open_write(path)?;
        let mode = match mode {
            tessera::Fallocate::Allocate => 0,
            tessera::Fallocate::KeepSize => libc::FALLOC_FL_KEEP_SIZE,
            tessera::Fallocate::PunchHole => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            tessera::Fallocate::ZeroRange { keep_size: false } => libc::FALLOC_FL_ZERO_RANGE,
            tessera::Fallocate::ZeroRange { keep_size: true } => {
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
            }
        };
        // SAFETY: the descriptor is open for the duration of the call.
        check(unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                mode,
                offset as libc::off_t,
                len as libc::off_t,
            )
        })
    }

    fn unlink(&mut self, path: &str) -> FsResult {
        fs::remove_file(self.path(path)).map_err(errno)
    }

    fn rmdir(&mut self, path: &str) -> FsResult {
        fs::remove_dir(self.path(path)).map_err(errno)
    }

    fn remove_tree(&mut self, path: &str) -> FsResult {
        let meta = fs::symlink_metadata(self.path(path)).map_err(errno)?;
        if !meta.is_dir() {
            return Err(libc::ENOTDIR);
        }
        empty_dir(&self.path(path)).map_err(errno)?;
        self.rmdir(path)
    }

    fn rename(&mut self, from: &str, to: &str, mode: RenameMode) -> FsResult {
        let (f, t) = (self.cpath(from), self.cpath(to));
        let flags = match mode {
            RenameMode::Plain => 0,
            RenameMode::NoReplace => libc::RENAME_NOREPLACE,
            RenameMode::Exchange => libc::RENAME_EXCHANGE,
        };
        // SAFETY: both paths are valid C strings for the duration of the call.
        check(unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                flags,
            )
        })
    }

    fn link(&mut self, from: &str, to: &str) -> FsResult {
        fs::hard_link(self.path(from), self.path(to)).map_err(errno)
    }

    fn chmod(&mut self, path: &str, mode: u32) -> FsResult {
        let p = self.cpath(path);
        // SAFETY: `p` is a valid C string for the duration of the call.
        check(unsafe { libc::chmod(p.as_ptr(), mode as libc::mode_t) })
    }

    fn chown(&mut self, path: &str, uid: u32, gid: u32) -> FsResult {
        std::os::unix::fs::lchown(self.path(path), Some(uid), Some(gid)).map_err(errno)
    }

    fn setxattr(&mut self, path: &str, name: &str, value: &[u8], flag: XattrFlag) -> FsResult {
        let (p, n) = (self.cpath(path), CString::new(name).expect("no NUL"));
        let flags = match flag {
            XattrFlag::Any => 0,
            XattrFlag::Create => libc::XATTR_CREATE,
            XattrFlag::Replace => libc::XATTR_REPLACE,
        };
        // SAFETY: valid C strings and a buffer of `value.len()` bytes, for the call's duration.
        check(unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        })
    }

    fn removexattr(&mut self, path: &str, name: &str) -> FsResult {
        let (p, n) = (self.cpath(path), CString::new(name).expect("no NUL"));
        // SAFETY: valid C strings for the duration of the call.
        check(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) })
    }

    fn open(&mut self, slot: u8, path: &str, truncate: bool) -> FsResult {
        self.handles.remove(&slot);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .truncate(truncate)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.path(path))
            .map_err(errno)?;
        if !file.metadata().map_err(errno)?.is_file() {
            return Err(libc::ENXIO);
        }
        self.handles.insert(slot, file);
        Ok(())
    }

    fn write_fd(&mut self, slot: u8, offset: u64, data: &[u8]) -> FsResult {
        self.handle(slot)?.write_all_at(data, offset).map_err(errno)
    }

    fn truncate_fd(&mut self, slot: u8, size: u64) -> FsResult {
        self.handle(slot)?.set_len(size).map_err(errno)
    }

    fn close(&mut self, slot: u8) -> FsResult {
        self.handles.remove(&slot).map(drop).ok_or(libc::EBADF)
    }

    fn fsync(&mut self, path: &str) -> FsResult {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.path(path))
            .map_err(errno)?;
        file.sync_all().map_err(errno)
    }

    fn fsync_fd(&mut self, slot: u8) -> FsResult {
        self.handle(slot)?.sync_all().map_err(errno)
    }

    fn sync_all(&mut self) -> FsResult {
        let root = fs::File::open(&self.root).map_err(errno)?;
        // SAFETY: the descriptor is open for the duration of the call.
        check(unsafe { libc::syncfs(root.as_raw_fd()) })
    }

    fn commit(&mut self, close_first: bool) -> FsResult {
        self.structural(Op::Commit { close_first })
    }

    fn reopen(&mut self) -> FsResult {
        self.structural(Op::Reopen)
    }

    fn reclaim(&mut self) -> FsResult {
        self.structural(Op::Reclaim)
    }

    fn snapshot(&mut self) -> Snapshot {
        let mut snap = Snapshot::default();
        visit(&self.root, "/".into(), &mut snap);
        for (slot, file) in &self.handles {
            match handle_entry(file) {
                Ok(entry) => drop(snap.handles.insert(*slot, entry)),
                Err(e) => snap.problems.push(format!("handle {slot}: {e}")),
            }
        }
        snap
    }
}

/// Removes everything in `dir`, deleting entries while the listing goes on.
fn empty_dir(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            empty_dir(&entry.path())?;
            fs::remove_dir(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The file behind an open handle (fstat and pread; xattrs are not read through handles).
fn handle_entry(file: &fs::File) -> io::Result<Entry> {
    let meta = file.metadata()?;
    let mut entry = Entry::new(
        Kind::File,
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid(),
        meta.nlink(),
        meta.ino(),
    );
    entry.size = meta.size();
    entry.content = vec![0; meta.size() as usize];
    file.read_exact_at(&mut entry.content, 0)?;
    Ok(entry)
}

/// Records `path` (and, for a directory, everything below it).
fn visit(path: &Path, key: String, snap: &mut Snapshot) {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => return snap.problems.push(format!("{key}: lstat: {e}")),
    };
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        Kind::Other
    };
    let mut entry = Entry::new(
        kind,
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid(),
        meta.nlink(),
        meta.ino(),
    );
    entry.size = meta.size();
    if let Ok(names) = xattr::list(path) {
        for name in names {
            if let Ok(Some(value)) = xattr::get(path, &name) {
                entry.xattrs.insert(name.as_bytes().to_vec(), value);
            }
        }
    }
    let mut children = Vec::new();
    let read = match kind {
        Kind::File => fs::read(path).map(|c| entry.content = c),
        Kind::Symlink => {
            fs::read_link(path).map(|t| entry.target = t.as_os_str().as_bytes().into())
        }
        Kind::Dir => fs::read_dir(path).and_then(|dir| {
            for child in dir {
                children.push(child?.file_name().as_bytes().to_vec());
            }
            Ok(())
        }),
        _ => Ok(()),
    };
    if let Err(e) = read {
        snap.problems.push(format!("{key}: reading: {e}"));
    }
    children.sort();
    entry.children = children.clone();
    snap.entries.insert(key.clone(), entry);
    for name in children {
        let name = String::from_utf8_lossy(&name).into_owned();
        let child_key = if key == "/" {
            format!("/{name}")
        } else {
            format!("{key}/{name}")
        };
        visit(&path.join(&name), child_key, snap);
    }
}
