//! Dedup and sharing accounting (`tessera stats`), by the definitions of DESIGN.md §7:
//!
//! - logical bytes: file sizes as the views of images and containers show them (each view
//!   counted); zero bytes (holes, zero blocks) counted apart;
//! - referenced blocks: distinct blocks any layer's files reference; stored: distinct blocks in
//!   the packs; pack bytes: what the packs occupy (headers, padding and garbage included);
//!   reclaimable: stored block bytes nothing references (what gc can free);
//! - dedup ratio: logical non-zero bytes ÷ bytes of the distinct referenced blocks;
//! - per image and container: the blocks of all its layers (what keeps them stored) —
//!   exclusive (no other image or container references them) and shared;
//! - copy-up, per layer: a file record that replaces a lower version of the same node adds the
//!   blocks whose ids differ at their position; whole-file copy-up would add the file's size.
//!
//! Figures are exact for the committed and in-memory metadata; unflushed writes are not in them.

mod compute;

use serde::{Deserialize, Serialize};

pub use compute::{StatsOptions, exclusive_bytes, stats};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatsReport {
    pub block_size: u32,
    pub store: StoreFigures,
    pub owners: Vec<OwnerFigures>,
    pub layers: Vec<LayerFigures>,
    /// How many layers share each referenced block.
    pub sharing: Vec<SharingBucket>,
    pub top_shared_files: Vec<FileFigure>,
    pub top_copied_up_files: Vec<FileFigure>,
    /// For a store backed by a remote (a lazy pull): what is still only there, and what
    /// crossed the network.
    #[serde(default)]
    pub remote: Option<RemoteStatsFigures>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RemoteStatsFigures {
    /// Referenced blocks the local packs do not hold (fetched on first read), and their bytes.
    pub remote_only_blocks: u64,
    pub remote_only_bytes: u64,
    /// Bytes of the local packs: blocks fetched from the remote and the containers' writes.
    pub local_pack_bytes: u64,
    /// The limit on the remote's blocks kept locally (`pull --lazy --cache-size`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_limit: Option<u64>,
    /// Since the store was opened (in the daemon, since it started): blocks fetched and
    /// verified, their bytes, requests, and bytes uploaded.
    pub blocks_fetched: u64,
    pub bytes_fetched: u64,
    pub requests: u64,
    pub bytes_sent: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StoreFigures {
    pub images: u64,
    pub containers: u64,
    pub files: u64,
    pub logical_bytes: u64,
    pub zero_bytes: u64,
    pub referenced_blocks: u64,
    pub referenced_bytes: u64,
    pub stored_blocks: u64,
    /// Bytes the stored blocks take in the packs (after compression, before padding).
    pub stored_block_bytes: u64,
    /// How the store keeps new blocks (`none`, `zstd:LEVEL`).
    pub compression: String,
    /// Referenced bytes of the blocks held here over what they take stored.
    pub compression_ratio: f64,
    pub pack_bytes: u64,
    pub metadata_bytes: u64,
    pub reclaimable_bytes: u64,
    pub dedup_ratio: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OwnerFigures {
    /// "image" or "container".
    pub kind: String,
    pub name: String,
    pub layers: u64,
    pub files: u64,
    pub logical_bytes: u64,
    pub zero_bytes: u64,
    pub referenced_bytes: u64,
    /// What the referenced blocks take in the packs (after compression).
    pub stored_bytes: u64,
    pub exclusive_bytes: u64,
    pub shared_bytes: u64,
    pub copied_up_files: u64,
    pub copied_up_bytes: u64,
    pub whole_file_copy_up_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LayerFigures {
    pub layer: u64,
    pub parent: Option<u64>,
    pub records: u64,
    /// Bytes of the distinct blocks its file records reference.
    pub referenced_bytes: u64,
    /// Of those, bytes no layer below it references.
    pub new_bytes: u64,
    pub copied_up_files: u64,
    pub copied_up_bytes: u64,
    pub whole_file_copy_up_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SharingBucket {
    pub layers: u64,
    pub blocks: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileFigure {
    pub owner: String,
    pub path: String,
    pub size: u64,
    /// Shared bytes (top shared) or bytes added by copy-up (top copied-up).
    pub bytes: u64,
    /// Top copied-up only: what whole-file copy-up would have added.
    pub whole_file_bytes: u64,
}
