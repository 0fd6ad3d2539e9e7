//! Import throughput (`Store::import_path` of a directory) for unique and for duplicated data,
//! against a baseline of `/bin/cp -r` of the same source directory to a directory on the same
//! disk.
//!
//! Sources (setup, not measured): `unique` is 4 files of 64 MiB of random data; `duplicated`
//! is 8 copies of one random 64 MiB file. Both are written, fsynced and read once before any
//! measurement, so the source is in the page cache (warm) for every contender alike.
//!
//! Contenders, each timed from start to finish of one whole import or copy:
//! - `tessera/unique`: into a fresh store per iteration (every block is new);
//! - `tessera/duplicated`: into a store that already holds those blocks (every block dedups:
//!   fully duplicated data, the pull of an image whose layers are already present);
//! - `tessera/duplicated-fresh`: into a fresh store (the first copy is stored, 7/8 dedup);
//! - `cp/*`: `/bin/cp -r SRC DST`, data left dirty in the page cache (not durable);
//! - `cp+fsync/*`: the same, then fdatasync of every copied file (durable, like an import,
//!   which syncs its packs and commits before it returns).
//!
//! Targets: >= 1 GB/s for duplicated data; within 2x of cp for unique data.
//! Run: `cargo bench -p tessera-benches --bench import`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use tessera_benches::data::{self, Tree};
use tessera_benches::report::{self, Spread};
use tessera_benches::{BenchStore, bench_options, full_run};

/// A source directory and what it holds.
struct Source {
    label: &'static str,
    dir: PathBuf,
    tree: Tree,
}

/// Wall-clock and CPU time (this process and its children) of one measured run.
struct Clock {
    wall: Instant,
    cpu: Duration,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            cpu: report::cpu_time(),
            wall: Instant::now(),
        }
    }

    /// (wall, cpu) since the start.
    fn stop(self) -> (Duration, Duration) {
        let wall = self.wall.elapsed();
        (wall, report::cpu_time().saturating_sub(self.cpu))
    }
}

/// Times of every measured iteration, by contender.
#[derive(Default)]
struct Runs {
    times: BTreeMap<String, Vec<Duration>>,
    /// CPU seconds used over all runs, and wall seconds, by contender.
    cpu: BTreeMap<String, (f64, f64)>,
    /// Bytes each tessera contender's last import added to its store.
    added: BTreeMap<String, u64>,
}

impl Runs {
    fn record(&mut self, id: &str, (time, cpu): (Duration, Duration)) -> Duration {
        self.times.entry(id.to_string()).or_default().push(time);
        let total = self.cpu.entry(id.to_string()).or_default();
        total.0 += cpu.as_secs_f64();
        total.1 += time.as_secs_f64();
        time
    }

    /// Cores busy on average during the contender's runs (CPU time / wall time).
    fn cores_busy(&self, id: &str) -> String {
        match self.cpu.get(id) {
            Some((cpu, wall)) if *wall > 0.0 => format!("{:.2}", cpu / wall),
            _ => "-".into(),
        }
    }

    /// Megabytes per second of the median iteration, if the contender ran.
    fn mb_per_s(&self, id: &str, bytes: u64) -> Option<f64> {
        let times = self.times.get(id).filter(|t| !t.is_empty())?;
        Some(report::mb_per_s(bytes, Spread::of(times).median))
    }
}

fn sources(scratch: &Path) -> Vec<Source> {
    let (file_len, unique_files, dup_files) = if full_run() {
        (64 << 20, 4, 8)
    } else {
        (4 << 20, 2, 2)
    };
    let unique = Source {
        label: "unique",
        dir: scratch.join("src-unique"),
        tree: Tree {
            files: unique_files,
            file_len,
        },
    };
    let duplicated = Source {
        label: "duplicated",
        dir: scratch.join("src-duplicated"),
        tree: Tree {
            files: dup_files,
            file_len,
        },
    };
    data::write_unique_tree(&unique.dir, data::seed::UNIQUE, unique.tree).expect("source");
    data::write_duplicated_tree(&duplicated.dir, data::seed::DUPLICATED, duplicated.tree)
        .expect("source");
    for source in [&unique, &duplicated] {
        data::warm_tree(&source.dir).expect("warming the source");
    }
    vec![unique, duplicated]
}

/// One import into a fresh store; returns the measured time.
fn import_fresh(runs: &mut Runs, id: &str, src: &Path) -> Duration {
    let store = BenchStore::new(bench_options());
    let clock = Clock::start();
    let report = store.import_path(src, "img").expect("import");
    let time = clock.stop();
    runs.added.insert(id.to_string(), report.added_bytes);
    runs.record(id, time)
}

