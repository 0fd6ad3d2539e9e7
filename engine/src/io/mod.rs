//! The one seam every byte of the store passes through: packs, pack indexes, the metadata
//! database and the store header. Production uses [`RealIo`]; tests use [`SimIo`], which keeps
//! unsynced writes apart so a simulated crash can drop them (packs and database together), and
//! can fail writes after a countdown (a full disk, a dying device).
//!
//! Contract, which the rest of the engine relies on and the simulator enforces:
//! - `IoFile::sync_data` makes every earlier write and `set_len` of that file durable;
//! - a created, renamed or removed name is durable once `StorageIo::sync_dir` of its parent
//!   directory returns;
//! - nothing else is durable: after a crash any subset of unsynced writes may be present.

mod aligned;
mod mapped;
mod real;
mod redb_backend;
mod sim;

use std::ffi::OsString;
use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use aligned::AlignedBuf;
pub use mapped::Mapped;
pub use real::RealIo;
pub use redb_backend::IoBackend;
pub use sim::{SimIo, SimOptions};

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; created empty when missing.
    Create,
    /// Read only; the file must exist.
    ReadOnly,
}

/// The file system operations the store uses.
pub trait StorageIo: Send + Sync + Debug {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn IoFile>>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory, unsorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;
    /// Bytes the file system can still take, for admission control of writes.
    fn available_space(&self, path: &Path) -> io::Result<u64>;
    /// Bytes the file system allocated for a file (st_blocks × 512).
    fn allocated_bytes(&self, path: &Path) -> io::Result<u64>;
}

/// One open file.
#[allow(clippy::len_without_is_empty)] // a file's length, not a collection's
pub trait IoFile: Send + Sync + Debug {
    fn len(&self) -> io::Result<u64>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn sync_data(&self) -> io::Result<()>;
    /// Reads `buf.len()` bytes at `offset` bypassing the page cache where the backend can
    /// (O_DIRECT). `offset` and `buf.len()` are multiples of [`AlignedBuf::ALIGN`].
    fn read_direct(&self, buf: &mut AlignedBuf, offset: u64) -> io::Result<()>;
    /// Writes `buf` at `offset` bypassing the page cache where the backend can (O_DIRECT);
    /// `offset` and `buf.len()` are multiples of [`AlignedBuf::ALIGN`]. Durable only after
    /// `sync_data`, like any write.
    fn write_direct(&self, buf: &AlignedBuf, offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }
    /// A read-only view of the whole file. Only for files that are never written again (sealed
    /// pack indexes): the engine never truncates or rewrites a mapped file.
    fn map(&self) -> io::Result<Mapped>;
    /// Tells the OS the file's cached pages will not be needed again (written packs).
    fn drop_cache(&self) {}
}

/// Shared handle to the I/O implementation the store uses.
pub type Io = Arc<dyn StorageIo>;
