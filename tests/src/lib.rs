//! Shared fixtures for the integration tests: temporary stores, images built from small trees,
//! and helpers to read and write through a volume by path.

pub mod model;

/// Simulated-disk crash fixtures.
pub mod crash;

/// The fuzz targets' bodies, shared with their regression test.
pub mod fuzz;

/// Helpers of the invariant tests.
pub mod invariants;

pub mod mount;

/// The S3 server (Ceph RGW) of the remote tests.
pub mod s3_server;
pub mod tcp_gate;

use std::path::Path;

use tessera::volume::Volume;
use tessera::{Caller, NodeId, Store, StoreOptions};

/// A store in a temporary directory, removed when dropped. Derefs to the open `Store`.
pub struct TempStore {
    store: Option<Store>,
    pub dir: tempfile::TempDir,
    pub block_size: u32,
}

impl TempStore {
    /// A fresh store with the given block size and no background flusher (tests decide when
    /// things become durable).
    pub fn new(block_size: u32) -> TempStore {
        TempStore::with_options(block_size, Self::options(block_size))
    }

    /// A fresh store opened with `options` (reopened with the defaults of `options`).
    pub fn with_options(block_size: u32, options: StoreOptions) -> TempStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::init(dir.path().join("store"), options).expect("init");
        TempStore {
            store: Some(store),
            dir,
            block_size,
        }
    }

    pub fn options(block_size: u32) -> StoreOptions {
        StoreOptions::default()
            .block_size(block_size)
            .flush_interval(None)
            .pack_target(4 << 20)
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("store")
    }

    /// Closes the store, keeping its directory (for a `tessera` process to open it).
    pub fn close(&mut self) {
        drop(self.store.take());
    }

    /// Closes and reopens the store (every volume of it must be dropped first).
    pub fn reopen(&mut self) {
        drop(self.store.take());
        self.store =
            Some(Store::open(self.path(), Self::options(self.block_size)).expect("reopen"));
    }
}

impl std::ops::Deref for TempStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store.as_ref().expect("store is open")
    }
}

/// Walks `path` (slash-separated) from the root of a volume.
pub fn node_at(volume: &Volume, path: &str) -> NodeId {
    volume
        .resolve(path.as_bytes())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .node
}

/// Splits a path into its parent's node and its last name.
pub fn parent_of<'a>(volume: &Volume, path: &'a str) -> (NodeId, &'a [u8]) {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    (node_at(volume, dir), name.as_bytes())
}

/// Reads a whole file by path.
pub fn read_file(volume: &Volume, path: &str) -> Vec<u8> {
    let attr = volume.resolve(path.as_bytes()).unwrap();
    volume.read(attr.node, 0, attr.size as usize).unwrap()
}

/// Creates (or truncates) a file by path and writes `data` into it.
pub fn write_file(volume: &Volume, path: &str, data: &[u8]) {
    let (dir, name) = parent_of(volume, path);
    let node = match volume.lookup(dir, name) {
        Ok(attr) => attr.node,
        Err(_) => volume.create(dir, name, 0o644, Caller::ROOT).unwrap().node,
    };
    volume
        .setattr(
            node,
            &tessera::SetAttr {
                size: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    volume.write(node, 0, data).unwrap();
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Writes a small tree to `root` for import tests.
pub fn small_tree(root: &Path) {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"tessera\n").unwrap();
    std::fs::write(root.join("usr/lib/big.bin"), bytes(1, 300_000)).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("hostname-link")).unwrap();
}

/// Building layer tars in memory (ordinary and raw entries).
pub mod tars;

/// Trees of entries from a directory walk or a tar, to compare imports with exports.
pub mod trees;

/// A store of `block_size` whose image `img` is the tree `tree` writes (into an empty
/// directory), with container `c` on it.
pub fn image_store(block_size: u32, tree: impl FnOnce(&Path)) -> TempStore {
    let t = TempStore::new(block_size);
    let src = t.dir.path().join("src");
    std::fs::create_dir(&src).expect("source dir");
    tree(&src);
    t.import_path(&src, "img").expect("import");
    t.create_container("c", "img").expect("container");
    t
}

/// Whether `program` is installed; panics when it is missing and `TESSERA_REQUIRE_MOUNT=1`
/// (CI installs it with scripts/setup.sh), else prints why the test is skipped.
pub fn have_program(program: &str) -> bool {
    if std::path::Path::new(program).exists() {
        return true;
    }
    cannot_test(&format!(
        "{program} is missing (scripts/setup.sh installs it)"
    ));
    false
}

/// Something a test meant to check cannot be checked here (`why`: a program is missing, the
/// file system refuses xattrs or device nodes). With `TESSERA_REQUIRE_MOUNT=1` — CI, which runs
/// as root on ext4 with scripts/setup.sh's programs, where all of it works — that is a failure;
/// elsewhere the caller skips it and this says so.
pub fn cannot_test(why: &str) {
    if std::env::var("TESSERA_REQUIRE_MOUNT").as_deref() == Ok("1") {
        panic!("TESSERA_REQUIRE_MOUNT=1 but {why}");
    }
    eprintln!("skipping: {why}");
}

/// An error `message` is one clear line (no control characters, under 600 bytes) that names
/// every needle.
pub fn assert_clear_error(message: &str, needles: &[&str]) {
    assert!(
        !message.chars().any(char::is_control) && message.len() < 600,
        "not one clear line: {message:?}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "error {message:?} does not mention {needle:?}"
        );
    }
}