/// One import into `store`, which already holds every block of `src`.
fn import_again(runs: &mut Runs, id: &str, store: &BenchStore, src: &Path) -> Duration {
    let clock = Clock::start();
    let report = store.import_path(src, "again").expect("import");
    let time = clock.stop();
    store.remove_image("again").expect("removing the image");
    runs.added.insert(id.to_string(), report.added_bytes);
    runs.record(id, time)
}

/// One `cp -r` of `src` to `dst` (then fdatasync of every file if `durable`).
fn copy(runs: &mut Runs, id: &str, src: &Path, dst: &Path, durable: bool) -> Duration {
    let clock = Clock::start();
    let status = Command::new("/bin/cp")
        .arg("-r")
        .arg(src)
        .arg(dst)
        .status()
        .expect("running /bin/cp");
    assert!(status.success(), "cp -r failed: {status}");
    if durable {
        for entry in std::fs::read_dir(dst).expect("listing the copy") {
            let file = std::fs::File::open(entry.expect("entry").path()).expect("open");
            file.sync_data().expect("fdatasync");
        }
        std::fs::File::open(dst)
            .and_then(|d| d.sync_all())
            .expect("fsync dir");
    }
    let time = clock.stop();
    std::fs::remove_dir_all(dst).expect("removing the copy");
    runs.record(id, time)
}

fn import(c: &mut Criterion) {
    let scratch = tempfile::Builder::new()
        .prefix("tessera-bench-import-")
        .tempdir()
        .expect("scratch directory");
    let sources = sources(scratch.path());
    let dst = scratch.path().join("cp-dst");
    let mut runs = Runs::default();
    let mut group = c.benchmark_group("import");
    group.sampling_mode(SamplingMode::Flat);
    for source in &sources {
        group.throughput(Throughput::Bytes(source.tree.bytes()));
        let src = source.dir.as_path();
        // Into a fresh store: unique data is all stored, duplicated data once of 8 times.
        let fresh = match source.label {
            "unique" => "unique",
            _ => "duplicated-fresh",
        };
        let id = format!("tessera/{fresh}");
        group.bench_function(BenchmarkId::new("tessera", fresh), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| import_fresh(&mut runs, &id, src)).sum())
        });
        if source.label == "duplicated" {
            // Into a store that holds every block already: all of it dedups.
            let store = BenchStore::new(bench_options());
            store.import_path(src, "seed").expect("seeding the store");
            let id = "tessera/duplicated";
            group.bench_function(BenchmarkId::new("tessera", source.label), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| import_again(&mut runs, id, &store, src))
                        .sum()
                })
            });
        }
        for (name, durable) in [("cp", false), ("cp+fsync", true)] {
            let id = format!("{name}/{}", source.label);
            group.bench_function(BenchmarkId::new(name, source.label), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| copy(&mut runs, &id, src, &dst, durable))
                        .sum()
                })
            });
        }
    }
    group.finish();
    summary(&runs, &sources);
}

fn summary(runs: &Runs, sources: &[Source]) {
    let mut rows = Vec::new();
    for source in sources {
        let bytes = source.tree.bytes();
        let label = source.label;
        let cp = runs.mb_per_s(&format!("cp/{label}"), bytes);
        let contenders = match label {
            "unique" => vec!["tessera/unique"],
            _ => vec!["tessera/duplicated", "tessera/duplicated-fresh"],
        };
        let contenders = contenders
            .into_iter()
            .map(String::from)
            .chain([format!("cp/{label}"), format!("cp+fsync/{label}")]);
        for id in contenders {
            let Some(mbps) = runs.mb_per_s(&id, bytes) else {
                continue;
            };
            let target = match (id.as_str(), cp) {
                ("tessera/unique", Some(cp)) if mbps * 2.0 >= cp => "met (within 2x of cp)",
                ("tessera/unique", Some(_)) => "MISSED (within 2x of cp)",
                ("tessera/duplicated", _) if mbps >= 1000.0 => "met (>= 1000 MB/s)",
                ("tessera/duplicated", _) => "MISSED (>= 1000 MB/s)",
                _ => "-",
            };
            let added = match runs.added.get(&id) {
                Some(bytes) => format!("{:.1}", *bytes as f64 / (1 << 20) as f64),
                None => "-".into(),
            };
            rows.push(vec![
                id.clone(),
                format!("{} x {} MiB", source.tree.files, source.tree.file_len >> 20),
                runs.times[&id].len().to_string(),
                format!("{mbps:.0}"),
                cp.map_or("-".into(), |cp| format!("{:.2}", cp / mbps)),
                runs.cores_busy(&id),
                added,
                target.to_string(),
            ]);
        }
    }
    report::print_table(
        "import: median of every iteration incl. warm-up, decimal MB/s of file content, \
         source warm",
        &[
            "contender",
            "source",
            "runs",
            "MB/s",
            "time vs cp",
            "cores busy",
            "stored MiB",
            "target",
        ],
        &rows,
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = import
}
criterion_main!(benches);
