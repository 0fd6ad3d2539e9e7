//! Importing one layer tar: plain, gzip or zstd (detected from the first bytes). Entry paths,
//! link targets and xattrs (PAX `SCHILY.xattr.*`) are read as raw bytes; OCI whiteouts are
//! handled by the layer builder; sparse files (GNU and PAX formats) are expanded. A damaged
//! archive is an error naming the entry.

use std::io::{BufRead, BufReader, Read};

use super::{EntryKind, EntryMeta, LayerFeed};
use crate::error::{Error, Result};
use crate::oci::whiteout;
use crate::tree::node::FileKind;

/// Wraps `reader` in the decompressor its first bytes call for.
pub fn decompress<'r>(reader: impl Read + 'r) -> Result<Box<dyn Read + 'r>> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let head = reader
        .fill_buf()
        .map_err(|e| Error::io("reading the archive", e))?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|e| Error::io("starting zstd decompression", e))?,
        )
    } else {
        Box::new(reader)
    })
}

fn damaged(what: &str, e: std::io::Error) -> Error {
    // The tar crate quotes raw header bytes in some errors: keep the message one short line.
    let cause: String = e.to_string().escape_debug().take(160).collect();
    Error::InvalidInput(format!("damaged archive ({what}): {cause}"))
}

pub fn feed(feed: &mut LayerFeed, reader: impl Read) -> Result<()> {
    feed_entries(feed, decompress(reader)?, false)
}

/// Feeds the entries of an uncompressed layer tar. `allow_empty`: an archive of no entries is
/// a layer that changes nothing (image layers may be empty), not an error.
pub fn feed_entries(feed: &mut LayerFeed, reader: impl Read, allow_empty: bool) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| damaged("reading entries", e))?;
    // The last entry read, so a damaged header can be placed in the archive.
    let mut previous: Option<String> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            let what = match &previous {
                Some(name) => format!("reading the entry header after {name:?}"),
                None => "reading the first entry header".to_string(),
            };
            damaged(&what, e)
        })?;
        let path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&path).into_owned();
        previous = Some(shown.clone());
        let header = entry.header();
        let meta = EntryMeta {
            perm: (header.mode().map_err(|e| damaged(&shown, e))? & 0o7777) as u16,
            uid: header.uid().map_err(|e| damaged(&shown, e))? as u32,
            gid: header.gid().map_err(|e| damaged(&shown, e))? as u32,
            mtime: header.mtime().map_err(|e| damaged(&shown, e))? as i64 * 1_000_000_000,
            xattrs: xattrs(&mut entry).map_err(|e| damaged(&shown, e))?,
        };
        let header = entry.header();
        let kind = header.entry_type();
        let link = || -> Result<Vec<u8>> {
            entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .ok_or_else(|| Error::InvalidInput(format!("link entry {shown:?} has no target")))
        };
        let device = |kind: FileKind| -> Result<EntryKind> {
            let major = header.device_major().ok().flatten().unwrap_or(0) as u64;
            let minor = header.device_minor().ok().flatten().unwrap_or(0) as u64;
            Ok(EntryKind::Device(
                kind,
                libc::makedev(major as u32, minor as u32),
            ))
        };
        let what = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                if let Some(sparse) =
                    super::sparse::info(&mut entry).map_err(|e| damaged(&shown, e))?
                {
                    let path = sparse.name.clone().unwrap_or(path);
                    let mut data = sparse.expand(&mut entry).map_err(|e| damaged(&shown, e))?;
                    feed.file(&path, meta, sparse.size, &mut data)?;
                    continue;
                }
                let size = entry.size();
                feed.file(&path, meta, size, &mut entry)?;
                continue;
            }
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink(link()?),
            tar::EntryType::Link => EntryKind::HardLink(link()?),
            tar::EntryType::Char => device(FileKind::CharDev)?,
            tar::EntryType::Block => device(FileKind::BlockDev)?,
            tar::EntryType::Fifo => EntryKind::Fifo,
            tar::EntryType::XGlobalHeader => continue,
            other => {
                return Err(Error::InvalidInput(format!(
                    "entry {shown:?} has unsupported type {other:?}"
                )));
            }
        };
        // A character device 0:0 is the overlay whiteout encoding; a tar should not carry it,
        // but if it does, it means the same thing as `.wh.NAME`.
        if what == EntryKind::Device(FileKind::CharDev, 0) {
            let whiteout = whiteout::path_of(&path);
            feed.entry(&whiteout, EntryKind::Fifo, meta)?;
            continue;
        }
        feed.entry(&path, what, meta)?;
    }
    if previous.is_none() && !allow_empty {
        return Err(Error::InvalidInput("the archive holds no entries".into()));
    }
    Ok(())
}

fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(extensions) = entry.pax_extensions()? {
        for extension in extensions {
            let extension = extension?;
            if let Some(name) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                out.push((name.to_vec(), extension.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}
