//! Blobs of an image archive: digests (`sha256:HEX`), sha256-counting readers and writers, and
//! where an archive's blobs are — files under a directory (an OCI image layout) or members of
//! a tar file (a `docker save` archive, an OCI layout packed as a tar), found by one scan of
//! the tar's headers and read by seeking, so nothing is extracted. Names a blob is asked for
//! come from untrusted JSON: a directory is only ever asked for `blobs/sha256/HEX` (the hex
//! checked first), and a tar's members are looked up in its own index, never on disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A content digest. Only sha256 is supported (what every image tool writes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    /// 64 lowercase hex digits.
    pub hex: String,
}

impl Digest {
    /// Parses `sha256:HEX`; `what` names the field for the error.
    pub fn parse(text: &str, what: &str) -> Result<Digest> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(Error::InvalidInput(format!(
                "{what} has digest {text:?}, which is not ALGORITHM:HEX"
            )));
        };
        if algorithm != "sha256" {
            return Err(Error::Unsupported(format!(
                "{what} has digest {text:?}: only sha256 digests are supported"
            )));
        }
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::InvalidInput(format!(
                "{what} has digest {text:?}, which is not 64 lowercase hex digits"
            )));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    /// Where an OCI layout keeps the blob.
    pub fn blob_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex)
    }

    /// The sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex(&Sha256::digest(bytes)),
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// A reader or writer that hashes (sha256) and counts the bytes passing through it.
pub struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    bytes: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Hashing<T> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes so far.
    pub fn count(&self) -> u64 {
        self.bytes
    }

    /// The digest and byte count so far.
    pub fn finish(self) -> (Digest, u64) {
        (
            Digest {
                hex: hex(&self.hasher.finalize()),
            },
            self.bytes,
        )
    }

    /// The wrapped reader or writer, and the digest and count.
    pub fn into_parts(self) -> (T, Digest, u64) {
        let digest = Digest {
            hex: hex(&self.hasher.finalize()),
        };
        (self.inner, digest, self.bytes)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

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

/// Checks a blob's actual digest and size against its descriptor.
pub fn check_blob(
    expected: &Digest,
    size: Option<u64>,
    actual: &Digest,
    actual_size: u64,
    what: &str,
) -> Result<()> {
    if actual != expected {
        return Err(Error::InvalidInput(format!(
            "blob {expected} ({what}) does not match its digest: its bytes hash to {actual}"
        )));
    }
    if let Some(size) = size
        && size != actual_size
    {
        return Err(Error::InvalidInput(format!(
            "blob {expected} ({what}) is {actual_size} bytes, but its descriptor says {size}"
        )));
    }
    Ok(())
}

/// Puts `what` in front of an error's message, keeping its kind.
pub fn within(what: &str, e: Error) -> Error {
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(format!("{what}: {m}")),
        Error::Unsupported(m) => Error::Unsupported(format!("{what}: {m}")),
        Error::NotFound(m) => Error::NotFound(format!("{what}: {m}")),
        Error::Corrupt(m) => Error::Corrupt(format!("{what}: {m}")),
        Error::Io { context, source } => Error::Io {
            context: format!("{what}: {context}"),
            source,
        },
        other => other,
    }
}

/// Parses a JSON document; `what` names it for the error.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        let cause: String = e.to_string().chars().take(200).collect();
        Error::InvalidInput(format!("{what} is not valid: {cause}"))
    })
}
