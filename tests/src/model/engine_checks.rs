//! Checks of one engine file against itself, for what the model cannot say (ext4 places holes
//! and counts blocks its own way): reads of any window agree with the whole content, SEEK_DATA
//! and SEEK_HOLE agree with it (a hole reads as zeros), and `st_blocks` counts the blocks the
//! file references — exactly once its data is flushed, never more than its size can hold.

use tessera::volume::Volume;
use tessera::{Attr, ErrorKind, SeekTarget};

/// Every inconsistency of the regular file `attr` whose whole content is `content`.
pub fn check_file(v: &Volume, attr: &Attr, content: &[u8], flushed: bool) -> Vec<String> {
    let mut out = Vec::new();
    check_windows(v, attr, content, &mut out);
    if let Err(e) = check_seek(v, attr, content, &mut out) {
        out.push(format!("seek: {e}"));
    }
    check_blocks(v, attr, content, flushed, &mut out);
    out
}

/// Reads of a few windows — across block edges, at the end, past the end — against `content`.
fn check_windows(v: &Volume, attr: &Attr, content: &[u8], out: &mut Vec<String>) {
    let size = content.len() as u64;
    let bs = v.block_size() as u64;
    let windows = [
        (bs.saturating_sub(7), 20),
        ((size / 2) | 1, 3 * bs as usize + 5),
        (size.saturating_sub(3), 10),
        (size, 10),
        (size + bs + 5, 10),
    ];
    for (offset, len) in windows {
        let start = offset.min(size) as usize;
        let end = (offset.saturating_add(len as u64)).min(size) as usize;
        match v.read(attr.node, offset, len) {
            Ok(got) if got == content[start..end.max(start)] => {}
            Ok(got) => out.push(format!(
                "reading {len} bytes at {offset} gives {} bytes that differ from the whole read",
                got.len()
            )),
            Err(e) => out.push(format!("reading {len} bytes at {offset}: {e}")),
        }
    }
}

/// Where SEEK_DATA from `offset` lands: `None` when there is no data after it (ENXIO).
fn seek(v: &Volume, attr: &Attr, offset: u64, target: SeekTarget) -> tessera::Result<Option<u64>> {
    match v.seek(attr.node, offset, target) {
        Ok(at) => Ok(Some(at)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Walks the file by SEEK_DATA / SEEK_HOLE: every stretch it calls a hole reads as zeros,
/// every data stretch is nonempty, and both stay within the file.
fn check_seek(
    v: &Volume,
    attr: &Attr,
    content: &[u8],
    out: &mut Vec<String>,
) -> tessera::Result<()> {
    let size = content.len() as u64;
    let mut pos = 0;
    while pos < size {
        let data = seek(v, attr, pos, SeekTarget::Data)?.unwrap_or(size);
        if data < pos || data > size {
            out.push(format!("SEEK_DATA from {pos} gives {data} (size {size})"));
            return Ok(());
        }
        let hole = &content[pos as usize..data as usize];
        if let Some(i) = (!is_zero(hole))
            .then(|| hole.iter().position(|b| *b != 0))
            .flatten()
        {
            out.push(format!(
                "SEEK_DATA from {pos} skips to {data}, but byte {} is not zero",
                pos + i as u64
            ));
        }
        if data == size {
            break;
        }
        let hole = seek(v, attr, data, SeekTarget::Hole)?;
        match hole {
            Some(hole) if hole > data && hole <= size => pos = hole,
            _ => {
                out.push(format!("SEEK_HOLE from data at {data} gives {hole:?}"));
                return Ok(());
            }
        }
    }
    for target in [SeekTarget::Data, SeekTarget::Hole] {
        if let Some(at) = seek(v, attr, size, target)? {
            out.push(format!("{target:?} from the end ({size}) gives {at}"));
        }
    }
    Ok(())
}

/// `st_blocks`: at most the blocks the size covers; once flushed, exactly the nonzero blocks.
fn check_blocks(v: &Volume, attr: &Attr, content: &[u8], flushed: bool, out: &mut Vec<String>) {
    let bs = v.block_size() as usize;
    let per_block = bs as u64 / 512;
    let covered = content.len().div_ceil(bs) as u64 * per_block;
    let nonzero = content.chunks(bs).filter(|block| !is_zero(block)).count() as u64 * per_block;
    if attr.blocks > covered {
        out.push(format!(
            "st_blocks {} is more than the {covered} its {} bytes can hold",
            attr.blocks,
            content.len()
        ));
    } else if flushed && attr.blocks != nonzero {
        out.push(format!(
            "st_blocks {} once flushed, but {nonzero} are not zero",
            attr.blocks
        ));
    }
}

/// Whether `bytes` are all zero (compared a slice at a time: byte loops are slow in test builds).
fn is_zero(bytes: &[u8]) -> bool {
    static ZEROS: [u8; 65536] = [0; 65536];
    bytes.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}
