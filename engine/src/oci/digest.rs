//! Content digests (`sha256:HEX`, the only algorithm image tools write) and readers and
//! writers that compute one on the way through.

use std::io::{self, Read, Write};

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
