//! Invariant 3 of docs/design.md: the first write of N bytes into a lower file costs O(N + block size)
//! data and O(log size) metadata, measured in bytes written and read through the I/O seam.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tessera::Store;
use tessera::StoreOptions;
use tessera::io::StorageIo;
use tessera::io::{AlignedBuf, Io, IoFile, Mapped, OpenMode, RealIo};
use tessera_tests::invariants::*;
use tessera_tests::{bytes, node_at, write_file};

/// Bytes the store moved through the I/O seam, by kind of file.
#[derive(Debug, Default)]
struct Counters {
    pack_written: AtomicU64,
    pack_read: AtomicU64,
    meta_written: AtomicU64,
}

/// `RealIo` counting what goes through it.
#[derive(Debug)]
struct CountingIo {
    inner: RealIo,
    counters: Arc<Counters>,
}

#[derive(Debug)]
struct CountingFile {
    inner: Arc<dyn IoFile>,
    pack: bool,
    counters: Arc<Counters>,
}

impl CountingFile {
    fn count(&self, read: bool, n: usize) {
        let c = &self.counters;
        let counter = match (self.pack, read) {
            (true, true) => &c.pack_read,
            (true, false) => &c.pack_written,
            (false, false) => &c.meta_written,
            (false, true) => return,
        };
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
}

impl StorageIo for CountingIo {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Arc<dyn IoFile>> {
        let pack = path.extension().is_some_and(|e| e == "pack");
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(CountingFile {
            inner,
            pack,
            counters: self.counters.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
        self.inner.list_dir(path)
    }
    fn available_space(&self, path: &Path) -> std::io::Result<u64> {
        self.inner.available_space(path)
    }
    fn allocated_bytes(&self, path: &Path) -> std::io::Result<u64> {
        self.inner.allocated_bytes(path)
    }
}

impl IoFile for CountingFile {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.count(true, buf.len());
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
        self.count(false, data.len());
        self.inner.write_all_at(data, offset)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn read_direct(&self, buf: &mut AlignedBuf, offset: u64) -> std::io::Result<()> {
        self.count(true, buf.len());
        self.inner.read_direct(buf, offset)
    }
    fn map(&self) -> std::io::Result<Mapped> {
        self.inner.map()
    }
    fn drop_cache(&self) {
        self.inner.drop_cache()
    }
}

/// What one first write into a lower file cost.
#[derive(Debug)]
struct Cost {
    block_bytes: u64,
    disk_growth: u64,
    pack_written: u64,
    pack_read: u64,
    meta_written: u64,
    /// Time of the write and its fsync.
    millis: u128,
}

/// Writes `data` at `offset` into `path` of a fresh container on image "lower", fsyncs, and
/// measures what that cost; checks the bytes read back.
fn first_write(store: &Store, counters: &Counters, path: &str, offset: u64, data: &[u8]) -> Cost {
    let container = format!("c-{}-{offset}", path.replace('/', "-"));
    store.create_container(&container, "lower").unwrap();
    let v = store.open_container(&container).unwrap();
    let node = node_at(&v, path);
    let edges = (offset.saturating_sub(10), data.len() + 20);
    let around = v.read(node, edges.0, edges.1).unwrap();
    store.sync().unwrap();
    let take = |c: &AtomicU64| c.load(Ordering::SeqCst);
    let before = (
        store.block_store_stats().block_bytes,
        store.disk_usage().unwrap(),
    );
    let io_before = [
        &counters.pack_written,
        &counters.pack_read,
        &counters.meta_written,
    ]
    .map(take);
    let started = Instant::now();
    v.write(node, offset, data).unwrap();
    v.fsync(node).unwrap();
    let millis = started.elapsed().as_millis();
    let io = [
        &counters.pack_written,
        &counters.pack_read,
        &counters.meta_written,
    ]
    .map(take);
    let mut expected = around;
    let at = (offset - edges.0) as usize;
    expected[at..at + data.len()].copy_from_slice(data);
    assert!(
        v.read(node, edges.0, edges.1).unwrap() == expected,
        "{path}: wrong bytes"
    );
    Cost {
        block_bytes: store.block_store_stats().block_bytes - before.0,
        disk_growth: store.disk_usage().unwrap().saturating_sub(before.1),
        pack_written: io[0] - io_before[0],
        pack_read: io[1] - io_before[1],
        meta_written: io[2] - io_before[2],
        millis,
    }
}

#[test]
fn invariant_3_copy_up_is_proportional() {
    let bs = 64 * KIB; // the default block size
    let dir = tempfile::tempdir().unwrap();
    let counters = Arc::new(Counters::default());
    let io: Io = Arc::new(CountingIo {
        inner: RealIo,
        counters: counters.clone(),
    });
    let options = StoreOptions::default().flush_interval(None).io(io);
    let store = Store::init(dir.path().join("store"), options).unwrap();
    assert_eq!(store.block_size() as u64, bs);
    store.create_empty_image("empty").unwrap();
    store.create_container("build", "empty").unwrap();
    {
        let v = store.open_container("build").unwrap();
        let big = create(&v, "big");
        for i in 0..64 * MIB / bs {
            let mut block = vec![(i % 251) as u8 + 1; bs as usize];
            block[..8].copy_from_slice(&i.to_le_bytes());
            v.write(big, i * bs, &block).unwrap();
        }
        let sparse = create(&v, "sparse");
        set_size(&v, sparse, 16 << 30);
        for offset in [0, 8 << 30, (16 << 30) - bs] {
            v.write(sparse, offset, &bytes(offset, bs as usize))
                .unwrap();
        }
        write_file(&v, "small", &bytes(5, bs as usize));
    }
    store.commit_container("build", "lower").unwrap();

    let cases: [(&str, u64, usize); 5] = [
        ("small", bs / 2 - 50, 100),
        ("big", 32 * MIB - 50, 100),
        ("sparse", (8 << 30) - 50, 100),
        ("big", 10 * MIB + 1000, 300 * KIB as usize),
        ("sparse", (12 << 30) + 7, 300 * KIB as usize),
    ];
    for (path, offset, n) in cases {
        let cost = first_write(&store, &counters, path, offset, &bytes(offset + 1, n));
        let ms = cost.millis;
        println!("first write of {n} bytes into {path} at {offset} ({ms} ms): {cost:?}");
        let n = n as u64;
        let touched = (offset + n).div_ceil(bs) - offset / bs;
        let context = format!("{n} bytes into {path} at {offset}: {cost:?}");
        assert!(touched <= n / bs + 2, "{context}");
        assert!(
            cost.block_bytes <= touched * bs,
            "data beyond the blocks written: {context}"
        );
        assert!(
            cost.pack_written <= touched * bs + 4 * KIB,
            "pack writes: {context}"
        );
        assert!(
            cost.pack_read <= 2 * bs,
            "copy-up read more than the edge blocks: {context}"
        );
        assert!(
            cost.meta_written <= MIB,
            "metadata is not O(log size): {context}"
        );
        assert!(
            cost.disk_growth <= MIB + touched * bs,
            "disk growth: {context}"
        );
    }
}
