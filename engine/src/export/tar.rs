//! Writing a view as a tar: every visible name in path order (parents first), hard links as
//! link entries to the first name written, xattrs as PAX `SCHILY.xattr.*` records, devices
//! with their numbers. The root directory itself is not an entry.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::NodeId;
use crate::tree::node::FileKind;
use crate::volume::Volume;

/// What an export wrote.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExportReport {
    pub entries: u64,
    pub file_bytes: u64,
}

/// Reads a file of a view sequentially.
struct FileReader<'a> {
    volume: &'a Volume,
    node: NodeId,
    offset: u64,
    size: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.offset >= self.size {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(1 << 20)
            .min((self.size - self.offset) as usize);
        let data = self
            .volume
            .read(self.node, self.offset, want)
            .map_err(std::io::Error::other)?;
        if data.is_empty() {
            return Err(std::io::Error::other(format!(
                "node {} ended before its size",
                self.node
            )));
        }
        buf[..data.len()].copy_from_slice(&data);
        self.offset += data.len() as u64;
        Ok(data.len())
    }
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

fn tar_error(what: &str, e: std::io::Error) -> Error {
    Error::io(format!("writing tar entry {what}"), e)
}

impl Volume {
    /// Writes this view as a tar archive to `out`.
    pub fn export_tar(&self, out: impl Write) -> Result<ExportReport> {
        let mut builder = ::tar::Builder::new(out);
        builder.follow_symlinks(false);
        let mut report = ExportReport::default();
        let mut first_names = HashMap::new();
        self.export_dir(
            &mut builder,
            NodeId::ROOT,
            b"",
            &mut first_names,
            &mut report,
        )?;
        builder
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| Error::io("finishing the tar archive", e))?;
        Ok(report)
    }

    fn export_dir<W: Write>(
        &self,
        builder: &mut ::tar::Builder<W>,
        dir: NodeId,
        prefix: &[u8],
        first_names: &mut HashMap<NodeId, Vec<u8>>,
        report: &mut ExportReport,
    ) -> Result<()> {
        for entry in self.list_dir(dir)? {
            let mut path = prefix.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&entry.name);
            self.export_entry(builder, entry.node, &path, first_names, report)?;
            if entry.kind == FileKind::Dir {
                self.export_dir(builder, entry.node, &path, first_names, report)?;
            }
        }
        Ok(())
    }

    fn export_entry<W: Write>(
        &self,
        builder: &mut ::tar::Builder<W>,
        node: NodeId,
        path: &[u8],
        first_names: &mut HashMap<NodeId, Vec<u8>>,
        report: &mut ExportReport,
    ) -> Result<()> {
        let shown = String::from_utf8_lossy(path).into_owned();
        let path_os = os(path);
        let attr = self.getattr(node)?;
        let mut header = ::tar::Header::new_gnu();
        header.set_mode(attr.perm as u32);
        header.set_uid(attr.uid as u64);
        header.set_gid(attr.gid as u64);
        header.set_mtime(attr.mtime.div_euclid(1_000_000_000).max(0) as u64);
        header.set_size(0);
        report.entries += 1;

        let xattrs = self.listxattr(node)?;
        if !xattrs.is_empty() {
            let mut records = Vec::new();
            for name in xattrs {
                let value = self.getxattr(node, &name)?;
                let mut key = b"SCHILY.xattr.".to_vec();
                key.extend_from_slice(&name);
                records.push((key, value));
            }
            let pairs = records.iter().map(|(k, v)| {
                (
                    std::str::from_utf8(k).unwrap_or("SCHILY.xattr.invalid"),
                    v.as_slice(),
                )
            });
            builder
                .append_pax_extensions(pairs)
                .map_err(|e| tar_error(&shown, e))?;
        }

        if attr.kind != FileKind::Dir && attr.nlink > 1 {
            if let Some(first) = first_names.get(&node) {
                header.set_entry_type(::tar::EntryType::Link);
                return builder
                    .append_link(&mut header, path_os, os(first))
                    .map_err(|e| tar_error(&shown, e));
            }
            first_names.insert(node, path.to_vec());
        }
        let empty: &[u8] = &[];
        match attr.kind {
            FileKind::File => {
                header.set_entry_type(::tar::EntryType::Regular);
                header.set_size(attr.size);
                report.file_bytes += attr.size;
                let reader = FileReader {
                    volume: self,
                    node,
                    offset: 0,
                    size: attr.size,
                };
                builder.append_data(&mut header, path_os, reader)
            }
            FileKind::Dir => {
                header.set_entry_type(::tar::EntryType::Directory);
                let mut dir_path = path.to_vec();
                dir_path.push(b'/');
                builder.append_data(&mut header, os(&dir_path), empty)
            }
            FileKind::Symlink => {
                header.set_entry_type(::tar::EntryType::Symlink);
                let target = self.readlink(node)?;
                builder.append_link(&mut header, path_os, os(&target))
            }
            FileKind::CharDev | FileKind::BlockDev => {
                header.set_entry_type(if attr.kind == FileKind::CharDev {
                    ::tar::EntryType::Char
                } else {
                    ::tar::EntryType::Block
                });
                let rdev = attr.rdev;
                header
                    .set_device_major(libc::major(rdev))
                    .and_then(|_| header.set_device_minor(libc::minor(rdev)))
                    .map_err(|e| tar_error(&shown, e))?;
                builder.append_data(&mut header, path_os, empty)
            }
            FileKind::Fifo => {
                header.set_entry_type(::tar::EntryType::Fifo);
                builder.append_data(&mut header, path_os, empty)
            }
            FileKind::Socket => {
                // tar has no socket type (GNU tar skips them too).
                report.entries -= 1;
                return Ok(());
            }
        }
        .map_err(|e| tar_error(&shown, e))
    }
}
