//! Sparse files in the PAX formats of GNU tar (`--sparse --format=posix`: versions 0.0, 0.1
//! and 1.0, told apart by their `GNU.sparse.*` records): the real name and size, and a map of
//! the data chunks, expanded back into the file's full contents (holes read as zeros). The old
//! GNU sparse entry type is expanded by the tar crate itself. Never trusts the map: chunks
//! must be in order, apart and inside the file.

use std::io::{self, Read};

/// A sparse file's real name and size and where its data lies.
pub struct Sparse {
    /// `GNU.sparse.name`, when the archive gives one (else the entry's own path is right).
    pub name: Option<Vec<u8>>,
    pub size: u64,
    /// (offset, length) of each data chunk; `None` when the map leads the data (1.0).
    map: Option<Vec<(u64, u64)>>,
}

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad PAX sparse file: {what}"),
    )
}

fn number(text: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "{:?} is not a number",
                String::from_utf8_lossy(text)
            ))
        })
}

fn pairs(numbers: &[u64]) -> io::Result<Vec<(u64, u64)>> {
    if !numbers.len().is_multiple_of(2) {
        return Err(bad("the map has an odd count of numbers"));
    }
    Ok(numbers.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// Reads the `GNU.sparse.*` records of an entry; `None` for an ordinary file.
pub fn info<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Option<Sparse>> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(None);
    };
    let (mut any, mut name, mut size, mut major) = (false, None, None, None);
    let (mut map, mut numbers) = (None, Vec::new());
    for extension in extensions {
        let extension = extension?;
        let value = extension.value_bytes();
        match extension.key_bytes() {
            b"GNU.sparse.name" => name = Some(value.to_vec()),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => size = Some(number(value)?),
            b"GNU.sparse.major" => major = Some(number(value)?),
            b"GNU.sparse.map" => {
                let list = value.split(|b| *b == b',').map(number);
                map = Some(pairs(&list.collect::<io::Result<Vec<_>>>()?)?);
            }
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => numbers.push(number(value)?),
            key if key.starts_with(b"GNU.sparse.") => {}
            _ => continue,
        }
        any = true;
    }
    if !any {
        return Ok(None);
    }
    let size = size.ok_or_else(|| bad("no GNU.sparse.realsize or GNU.sparse.size"))?;
    let map = match (major, map) {
        (Some(1), _) => None,
        (Some(0) | None, Some(map)) => Some(map),
        (Some(0) | None, None) => Some(pairs(&numbers)?),
        (Some(other), _) => return Err(bad(format!("unknown version {other}"))),
    };
    Ok(Some(Sparse { name, size, map }))
}

/// Reads the map that leads the data in version 1.0: decimal numbers, one a line (the count,
/// then offset and length of each chunk), padded to a 512-byte block.
fn read_map(data: &mut dyn Read) -> io::Result<Vec<(u64, u64)>> {
    let (mut text, mut cursor, mut numbers) = (Vec::new(), 0, Vec::new());
    loop {
        while let Some(end) = text[cursor..].iter().position(|b| *b == b'\n') {
            numbers.push(number(&text[cursor..cursor + end])?);
            cursor += end + 1;
            if numbers.len() as u64 == 1 + 2 * numbers[0] {
                return pairs(&numbers[1..]);
            }
        }
        let mut block = [0u8; 512];
        data.read_exact(&mut block)?;
        text.extend_from_slice(&block);
    }
}

impl Sparse {
    /// The file's full contents, from the entry's data.
    pub fn expand<'r>(&self, data: &'r mut dyn Read) -> io::Result<Expand<'r>> {
        let map = match &self.map {
            Some(map) => map.clone(),
            None => read_map(data)?,
        };
        let mut end = 0;
        for (offset, len) in &map {
            if *offset < end || offset.checked_add(*len).is_none_or(|e| e > self.size) {
                return Err(bad(format!(
                    "chunk {offset}+{len} overlaps or leaves the file"
                )));
            }
            end = offset + len;
        }
        Ok(Expand {
            data,
            map,
            next: 0,
            at: 0,
            size: self.size,
        })
    }
}

/// A sparse file's contents: zeros in the holes, the entry's data in the chunks.
pub struct Expand<'r> {
    data: &'r mut dyn Read,
    map: Vec<(u64, u64)>,
    next: usize,
    at: u64,
    size: u64,
}

impl Read for Expand<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.next < self.map.len() && self.map[self.next].0 + self.map[self.next].1 <= self.at
        {
            self.next += 1;
        }
        let (offset, len) = self.map.get(self.next).copied().unwrap_or((self.size, 0));
        if self.at < offset {
            let n = (buf.len() as u64).min(offset - self.at) as usize;
            buf[..n].fill(0);
            self.at += n as u64;
            return Ok(n);
        }
        if self.at >= self.size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(offset + len - self.at) as usize;
        let n = self.data.read(&mut buf[..n])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.at += n as u64;
        Ok(n)
    }
}
