//! Layer tars for import tests: ordinary entries through the tar crate's `Builder`, and raw
//! entries whose names the crate refuses to write (a `..` component, a leading `/`), written
//! byte for byte into the header. Never touches the file system.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use tar::{Builder, EntryType, Header};

/// The mtime every entry gets unless told otherwise.
pub const MTIME: u64 = 1_700_000_000;

/// Builds a tar in memory.
pub struct TarMaker {
    builder: Builder<Vec<u8>>,
}

impl Default for TarMaker {
    fn default() -> Self {
        Self::new()
    }
}

fn header(kind: EntryType, mode: u32) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header.set_size(0);
    header
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

impl TarMaker {
    pub fn new() -> TarMaker {
        TarMaker {
            builder: Builder::new(Vec::new()),
        }
    }

    /// A directory, mode 0755.
    pub fn dir(&mut self, path: impl AsRef<[u8]>) -> &mut Self {
        let mut h = header(EntryType::Directory, 0o755);
        self.builder
            .append_data(&mut h, os(path.as_ref()), &[][..])
            .expect("dir entry");
        self
    }

    /// A regular file, mode 0644.
    pub fn file(&mut self, path: impl AsRef<[u8]>, data: &[u8]) -> &mut Self {
        self.file_with(path, data, 0o644, 0, 0)
    }

    /// A regular file with the given mode and owner.
    pub fn file_with(
        &mut self,
        path: impl AsRef<[u8]>,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = header(EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(data.len() as u64);
        self.builder
            .append_data(&mut h, os(path.as_ref()), data)
            .expect("file entry");
        self
    }

    pub fn symlink(&mut self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        self.link(EntryType::Symlink, path.as_ref(), target.as_ref())
    }

    pub fn hard_link(&mut self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        self.link(EntryType::Link, path.as_ref(), target.as_ref())
    }

    fn link(&mut self, kind: EntryType, path: &[u8], target: &[u8]) -> &mut Self {
        let mut h = header(kind, 0o777);
        self.builder
            .append_link(&mut h, os(path), os(target))
            .expect("link entry");
        self
    }

    /// An entry whose name (at most 100 bytes) and link target are written into the header
    /// verbatim, so names the crate refuses (`../x`, `/etc/x`) can be tested.
    pub fn raw(
        &mut self,
        name: &[u8],
        kind: EntryType,
        data: &[u8],
        link: Option<&[u8]>,
    ) -> &mut Self {
        let mut h = header(kind, if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_cksum();
        self.builder.append(&h, data).expect("raw entry");
        self
    }

    /// The archive, with its end-of-archive blocks.
    pub fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, Builder::new(Vec::new()));
        builder.into_inner().expect("finish tar")
    }
}
