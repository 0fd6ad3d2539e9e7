//! Simulated power cuts through the one I/O seam under both the packs and the metadata database
//! (invariant 5 of docs/design.md). Every store here runs on `SimIo`, with no background flusher.
//!
//! `random_operations_survive_crashes` drives seeded random operations on a container (writes
//! of every size to new and lower files, creates, links, renames, unlinks, truncates, mkdir,
//! rmdir, clean reopens) with durability points in between (fsync, through the intent log when
//! it can, fsyncdir, sync, commit, and gc reclaiming every pack with garbage), and models what each point made
//! durable: `fsync(node)` covers that node's data, `Store::sync` and commit cover every node's,
//! and each point commits the whole namespace. The disk then crashes, between two operations or
//! inside a durability point cut short by an injected I/O error — at a call drawn uniformly
//! from all of the point's mutating I/O calls, which a dry run counts first (the round replayed
//! on a second disk: the same crashed disk, model and generator). The reopened store must show
//! exactly a state the model allows, keep every committed image intact, read every file without
//! error (no dangling block or page reference), hold no pack bytes beyond what its metadata
//! records, and keep working: each seed crashes the same disk four times. Failures print a
//! seed: `TESSERA_CRASH_SEED=n` replays it, `TESSERA_CRASH_SEEDS=n` runs n seeds.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tessera::Result as EngineResult;
use tessera::io::{SimIo, SimOptions};
use tessera::volume::Volume;
use tessera::{Caller, NodeId, RenameFlags, SetAttr, Store};
use tessera_tests::bytes;
use tessera_tests::crash::model::{Model, Outcome};
use tessera_tests::crash::*;

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
    /// The disk the store was last opened from: none (a fresh store), or the dead disk before
    /// the last crash and that crash's seed (crashing it again gives the same disk).
    origin: Option<(Arc<SimIo>, u64)>,
}

/// Where a round began: enough to replay it on another disk.
struct RoundStart {
    rng: u64,
    model: Model,
    origin: Option<(Arc<SimIo>, u64)>,
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
            origin: None,
        }
    }

    fn round_start(&self) -> RoundStart {
        RoundStart {
            rng: self.rng.0,
            model: self.model.clone(),
            origin: self.origin.clone(),
        }
    }

    /// A round's operations; whether it ends in a durability point cut short.
    fn operations(&mut self) -> bool {
        for _ in 0..5 + self.rng.below(40) {
            self.step();
        }
        self.rng.below(3) == 0
    }

    /// The dry run of a round that ends cut short: replays it from `start` on another disk
    /// and counts the mutating I/O calls of its last durability point, run whole.
    fn count_cut_point(&self, start: &RoundStart, src: &Path, base: &Tree) -> u64 {
        let mut twin = match &start.origin {
            None => Run::start(self.seed, src, base),
            Some((dead, crash_seed)) => {
                let mut twin = Run {
                    seed: self.seed,
                    rng: Rng(start.rng),
                    block_size: self.block_size,
                    sim: dead.crash(*crash_seed),
                    store: None,
                    vol: None,
                    model: start.model.clone(),
                    log: Vec::new(),
                    origin: None,
                };
                twin.reopen_after_crash().unwrap_or_else(|e| self.fail(e));
                twin
            }
        };
        (twin.rng, twin.model) = (Rng(start.rng), start.model.clone());
        assert!(twin.operations(), "seed {}: the replay diverged", self.seed);
        let (point, file) = twin.random_point();
        let before = twin.sim.mutating_calls();
        let done = twin.durability_point(point, file.as_deref());
        twin.ok("the dry run", done);
        twin.sim.mutating_calls() - before
    }

    /// Opens the store and the container on the disk a crash left.
    fn reopen_after_crash(&mut self) -> Result<(), String> {
        let store = Store::open(STORE, options(&self.sim, self.block_size));
        let store = store.map_err(|e| format!("reopen after the crash: {e}"))?;
        let vol = store.open_container(CONTAINER);
        let vol = vol.map_err(|e| format!("open container: {e}"))?;
        (self.store, self.vol) = (Some(store), Some(vol));
        Ok(())
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
            bytes(self.rng.next_u64(), len)
        };
        self.write_at(&path, offset, &data);
    }

    fn write_at(&mut self, path: &str, offset: usize, data: &[u8]) {
        let (node, len) = (self.model.live.files[path], data.len());
        self.log
            .push(format!("write {path} at {offset}, {len} bytes"));
        let written = self.vol().write(self.node(path), offset as u64, data);
        assert_eq!(self.ok("write", written), len);
        let buf = self.model.live.data.get_mut(&node).expect("live");
        buf.resize(buf.len().max(offset + len), 0);
        buf[offset..offset + len].copy_from_slice(data);
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
            Point::Reclaim => {
                let all = tessera::maintenance::GcOptions {
                    dry_run: false,
                    repack_below: 1.0,
                };
                store.gc(&all)?;
            }
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
            (9, _) => (Point::Sync, None),
            (10, _) => (Point::Reclaim, None),
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

    /// A durability point cut short by an injected I/O error at one of its `calls` mutating
    /// calls (or none). Returns the states the disk may come back as: before the point, after
    /// it, and for sync and commit the flush alone.
    fn cut_short(&mut self, calls: u64) -> Vec<Outcome> {
        let (point, file) = self.random_point();
        let before = self.model.durable.clone();
        let mut after = self.model.clone();
        after.apply(point, file.as_deref(), &self.next_image());
        let mut flushed = self.model.clone();
        flushed.apply(Point::Sync, None, "");
        let budget = self.rng.below(calls + 1) as i64;
        self.sim.fail_after(budget);
        let done = self.durability_point(point, file.as_deref());
        self.log.push(format!(
            "  (failing after {budget} of {calls} calls: {done:?})"
        ));
        if (self.sim.injected_failures() > 0) != (budget < calls as i64) {
            self.fail(format!(
                "the dry run counted {calls} calls: it was not faithful"
            ));
        }
        match (done, point) {
            (Ok(()), _) => vec![self.model.durable.clone()],
            (Err(_), Point::Sync | Point::Commit | Point::Reclaim) => {
                vec![before, after.durable, flushed.durable]
            }
            (Err(_), _) => vec![before, after.durable],
        }
    }

    /// Cuts the power, reopens, and checks the disk came back as one of `candidates`.
    fn crash_and_check(&mut self, candidates: Vec<Outcome>) {
        self.check_crash(candidates)
            .unwrap_or_else(|e| self.fail(e));
    }

    fn check_crash(&mut self, candidates: Vec<Outcome>) -> Result<(), String> {
        let crash_seed = self.rng.next_u64();
        self.log.push(format!("crash (seed {crash_seed})"));
        let after = self.sim.crash(crash_seed);
        drop((self.vol.take(), self.store.take()));
        self.origin = Some((std::mem::replace(&mut self.sim, after), crash_seed));
        self.reopen_after_crash()?;
        let (store, vol) = (self.store.clone().expect("open"), self.vol());
        check_packs(&self.sim, &store)?;
        let tree = tree_of(&vol)?;
        let mut images = BTreeMap::new();
        for image in store.images().map_err(|e| format!("listing images: {e}"))? {
            let read = image_tree(&store, &image.name);
            images.insert(image.name, read?);
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
            return Err(format!(
                "the crash left a state no durability point allows:{report}"
            ));
        };
        self.log.push(format!("  came back as candidate {found}"));
        let outcome = candidates[found].clone();
        self.model.live = outcome.state.clone();
        self.model.flushed = outcome.state.data.clone();
        self.model.durable = outcome;
        Ok(())
    }
}

