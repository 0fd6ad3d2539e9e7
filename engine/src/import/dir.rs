//! Importing a directory tree: a pre-order walk that never follows symlinks, keeps hard links
//! (by device and inode), xattrs of every namespace, device numbers, and skips the holes of
//! sparse files without reading them (SEEK_DATA / SEEK_HOLE).

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;

use super::{EntryKind, EntryMeta, LayerFeed};
use crate::error::{Error, IoContext, Result};
use crate::tree::node::FileKind;

pub fn feed(feed: &mut LayerFeed, root: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(root).ctx(|| format!("reading {}", root.display()))?;
    feed.entry(b"", EntryKind::Dir, entry_meta(root, &meta)?)?;
    let mut links = HashMap::new();
    walk(feed, root, &mut Vec::new(), &mut links)
}

fn walk(
    feed: &mut LayerFeed,
    dir: &Path,
    rel: &mut Vec<u8>,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .ctx(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .ctx(|| format!("listing {}", dir.display()))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        let meta = fs::symlink_metadata(&path).ctx(|| format!("reading {}", path.display()))?;
        let attrs = entry_meta(&path, &meta)?;
        let ft = meta.file_type();
        if !ft.is_dir() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                feed.entry(rel, EntryKind::HardLink(first.clone()), attrs)?;
                rel.truncate(len);
                continue;
            }
            links.insert((meta.dev(), meta.ino()), rel.clone());
        }
        if ft.is_dir() {
            feed.entry(rel, EntryKind::Dir, attrs)?;
            walk(feed, &path, rel, links)?;
        } else if ft.is_file() {
            file(feed, &path, rel, attrs, meta.len())?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).ctx(|| format!("reading link {}", path.display()))?;
            feed.entry(
                rel,
                EntryKind::Symlink(target.as_os_str().as_bytes().to_vec()),
                attrs,
            )?;
        } else {
            let kind = if ft.is_char_device() {
                EntryKind::Device(FileKind::CharDev, meta.rdev())
            } else if ft.is_block_device() {
                EntryKind::Device(FileKind::BlockDev, meta.rdev())
            } else if ft.is_fifo() {
                EntryKind::Fifo
            } else {
                EntryKind::Socket
            };
            feed.entry(rel, kind, attrs)?;
        }
        rel.truncate(len);
    }
    Ok(())
}

fn entry_meta(path: &Path, meta: &Metadata) -> Result<EntryMeta> {
    let mut xattrs = Vec::new();
    // Listing fails on file systems without xattrs (and on some special files): none, then.
    if let Ok(names) = xattr::list(path) {
        for name in names {
            if let Ok(Some(value)) = xattr::get(path, &name) {
                xattrs.push((name.as_bytes().to_vec(), value));
            }
        }
    }
    Ok(EntryMeta {
        perm: (meta.mode() & 0o7777) as u16,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        xattrs,
    })
}

/// The data extents of a file, from SEEK_DATA / SEEK_HOLE (the whole file when unsupported).
fn extents(file: &mut File, size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let start = match rustix::fs::seek(&*file, rustix::fs::SeekFrom::Data(at)) {
            Ok(start) => start,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return vec![(0, size)],
        };
        let end = match rustix::fs::seek(&*file, rustix::fs::SeekFrom::Hole(start)) {
            Ok(end) => end.min(size),
            Err(_) => return vec![(0, size)],
        };
        out.push((start, end));
        at = end;
    }
    let _ = file.seek(SeekFrom::Start(0));
    out
}

fn file(feed: &mut LayerFeed, path: &Path, rel: &[u8], attrs: EntryMeta, size: u64) -> Result<()> {
    let mut file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let extents = extents(&mut file, size);
    let covers_all = extents.len() == 1 && extents[0] == (0, size);
    if covers_all || size == 0 {
        let mut reader = (&file).take(size);
        return feed.file(rel, attrs, size, &mut reader);
    }
    let content = feed.new_content();
    let bs = feed.block_size as u64;
    for index in 0..size.div_ceil(bs) {
        let start = index * bs;
        let len = (size - start).min(bs);
        let has_data = extents.iter().any(|(s, e)| *s < start + len && *e > start);
        if !has_data {
            feed.hole(len);
            continue;
        }
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, start)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        feed.block(content, index, buf)?;
    }
    feed.entry(rel, EntryKind::File { content, size }, attrs)
}
