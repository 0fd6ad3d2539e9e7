//! Shared by the crash tests (`tests/tests/crash_*.rs`): stores on a simulated disk, whole-view
//! snapshots to compare after a crash, pack accounting checks, the trees imported as images,
//! seed selection (`TESSERA_CRASH_SEED=n` replays one seed, `TESSERA_CRASH_SEEDS=n` runs n),
//! and cutting one operation short anywhere in its I/O (`crash_everywhere`: a dry run counts
//! the operation's mutating calls, then each cut point fails every call from there on;
//! `TESSERA_CRASH_CUTS=n` tries n cut points per operation, `TESSERA_CRASH_CUT=k` replays one:
//! run the failing test alone).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use tessera::io::{OpenMode, SimIo, SimOptions, StorageIo};
use tessera::maintenance::FsckOptions;
use tessera::volume::Volume;
use tessera::{Caller, FileKind, NodeId, Store, StoreOptions};

use crate::bytes;

/// The model the random crash test checks against.
pub mod model;

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

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// Cut points for an operation of `calls` mutating I/O calls, from 0 (its first call fails)
/// to `calls` (none does): all of them when they are at most `TESSERA_CRASH_CUTS` (default
/// `default`), else that many drawn uniformly from the whole range, both ends included.
/// `TESSERA_CRASH_CUT=k` gives just k.
pub fn cut_points(calls: u64, default: u64, seed: u64) -> Vec<u64> {
    if let Some(cut) = env_u64("TESSERA_CRASH_CUT") {
        return vec![cut];
    }
    let n = env_u64("TESSERA_CRASH_CUTS").unwrap_or(default).max(2);
    if calls < n {
        return (0..=calls).collect();
    }
    let mut rng = Rng(seed);
    let mut cuts = BTreeSet::from([0, calls]);
    while (cuts.len() as u64) < n {
        cuts.insert(rng.below(calls + 1));
    }
    cuts.into_iter().collect()
}

/// How one run of an operation was cut short.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    /// Calls that succeeded before the injected failures began...
    pub at: u64,
    /// ...of the calls the dry run counted.
    pub calls: u64,
    /// Whether the operation reported success.
    pub ok: bool,
    /// Calls that failed by injection: none means the operation ran whole.
    pub failed: u64,
}

/// Crashes `op` at cut points over all of its mutating I/O calls. A dry run of `setup` then
/// `op` on a sound disk counts op's calls; then for each cut point (`cut_points`) a fresh
/// disk is set up, every call from the cut on fails, `op` runs, the power is cut (a random
/// subset of unsynced writes survives), what `setup` made is dropped on the dead disk, and
/// `check` judges the disk that came back. Panics naming the cut when a check fails. Returns
/// what was run.
pub fn crash_everywhere<S>(
    what: &str,
    setup: impl Fn(&Arc<SimIo>) -> S,
    op: impl Fn(&S) -> bool,
    check: impl Fn(&Arc<SimIo>, &Cut) -> Result<(), String>,
) -> Tally {
    let sim = SimIo::new(SimOptions::default());
    let state = setup(&sim);
    let before = sim.mutating_calls();
    assert!(op(&state), "{what}: the dry run failed");
    let calls = sim.mutating_calls() - before;
    drop(state);
    let mut tally = Tally {
        calls,
        ..Tally::default()
    };
    for at in cut_points(calls, 40, calls) {
        let sim = SimIo::new(SimOptions::default());
        let state = setup(&sim);
        sim.fail_after(at as i64);
        let ok = op(&state);
        let failed = sim.injected_failures();
        let cut = Cut {
            at,
            calls,
            ok,
            failed,
        };
        let after = sim.crash(at);
        drop(state);
        tally.cuts += 1;
        tally.succeeded += ok as u64;
        check(&after, &cut)
            .unwrap_or_else(|e| panic!("{what}, {cut:?} (replay: TESSERA_CRASH_CUT={at}): {e}"));
    }
    tally
}

/// What `crash_everywhere` ran: the operation's mutating calls, the cuts tried, and at how
/// many of them the operation still reported success.
#[derive(Debug, Default)]
pub struct Tally {
    pub calls: u64,
    pub cuts: u64,
    pub succeeded: u64,
}

