//! The layout of a remote in its bucket (version 1, docs/design.md §8), computed in one place,
//! and the bytes of the objects the block store writes: packs and their indexes. No I/O here.
//!
//! ```text
//! PREFIX/tessera/v1/format            "tessera remote layout 1\nblock size N\n"
//! PREFIX/tessera/v1/packs/HASH.pack   a sealed pack (format/pack.rs), never rewritten
//! PREFIX/tessera/v1/packs/HASH.idx    its index (format/pack_index.rs); written after the pack
//! PREFIX/tessera/v1/images/NAME       one manifest per image, written last
//! PREFIX/tessera/v1/leases/KIND-ID    a push, a lazy pull or a gc under way (transfer/lease.rs)
//! PREFIX/tessera/v1/holds/ID          the packs a store backed by the remote relies on
//!                                     (transfer/hold.rs)
//! ```
//! HASH is the blake3 of the pack object's bytes: two hosts that upload packs at once never
//! pick the same name for different bytes, and a name always means the same bytes.

use crate::error::{Error, Result};
use crate::format::pack::{self, PackHeader};
use crate::format::pack_index::{self, Entry, IndexView};
use crate::ids::BlockId;

/// The layout version, part of every key.
pub const LAYOUT_VERSION: u32 = 1;

pub fn format_key() -> String {
    format!("tessera/v{LAYOUT_VERSION}/format")
}

pub fn packs_dir() -> String {
    format!("tessera/v{LAYOUT_VERSION}/packs")
}

pub fn pack_key(name: &PackName) -> String {
    format!("{}/{}.pack", packs_dir(), name.0)
}

pub fn index_key(name: &PackName) -> String {
    format!("{}/{}.idx", packs_dir(), name.0)
}

pub fn images_dir() -> String {
    format!("tessera/v{LAYOUT_VERSION}/images")
}

pub fn image_key(name: &str) -> String {
    format!("{}/{name}", images_dir())
}

/// Leases of the pushes and `gc --remote` runs under way (`transfer/lease.rs`).
pub fn leases_dir() -> String {
    format!("tessera/v{LAYOUT_VERSION}/leases")
}

pub fn lease_key(name: &str) -> String {
    format!("{}/{name}", leases_dir())
}

/// Holds of the stores backed by the remote (`transfer/hold.rs`).
pub fn holds_dir() -> String {
    format!("tessera/v{LAYOUT_VERSION}/holds")
}

pub fn hold_key(id: &str) -> String {
    format!("{}/{id}", holds_dir())
}

/// The text of the format object.
pub fn format_object(block_size: u32) -> Vec<u8> {
    format!("tessera remote layout {LAYOUT_VERSION}\nblock size {block_size}\n").into_bytes()
}

/// The block size a format object names; an error for another layout version.
pub fn parse_format_object(bytes: &[u8]) -> Result<u32> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines();
    let layout = lines.next().unwrap_or_default();
    if layout != format!("tessera remote layout {LAYOUT_VERSION}") {
        return Err(Error::Unsupported(format!(
            "remote layout {layout:?} (this build reads layout {LAYOUT_VERSION})"
        )));
    }
    lines
        .next()
        .and_then(|l| l.strip_prefix("block size "))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Corrupt("remote format object names no block size".into()))
}

/// The name of a remote pack: the hex blake3 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackName(pub String);

impl PackName {
    /// Parses the file name of a pack or index object (`HASH.pack`, `HASH.idx`).
    pub fn from_file_name(name: &str) -> Option<(PackName, bool)> {
        let (stem, ext) = name.split_once('.')?;
        let is_index = match ext {
            "idx" => true,
            "pack" => false,
            _ => return None,
        };
        let hex = stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then(|| (PackName(stem.to_ascii_lowercase()), is_index))
    }
}

/// A pack object ready to upload and its index.
pub struct PackObject {
    pub name: PackName,
    pub bytes: Vec<u8>,
    pub index: Vec<u8>,
}

/// The pack and index format of remote packs: version 1, uncompressed blocks, unpadded (a
/// reader fetches exactly a block's bytes with one ranged GET). A store's packs may be compressed
/// (version 2); what it uploads is built anew from the blocks, as this format.
const REMOTE_PACK_VERSION: u32 = 1;

/// Builds one pack object holding `blocks` (one segment) and its index.
pub fn encode_pack(block_size: u32, blocks: &[(BlockId, &[u8])]) -> PackObject {
    let header = PackHeader {
        version: REMOTE_PACK_VERSION,
        block_size,
        // Remote packs are named by their hash; the id field is unused.
        pack_id: 0,
    };
    let mut bytes = header.encode();
    let lens: Vec<pack::SegmentEntry> = blocks
        .iter()
        .map(|(id, d)| (*id, d.len() as u32, false))
        .collect();
    bytes.extend_from_slice(&pack::encode_segment_header(&lens));
    let mut entries = Vec::with_capacity(blocks.len());
    // Blocks follow each other without the padding a local pack has for O_DIRECT reads: a
    // remote pack is only ever read by ranges its index names.
    for (id, data) in blocks {
        entries.push((*id, Entry::plain(bytes.len() as u64, data.len() as u32)));
        bytes.extend_from_slice(data);
    }
    let name = PackName(blake3::hash(&bytes).to_hex().to_string());
    let index = pack_index::encode(REMOTE_PACK_VERSION, 0, bytes.len() as u64, &mut entries);
    PackObject { name, bytes, index }
}

/// A remote pack's blocks and where each lies in the pack object.
pub type IndexEntries = Vec<(BlockId, Entry)>;

/// The entries of an index object, checked (magic, version, checksum, sorted).
pub fn decode_index(name: &PackName, bytes: &[u8]) -> Result<IndexEntries> {
    let view = IndexView::parse(bytes, true)
        .map_err(|e| Error::Corrupt(format!("index of remote pack {}: {e}", name.0)))?;
    Ok(view.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_round_trip_through_their_index() {
        let a = vec![7u8; 5000];
        let b = vec![9u8; 10];
        let blocks = [(BlockId::of(&a), &a[..]), (BlockId::of(&b), &b[..])];
        let object = encode_pack(65536, &blocks);
        let entries = decode_index(&object.name, &object.index).unwrap();
        assert_eq!(entries.len(), 2);
        for (id, entry) in entries {
            let start = entry.offset as usize;
            let data = &object.bytes[start..start + entry.len as usize];
            assert_eq!(BlockId::of(data), id);
        }
        let file = format!("{}.idx", object.name.0);
        assert_eq!(PackName::from_file_name(&file), Some((object.name, true)));
        assert_eq!(parse_format_object(&format_object(65536)).unwrap(), 65536);
    }
}
