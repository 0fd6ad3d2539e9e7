//! Stores and images the benches measure against: a store in a temporary directory (removed
//! on drop, after the store is closed), the store's space figures, and images holding one big
//! file built through the Volume API (sparse for copy-up, fully written for reads). Fixture
//! building is setup: benches call it before their measured loops, never inside them.

use std::ops::Range;
use std::path::{Path, PathBuf};

use tessera::volume::Volume;
use tessera::{Caller, NodeId, SetAttr, Store, StoreOptions};

use crate::data;

/// Options of bench stores: the defaults (64 KiB blocks, 256 MiB packs, 256 MiB dirty limit,
/// no block cache) except that no background flusher runs, so nothing but the measured
/// operation touches the disk while it is measured.
pub fn bench_options() -> StoreOptions {
    StoreOptions::default().flush_interval(None)
}

/// A store in a temporary directory under `$TMPDIR` (default /tmp). Derefs to the open store;
/// on drop the store is closed first, then the directory removed.
pub struct BenchStore {
    store: Option<Store>,
    dir: tempfile::TempDir,
}

impl BenchStore {
    pub fn new(options: StoreOptions) -> BenchStore {
        let dir = tempfile::Builder::new()
            .prefix("tessera-bench-")
            .tempdir()
            .expect("creating a temporary directory");
        let store = Store::init(dir.path().join("store"), options).expect("initialising a store");
        BenchStore {
            store: Some(store),
            dir,
        }
    }

    /// The directory the store lives in (scratch files may go beside it: same disk).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Closes the store and opens it again with `options` (e.g. another block cache size).
    /// Every volume of it must be dropped first.
    pub fn reopen(&mut self, options: StoreOptions) {
        drop(self.store.take());
        self.store = Some(Store::open(self.store_path(), options).expect("reopening the store"));
    }
}

impl std::ops::Deref for BenchStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store.as_ref().expect("the store is open")
    }
}

impl Drop for BenchStore {
    fn drop(&mut self) {
        drop(self.store.take());
    }
}

/// What a store occupies: allocated bytes on disk (`Store::disk_usage`: packs and metadata
/// database) and bytes of block data held (`BlockStoreStats::block_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub allocated: u64,
    pub block_bytes: u64,
}

impl Usage {
    pub fn of(store: &Store) -> Usage {
        Usage {
            allocated: store.disk_usage().expect("measuring the store"),
            block_bytes: store.block_store_stats().block_bytes,
        }
    }

    /// Growth from `before` to `self`, as signed numbers (a database can shrink).
    pub fn growth_since(&self, before: &Usage) -> Growth {
        Growth {
            allocated: self.allocated as i64 - before.allocated as i64,
            block_bytes: self.block_bytes as i64 - before.block_bytes as i64,
        }
    }
}

/// The difference of two [`Usage`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Growth {
    pub allocated: i64,
    pub block_bytes: i64,
}

/// Creates `name` (a regular file) at the root of a volume.
pub fn create_file(volume: &Volume, name: &str) -> NodeId {
    volume
        .create(volume.root(), name.as_bytes(), 0o644, Caller::ROOT)
        .expect("creating the file")
        .node
}

/// Sets a file's size (a sparse extension: no block is stored).
pub fn set_size(volume: &Volume, node: NodeId, size: u64) {
    let change = SetAttr {
        size: Some(size),
        ..Default::default()
    };
    volume.setattr(node, &change).expect("setting the size");
}

/// Writes the random bytes of stream `seed` into `ranges` of a file, 1 MiB at a time. The
/// bytes at offset `o` are always chunk `o / 1 MiB` of the stream, so every block is unique.
pub fn write_ranges(volume: &Volume, node: NodeId, seed: u64, ranges: &[Range<u64>]) {
    let chunk = data::CHUNK as u64;
    for range in ranges {
        let mut offset = range.start;
        while offset < range.end {
            let index = offset / chunk;
            let end = ((index + 1) * chunk).min(range.end);
            let bytes = data::random_chunk(seed, index, chunk as usize);
            let skip = (offset - index * chunk) as usize;
            let part = &bytes[skip..skip + (end - offset) as usize];
            volume.write(node, offset, part).expect("writing");
            offset = end;
        }
    }
}

