//! Simulated power cuts through the one I/O seam under both the packs and the metadata database
//! (DESIGN.md §2 invariant 5). Every store here runs on `SimIo`, with no background flusher.
//!
//! `random_operations_survive_crashes` drives seeded random operations on a container (writes
//! of every size to new and lower files, creates, links, renames, unlinks, truncates, mkdir,
//! rmdir, clean reopens) with durability points in between, and models what each point made
//! durable: `fsync(node)` covers that node's data, `Store::sync` and commit cover every node's,
//! and each point commits the whole namespace. The disk then crashes, between two operations or
//! inside a durability point cut short by an injected I/O error. The reopened store must show
//! exactly a state the model allows, keep every committed image intact, read every file without
//! error (no dangling block or page reference), hold no pack bytes beyond what its metadata
//! records, and keep working: each seed crashes the same disk four times.
//!
//! The other tests crash in the middle of imports (all or nothing) and fill the disk during
//! durability points (an error, never a panic; after `heal` the data syncs; nothing durable is
//! lost). Failures print a seed: `TESSERA_CRASH_SEED=n` replays it, `TESSERA_CRASH_SEEDS=n`
//! runs n seeds.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use tessera::import::{EntryKind, EntryMeta, LayerFeed};
use tessera::io::{Io, OpenMode, SimIo, SimOptions, StorageIo};
use tessera::volume::Volume;
use tessera::{Caller, Error, ErrorKind, FileKind, NodeId, RenameFlags, SetAttr, Store};
use tessera::{Result as EngineResult, StoreOptions};
use tessera_tests::bytes;

const STORE: &str = "/sim/store";
const CONTAINER: &str = "c";

/// SplitMix64: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Clone>(&mut self, items: impl IntoIterator<Item = T>) -> Option<T> {
        let items: Vec<T> = items.into_iter().collect();
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize].clone())
    }
}

fn options(sim: &Arc<SimIo>, block_size: u32) -> StoreOptions {
    let io: Io = sim.clone();
    let options = StoreOptions::default().block_size(block_size);
    options.flush_interval(None).pack_target(256 << 10).io(io)
}

