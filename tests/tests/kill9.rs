//! `kill -9` of the daemon under a running workload, round after round: a workload through a
//! real mount (writeback cache, the default) creates, writes, overwrites an image file,
//! renames, unlinks, fsyncs and commits while another thread kills the daemon at a random
//! moment. After each kill: `fsck --verify-data` is clean, every committed image holds exactly
//! what the container held when its commit returned, and every byte acknowledged by fsync (and
//! not written again since) is there; names made durable by fsyncdir exist, unlinked ones do
//! not. Then the container is mounted again and the workload goes on with the same model.
//!
//! Quick mode (CI): 5 rounds. Long mode: `TESSERA_KILL9_ROUNDS=200`.

// The harness of the CLI tests; this file uses part of it.
#[allow(dead_code)]
mod cli;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cli::*;
use tessera_tests::bytes;
use tessera_tests::mount::can_mount;

/// A small deterministic generator (xorshift64*), so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the workload knows of one file.
#[derive(Clone, Default)]
struct FileModel {
    /// Its contents as of the last fsync that returned.
    durable: Vec<u8>,
    /// Its contents now (every write that returned applied).
    current: Vec<u8>,
    /// Ranges written since that fsync (or by a write that failed): any bytes may be there.
    unsynced: Vec<(u64, u64)>,
}

impl FileModel {
    fn write(&mut self, at: u64, data: &[u8]) {
        let end = at as usize + data.len();
        if self.current.len() < end {
            self.current.resize(end, 0);
        }
        self.current[at as usize..end].copy_from_slice(data);
        self.unsynced.push((at, end as u64));
    }

    fn synced(&mut self) {
        self.durable = self.current.clone();
        self.unsynced.clear();
    }

