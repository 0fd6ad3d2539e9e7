//! One test per engine-level invariant of DESIGN.md §2, each written to fail if its invariant
//! broke (invariants 6 and 7 concern the FUSE mount and are tested there):
//!
//! 1. a block the store already holds (sealed pack, open pack, same flush) adds no data;
//! 2. lower layers never change: a write in one container is invisible everywhere else;
//! 3. the first write of N bytes into a lower file costs O(N + block size) data and
//!    O(log size) metadata — measured in bytes written and read through the I/O seam;
//! 4. a corrupt pack byte gives a `Corrupt` error naming the pack and offset, never wrong bytes;
//! 5. durable points survive a simulated power cut (compact; `crash.rs` has the random one);
//! 8. an open-but-unlinked file lives until its release (through commit and gc), and a crash
//!    sweeps it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tessera::io::StorageIo;
use tessera::io::{AlignedBuf, Io, IoFile, Mapped, OpenMode, RealIo, SimIo, SimOptions};
use tessera::maintenance::GcOptions;
use tessera::volume::Volume;
use tessera::{Attr, Caller, ErrorKind, FileKind, NodeId, RenameFlags, SetAttr, Store};
use tessera::{StoreOptions, XattrMode};
use tessera_tests::{TempStore, bytes, node_at, read_file, small_tree, write_file};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn set_size(v: &Volume, node: NodeId, size: u64) {
    let change = SetAttr {
        size: Some(size),
        ..Default::default()
    };
    v.setattr(node, &change).unwrap();
}

fn create(v: &Volume, path: &str) -> NodeId {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    v.create(node_at(v, dir), name.as_bytes(), 0o644, Caller::ROOT)
        .unwrap()
        .node
}

/// Bytes of block data the store holds, and of its packs.
fn held(store: &Store) -> (u64, u64) {
    let stats = store.block_store_stats();
    (stats.block_bytes, stats.pack_bytes)
}

/// Runs `f` and returns how much block data and pack space it added.
fn growth(store: &Store, f: impl FnOnce()) -> (u64, u64) {
    let before = held(store);
    f();
    let after = held(store);
    (after.0 - before.0, after.1 - before.1)
}

#[test]
fn invariant_1_dedup() {
    let bs = 64 * KIB as usize;
    let t = TempStore::new(bs as u32);
    let block = |seed| bytes(seed, bs);
    let (a, b, tail) = (block(1), block(2), bytes(3, 1000));
    let src = t.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("ab"), [&a[..], &b, &tail].concat()).unwrap();
    t.import_path(&src, "base").unwrap(); // sealed packs (adopted)
    t.create_container("c1", "base").unwrap();
    t.create_container("c2", "base").unwrap();
    let (v1, v2) = (
        t.open_container("c1").unwrap(),
        t.open_container("c2").unwrap(),
    );

    // Blocks held in a sealed pack, written again in other files, whole or as a short tail.
    let no_growth = growth(&t, || {
        write_file(&v1, "x", &[&b[..], &a].concat());
        write_file(&v1, "tail", &tail);
        t.sync().unwrap();
    });
    assert_eq!(no_growth, (0, 0), "sealed-pack blocks were stored again");

    // A new block costs one block and one entry (the measurement sees new data) ...
    let d = block(4);
    let one_block = growth(&t, || {
        write_file(&v1, "d", &d);
        v1.fsync(node_at(&v1, "d")).unwrap();
    });
    assert_eq!(one_block.0, bs as u64);
    // (That one opened a pack; measure a new block in the open pack.)
    let one_block = growth(&t, || {
        write_file(&v1, "f", &block(6));
        v1.fsync(node_at(&v1, "f")).unwrap();
    });
    assert_eq!(one_block.0, bs as u64);
    // ... and once in the open pack, nothing more: other files, containers, offsets.
    let no_growth = growth(&t, || {
        write_file(&v1, "d-again", &[&a[..], &d].concat());
        write_file(&v2, "d", &d);
        let node = create(&v2, "at-an-offset");
        v2.write(node, 5 * bs as u64, &d).unwrap();
        t.sync().unwrap();
    });
    assert_eq!(no_growth, (0, 0), "open-pack blocks were stored again");

    // One block written into several files and offsets of one flush is stored once (the
    // pack grows by one entry), and a flush of another container adds nothing.
    let e = block(5);
    let stored = growth(&t, || {
        write_file(&v1, "e1", &e);
        write_file(&v1, "e2", &[&e[..], &e].concat());
        v1.sync().unwrap();
        write_file(&v2, "e3", &e);
        t.sync().unwrap();
    });
    assert_eq!(stored, one_block, "one flush stored a block twice");

    // Across layers and containers: a container on a committed image, and a re-import.
    drop(v1);
    t.commit_container("c1", "snap").unwrap();
    t.create_container("c3", "snap").unwrap();
    let v3 = t.open_container("c3").unwrap();
    let no_growth = growth(&t, || {
        write_file(&v3, "all", &[&a[..], &b, &d, &e, &tail].concat());
        t.sync().unwrap();
        let report = t.import_path(&src, "again").unwrap();
        assert_eq!(report.added_bytes, 0, "a re-import stored data");
    });
    assert_eq!(
        no_growth,
        (0, 0),
        "blocks of other layers were stored again"
    );
    assert_eq!(read_file(&v3, "all").len(), 4 * bs + 1000);
}

