//! How a store is created and opened. Defaults are documented on each field; the CLI maps its
//! flags onto the chained setters.

use std::time::Duration;

use crate::io::Io;
use crate::store::Compression;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Block size of a new store: a power of two from 4 KiB to 1 MiB. Default 64 KiB.
    pub block_size: u32,
    /// A pack is sealed at this size. Default 256 MiB.
    pub pack_target: u64,
    /// How a new store keeps its blocks (fixed when it is made; opening uses the store's
    /// own). Default: none — zstd costs random 4 KiB reads and writes 7–12 % (measured
    /// 2026-12-07, docs/benchmarks.md), and the default favours them.
    pub compression: Compression,
    /// Verified blocks kept in memory by the daemon (share-memory mode). Default 0: the
    /// kernel's page cache above the mount is the only cache.
    pub block_cache_bytes: usize,
    /// Block-map pages kept in memory. Default 32 MiB.
    pub page_cache_bytes: usize,
    /// Dirty file data held in memory (including what a flush is storing) before writers must
    /// wait for a flush. Default: an eighth of the machine's memory, from 64 MiB to 4 GiB —
    /// room for random small writes to keep rewriting blocks in memory between flushes
    /// rather than each costing a block read and write.
    pub dirty_limit: u64,
    /// How often a background thread makes changes durable (`None`: never; only explicit
    /// syncs). Default 2 s, so any change is durable within 5 s.
    pub flush_interval: Option<Duration>,
    /// Whether the background flusher also reclaims space (see `maintenance::reclaimer`).
    /// Default true; needs `flush_interval`.
    pub background_reclaim: bool,
    /// Whether an fsync of a file whose changes are plain byte ranges appends them to the
    /// intent log and syncs it (one disk sync), replayed at the next open after a crash.
    /// Default true.
    pub intent_log: bool,
    /// redb's page cache. Default 32 MiB.
    pub db_cache_bytes: usize,
    /// The I/O implementation (default: the real file system, and the store is locked).
    pub io: Option<Io>,
    /// Tests only: keep blocks in a `MemoryStore` instead of packs, so whole-engine tests run
    /// over the other backend. Blocks do not outlive the process. Default false.
    pub blocks_in_memory: bool,
    /// The client of the remote the store is (or becomes, by a lazy pull) backed by. Default
    /// none: a store that a lazy pull backed by a remote connects with the AWS_* variables.
    pub remote: Option<crate::store::Remote>,
    /// The opening process serves on mounts whose kernel connections outlived the process
    /// before it (a daemon hand-over, or a daemon killed under its keeper). Files unlinked
    /// while open may still be open there, so orphans are kept (not swept), and node ids
    /// skip ahead of any that process gave out without making them durable, which the
    /// kernel may still hold. Default false.
    pub inherited_mounts: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            block_size: 64 * 1024,
            pack_target: 256 * 1024 * 1024,
            compression: Compression::None,
            block_cache_bytes: 0,
            page_cache_bytes: 32 * 1024 * 1024,
            dirty_limit: default_dirty_limit(),
            flush_interval: Some(Duration::from_secs(2)),
            background_reclaim: true,
            intent_log: true,
            db_cache_bytes: 32 * 1024 * 1024,
            io: None,
            blocks_in_memory: false,
            remote: None,
            inherited_mounts: false,
        }
    }
}

impl StoreOptions {
    pub fn block_size(mut self, bytes: u32) -> Self {
        self.block_size = bytes;
        self
    }
    pub fn pack_target(mut self, bytes: u64) -> Self {
        self.pack_target = bytes;
        self
    }
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }
    pub fn block_cache_bytes(mut self, bytes: usize) -> Self {
        self.block_cache_bytes = bytes;
        self
    }
    pub fn dirty_limit(mut self, bytes: u64) -> Self {
        self.dirty_limit = bytes;
        self
    }
    pub fn flush_interval(mut self, interval: Option<Duration>) -> Self {
        self.flush_interval = interval;
        self
    }
    pub fn background_reclaim(mut self, yes: bool) -> Self {
        self.background_reclaim = yes;
        self
    }
    pub fn inherited_mounts(mut self, yes: bool) -> Self {
        self.inherited_mounts = yes;
        self
    }
    pub fn intent_log(mut self, yes: bool) -> Self {
        self.intent_log = yes;
        self
    }
    pub fn io(mut self, io: Io) -> Self {
        self.io = Some(io);
        self
    }
    pub fn blocks_in_memory(mut self, yes: bool) -> Self {
        self.blocks_in_memory = yes;
        self
    }
    pub fn remote(mut self, remote: crate::store::Remote) -> Self {
        self.remote = Some(remote);
        self
    }
}

/// An eighth of the machine's memory, from 64 MiB to 4 GiB (256 MiB when unknown).
fn default_dirty_limit() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
    match total {
        Some(bytes) => (bytes / 8).clamp(64 << 20, 4 << 30),
        None => 256 << 20,
    }
}

/// Parses sizes such as `4096`, `64K`, `1M`, `2G` (binary units).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let shift = match unit
        .trim_end_matches(['i', 'B', 'b'])
        .to_ascii_uppercase()
        .as_str()
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64K"), Some(65536));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("12Q"), None);
    }
}