    /// Checks what a restarted daemon shows against what was acknowledged.
    fn check(&self, name: &str, actual: &[u8]) -> Result<(), String> {
        let covered = |i: u64| self.unsynced.iter().any(|&(s, e)| s <= i && i < e);
        let grew = self
            .unsynced
            .iter()
            .any(|&(_, e)| e > self.durable.len() as u64);
        if actual.len() < self.durable.len() && !grew {
            return Err(format!(
                "{name}: {} bytes, but {} were fsync'd",
                actual.len(),
                self.durable.len()
            ));
        }
        for (i, want) in self.durable.iter().enumerate() {
            if covered(i as u64) {
                continue;
            }
            if actual.get(i) != Some(want) {
                return Err(format!(
                    "{name}: byte {i} is {:?}, fsync'd as {want}",
                    actual.get(i)
                ));
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Model {
    files: BTreeMap<String, FileModel>,
    /// Names whose existence an interrupted rename, unlink or create left open.
    uncertain: Vec<String>,
    /// Committed images and the container's files when the commit returned.
    images: Vec<(String, BTreeMap<String, Vec<u8>>)>,
    /// Images whose commit was interrupted: if they exist, they must be whole.
    maybe_images: Vec<(String, BTreeMap<String, Vec<u8>>)>,
    commits: u32,
}

impl Model {
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.files
            .iter()
            .map(|(name, f)| (name.clone(), f.current.clone()))
            .collect()
    }
}

/// A random file of the workload whose existence is certain.
fn pick(rng: &mut Rng, names: &[String], model: &Model) -> Option<String> {
    let name = names.get(rng.below(names.len().max(1) as u64) as usize)?;
    (!model.uncertain.contains(name)).then(|| name.clone())
}

/// One step of the workload. `Err` once the mount stops answering (the daemon is gone).
fn step(rng: &mut Rng, cli: &Cli, m: &Path, model: &mut Model) -> std::io::Result<()> {
    let names: Vec<String> = model
        .files
        .keys()
        .filter(|n| n.starts_with("w/"))
        .cloned()
        .collect();
    let dir = || File::open(m.join("w"));
    match rng.below(16) {
        // Write, then fsync: the bytes are acknowledged.
        0..=5 => {
            let name = if names.is_empty() || rng.below(4) == 0 {
                format!("w/n{}", rng.below(8))
            } else {
                names[rng.below(names.len() as u64) as usize].clone()
            };
            if model.uncertain.contains(&name) {
                return Ok(());
            }
            let created = !model.files.contains_key(&name);
            let len = 1 + rng.below(20_000) as usize;
            let size = model.files.get(&name).map_or(0, |f| f.current.len() as u64);
            let at = rng.below(size + 8192).min(400_000);
            let data = bytes(rng.next(), len);
            if created {
                // Its name is durable only once fsyncdir returned.
                model.uncertain.push(name.clone());
                model.files.insert(name.clone(), FileModel::default());
            }
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(m.join(&name))?;
            let f = model.files.get_mut(&name).unwrap();
            f.unsynced.push((at, at + len as u64)); // in flight
            file.write_all_at(&data, at)?;
            f.unsynced.pop();
            f.write(at, &data);
            file.sync_all()?;
            f.synced();
            if created {
                dir()?.sync_all()?;
                model.uncertain.retain(|n| *n != name);
            }
        }
        // Overwrite part of the image's file, then fdatasync (copy-up and the intent log).
        6..=8 => {
            let at = rng.below(1 << 20);
            let len = (1 + rng.below(9000) as usize).min((1 << 20) - at as usize);
            let data = bytes(rng.next(), len);
            let f = model.files.get_mut("big.bin").unwrap();
            f.unsynced.push((at, at + len as u64));
            let file = OpenOptions::new().write(true).open(m.join("big.bin"))?;
            file.write_all_at(&data, at)?;
            f.unsynced.pop();
            f.write(at, &data);
            file.sync_data()?;
            f.synced();
        }
        // A write nobody syncs (the flusher and the kernel's writeback may or may not have
        // taken it).
        9 | 10 => {
            let Some(name) = pick(rng, &names, model) else {
                return Ok(());
            };
            let len = 1 + rng.below(30_000) as usize;
            let at = rng.below(300_000);
            let data = bytes(rng.next(), len);
            let f = model.files.get_mut(&name).unwrap();
            f.unsynced.push((at, at + len as u64));
            OpenOptions::new()
                .write(true)
                .open(m.join(&name))?
                .write_all_at(&data, at)?;
            f.unsynced.pop();
            f.write(at, &data);
        }
        // Rename a synced file over another name, then fsyncdir.
        11 | 12 => {
            let Some(from) =
                pick(rng, &names, model).filter(|n| model.files[n].unsynced.is_empty())
            else {
                return Ok(());
            };
            let to = format!("w/n{}", rng.below(8));
            if to == from || model.uncertain.contains(&to) {
                return Ok(());
            }
            model.uncertain.extend([from.clone(), to.clone()]);
            std::fs::rename(m.join(&from), m.join(&to))?;
            let moved = model.files.remove(&from).unwrap();
            model.files.insert(to.clone(), moved);
            dir()?.sync_all()?;
            model.uncertain.retain(|n| *n != from && *n != to);
        }
        // Unlink, then fsyncdir.
        13 => {
            let Some(name) = pick(rng, &names, model) else {
                return Ok(());
            };
            model.uncertain.push(name.clone());
            std::fs::remove_file(m.join(&name))?;
            model.files.remove(&name);
            dir()?.sync_all()?;
            model.uncertain.retain(|n| *n != name);
        }
        // Commit (through the daemon): the image holds the container as it is now.
        _ => {
            if model.commits >= 6 || !model.uncertain.is_empty() {
                return Ok(());
            }
            model.commits += 1;
            let image = format!("snap{}", model.commits);
            let expected = model.snapshot();
            let out = cli.run(&["commit", "c1", "--name", &image]);
            if !out.status.success() {
                model.maybe_images.push((image, expected));
                return Err(std::io::Error::other("commit failed"));
            }
            model.images.push((image, expected));
            for f in model.files.values_mut() {
                f.synced();
            }
        }
    }
    Ok(())
}

/// Checks the store after a kill: fsck, the committed images, then (mounted again) every file.
fn check(cli: &Cli, m: &Path, model: &mut Model, round: u32) {
    let fsck = cli.ok(&["fsck", "--verify-data"]);
    assert!(fsck.contains("no problems found"), "round {round}: {fsck}");
    let images: Vec<String> = cli
        .json(&["images", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    let maybe = std::mem::take(&mut model.maybe_images);
    let present = maybe.into_iter().filter(|(name, _)| images.contains(name));
    let committed: Vec<_> = model.images.iter().cloned().chain(present).collect();
    for (image, expected) in &committed {
        assert!(
            images.contains(image),
            "round {round}: image {image} is gone"
        );
        let exported = cli.export(image);
        for (name, want) in expected {
            assert!(
                exported.get(name) == Some(want),
                "round {round}: {name} in image {image} differs from the container at commit"
            );
        }
        let extra: Vec<_> = exported
            .keys()
            .filter(|n| n.starts_with("w/n") && !expected.contains_key(*n))
            .collect();
        assert!(
            extra.is_empty(),
            "round {round}: {image} also holds {extra:?}"
        );
    }
    cli.mount("c1", m);
    for (name, f) in &model.files {
        if model.uncertain.contains(name) {
            continue;
        }
        let actual = std::fs::read(m.join(name))
            .unwrap_or_else(|e| panic!("round {round}: {name} (made durable) is gone: {e}"));
        if let Err(e) = f.check(name, &actual) {
            panic!("round {round}: {e}");
        }
    }
    for i in 0..8 {
        let name = format!("w/n{i}");
        let listed = model.files.contains_key(&name) || model.uncertain.contains(&name);
        assert!(
            listed || !m.join(&name).exists(),
            "round {round}: {name} was unlinked (fsyncdir returned) but exists"
        );
    }
    // Start the next round from what is there: uncertain names are removed, and every file
    // is what it now holds, made durable.
    for name in std::mem::take(&mut model.uncertain) {
        let _ = std::fs::remove_file(m.join(&name));
        model.files.remove(&name);
    }
    for (name, f) in model.files.iter_mut() {
        f.current = std::fs::read(m.join(name)).unwrap();
        f.unsynced.clear();
        let file = File::open(m.join(name)).unwrap();
        file.sync_all().unwrap();
        f.synced();
    }
    File::open(m.join("w")).unwrap().sync_all().unwrap();
}

#[test]
fn killed_daemon_loses_nothing_acknowledged() {
    if !can_mount() {
        return;
    }
    let rounds: u32 = std::env::var("TESSERA_KILL9_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("TESSERA_KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let cli = Cli::new(&["c1"]);
    let m = cli.mountpoint("m1");
    cli.mount("c1", &m);
    std::fs::create_dir(m.join("w")).unwrap();
    File::open(&m).unwrap().sync_all().unwrap();
    let mut model = Model::default();
    model.files.insert(
        "big.bin".into(),
        FileModel {
            durable: bytes(1, 1 << 20), // the image's (see cli::Cli::new)
            current: bytes(1, 1 << 20),
            unsynced: Vec::new(),
        },
    );
    let mut rng = Rng(seed);
    for round in 0..rounds {
        let pid = cli.daemon_pid().unwrap();
        // The keeper goes first: this is the crash that takes the mounts down (a killed
        // daemon under its keeper is `daemon_handover.rs`).
        let keeper = cli.keeper_pid().unwrap();
        signal(keeper, rustix::process::Signal::KILL);
        wait_dead(keeper, Duration::from_secs(10));
        let delay = Duration::from_millis(50 + rng.below(700));
        let stop = Arc::new(AtomicBool::new(false));
        let killer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                signal(pid, rustix::process::Signal::KILL);
                stop.store(true, Ordering::SeqCst);
            })
        };
        // Until an operation fails because the daemon is gone (a few more may still be
        // answered from the kernel's caches after the kill).
        let (mut steps, mut after_kill) = (0, 0);
        while step(&mut rng, &cli, &m, &mut model).is_ok() {
            steps += 1;
            if stop.load(Ordering::SeqCst) {
                after_kill += 1;
                assert!(after_kill < 1000, "the mount still answers after the kill");
            }
        }
        killer.join().unwrap();
        wait_dead(pid, Duration::from_secs(10));
        eprintln!("round {round}: killed after {delay:?}, {steps} steps");
        check(&cli, &m, &mut model, round);
    }
    cli.ok(&["umount", s(&m)]);
}
