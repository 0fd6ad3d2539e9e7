//! Every on-disk name of a store, computed in one place.
//!
//! ```text
//! STORE/tessera-store        header: magic, format version, block size (format::store_header)
//! STORE/lock                 flock'd by the one process that has the store open
//! STORE/meta.redb            metadata database (redb)
//! STORE/packs/NNNNNNNNNNNN.pack   block packs
//! STORE/packs/NNNNNNNNNNNN.idx    sorted index of a sealed pack
//! STORE/remote/URLHASH/HASH.idx  index of a pack of remote URL this store attached
//!                            (store::remote; URLHASH: 16 hex digits of blake3 of the URL)
//! STORE/remote/backing       the URL of the remote the store is backed by (a lazy pull)
//! ```

use std::path::{Path, PathBuf};

use crate::ids::PackId;

#[derive(Debug, Clone)]
pub struct StoreLayout {
    root: PathBuf,
}

impl StoreLayout {
    pub fn new(root: impl Into<PathBuf>) -> StoreLayout {
        StoreLayout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn header(&self) -> PathBuf {
        self.root.join("tessera-store")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
    pub fn meta(&self) -> PathBuf {
        self.root.join("meta.redb")
    }
    pub fn packs_dir(&self) -> PathBuf {
        self.root.join("packs")
    }
    pub fn pack(&self, id: PackId) -> PathBuf {
        self.packs_dir().join(format!("{:012}.pack", id.0))
    }
    pub fn index(&self, id: PackId) -> PathBuf {
        self.packs_dir().join(format!("{:012}.idx", id.0))
    }
    pub fn index_tmp(&self, id: PackId) -> PathBuf {
        self.packs_dir().join(format!("{:012}.idx.tmp", id.0))
    }

    /// Where the kept indexes of every remote live.
    pub fn remotes_dir(&self) -> PathBuf {
        self.root.join("remote")
    }
    /// The URL of the remote a store is backed by (after a lazy pull).
    pub fn remote_backing(&self) -> PathBuf {
        self.remotes_dir().join("backing")
    }
    /// The kept indexes of one remote, named by its URL.
    pub fn remote_dir(&self, url: &str) -> PathBuf {
        let hash = blake3::hash(url.as_bytes()).to_hex();
        self.remotes_dir().join(&hash.as_str()[..16])
    }
    /// The kept index of pack `name` (hex blake3 of the pack object) of remote `url`.
    pub fn remote_index(&self, url: &str, name: &str) -> PathBuf {
        self.remote_dir(url).join(format!("{name}.idx"))
    }
    pub fn remote_index_tmp(&self, url: &str, name: &str) -> PathBuf {
        self.remote_dir(url).join(format!("{name}.idx.tmp"))
    }

    /// Parses a file name of the packs directory: (pack id, is an index).
    pub fn parse_pack_name(name: &str) -> Option<(PackId, PackFile)> {
        let (stem, ext) = name.split_once('.')?;
        if stem.len() != 12 {
            return None;
        }
        let id = PackId(stem.parse().ok()?);
        let kind = match ext {
            "pack" => PackFile::Pack,
            "idx" => PackFile::Index,
            "idx.tmp" => PackFile::IndexTmp,
            _ => return None,
        };
        Some((id, kind))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackFile {
    Pack,
    Index,
    IndexTmp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_names_round_trip() {
        let layout = StoreLayout::new("/s");
        for (path, kind) in [
            (layout.pack(PackId(7)), PackFile::Pack),
            (layout.index(PackId(7)), PackFile::Index),
            (layout.index_tmp(PackId(7)), PackFile::IndexTmp),
        ] {
            let name = path.file_name().unwrap().to_str().unwrap();
            assert_eq!(StoreLayout::parse_pack_name(name), Some((PackId(7), kind)));
        }
        assert_eq!(StoreLayout::parse_pack_name("junk"), None);
    }
}
