//! Blobs of an image archive: where they are — files under a directory (an OCI image layout) or members of
//! a tar file (a `docker save` archive, an OCI layout packed as a tar), found by one scan of
//! the tar's headers and read by seeking, so nothing is extracted. Names a blob is asked for
//! come from untrusted JSON: a directory is only ever asked for `blobs/sha256/HEX` (the hex
//! checked first), and a tar's members are looked up in its own index, never on disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::oci::{Digest, check_blob};

/// A tar member: a regular file's data, or a symlink to another member.
#[derive(Debug, Clone)]
pub enum Member {
    Data { offset: u64, size: u64 },
    Link(String),
}

/// Where an archive's blobs are.
pub enum Blobs {
    /// Files under this directory.
    Dir(PathBuf),
    /// Members of this tar file.
    Tar {
        path: PathBuf,
        members: HashMap<String, Member>,
    },
}

/// A member name as a tar writes it, without `./` or a leading `/`.
fn clean(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// The largest JSON document (index, manifest, config) read into memory.
const JSON_LIMIT: u64 = 64 << 20;

impl Blobs {
    /// Indexes the members of an uncompressed tar file by one scan of its headers (seeking
    /// past the data).
    pub fn scan_tar(path: &Path) -> Result<Blobs> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let mut archive = tar::Archive::new(file);
        let damaged = |e: io::Error| {
            Error::InvalidInput(format!(
                "{} is not a readable tar archive: {e}",
                path.display()
            ))
        };
        let mut members = HashMap::new();
        for entry in archive.entries_with_seek().map_err(damaged)? {
            let entry = entry.map_err(damaged)?;
            let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::Data {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Some(target) = entry.link_name_bytes() else {
                        continue;
                    };
                    let target = String::from_utf8_lossy(&target).into_owned();
                    let target = if entry.header().entry_type() == tar::EntryType::Symlink
                        && !target.starts_with('/')
                    {
                        // Relative to the link's directory.
                        let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                        clean(&format!("{dir}/{target}"))
                    } else {
                        clean(&target)
                    };
                    Member::Link(target)
                }
                _ => continue,
            };
            members.insert(name, member);
        }
        Ok(Blobs::Tar {
            path: path.to_path_buf(),
            members,
        })
    }

    /// Member names of a tar (empty for a directory).
    pub fn names(&self) -> Vec<&str> {
        match self {
            Blobs::Dir(_) => Vec::new(),
            Blobs::Tar { members, .. } => members.keys().map(String::as_str).collect(),
        }
    }

    /// What holds the blobs, for messages.
    pub fn location(&self) -> String {
        match self {
            Blobs::Dir(dir) => dir.display().to_string(),
            Blobs::Tar { path, .. } => path.display().to_string(),
        }
    }

    fn member(&self, name: &str) -> Option<(u64, u64)> {
        let Blobs::Tar { members, .. } = self else {
            return None;
        };
        let mut name = clean(name);
        for _ in 0..16 {
            match members.get(&name)? {
                Member::Data { offset, size } => return Some((*offset, *size)),
                Member::Link(target) => name = target.clone(),
            }
        }
        None
    }

    /// Opens `name` (a path relative to the archive's root) and tells its size; `None` when
    /// the archive lacks it.
    pub fn open(&self, name: &str) -> Result<Option<(Box<dyn Read + Send>, u64)>> {
        match self {
            Blobs::Dir(dir) => {
                let path = dir.join(name);
                match File::open(&path) {
                    Ok(file) => {
                        let size = file
                            .metadata()
                            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
                            .len();
                        Ok(Some((
                            Box::new(io::BufReader::with_capacity(1 << 20, file)),
                            size,
                        )))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io(format!("opening {}", path.display()), e)),
                }
            }
            Blobs::Tar { path, .. } => {
                let Some((offset, size)) = self.member(name) else {
                    return Ok(None);
                };
                let shown = || format!("reading {name} in {}", path.display());
                let mut file = File::open(path).map_err(|e| Error::io(shown(), e))?;
                file.seek(SeekFrom::Start(offset))
                    .map_err(|e| Error::io(shown(), e))?;
                let reader = io::BufReader::with_capacity(1 << 20, file).take(size);
                Ok(Some((Box::new(reader), size)))
            }
        }
    }

    /// Reads a small document (JSON) whole; `None` when missing. `what` names it for errors.
    pub fn read_small(&self, name: &str, what: &str) -> Result<Option<Vec<u8>>> {
        let Some((mut reader, size)) = self.open(name)? else {
            return Ok(None);
        };
        if size > JSON_LIMIT {
            return Err(Error::InvalidInput(format!(
                "{what} in {} is {size} bytes, more than a JSON document may be",
                self.location()
            )));
        }
        let mut out = Vec::with_capacity(size as usize);
        reader
            .read_to_end(&mut out)
            .map_err(|e| Error::io(format!("reading {what} in {}", self.location()), e))?;
        Ok(Some(out))
    }

    /// Reads the blob `digest` whole and checks it against its digest (and `size`, when the
    /// descriptor gives one). `what` names the blob's role ("manifest", "config").
    pub fn read_verified(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<Vec<u8>> {
        let bytes = self
            .read_small(&digest.blob_path(), what)?
            .ok_or_else(|| self.missing(digest, what))?;
        check_blob(digest, size, &Digest::of(&bytes), bytes.len() as u64, what)?;
        Ok(bytes)
    }

    /// The error for a blob the archive lacks.
    pub fn missing(&self, blob: &dyn std::fmt::Display, what: &str) -> Error {
        Error::NotFound(format!("blob {blob} ({what}) in {}", self.location()))
    }
}
