//! Reading packs: one verified block at a time (O_DIRECT into an aligned buffer), and whole-pack
//! scans that rebuild an index from the self-describing segments.

use std::cell::RefCell;

use super::compress;
use crate::error::{Error, Result};
use crate::format::PACK_ALIGN;
use crate::format::pack::{self, PackHeader};
use crate::format::pack_index::Entry;
use crate::ids::{BlockId, PackId};
use crate::io::{AlignedBuf, IoFile};

thread_local! {
    static READ_BUF: RefCell<AlignedBuf> = RefCell::new(AlignedBuf::new(PACK_ALIGN as usize));
}

/// Reads the block `id` stored at `entry` of `pack` into `out` (at least a block long when
/// the block is compressed), verifying its hash.
pub(super) fn read_block(
    file: &dyn IoFile,
    pack: PackId,
    entry: Entry,
    id: &BlockId,
    out: &mut [u8],
) -> Result<usize> {
    let len = entry.len as usize;
    READ_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.set_len(len);
        file.read_direct(&mut buf, entry.offset).map_err(|e| {
            tracing::error!(
                pack = pack.0,
                offset = entry.offset,
                "block read failed: {e}"
            );
            Error::io(
                format!(
                    "reading block {id} from pack {pack} at offset {}",
                    entry.offset
                ),
                e,
            )
        })?;
        let n = if entry.compressed {
            unpack(&buf[..len], out, pack, entry.offset)?
        } else {
            out[..len].copy_from_slice(&buf[..len]);
            len
        };
        verify(id, &out[..n], pack, entry.offset)?;
        Ok(n)
    })
}

/// Decompresses a block's stored frame into `out`; returns its length. A frame that does not
/// decode is corruption, named like a hash mismatch.
pub(super) fn unpack(frame: &[u8], out: &mut [u8], pack: PackId, offset: u64) -> Result<usize> {
    compress::decompress(frame, out).map_err(|why| {
        tracing::error!(pack = pack.0, offset, "{why}");
        Error::Corrupt(format!("block in pack {pack} at offset {offset}: {why}"))
    })
}

/// The verified bytes of a block whose stored bytes are `stored` (decompressed into
/// `scratch`, a block long, when they are compressed).
pub(super) fn verified<'a>(
    id: &BlockId,
    stored: &'a [u8],
    entry: Entry,
    pack: PackId,
    scratch: &'a mut [u8],
) -> Result<&'a [u8]> {
    let data = if entry.compressed {
        let n = unpack(stored, scratch, pack, entry.offset)?;
        &scratch[..n]
    } else {
        stored
    };
    verify(id, data, pack, entry.offset)?;
    Ok(data)
}

/// Reads `len` bytes of `pack` at `offset` (both multiples of 4 KiB) with one direct read and
/// hands them to `each` (a run of adjacent blocks).
pub(super) fn read_run(
    file: &dyn IoFile,
    pack: PackId,
    offset: u64,
    len: usize,
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    READ_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.set_len(len);
        file.read_direct(&mut buf, offset).map_err(|e| {
            tracing::error!(pack = pack.0, offset, "block read failed: {e}");
            Error::io(format!("reading pack {pack} at offset {offset}"), e)
        })?;
        each(&buf[..len])
    })
}

/// Checks that `data` is the block `id`; a mismatch names the pack and offset.
pub(super) fn verify(id: &BlockId, data: &[u8], pack: PackId, offset: u64) -> Result<()> {
    if BlockId(*blake3::hash(data).as_bytes()) == *id {
        return Ok(());
    }
    tracing::error!(pack = pack.0, offset, block = %id, "block does not match its id");
    Err(Error::Corrupt(format!(
        "block {id} in pack {pack} at offset {offset} does not match its hash"
    )))
}

/// Checks a pack's header page.
pub(super) fn read_header(file: &dyn IoFile, pack: PackId) -> Result<PackHeader> {
    let mut page = vec![0u8; pack::HEADER_LEN as usize];
    file.read_exact_at(&mut page, 0)
        .map_err(|e| Error::io(format!("reading header of pack {pack}"), e))?;
    let header =
        PackHeader::decode(&page).map_err(|e| Error::Corrupt(format!("pack {pack}: {e}")))?;
    if header.pack_id != pack.0 {
        return Err(Error::Corrupt(format!(
            "pack {pack} says it is pack {}",
            header.pack_id
        )));
    }
    Ok(header)
}

/// Walks the segments of `file` from its header up to `limit` bytes. Returns every entry and
/// the end of the last whole, valid segment. With `strict`, anything short of a clean end at
/// `limit` is corruption; otherwise the walk stops at the first torn or missing segment.
pub(super) fn scan(
    file: &dyn IoFile,
    pack: PackId,
    version: u32,
    block_size: u32,
    limit: u64,
    strict: bool,
) -> Result<(Vec<(BlockId, Entry)>, u64)> {
    let mut entries = Vec::new();
    let mut offset = pack::HEADER_LEN;
    let mut first = vec![0u8; PACK_ALIGN as usize];
    while offset + PACK_ALIGN <= limit {
        let torn = |what: &str| Error::Corrupt(format!("pack {pack} at offset {offset}: {what}"));
        if file.read_exact_at(&mut first, offset).is_err() {
            break;
        }
        let Some(count) = pack::segment_count(&first) else {
            if strict {
                return Err(torn("no segment header where one was recorded"));
            }
            break;
        };
        let header_len = pack::segment_header_len(count);
        let mut header = vec![0u8; header_len as usize];
        if offset + header_len > limit || file.read_exact_at(&mut header, offset).is_err() {
            if strict {
                return Err(torn("segment header cut short"));
            }
            break;
        }
        let listed = match pack::decode_segment_header(&header, version, block_size) {
            Ok(listed) => listed,
            Err(e) if strict => return Err(torn(&e.to_string())),
            Err(_) => break,
        };
        let end = offset + header_len + pack::segment_data_len(&listed);
        if end > limit {
            if strict {
                return Err(torn("segment data cut short"));
            }
            break;
        }
        let mut at = offset + header_len;
        for (id, len, compressed) in listed {
            entries.push((
                id,
                Entry {
                    offset: at,
                    len,
                    compressed,
                },
            ));
            at += pack::aligned(len as u64);
        }
        offset = end;
    }
    if strict && offset != limit {
        return Err(Error::Corrupt(format!(
            "pack {pack}: recorded length {limit} does not end on a segment (last ends at {offset})"
        )));
    }
    Ok((entries, offset))
}