/// What a view shows, path by path: attributes, a hash of the content or link target, xattrs.
type Seen = BTreeMap<String, (Attr, u64, Vec<(Vec<u8>, Vec<u8>)>)>;

fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn seen(v: &Volume) -> Seen {
    let mut out = Seen::new();
    let mut dirs = vec![(v.root(), String::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        for e in v.list_dir(dir).unwrap() {
            let path = format!("{prefix}/{}", String::from_utf8_lossy(&e.name));
            let attr = v.getattr(e.node).unwrap();
            let data = match e.kind {
                FileKind::File => v.read(e.node, 0, attr.size as usize).unwrap(),
                FileKind::Symlink => v.readlink(e.node).unwrap(),
                _ => Vec::new(),
            };
            let names = v.listxattr(e.node).unwrap();
            let xattrs = names
                .into_iter()
                .map(|n| (v.getxattr(e.node, &n).unwrap(), n));
            let xattrs = xattrs.map(|(value, name)| (name, value)).collect();
            if e.kind == FileKind::Dir {
                dirs.push((e.node, path.clone()));
            }
            out.insert(path, (attr, hash(&data), xattrs));
        }
    }
    out
}

fn image(t: &Store, name: &str) -> Seen {
    seen(&t.open_image(name).unwrap())
}

#[test]
fn invariant_2_lower_layers_never_change() {
    let mut t = TempStore::new(4096);
    let src = t.dir.path().join("src");
    small_tree(&src);
    std::fs::write(src.join("usr/lib/other.bin"), bytes(9, 50_000)).unwrap();
    t.import_path(&src, "base").unwrap();
    let base = image(&t, "base");
    let base_info = t.images().unwrap()[0].clone();
    for c in ["c1", "c2"] {
        t.create_container(c, "base").unwrap();
    }
    let (v1, v2) = (
        t.open_container("c1").unwrap(),
        t.open_container("c2").unwrap(),
    );
    assert_eq!(seen(&v2), base, "a fresh container differs from its image");

    // Every kind of change in c1, durable.
    let big = node_at(&v1, "usr/lib/big.bin");
    v1.write(big, 150_000, b"container one was here").unwrap();
    set_size(&v1, node_at(&v1, "etc/hostname"), 3);
    let change = SetAttr {
        mode: Some(0o600),
        uid: Some(7),
        ..Default::default()
    };
    v1.setattr(big, &change).unwrap();
    v1.setxattr(big, b"user.note", b"c1", XattrMode::Any)
        .unwrap();
    v1.link(big, v1.root(), b"big-link").unwrap();
    v1.unlink(v1.root(), b"hostname-link").unwrap();
    v1.rename(
        v1.root(),
        b"usr",
        v1.root(),
        b"usr2",
        RenameFlags::default(),
    )
    .unwrap();
    write_file(&v1, "new", b"new file");
    v1.fsync(big).unwrap();
    t.sync().unwrap();
    assert_eq!(
        image(&t, "base"),
        base,
        "a container's writes changed its image"
    );
    assert_eq!(
        seen(&v2),
        base,
        "a container's writes showed in another container"
    );

    // Commit, then change the committed files again: the new image must not move either.
    let c1_before_commit = seen(&v1);
    t.commit_container("c1", "snap").unwrap();
    let snap = image(&t, "snap");
    assert_eq!(
        snap, c1_before_commit,
        "commit changed what the container showed"
    );
    v1.write(big, 0, &bytes(4, 70_000)).unwrap();
    set_size(&v1, node_at(&v1, "usr2/lib/other.bin"), 0);
    v1.unlink(v1.root(), b"new").unwrap();
    v1.setxattr(big, b"user.note", b"again", XattrMode::Any)
        .unwrap();
    // And c2 writes the same lower file: invisible to c1 and to both images. (Compared
    // after a flush: a dirty file's st_blocks is only an estimate.)
    t.sync().unwrap();
    let c1_now = seen(&v1);
    v2.write(node_at(&v2, "usr/lib/big.bin"), 0, b"container two")
        .unwrap();
    t.sync().unwrap();
    assert_eq!(seen(&v1), c1_now, "c2's write showed in c1");
    drop((v1, v2));
    t.reopen();
    assert_eq!(image(&t, "base"), base, "base changed (after reopen)");
    assert_eq!(
        image(&t, "snap"),
        snap,
        "a committed image changed (after reopen)"
    );
    let base_again = t
        .images()
        .unwrap()
        .into_iter()
        .find(|i| i.name == "base")
        .unwrap();
    assert_eq!(
        (
            base_again.top_layer,
            base_again.layers,
            base_again.layer_bytes
        ),
        (base_info.top_layer, base_info.layers, base_info.layer_bytes)
    );
}

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

#[test]
fn invariant_4_corruption_is_detected() {
    let mut t = TempStore::new(4096);
    t.create_empty_image("empty").unwrap();
    t.create_container("c", "empty").unwrap();
    let victim = bytes(7, 3 * 4096);
    {
        let v = t.open_container("c").unwrap();
        write_file(&v, "victim", &victim);
        write_file(&v, "other", &bytes(8, 5000));
    }
    t.sync().unwrap();
    // Find the victim's middle block in a pack and flip one byte inside it.
    let packs = t.path().join("packs");
    let (pack, offset) = std::fs::read_dir(&packs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .find_map(|p| {
            let data = std::fs::read(&p).unwrap();
            let at = data
                .windows(64)
                .position(|w| w == &victim[4096..4096 + 64])?;
            Some((p, at as u64))
        })
        .expect("the victim's block is in a pack");
    let pack_id: u64 = pack.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut data = std::fs::read(&pack).unwrap();
    data[offset as usize + 100] ^= 0x40;
    std::fs::write(&pack, &data).unwrap();

    for round in 0..2 {
        let v = t.open_container("c").unwrap();
        let node = node_at(&v, "victim");
        for (from, len) in [(0, 3 * 4096), (4096 + 200, 10), (8000, 300)] {
            let err = v
                .read(node, from, len)
                .expect_err("wrong bytes were returned");
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
            let text = err.to_string();
            let named = text.contains(&format!("pack {pack_id} at offset {offset}"));
            assert!(
                named,
                "round {round}: the error names no pack and offset: {text}"
            );
        }
        assert_eq!(
            v.read(node, 0, 4096).unwrap(),
            victim[..4096],
            "an intact block"
        );
        assert_eq!(read_file(&v, "other"), bytes(8, 5000));
        drop(v);
        t.reopen(); // verification does not depend on anything cached
    }
}

fn sim_store(sim: &Arc<SimIo>, init: bool) -> Store {
    let io: Io = sim.clone();
    let options = StoreOptions::default()
        .block_size(4096)
        .flush_interval(None)
        .io(io);
    match init {
        true => Store::init("/sim", options).unwrap(),
        false => Store::open("/sim", options).expect("the store opens after a crash"),
    }
}

fn read_path(v: &Volume, path: &str) -> Option<Vec<u8>> {
    let attr = v.resolve(path.as_bytes()).ok()?;
    Some(v.read(attr.node, 0, attr.size as usize).expect("readable"))
}

#[test]
fn invariant_5_crash_consistency() {
    let (a1, a2, a3) = (bytes(1, 20_000), bytes(2, 9_000), bytes(3, 30_000));
    let (b1, c1) = (bytes(4, 70_000), bytes(5, 5_000));
    for seed in 0..8 {
        let sim = SimIo::new(SimOptions::default());
        let store = sim_store(&sim, true);
        store.create_empty_image("empty").unwrap();
        store.create_container("c", "empty").unwrap();
        let v = store.open_container("c").unwrap();
        let a = create(&v, "a");
        v.write(a, 0, &a1).unwrap();
        v.fsync(a).unwrap(); // fsync: a = a1
        let b = create(&v, "b");
        v.write(b, 0, &b1).unwrap(); // b's data only becomes durable at the commit
        v.mkdir(v.root(), b"d", 0o755, Caller::ROOT).unwrap();
        let c = create(&v, "d/c");
        v.fsyncdir().unwrap(); // names: a, b, d/c (b and c still empty)
        v.write(c, 0, &c1).unwrap();
        store.commit_container("c", "snap").unwrap(); // everything so far
        v.write(a, 5_000, &a2).unwrap();
        store.sync().unwrap(); // a = a1 with a2 at 5000
        v.write(a, 0, &a3).unwrap(); // none of these is durable:
        v.write(b, 0, b"lost").unwrap();
        v.unlink(node_at(&v, "d"), b"c").unwrap();
        create(&v, "e");

        let after = sim.crash(seed);
        drop((v, store));
        let store = sim_store(&after, false);
        let mut a_synced = a1.clone();
        a_synced[5_000..14_000].copy_from_slice(&a2);
        let v = store.open_container("c").unwrap();
        assert_eq!(
            read_path(&v, "a"),
            Some(a_synced),
            "seed {seed}: synced data"
        );
        assert_eq!(
            read_path(&v, "b"),
            Some(b1.clone()),
            "seed {seed}: committed data"
        );
        assert_eq!(
            read_path(&v, "d/c"),
            Some(c1.clone()),
            "seed {seed}: an unsynced unlink"
        );
        assert_eq!(read_path(&v, "e"), None, "seed {seed}: an unsynced create");
        let snap = store.open_image("snap").unwrap();
        for (path, data) in [("a", &a1), ("b", &b1), ("d/c", &c1)] {
            assert_eq!(
                read_path(&snap, path).as_ref(),
                Some(data),
                "seed {seed}: {path}"
            );
        }
        // The store keeps working: a durable write survives the next crash.
        v.write(a, 0, &a3).unwrap();
        v.fsync(a).unwrap();
        let again = after.crash(seed + 100);
        drop((v, snap, store));
        let store = sim_store(&again, false);
        let v = store.open_container("c").unwrap();
        assert_eq!(
            read_path(&v, "a").unwrap()[..a3.len()],
            a3[..],
            "seed {seed}: lost again"
        );
    }
}

#[test]
fn invariant_8_open_unlinked_files_survive() {
    let sim = SimIo::new(SimOptions::default());
    let store = sim_store(&sim, true);
    store.create_empty_image("empty").unwrap();
    store.create_container("c", "empty").unwrap();
    let v = store.open_container("c").unwrap();
    let f = create(&v, "f");
    let mut data = bytes(1, 100_000);
    v.write(f, 0, &data).unwrap();
    v.fsync(f).unwrap();
    let fh = v.open(f, false).unwrap();
    v.unlink(v.root(), b"f").unwrap();
    assert_eq!(
        v.lookup(v.root(), b"f").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(v.getattr(f).unwrap().nlink, 0);
    assert_eq!(
        v.read(f, 0, data.len()).unwrap(),
        data,
        "unlinked but open: readable"
    );
    v.write(f, 90_000, &bytes(2, 20_000)).unwrap();
    data.resize(110_000, 0);
    data[90_000..].copy_from_slice(&bytes(2, 20_000));
    v.fsync(f).unwrap();
    v.write(f, 0, b"dirty, never flushed").unwrap();
    data[..20].copy_from_slice(b"dirty, never flushed");

    // gc runs with garbage in the orphan's pack: the orphan's blocks, flushed or not, stay.
    write_file(&v, "garbage", &bytes(3, 200_000));
    v.fsync(node_at(&v, "garbage")).unwrap();
    v.unlink(v.root(), b"garbage").unwrap();
    let gc = GcOptions {
        repack_below: 1.0,
        ..Default::default()
    };
    let report = store.gc(&gc).unwrap();
    let moved = report.packs_rewritten > 0 && report.garbage_bytes > 0;
    assert!(moved, "gc rewrote no pack: {report:?}");
    assert_eq!(
        v.read(f, 0, data.len()).unwrap(),
        data,
        "gc took an open file's blocks"
    );

    // Commit does not take the orphan into the image; the container keeps it open.
    store.commit_container("c", "snap").unwrap();
    let snap = store.open_image("snap").unwrap();
    assert!(
        snap.list_dir(snap.root()).unwrap().is_empty(),
        "commit took a nameless file"
    );
    assert!(snap.getattr(f).is_err(), "commit took the orphan's record");
    v.write(f, 0, b"after commit").unwrap();
    data[..12].copy_from_slice(b"after commit");
    assert_eq!(v.read(f, 0, data.len()).unwrap(), data);
    v.fsync(f).unwrap();

    // A crash while it is open: the orphan is swept at the next open.
    let after = sim.crash(1);
    drop((snap, v, store));
    let store = sim_store(&after, false);
    let v = store.open_container("c").unwrap();
    assert!(v.getattr(f).is_err(), "a crash left the orphan behind");
    assert!(v.list_dir(v.root()).unwrap().is_empty());
    write_file(&v, "g", b"still works");
    v.fsync(node_at(&v, "g")).unwrap();

    // Without a crash, the last release frees it.
    let g = node_at(&v, "g");
    let fh2 = v.open(g, false).unwrap();
    v.unlink(v.root(), b"g").unwrap();
    assert_eq!(v.read(g, 0, 11).unwrap(), b"still works");
    v.release(fh2).unwrap();
    assert_eq!(v.getattr(g).unwrap_err().kind(), ErrorKind::NotFound);
    let _ = fh;
}