#[test]
fn random_operations_survive_crashes() {
    let base = base_tree();
    let tmp = tempfile::tempdir().unwrap();
    write_tree(&tmp.path().join("base"), &base);
    let src = tmp.path().join("base");
    for seed in seeds(40) {
        let mut run = Run::start(seed, &src, &base);
        for _round in 0..3 {
            let start = run.round_start();
            let candidates = match run.operations() {
                true => {
                    let calls = run.count_cut_point(&start, &src, &base);
                    run.cut_short(calls)
                }
                false => vec![run.model.durable.clone()],
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

/// The check above is shown a store on a disk that skips one kind of sync (the intent log's,
/// the packs', the metadata database's) after a sync and an fsync through the log that both
/// returned: it must report the loss, and accept the same run on a sound disk.
#[test]
fn the_crash_check_catches_a_disk_that_skips_syncs() {
    let base = base_tree();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("base");
    write_tree(&src, &base);
    for broken in [None, Some("intent.log"), Some(".pack"), Some("meta.redb")] {
        let mut run = Run::start(0, &src, &base);
        run.sim.ignore_syncs_of(broken);
        run.write_at("usr/lib/big.bin", 1000, &bytes(31, 100_000));
        run.write_at("etc/hostname", 0, &bytes(32, 20_000));
        let synced = run.durability_point(Point::Sync, None);
        run.ok("sync", synced);
        run.write_at("etc/hostname", 5000, &bytes(33, 50_000));
        let logged = run.store.as_ref().expect("open").intent_log_fsyncs();
        let fsynced = run.durability_point(Point::Fsync, Some("etc/hostname"));
        run.ok("fsync", fsynced);
        let store = run.store.as_ref().expect("open");
        assert_eq!(store.intent_log_fsyncs(), logged + 1, "not through the log");
        let verdict = run.check_crash(vec![run.model.durable.clone()]);
        eprintln!("skipping syncs of {broken:?}: {verdict:?}");
        match broken {
            None => verdict.unwrap_or_else(|e| run.fail(e)),
            Some(suffix) => assert!(verdict.is_err(), "skipped syncs of {suffix} went unseen"),
        }
    }
}
