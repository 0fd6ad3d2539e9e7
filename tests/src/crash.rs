//! Shared by the crash tests (`tests/tests/crash_*.rs`): stores on a simulated disk, whole-view
//! snapshots to compare after a crash, pack accounting checks, the trees imported as images,
//! and seed selection (`TESSERA_CRASH_SEED=n` replays one seed, `TESSERA_CRASH_SEEDS=n` runs n).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use tessera::io::{OpenMode, SimIo, StorageIo};
use tessera::volume::Volume;
use tessera::{FileKind, NodeId, Store, StoreOptions};

use crate::bytes;

pub const STORE: &str = "/sim/store";
pub const CONTAINER: &str = "c";

/// SplitMix64: small, seedable, good enough to pick operations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn pick<T: Clone>(&mut self, items: impl IntoIterator<Item = T>) -> Option<T> {
        let items: Vec<T> = items.into_iter().collect();
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize].clone())
    }
}

pub fn options(sim: &Arc<SimIo>, block_size: u32) -> StoreOptions {
    let io: tessera::io::Io = sim.clone();
    let options = StoreOptions::default().block_size(block_size);
    options.flush_interval(None).pack_target(256 << 10).io(io)
}

/// What a view shows at one path.
#[derive(Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File(Vec<u8>),
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Dir => write!(f, "dir"),
            Entry::File(d) => {
                let sum = d.iter().fold(0u64, |h, b| h.wrapping_mul(31) ^ *b as u64);
                write!(f, "file of {} bytes (hash {sum:x})", d.len())
            }
        }
    }
}

pub type Tree = BTreeMap<String, Entry>;

pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.into()
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads a whole view. Any error (a dangling block or page reference) names its path.
pub fn walk(v: &Volume, dir: NodeId, prefix: &str, out: &mut Tree) -> Result<(), String> {
    for e in v
        .list_dir(dir)
        .map_err(|e| format!("listing {prefix:?}: {e}"))?
    {
        let path = join(prefix, &String::from_utf8_lossy(&e.name));
        match e.kind {
            FileKind::Dir => {
                out.insert(path.clone(), Entry::Dir);
                walk(v, e.node, &path, out)?;
            }
            FileKind::File => {
                out.insert(path.clone(), read_all(v, &path)?);
            }
            other => return Err(format!("{path}: unexpected {other:?}")),
        }
    }
    Ok(())
}

pub fn tree_of(v: &Volume) -> Result<Tree, String> {
    let mut tree = Tree::new();
    walk(v, v.root(), "", &mut tree).map(|()| tree)
}

pub fn image_tree(store: &Store, name: &str) -> Result<Tree, String> {
    tree_of(&store.open_image(name).map_err(|e| e.to_string())?)
}

/// A file's whole content, or what went wrong reading it.
pub fn read_all(v: &Volume, path: &str) -> Result<Entry, String> {
    let attr = v
        .resolve(path.as_bytes())
        .map_err(|e| format!("{path}: {e}"))?;
    let data = v.read(attr.node, 0, attr.size as usize);
    let data = data.map_err(|e| format!("reading {path}: {e}"))?;
    if data.len() as u64 != attr.size {
        return Err(format!(
            "{path}: read {} of {} bytes",
            data.len(),
            attr.size
        ));
    }
    Ok(Entry::File(data))
}

pub fn content(data: &[u8]) -> Result<Entry, String> {
    Ok(Entry::File(data.to_vec()))
}

/// The differences between two trees, one line each.
pub fn diff(expected: &Tree, actual: &Tree) -> String {
    let mut out = Vec::new();
    for path in expected
        .keys()
        .chain(actual.keys())
        .collect::<BTreeSet<_>>()
    {
        match (expected.get(path), actual.get(path)) {
            (Some(want), Some(got)) if want != got => {
                out.push(format!("  {path}: expected {want:?}, found {got:?}"))
            }
            (Some(want), None) => out.push(format!("  missing {path}: {want:?}")),
            (None, Some(got)) => out.push(format!("  unexpected {path}: {got:?}")),
            _ => {}
        }
    }
    out.join("\n")
}

/// Every pack file is one the store accounts for, cut back to its recorded length, and no
/// temporary index is left over.
pub fn check_packs(sim: &SimIo, store: &Store) -> Result<(), String> {
    let dir = Path::new(STORE).join("packs");
    let mut on_disk = 0;
    for name in sim.list_dir(&dir).map_err(|e| e.to_string())? {
        let name = name.to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            return Err(format!("leftover {name}"));
        }
        if name.ends_with(".pack") {
            let file = sim.open(&dir.join(&name), OpenMode::ReadOnly);
            on_disk += file
                .and_then(|f| f.len())
                .map_err(|e| format!("{name}: {e}"))?;
        }
    }
    let accounted = store.block_store_stats().pack_bytes;
    if on_disk != accounted {
        return Err(format!(
            "pack files hold {on_disk} bytes, the store accounts for {accounted}"
        ));
    }
    Ok(())
}

/// Makes a tree of `(path, bytes)` files and the directories above them.
pub fn tree(files: Vec<(&str, Vec<u8>)>) -> Tree {
    let mut tree = Tree::new();
    for (path, data) in files {
        let mut dir = Path::new(path).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            tree.insert(d.to_string_lossy().into_owned(), Entry::Dir);
            dir = d.parent();
        }
        tree.insert(path.into(), Entry::File(data));
    }
    tree
}

/// The base image: a file of many blocks, an aligned one, zeros, an empty file, and a file
/// mixing data and holes.
pub fn base_tree() -> Tree {
    let mixed = [bytes(3, 70_000), vec![0; 140_000], bytes(4, 9_000)].concat();
    tree(vec![
        ("etc/hostname", b"tessera\n".to_vec()),
        ("usr/lib/big.bin", bytes(1, 300_000)),
        ("usr/lib/aligned.bin", bytes(2, 4 * 65536)),
        ("usr/share/empty", Vec::new()),
        ("data/zeros", vec![0; 200_000]),
        ("data/mixed", mixed),
    ])
}

pub fn write_tree(root: &Path, tree: &Tree) {
    std::fs::create_dir_all(root).unwrap();
    for (path, entry) in tree {
        match entry {
            Entry::Dir => std::fs::create_dir_all(root.join(path)).unwrap(),
            Entry::File(data) => std::fs::write(root.join(path), data).unwrap(),
        }
    }
}

/// Seeds to run: `TESSERA_CRASH_SEED` alone, else `TESSERA_CRASH_SEEDS` (or `default`) seeds.
pub fn seeds(default: u64) -> Vec<u64> {
    let var = |name| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    match var("TESSERA_CRASH_SEED") {
        Some(seed) => vec![seed],
        None => (0..var("TESSERA_CRASH_SEEDS").unwrap_or(default)).collect(),
    }
}

/// A store on a fresh disk with one empty image and the container on it, open.
pub fn empty_store(sim: &Arc<SimIo>) -> (Store, Volume) {
    let store = Store::init(STORE, options(sim, 4096)).unwrap();
    store.create_empty_image("empty").unwrap();
    store.create_container(CONTAINER, "empty").unwrap();
    let v = store.open_container(CONTAINER).unwrap();
    (store, v)
}

/// The durability points.
#[derive(Clone, Copy, Debug)]
pub enum Point {
    Fsync,
    Fsyncdir,
    Sync,
    Commit,
    /// gc rewriting every pack that holds garbage (it syncs first, so it is a sync too).
    Reclaim,
}