/// What a view shows at one path.
#[derive(Clone, PartialEq, Eq)]
enum Entry {
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

type Tree = BTreeMap<String, Entry>;

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.into()
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads a whole view. Any error (a dangling block or page reference) names its path.
fn walk(v: &Volume, dir: NodeId, prefix: &str, out: &mut Tree) -> Result<(), String> {
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

fn tree_of(v: &Volume) -> Result<Tree, String> {
    let mut tree = Tree::new();
    walk(v, v.root(), "", &mut tree).map(|()| tree)
}

fn image_tree(store: &Store, name: &str) -> Result<Tree, String> {
    tree_of(&store.open_image(name).map_err(|e| e.to_string())?)
}

/// A file's whole content, or what went wrong reading it.
fn read_all(v: &Volume, path: &str) -> Result<Entry, String> {
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

fn content(data: &[u8]) -> Result<Entry, String> {
    Ok(Entry::File(data.to_vec()))
}

/// The differences between two trees, one line each.
fn diff(expected: &Tree, actual: &Tree) -> String {
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
fn check_packs(sim: &SimIo, store: &Store) -> Result<(), String> {
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

/// A container's namespace and contents at one moment. Hard links share a model node.
#[derive(Clone, Default)]
struct State {
    dirs: BTreeSet<String>,
    files: BTreeMap<String, u64>,
    data: HashMap<u64, Vec<u8>>,
}

impl State {
    fn tree(&self) -> Tree {
        let mut tree: Tree = self.dirs.iter().map(|d| (d.clone(), Entry::Dir)).collect();
        for (path, node) in &self.files {
            tree.insert(path.clone(), Entry::File(self.data[node].clone()));
        }
        tree
    }
}

/// A state a crash may leave behind: the container's view and every image.
#[derive(Clone)]
struct Outcome {
    state: State,
    images: BTreeMap<String, Tree>,
}

/// What the view shows, each node's data as of its last flush, and what is durable.
#[derive(Clone)]
struct Model {
    live: State,
    flushed: HashMap<u64, Vec<u8>>,
    durable: Outcome,
    next_node: u64,
}

/// The durability points.
#[derive(Clone, Copy, Debug)]
enum Point {
    Fsync,
    Fsyncdir,
    Sync,
    Commit,
}

impl Model {
    fn new(base: &Tree) -> Model {
        let mut live = State::default();
        for (path, entry) in base {
            match entry {
                Entry::Dir => {
                    live.dirs.insert(path.clone());
                }
                Entry::File(data) => {
                    let node = live.files.len() as u64;
                    live.files.insert(path.clone(), node);
                    live.data.insert(node, data.clone());
                }
            }
        }
        let images = BTreeMap::from([("base".to_string(), base.clone())]);
        Model {
            flushed: live.data.clone(),
            next_node: live.files.len() as u64,
            durable: Outcome {
                state: live.clone(),
                images,
            },
            live,
        }
    }

    /// Forgets nodes that lost their last name.
    fn drop_unnamed(&mut self) {
        let named: BTreeSet<u64> = self.live.files.values().copied().collect();
        self.live.data.retain(|n, _| named.contains(n));
        self.flushed.retain(|n, _| named.contains(n));
    }

    /// A durability point's effect: what it flushes, then one metadata commit of everything.
    fn apply(&mut self, point: Point, file: Option<&str>, image: &str) {
        match point {
            Point::Fsync => {
                let node = self.live.files[file.expect("a file")];
                self.flushed.insert(node, self.live.data[&node].clone());
            }
            Point::Fsyncdir => {}
            Point::Sync | Point::Commit => self.flushed = self.live.data.clone(),
        }
        let mut state = self.live.clone();
        state.data = state
            .files
            .values()
            .map(|n| (*n, self.flushed[n].clone()))
            .collect();
        self.durable.state = state;
        if let Point::Commit = point {
            self.durable
                .images
                .insert(image.to_string(), self.live.tree());
        }
    }
}

/// One seed's run: a store on a simulated disk, its container open, and the model.
struct Run {
    seed: u64,
    rng: Rng,
    block_size: u32,
    sim: Arc<SimIo>,
    store: Option<Store>,
    vol: Option<Volume>,
    model: Model,
    log: Vec<String>,
}

impl Run {
    fn start(seed: u64, src: &Path, base: &Tree) -> Run {
        let mut rng = Rng(seed);
        let block_size = [4096, 16384, 65536][rng.below(3) as usize];
        let sim = SimIo::new(SimOptions::default());
        let store = Store::init(STORE, options(&sim, block_size)).expect("init");
        store.import_path(src, "base").expect("import base");
        store
            .create_container(CONTAINER, "base")
            .expect("create container");
        let vol = store.open_container(CONTAINER).expect("open container");
        let log = vec![format!("block size {block_size}")];
        let model = Model::new(base);
        let (store, vol) = (Some(store), Some(vol));
        Run {
            seed,
            rng,
            block_size,
            sim,
            store,
            vol,
            model,
            log,
        }
    }

    fn fail(&self, what: String) -> ! {
        let tail = &self.log[self.log.len().saturating_sub(40)..];
        let seed = self.seed;
        panic!(
            "seed {seed} (replay: TESSERA_CRASH_SEED={seed}): {what}\n  {}",
            tail.join("\n  ")
        )
    }

    fn ok<T>(&self, what: &str, result: EngineResult<T>) -> T {
        result.unwrap_or_else(|e| self.fail(format!("{what}: {e}")))
    }

    fn vol(&self) -> Volume {
        self.vol.clone().expect("open")
    }

    fn node(&self, path: &str) -> NodeId {
        let v = self.vol();
        match path {
            "" => v.root(),
            _ => self.ok(path, v.resolve(path.as_bytes())).node,
        }
    }

    /// The parent directory's node and the last name of `path`.
    fn parent<'p>(&self, path: &'p str) -> (NodeId, &'p [u8]) {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        (self.node(dir), name.as_bytes())
    }

    fn some_file(&mut self) -> Option<String> {
        self.rng
            .pick(self.model.live.files.keys().cloned().collect::<Vec<_>>())
    }

    /// A path in some directory, named from a small set so that names collide often.
    fn some_path(&mut self) -> String {
        let dirs: Vec<String> = self.model.live.dirs.iter().cloned().collect();
        let dir = self
            .rng
            .pick(std::iter::once(String::new()).chain(dirs))
            .expect("root");
        join(&dir, &format!("n{}", self.rng.below(8)))
    }

    fn is_free(&self, path: &str) -> bool {
        !self.model.live.files.contains_key(path) && !self.model.live.dirs.contains(path)
    }

    fn write(&mut self) {
        let Some(path) = self.some_file() else { return };
        let node = self.model.live.files[&path];
        let (size, bs) = (
            self.model.live.data[&node].len() as u64,
            self.block_size as u64,
        );
        let offset = match self.rng.below(5) {
            0 => 0,
            1 => self.rng.below(size + 1),
            2 => (self.rng.below(size / bs + 2) * bs).saturating_sub(self.rng.below(3)),
            3 => size + self.rng.below(2 * bs),
            _ => self.rng.below(1 << 20),
        } as usize;
        let len = 1 + match self.rng.below(4) {
            0 => self.rng.below(64),
            1 => bs - 1,
            2 => self.rng.below(3 * bs),
            _ => self.rng.below(256 << 10),
        } as usize;
        let zeros = self.rng.below(8) == 0;
        let data = if zeros {
            vec![0; len]
        } else {
            bytes(self.rng.next(), len)
        };
        self.log
            .push(format!("write {path} at {offset}, {len} bytes"));
        let written = self.vol().write(self.node(&path), offset as u64, &data);
        assert_eq!(self.ok("write", written), len);
        let buf = self.model.live.data.get_mut(&node).expect("live");
        buf.resize(buf.len().max(offset + len), 0);
        buf[offset..offset + len].copy_from_slice(&data);
    }

    fn truncate(&mut self) {
        let Some(path) = self.some_file() else { return };
        let node = self.model.live.files[&path];
        let size = self.model.live.data[&node].len() as u64;
        let new_size = match self.rng.below(3) {
            0 => 0,
            1 => self.rng.below(size + 1),
            _ => size + self.rng.below(2 * self.block_size as u64),
        };
        self.log.push(format!("truncate {path} to {new_size}"));
        let change = SetAttr {
            size: Some(new_size),
            ..Default::default()
        };
        self.ok("truncate", self.vol().setattr(self.node(&path), &change));
        self.model
            .live
            .data
            .get_mut(&node)
            .expect("live")
            .resize(new_size as usize, 0);
    }

    fn create(&mut self, dir: bool) {
        let path = self.some_path();
        if !self.is_free(&path) || (dir && path.contains('/')) {
            return;
        }
        self.log.push(format!("create {path} (a directory: {dir})"));
        let ((parent, name), v) = (self.parent(&path), self.vol());
        if dir {
            self.ok("mkdir", v.mkdir(parent, name, 0o755, Caller::ROOT));
            self.model.live.dirs.insert(path);
            return;
        }
        self.ok("create", v.create(parent, name, 0o644, Caller::ROOT));
        let node = self.model.next_node;
        self.model.next_node += 1;
        self.model.live.files.insert(path, node);
        self.model.live.data.insert(node, Vec::new());
        self.model.flushed.insert(node, Vec::new());
    }

    /// Renames (over a file, or to a free name) or hard-links a file.
    fn rename_or_link(&mut self, link: bool) {
        let (Some(from), to) = (self.some_file(), self.some_path()) else {
            return;
        };
        let files = &self.model.live.files;
        let same_node = files.get(&to) == Some(&files[&from]);
        if self.model.live.dirs.contains(&to) || same_node || (link && files.contains_key(&to)) {
            return;
        }
        self.log.push(format!(
            "{} {from} -> {to}",
            if link { "link" } else { "rename" }
        ));
        let ((p1, n1), (p2, n2), v) = (self.parent(&from), self.parent(&to), self.vol());
        let node = self.model.live.files[&from];
        if link {
            self.ok("link", v.link(self.node(&from), p2, n2));
        } else {
            self.ok("rename", v.rename(p1, n1, p2, n2, RenameFlags::default()));
            self.model.live.files.remove(&from);
        }
        self.model.live.files.insert(to, node);
        self.model.drop_unnamed();
    }

    fn remove(&mut self, dir: bool) {
        let live = &self.model.live;
        let path = if dir {
            let has_children = |d: &String| {
                live.files
                    .keys()
                    .chain(&live.dirs)
                    .any(|p| p.starts_with(&format!("{d}/")))
            };
            self.rng
                .pick(live.dirs.iter().filter(|d| !has_children(d)).cloned())
        } else {
            self.some_file()
        };
        let Some(path) = path else { return };
        self.log.push(format!("remove {path}"));
        let ((parent, name), v) = (self.parent(&path), self.vol());
        if dir {
            self.ok("rmdir", v.rmdir(parent, name));
            self.model.live.dirs.remove(&path);
        } else {
            self.ok("unlink", v.unlink(parent, name));
            self.model.live.files.remove(&path);
            self.model.drop_unnamed();
        }
    }

    fn next_image(&self) -> String {
        let images = &self.model.durable.images;
        format!(
            "snap{}",
            images.keys().filter(|n| n.starts_with("snap")).count()
        )
    }

    /// Runs a durability point on the engine and, when it succeeds, on the model.
    fn durability_point(&mut self, point: Point, file: Option<&str>) -> EngineResult<()> {
        self.log.push(format!("{point:?} {}", file.unwrap_or("")));
        let (image, v, store) = (
            self.next_image(),
            self.vol(),
            self.store.clone().expect("open"),
        );
        match point {
            Point::Fsync => v.fsync(self.node(file.expect("a file")))?,
            Point::Fsyncdir => v.fsyncdir()?,
            Point::Sync => store.sync()?,
            Point::Commit => {
                store.commit_container(CONTAINER, &image)?;
            }
        }
        self.model.apply(point, file, &image);
        Ok(())
    }

    fn random_point(&mut self) -> (Point, Option<String>) {
        match (self.rng.below(12), self.some_file()) {
            (0..=6, Some(path)) => (Point::Fsync, Some(path)),
            (0..=8, _) => (Point::Fsyncdir, None),
            (9 | 10, _) => (Point::Sync, None),
            _ => (Point::Commit, None),
        }
    }

    /// Closes everything cleanly and reopens: closing flushes, so everything is kept.
    fn clean_reopen(&mut self) {
        self.log.push("close and reopen".into());
        drop((self.vol.take(), self.store.take()));
        let store = self.ok(
            "reopen",
            Store::open(STORE, options(&self.sim, self.block_size)),
        );
        self.vol = Some(self.ok("open container", store.open_container(CONTAINER)));
        self.store = Some(store);
        self.model.apply(Point::Sync, None, "");
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=29 => self.write(),
            30..=35 => self.truncate(),
            36..=47 => self.create(false),
            48..=51 => self.create(true),
            52..=58 => self.rename_or_link(false),
            59..=61 => self.rename_or_link(true),
            62..=66 => self.remove(false),
            67 => self.remove(true),
            68 => self.clean_reopen(),
            _ => {
                let (point, file) = self.random_point();
                let done = self.durability_point(point, file.as_deref());
                self.ok("durability point", done);
            }
        }
    }

    /// A durability point cut short by an injected I/O error. Returns the states the disk may
    /// come back as: before the point, after it, and for sync and commit the flush alone.
    fn cut_short(&mut self) -> Vec<Outcome> {
        let (point, file) = self.random_point();
        let before = self.model.durable.clone();
        let mut after = self.model.clone();
        after.apply(point, file.as_deref(), &self.next_image());
        let mut flushed = self.model.clone();
        flushed.apply(Point::Sync, None, "");
        let budget = self.rng.below(24) as i64;
        self.sim.fail_after(budget);
        let done = self.durability_point(point, file.as_deref());
        self.log
            .push(format!("  (failing after {budget} writes: {done:?})"));
        match (done, point) {
            (Ok(()), _) => vec![self.model.durable.clone()],
            (Err(_), Point::Sync | Point::Commit) => vec![before, after.durable, flushed.durable],
            (Err(_), _) => vec![before, after.durable],
        }
    }

    /// Cuts the power, reopens, and checks the disk came back as one of `candidates`.
    fn crash_and_check(&mut self, candidates: Vec<Outcome>) {
        let crash_seed = self.rng.next();
        self.log.push(format!("crash (seed {crash_seed})"));
        let after = self.sim.crash(crash_seed);
        drop((self.vol.take(), self.store.take()));
        self.sim = after;
        let store = Store::open(STORE, options(&self.sim, self.block_size));
        let store = self.ok("reopen after the crash", store);
        check_packs(&self.sim, &store).unwrap_or_else(|e| self.fail(e));
        let vol = self.ok("open container", store.open_container(CONTAINER));
        let tree = tree_of(&vol).unwrap_or_else(|e| self.fail(e));
        let mut images = BTreeMap::new();
        for image in self.ok("listing images", store.images()) {
            let read = image_tree(&store, &image.name);
            images.insert(image.name, read.unwrap_or_else(|e| self.fail(e)));
        }
        let found = candidates
            .iter()
            .position(|c| c.state.tree() == tree && c.images == images);
        let Some(found) = found else {
            let mut report = String::new();
            for (i, c) in candidates.iter().enumerate() {
                report += &format!("\ncandidate {i}:\n{}", diff(&c.state.tree(), &tree));
                for (name, want) in &c.images {
                    let got = images.get(name).cloned().unwrap_or_default();
                    report += &format!("\n image {name}:\n{}", diff(want, &got));
                }
            }
            self.fail(format!(
                "the crash left a state no durability point allows:{report}"
            ));
        };
        self.log.push(format!("  came back as candidate {found}"));
        let outcome = candidates[found].clone();
        self.model.live = outcome.state.clone();
        self.model.flushed = outcome.state.data.clone();
        self.model.durable = outcome;
        (self.store, self.vol) = (Some(store), Some(vol));
    }
}

/// Makes a tree of `(path, bytes)` files and the directories above them.
fn tree(files: Vec<(&str, Vec<u8>)>) -> Tree {
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
fn base_tree() -> Tree {
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

fn write_tree(root: &Path, tree: &Tree) {
    std::fs::create_dir_all(root).unwrap();
    for (path, entry) in tree {
        match entry {
            Entry::Dir => std::fs::create_dir_all(root.join(path)).unwrap(),
            Entry::File(data) => std::fs::write(root.join(path), data).unwrap(),
        }
    }
}

/// Seeds to run: `TESSERA_CRASH_SEED` alone, else `TESSERA_CRASH_SEEDS` (or `default`) seeds.
fn seeds(default: u64) -> Vec<u64> {
    let var = |name| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    match var("TESSERA_CRASH_SEED") {
        Some(seed) => vec![seed],
        None => (0..var("TESSERA_CRASH_SEEDS").unwrap_or(default)).collect(),
    }
}

#[test]
fn random_operations_survive_crashes() {
    let base = base_tree();
    let tmp = tempfile::tempdir().unwrap();
    write_tree(&tmp.path().join("base"), &base);
    for seed in seeds(40) {
        let mut run = Run::start(seed, &tmp.path().join("base"), &base);
        for _round in 0..3 {
            for _ in 0..5 + run.rng.below(40) {
                run.step();
            }
            let candidates = match run.rng.below(3) {
                0 => run.cut_short(),
                _ => vec![run.model.durable.clone()],
            };
            run.crash_and_check(candidates);
        }
        // The store keeps working after the crashes: everything synced survives one more.
        for _ in 0..10 {
            run.step();
        }
        let synced = run.durability_point(Point::Sync, None);
        run.ok("final sync", synced);
        run.crash_and_check(vec![run.model.durable.clone()]);
    }
}

/// A store on a fresh disk with one empty image and the container on it, open.
fn empty_store(sim: &Arc<SimIo>) -> (Store, Volume) {
    let store = Store::init(STORE, options(sim, 4096)).unwrap();
    store.create_empty_image("empty").unwrap();
    store.create_container(CONTAINER, "empty").unwrap();
    let v = store.open_container(CONTAINER).unwrap();
    (store, v)
}

/// The disk fills up (ENOSPC after some writes) during fsync, sync or commit: the call fails
/// and nothing panics; the view keeps showing the data; after `heal` the same data (and more)
/// is written and synced, and a crash then keeps it all, with what was durable untouched.
/// (It found a seal that forgot its pack, and a database that stayed failed after one error.)
#[test]
fn a_full_disk_fails_durability_points_and_heals() {
    let mut failed = 0;
    for budget in 0..60u64 {
        let point = [Point::Fsync, Point::Sync, Point::Commit][budget as usize % 3];
        let context = format!("budget {budget}, {point:?}");
        let run_point = |store: &Store, v: &Volume, f: NodeId| match point {
            Point::Fsync => v.fsync(f),
            Point::Commit if store.image_record("snap").is_err() => {
                store.commit_container(CONTAINER, "snap").map(drop)
            }
            _ => store.sync(),
        };
        let sim = SimIo::new(SimOptions::default());
        let (store, v) = empty_store(&sim);
        let keep = v
            .create(v.root(), b"keep", 0o644, Caller::ROOT)
            .unwrap()
            .node;
        v.write(keep, 0, &bytes(1, 100_000)).unwrap();
        v.fsync(keep).unwrap();
        let f = v.create(v.root(), b"f", 0o644, Caller::ROOT).unwrap().node;
        let mut expected = bytes(budget + 10, 150_000);
        v.write(f, 0, &expected).unwrap();

        sim.fail_after((budget / 3) as i64);
        let first = run_point(&store, &v, f);
        if let Err(e) = &first {
            failed += 1;
            let kind = e.kind();
            assert!(
                matches!(kind, ErrorKind::NoSpace | ErrorKind::Io),
                "{context}: {e}"
            );
        }
        let snap_at_first = store.image_record("snap").is_ok().then(|| expected.clone());
        assert_eq!(
            read_all(&v, "f"),
            content(&expected),
            "{context}: while full"
        );
        v.write(f, 149_000, b"while full").unwrap();
        expected[149_000..149_010].copy_from_slice(b"while full");
        sim.heal();
        v.write(f, 7, b"after heal").unwrap();
        expected[7..17].copy_from_slice(b"after heal");
        let snap_expected = snap_at_first.unwrap_or_else(|| expected.clone());
        if let Err(e) = run_point(&store, &v, f) {
            panic!("{context}: fails after heal (first try: {first:?}): {e}");
        }
        assert_eq!(
            read_all(&v, "f"),
            content(&expected),
            "{context}: after heal"
        );

        let after = sim.crash(budget);
        drop((v, store));
        let store = Store::open(STORE, options(&after, 4096))
            .unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
        check_packs(&after, &store).unwrap_or_else(|e| panic!("{context}: {e}"));
        let v = store.open_container(CONTAINER).unwrap();
        assert_eq!(
            read_all(&v, "keep"),
            content(&bytes(1, 100_000)),
            "{context}: lost"
        );
        assert_eq!(
            read_all(&v, "f"),
            content(&expected),
            "{context}: synced data lost"
        );
        if let Point::Commit = point {
            let image = store.open_image("snap").unwrap();
            assert_eq!(
                read_all(&image, "f"),
                content(&snap_expected),
                "{context}: image"
            );
        }
    }
    assert!(
        failed >= 20,
        "only {failed} of 60 runs met the injected failure"
    );
}

/// What the imports bring: blocks shared with the base image, new data over several packs,
/// zeros, an empty directory.
fn import_tree() -> Tree {
    let mut tree = tree(vec![
        ("app/bin/tool", bytes(1, 300_000)),
        ("app/lib/one.so", bytes(11, 400_000)),
        ("app/lib/two.so", bytes(12, 200_000)),
        ("app/etc/config", b"key=value\n".to_vec()),
        ("app/zeros", vec![0; 100_000]),
    ]);
    tree.insert("app/empty".into(), Entry::Dir);
    tree
}

/// A store on `sim` with the base image and a container holding one fsync'd file.
fn store_with_base(sim: &Arc<SimIo>, base_src: &Path) -> Store {
    let store = Store::init(STORE, options(sim, 4096)).unwrap();
    store.import_path(base_src, "base").unwrap();
    store.create_container(CONTAINER, "base").unwrap();
    let v = store.open_container(CONTAINER).unwrap();
    let node = v
        .create(v.root(), b"kept", 0o644, Caller::ROOT)
        .unwrap()
        .node;
    v.write(node, 0, &bytes(5, 50_000)).unwrap();
    v.fsync(node).unwrap();
    store
}

/// Reopens a store after a crash during an import and checks what was there before.
fn reopen_after_import_crash(sim: &Arc<SimIo>, base: &Tree, context: &str) -> Store {
    let store =
        Store::open(STORE, options(sim, 4096)).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    check_packs(sim, &store).unwrap_or_else(|e| panic!("{context}: {e}"));
    assert_eq!(
        image_tree(&store, "base").as_ref(),
        Ok(base),
        "{context}: base image"
    );
    let v = store.open_container(CONTAINER).unwrap();
    assert_eq!(
        read_all(&v, "kept"),
        content(&bytes(5, 50_000)),
        "{context}: lost"
    );
    store
}

/// An import cut short by an injected I/O error at every point (pack appends, index writes,
/// metadata commits, publishing), then a power cut: the image is there completely or not at
/// all, the store reopens clean (staging packs and layers swept) and imports it again. Odd
/// budgets first heal the disk and check the store in process: a failed import shows no image
/// (it found a failed publish that left its image record over deleted layers).
#[test]
fn crash_during_import_leaves_all_or_nothing() {
    let (base, imported) = (base_tree(), import_tree());
    let tmp = tempfile::tempdir().unwrap();
    let (base_src, src) = (tmp.path().join("base"), tmp.path().join("imp"));
    write_tree(&base_src, &base);
    write_tree(&src, &imported);
    let mut published = 0;
    for budget in 0..70u64 {
        let context = format!("budget {budget}");
        let sim = SimIo::new(SimOptions::default());
        let store = store_with_base(&sim, &base_src);
        sim.fail_after(budget as i64);
        let result = store.import_path(&src, "imp");
        let healed = budget % 2 == 1;
        if healed {
            sim.heal();
            if result.is_err() {
                let gone = store.open_image("imp").map(drop).map_err(|e| e.kind());
                assert_eq!(gone, Err(ErrorKind::NotFound), "{context}: half an image");
                let again = store.import_path(&src, "imp");
                again.unwrap_or_else(|e| panic!("{context}: import after heal: {e}"));
            }
            assert_eq!(
                image_tree(&store, "imp").as_ref(),
                Ok(&imported),
                "{context}"
            );
            store
                .sync()
                .unwrap_or_else(|e| panic!("{context}: sync after heal: {e}"));
        }
        let after = sim.crash(budget);
        drop(store);
        let store = reopen_after_import_crash(&after, &base, &context);
        match image_tree(&store, "imp") {
            Ok(tree) => {
                assert!(
                    tree == imported,
                    "{context}: partial image:\n{}",
                    diff(&imported, &tree)
                );
                published += 1;
            }
            Err(_) if result.is_ok() || healed => panic!("{context}: the imported image is lost"),
            Err(_) => {
                let again = store.import_path(&src, "imp");
                again.unwrap_or_else(|e| panic!("{context}: import after the crash: {e}"));
                assert_eq!(
                    image_tree(&store, "imp").as_ref(),
                    Ok(&imported),
                    "{context}"
                );
            }
        }
    }
    assert!(published > 0, "no budget let the import finish");
}

type Hook<'h> = &'h dyn Fn(usize) -> EngineResult<()>;
type Feeder<'f> = Box<dyn FnOnce(&mut LayerFeed) -> EngineResult<()> + 'f>;

/// Imports a two-layer image (the second adds a file and whites one out), calling `hook`
/// before each entry with its index.
fn import_two_layers(store: &Store, hook: Hook<'_>) -> EngineResult<()> {
    let upper = Tree::from([
        ("app/lib/.wh.two.so".to_string(), Entry::File(Vec::new())),
        ("app/new".to_string(), Entry::File(bytes(21, 50_000))),
    ]);
    let feed = |feed: &mut LayerFeed, tree: &Tree, first: usize| -> EngineResult<()> {
        for (i, (path, entry)) in tree.iter().enumerate() {
            hook(first + i)?;
            let meta = EntryMeta {
                perm: 0o755,
                ..Default::default()
            };
            match entry {
                Entry::Dir => feed.entry(path.as_bytes(), EntryKind::Dir, meta)?,
                Entry::File(d) => feed.file(path.as_bytes(), meta, d.len() as u64, &mut &d[..])?,
            }
        }
        Ok(())
    };
    let lower = import_tree();
    let layers: Vec<Feeder<'_>> = vec![
        Box::new(|f: &mut LayerFeed| feed(f, &lower, 0)),
        Box::new(|f: &mut LayerFeed| feed(f, &upper, lower.len())),
    ];
    store.import_layers("imp", None, layers).map(drop)
}

/// A power cut while an import feeds entries — before or after its first layer's tree reached
/// the metadata, with or without a sync just before (which makes the unpublished staging layer
/// durable): no image after the crash, the store reopens clean, and the same import then
/// succeeds and survives another crash.
#[test]
fn crash_while_an_import_feeds_entries() {
    let base = base_tree();
    let tmp = tempfile::tempdir().unwrap();
    write_tree(&tmp.path().join("base"), &base);
    let mut expected = import_tree();
    expected.remove("app/lib/two.so");
    expected.insert("app/new".into(), Entry::File(bytes(21, 50_000)));
    for cut in 0..import_tree().len() + 2 {
        for sync_first in [false, true] {
            let context = format!("cut before entry {cut}, sync first: {sync_first}");
            let sim = SimIo::new(SimOptions::default());
            let store = store_with_base(&sim, &tmp.path().join("base"));
            let crashed: RefCell<Option<Arc<SimIo>>> = RefCell::new(None);
            let hook = |i: usize| {
                if i == cut {
                    if sync_first {
                        store.sync()?;
                    }
                    *crashed.borrow_mut() = Some(sim.crash(cut as u64));
                    return Err(Error::InvalidInput("power cut".into()));
                }
                Ok(())
            };
            assert!(import_two_layers(&store, &hook).is_err(), "{context}");
            drop(store);
            let after = crashed.take().expect("the hook crashed the disk");
            let store = reopen_after_import_crash(&after, &base, &context);
            assert!(
                store.open_image("imp").is_err(),
                "{context}: an unpublished image"
            );
            import_two_layers(&store, &|_| Ok(()))
                .unwrap_or_else(|e| panic!("{context}: import after the crash: {e}"));
            let tree = image_tree(&store, "imp").unwrap_or_else(|e| panic!("{context}: {e}"));
            assert!(tree == expected, "{context}:\n{}", diff(&expected, &tree));
            let again = after.crash(cut as u64 + 1000);
            drop(store);
            let store = reopen_after_import_crash(&again, &base, &context);
            assert_eq!(
                image_tree(&store, "imp").as_ref(),
                Ok(&expected),
                "{context}"
            );
        }
    }
}