/// What a crash may leave of each image and container: the trees it may show, `None` for
/// gone. Whatever is not listed must not be there.
#[derive(Clone, Default)]
pub struct Allowed {
    pub images: BTreeMap<String, Vec<Option<Tree>>>,
    pub containers: BTreeMap<String, Vec<Option<Tree>>>,
}

impl Allowed {
    pub fn image(mut self, name: &str, may_be: impl IntoIterator<Item = Option<Tree>>) -> Self {
        self.images
            .insert(name.into(), may_be.into_iter().collect());
        self
    }

    pub fn container(mut self, name: &str, may_be: impl IntoIterator<Item = Option<Tree>>) -> Self {
        self.containers
            .insert(name.into(), may_be.into_iter().collect());
        self
    }

    /// Reopens the store on the disk a crash left (recovery) and checks it: fsck finds
    /// nothing (every stored block verified), every pack byte is accounted for, each image and
    /// container shows a tree it may, and `more` holds. Then the store must keep working: a
    /// new container's fsync'd file survives another crash.
    pub fn check(
        &self,
        sim: &Arc<SimIo>,
        block_size: u32,
        more: impl FnOnce(&Store) -> Result<(), String>,
    ) -> Result<(), String> {
        let open = |sim: &Arc<SimIo>| Store::open(STORE, options(sim, block_size));
        let store = open(sim).map_err(|e| format!("reopen after the crash: {e}"))?;
        let verify = FsckOptions { verify_data: true };
        let report = store.fsck(&verify).map_err(|e| format!("fsck: {e}"))?;
        if !report.is_clean() {
            return Err(format!("fsck: {}", report.problems.join("; ")));
        }
        check_packs(sim, &store)?;
        let images = store.images().map_err(|e| e.to_string())?;
        let names = images.into_iter().map(|i| i.name);
        compare("image", &self.images, names, |n| image_tree(&store, n))?;
        let containers = store.containers().map_err(|e| e.to_string())?;
        let names = containers.into_iter().map(|c| c.name);
        compare("container", &self.containers, names, |name| {
            tree_of(&store.open_container(name).map_err(|e| e.to_string())?)
        })?;
        more(&store)?;
        still_works(sim, store, open)
    }
}

/// Each object is there with a tree it may show, or gone where it may be.
fn compare(
    kind: &str,
    allowed: &BTreeMap<String, Vec<Option<Tree>>>,
    present: impl Iterator<Item = String>,
    tree: impl Fn(&str) -> Result<Tree, String>,
) -> Result<(), String> {
    let present: BTreeSet<String> = present.collect();
    if let Some(extra) = present.iter().find(|n| !allowed.contains_key(*n)) {
        return Err(format!("unexpected {kind} {extra}"));
    }
    for (name, may_be) in allowed {
        let found = match present.contains(name) {
            true => Some(tree(name).map_err(|e| format!("{kind} {name}: {e}"))?),
            false => None,
        };
        if may_be.contains(&found) {
            continue;
        }
        let Some(found) = found else {
            return Err(format!("{kind} {name} is lost"));
        };
        let report: Vec<String> = may_be
            .iter()
            .flatten()
            .map(|want| diff(want, &found))
            .collect();
        return Err(format!(
            "{kind} {name} shows a tree no point allows:\n{}",
            report.join("\n or\n")
        ));
    }
    Ok(())
}

/// The recovered store takes a new container and an fsync'd file that survives a crash.
fn still_works(
    sim: &Arc<SimIo>,
    store: Store,
    open: impl Fn(&Arc<SimIo>) -> tessera::Result<Store>,
) -> Result<(), String> {
    let data = bytes(99, 20_000);
    let write = || -> tessera::Result<()> {
        store.create_empty_image("after-crash")?;
        store.create_container("after-crash", "after-crash")?;
        let v = store.open_container("after-crash")?;
        let f = v.create(v.root(), b"f", 0o644, Caller::ROOT)?.node;
        v.write(f, 0, &data)?;
        v.fsync(f)
    };
    write().map_err(|e| format!("the recovered store fails: {e}"))?;
    let again = sim.crash(1);
    drop(store);
    let store = open(&again).map_err(|e| format!("reopen after a second crash: {e}"))?;
    let v = store
        .open_container("after-crash")
        .map_err(|e| format!("after a second crash: {e}"))?;
    match read_all(&v, "f") {
        Ok(Entry::File(got)) if got == data => Ok(()),
        other => Err(format!("an fsync after recovery was lost: {other:?}")),
    }
}
