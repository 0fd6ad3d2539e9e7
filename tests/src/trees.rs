//! Trees of entries to compare an import's source with an export: a walk of a directory
//! (never following symlinks) and a parse of a tar, into the same shape — path → type, mode,
//! owner, mtime (seconds), contents or target, xattrs — plus hard-link groups. Exports are
//! checked as they are parsed: a hard link must name an earlier entry, no path twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tessera::Volume;

/// File bytes, compared in full but printed as length and checksum.
#[derive(Clone, PartialEq, Eq)]
pub struct Data(pub Vec<u8>);

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fnv = self.0.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
        });
        write!(f, "{} bytes, fnv {fnv:016x}", self.0.len())
    }
}

/// What an entry is, with what makes it that (contents, target, device numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Data),
    Symlink(Vec<u8>),
    Fifo,
    /// Character (false) or block (true) device, major, minor.
    Device(bool, u32, u32),
}

/// One entry as a tar can carry it (mtime in whole seconds, mode without the type bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A tree: path → item, and the hard-link groups (every name of a file with two or more).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub items: BTreeMap<Vec<u8>, Item>,
    pub links: BTreeSet<BTreeSet<Vec<u8>>>,
}

/// A path for messages.
pub fn shown(path: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(path))
}

/// Asserts two trees are equal, naming the first entry that differs.
pub fn assert_same_tree(expected: &Tree, actual: &Tree) {
    let want: BTreeSet<_> = expected.items.keys().map(|k| shown(k)).collect();
    let got: BTreeSet<_> = actual.items.keys().map(|k| shown(k)).collect();
    assert_eq!(
        want.difference(&got).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "entries missing from the export"
    );
    assert_eq!(
        got.difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "entries the source does not have"
    );
    for (path, item) in &expected.items {
        assert_eq!(&actual.items[path], item, "entry {}", shown(path));
    }
    assert_eq!(expected.links, actual.links, "hard-link groups");
}

/// The xattrs of a file, of every namespace (symlinks not followed; none where unsupported).
pub fn source_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    if let Ok(names) = xattr::list(path) {
        for name in names {
            if let Ok(Some(value)) = xattr::get(path, &name) {
                out.insert(name.as_bytes().to_vec(), value);
            }
        }
    }
    out
}

/// Walks a source directory (never following symlinks) into a [`Tree`].
pub fn walk_source(root: &Path) -> Tree {
    fn walk(
        dir: &Path,
        rel: &[u8],
        tree: &mut Tree,
        inodes: &mut BTreeMap<(u64, u64), BTreeSet<Vec<u8>>>,
    ) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let mut name = rel.to_vec();
            if !name.is_empty() {
                name.push(b'/');
            }
            name.extend_from_slice(entry.file_name().as_bytes());
            let meta = fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                walk(&path, &name, tree, inodes);
                Kind::Dir
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let names = inodes.entry((meta.dev(), meta.ino())).or_default();
                    names.insert(name.clone());
                }
                Kind::File(Data(fs::read(&path).unwrap()))
            } else if ft.is_symlink() {
                Kind::Symlink(
                    fs::read_link(&path)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else {
                use std::os::unix::fs::FileTypeExt;
                let rdev = meta.rdev();
                let (major, minor) = (libc::major(rdev), libc::minor(rdev));
                if ft.is_char_device() || ft.is_block_device() {
                    Kind::Device(ft.is_block_device(), major, minor)
                } else {
                    assert!(ft.is_fifo(), "{}", path.display());
                    Kind::Fifo
                }
            };
            let item = Item {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid() as u64,
                gid: meta.gid() as u64,
                mtime: meta.mtime() as u64,
                xattrs: source_xattrs(&path),
            };
            tree.items.insert(name, item);
        }
    }
    let mut tree = Tree::default();
    let mut inodes = BTreeMap::new();
    walk(root, b"", &mut tree, &mut inodes);
    tree.links = inodes.into_values().filter(|n| n.len() > 1).collect();
    tree
}

/// Parses a tar into a [`Tree`], checking that every hard link names an earlier regular
/// file (or a link to one), and returns the number of entries.
pub fn tar_tree(bytes: &[u8]) -> (Tree, u64) {
    let mut archive = tar::Archive::new(bytes);
    let mut tree = Tree::default();
    let mut root_of: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut groups: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let mut count = 0;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        count += 1;
        let mut path = entry.path_bytes().into_owned();
        if path.last() == Some(&b'/') {
            path.pop();
        }
        let mut xattrs = BTreeMap::new();
        if let Some(extensions) = entry.pax_extensions().unwrap() {
            for ext in extensions {
                let ext = ext.unwrap();
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    xattrs.insert(name.to_vec(), ext.value_bytes().to_vec());
                }
            }
        }
        let header = entry.header().clone();
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let kind = match header.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                assert_eq!(data.len() as u64, header.size().unwrap());
                root_of.insert(path.clone(), path.clone());
                Kind::File(Data(data))
            }
            tar::EntryType::Symlink => Kind::Symlink(link.expect("symlink target")),
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::Char | tar::EntryType::Block => Kind::Device(
                header.entry_type() == tar::EntryType::Block,
                header.device_major().unwrap().unwrap(),
                header.device_minor().unwrap().unwrap(),
            ),
            tar::EntryType::Link => {
                let target = link.expect("link target");
                let root = root_of
                    .get(&target)
                    .unwrap_or_else(|| panic!("link {} names no earlier file", shown(&path)))
                    .clone();
                root_of.insert(path.clone(), root.clone());
                let group = groups.entry(root.clone()).or_default();
                group.insert(root.clone());
                group.insert(path.clone());
                tree.items[&root].kind.clone()
            }
            other => panic!("unexpected entry type {other:?} at {}", shown(&path)),
        };
        let item = Item {
            kind,
            mode: header.mode().unwrap() & 0o7777,
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
            mtime: header.mtime().unwrap(),
            xattrs,
        };
        let again = tree.items.insert(path.clone(), item);
        assert!(again.is_none(), "{} exported twice", shown(&path));
    }
    tree.links = groups.into_values().collect();
    (tree, count)
}

/// Exports a view as a tar, checking the reported entry count against the archive.
pub fn export(volume: &Volume) -> Vec<u8> {
    let mut out = Vec::new();
    let report = volume.export_tar(&mut out).unwrap();
    assert_eq!(report.entries, tar_tree(&out).1, "reported entry count");
    out
}