/// The byte the file built by [`write_ranges`] holds at `offset` (inside a written range).
pub fn byte_at(seed: u64, offset: u64) -> u8 {
    let chunk = data::CHUNK as u64;
    let bytes = data::random_chunk(seed, offset / chunk, data::CHUNK);
    bytes[(offset % chunk) as usize]
}

/// A one-file image: which image, which file, how big.
#[derive(Debug, Clone)]
pub struct FileImage {
    pub image: String,
    pub file: String,
    pub size: u64,
}

/// Builds image `image` holding one file `file` of `size` bytes, of which only `ranges` hold
/// data (random, stream `seed`); the rest are holes. Built as a user would: an empty image, a
/// container, create, `setattr(size)`, writes, fsync, commit. The container is removed after.
pub fn build_file_image(
    store: &Store,
    image: &str,
    file: &str,
    size: u64,
    seed: u64,
    ranges: &[Range<u64>],
) -> FileImage {
    let empty = format!("{image}-base");
    let builder = format!("{image}-builder");
    store.create_empty_image(&empty).expect("empty image");
    store.create_container(&builder, &empty).expect("container");
    {
        let volume = store
            .open_container(&builder)
            .expect("opening the container");
        let node = create_file(&volume, file);
        set_size(&volume, node, size);
        write_ranges(&volume, node, seed, ranges);
        volume.fsync(node).expect("fsync");
        store.commit_container(&builder, image).expect("commit");
    }
    store
        .remove_container(&builder)
        .expect("removing the builder");
    FileImage {
        image: image.to_string(),
        file: file.to_string(),
        size,
    }
}

/// Times `rounds` appends of 4 KiB + `fdatasync` to a scratch file in `dir`: the floor under
/// any durable operation on that disk (the engine's fsync syncs a pack, then commits redb).
pub fn sync_latency(dir: &Path, rounds: usize) -> Vec<std::time::Duration> {
    use std::io::Write;
    let path = dir.join("sync-latency.tmp");
    let mut file = std::fs::File::create(&path).expect("creating a scratch file");
    let page = [0x5au8; 4096];
    let times = (0..rounds)
        .map(|_| {
            let start = std::time::Instant::now();
            file.write_all(&page).expect("appending");
            file.sync_data().expect("fdatasync");
            start.elapsed()
        })
        .collect();
    drop(file);
    let _ = std::fs::remove_file(&path);
    times
}

/// Whether this is a real measurement (`cargo bench` passes `--bench`) rather than the one
/// quick pass of `cargo test --benches`, where benches shrink their data sets.
pub fn full_run() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_image_reads_back() {
        let store = BenchStore::new(bench_options());
        let size = 8 << 20;
        let bs = store.block_size() as u64;
        let extents = data::sparse_extents(size, bs, 2);
        let before = Usage::of(&store);
        let image = build_file_image(&store, "img", "big.bin", size, 5, &extents);
        let grown = Usage::of(&store).growth_since(&before);
        let stored: u64 = extents.iter().map(|r| r.end - r.start).sum();
        assert_eq!(grown.block_bytes, stored as i64);
        let volume = store.open_image(&image.image).unwrap();
        let attr = volume.resolve(b"big.bin").unwrap();
        assert_eq!(attr.size, size);
        let mid = size / 2;
        assert_eq!(volume.read(attr.node, mid, 1).unwrap(), [byte_at(5, mid)]);
        // A hole reads as zeros.
        assert_eq!(volume.read(attr.node, 2 << 20, 4).unwrap(), [0; 4]);
    }
}
