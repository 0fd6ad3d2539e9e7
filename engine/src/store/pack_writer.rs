//! The open pack: appends segments of blocks at its end. Never rewrites a byte it wrote.

use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::format::pack::{self, PackHeader, SegmentEntry};
use crate::format::pack_index::Entry;
use crate::ids::{BlockId, PackId};
use crate::io::{AlignedBuf, IoFile, OpenMode, StorageIo};
use crate::layout::StoreLayout;

/// A block as a pack holds it: its bytes, compressed or not.
pub(super) struct StoredBlock<'a> {
    pub id: BlockId,
    pub bytes: &'a [u8],
    pub compressed: bool,
}

impl<'a> StoredBlock<'a> {
    /// Pairs blocks with their compressed forms (`None`: kept as they are).
    pub fn pair(
        blocks: &'a [(BlockId, &'a [u8])],
        frames: &'a [Option<Vec<u8>>],
    ) -> Vec<StoredBlock<'a>> {
        blocks
            .iter()
            .zip(frames)
            .map(|((id, data), frame)| StoredBlock {
                id: *id,
                bytes: frame.as_deref().unwrap_or(data),
                compressed: frame.is_some(),
            })
            .collect()
    }
}

/// The most blocks one segment header lists; larger batches become several segments.
const MAX_SEGMENT_BLOCKS: usize = 1024;

pub(super) struct PackWriter {
    pub id: PackId,
    pub file: Arc<dyn IoFile>,
    /// Bytes written (the next segment starts here).
    pub len: u64,
    /// Whether bytes were written since the last `sync`.
    pub unsynced: bool,
    /// Bytes appended since writeback was last started.
    pub unkicked: u64,
}

/// Appending this much starts the kernel's writeback of the pack, so a large flush or import
/// does not leave all of its bytes for the final fdatasync.
const WRITEBACK_KICK: u64 = 32 << 20;

impl PackWriter {
    /// Creates a new pack file with its header and makes its name durable.
    pub fn create(
        io: &dyn StorageIo,
        layout: &StoreLayout,
        id: PackId,
        header: PackHeader,
    ) -> Result<PackWriter> {
        let path = layout.pack(id);
        let file = io
            .open(&path, OpenMode::Create)
            .ctx(|| format!("creating pack {}", path.display()))?;
        file.set_len(0)
            .ctx(|| format!("truncating pack {}", path.display()))?;
        file.write_all_at(&header.encode(), 0)
            .ctx(|| format!("writing pack header {}", path.display()))?;
        io.sync_dir(&layout.packs_dir())
            .ctx(|| format!("syncing {}", layout.packs_dir().display()))?;
        Ok(PackWriter {
            id,
            file,
            len: pack::HEADER_LEN,
            unsynced: true,
            unkicked: 0,
        })
    }

    /// Appends the blocks as one or more segments; returns where each landed.
    pub fn append(&mut self, blocks: &[StoredBlock<'_>]) -> Result<Vec<(BlockId, Entry)>> {
        let mut placed = Vec::with_capacity(blocks.len());
        for chunk in blocks.chunks(MAX_SEGMENT_BLOCKS) {
            let entries: Vec<SegmentEntry> = chunk
                .iter()
                .map(|b| (b.id, b.bytes.len() as u32, b.compressed))
                .collect();
            let header = pack::encode_segment_header(&entries);
            let total = header.len() + pack::segment_data_len(&entries) as usize;
            // Built aligned and written with direct I/O: the pack's bytes never pass through
            // the page cache (they would only be dropped from it again).
            let mut segment = AlignedBuf::new(total);
            segment[..header.len()].copy_from_slice(&header);
            let mut at = header.len();
            for block in chunk {
                let data = block.bytes;
                placed.push((
                    block.id,
                    Entry {
                        offset: self.len + at as u64,
                        len: data.len() as u32,
                        compressed: block.compressed,
                    },
                ));
                segment[at..at + data.len()].copy_from_slice(data);
                at += pack::aligned(data.len() as u64) as usize;
            }
            debug_assert_eq!(at, total);
            self.file
                .write_direct(&segment, self.len)
                .map_err(|e| Error::io(format!("appending to pack {}", self.id), e))?;
            self.len += segment.len() as u64;
            self.unsynced = true;
            self.unkicked += segment.len() as u64;
        }
        if self.unkicked >= WRITEBACK_KICK {
            // posix_fadvise(DONTNEED) starts writeback of the dirty pages without waiting.
            self.file.drop_cache();
            self.unkicked = 0;
        }
        Ok(placed)
    }

    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced {
            self.file
                .sync_data()
                .map_err(|e| Error::io(format!("syncing pack {}", self.id), e))?;
            self.file.drop_cache();
            self.unsynced = false;
            self.unkicked = 0;
        }
        Ok(())
    }
}
