//! `tessera bench copy-up` (DESIGN.md §8): one workload on several systems side by side — a
//! small write into the middle of large lower files, SQLite updates on a database from the
//! image, random 4 KiB writes with fio, and N containers each editing the same large file.
//! Per system: time of the first write, bytes added to the writable layer, total disk used,
//! memory growth. Caches are dropped before each measurement; every write changes the byte
//! to a value no other run wrote, so dedup never hides a write.

use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde_json::Value;

use super::bed::{Bed, BedOptions, Usage};
use super::data::{self, Lowers};
use super::memory::{Growth, Snapshot};
use super::probe::{self, WriteTiming};
use super::report::{Report, Table, Unit};
use super::{Common, Env, System, fio, guard};

/// One workload on several systems side by side (DESIGN.md §8).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    tessera bench copy-up\n  \
    tessera bench copy-up --sizes 64M,1G,4G --workloads small-write --json\n  \
    tessera bench copy-up --sizes 64M --db-size 32M --updates 100 --image-size 128M \\\n    \
      --writes 2000 --runs 1   # a quick pass")]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Sizes of the lower files the small write goes into.
    #[arg(long, value_delimiter = ',', value_parser = super::parse_size, default_value = "64M,1G")]
    sizes: Vec<u64>,
    /// Systems to compare (those not available here are skipped with a note).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tessera,overlayfs,overlayfs-reflink,fuse-overlayfs"
    )]
    systems: Vec<System>,
    /// Workloads to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "small-write,sqlite,random-write,containers"
    )]
    workloads: Vec<Workload>,
    /// Small-write runs per size and system, each in a fresh container (the median is
    /// shown).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Sizes above this get one small-write run (a whole-file copy-up is not cheap).
    #[arg(long, value_parser = super::parse_size, default_value = "1G")]
    runs_up_to: u64,
    /// Size of the SQLite database in the image.
    #[arg(long, value_parser = super::parse_size, default_value = "256M")]
    db_size: u64,
    /// Single-row UPDATE transactions on it.
    #[arg(long, default_value_t = 1000)]
    updates: u64,
    /// SQLite journal modes to run the transactions in, one table each (delete: the rollback
    /// journal, sqlite3's default; wal: write-ahead log).
    #[arg(long, value_delimiter = ',', default_value = "delete,wal")]
    journal_modes: Vec<JournalMode>,
    /// Size of the image file the random writes and the N containers edit.
    #[arg(long, value_parser = super::parse_size, default_value = "1G")]
    image_size: u64,
    /// Random 4 KiB writes (fio --number_ios).
    #[arg(long, default_value_t = 20_000)]
    writes: u64,
    /// Run the random writes for this many seconds instead of a number of writes.
    #[arg(long)]
    seconds: Option<u64>,
    /// Containers editing the same file.
    #[arg(long, default_value_t = 4)]
    containers: usize,
}

/// A SQLite journal mode (`PRAGMA journal_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum JournalMode {
    /// The rollback journal, created and deleted per transaction (sqlite3's default).
    Delete,
    /// The write-ahead log.
    Wal,
}

impl JournalMode {
    fn pragma(self) -> &'static str {
        match self {
            JournalMode::Delete => "delete",
            JournalMode::Wal => "wal",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// A 1-byte write + fsync into the middle of a large lower file.
    SmallWrite,
    /// Single-row UPDATE transactions on a SQLite database from the image.
    Sqlite,
    /// Random 4 KiB writes into an image file (fio).
    RandomWrite,
    /// N containers each change one byte of the same large file.
    Containers,
}

pub fn run(env: &Env, args: &Args) -> Result<Report> {
    let mut report = Report::new(&env.machine);
    let lowers = Lowers::new(env.scratch.subdir("lower")?);
    report.note(
        "memory = growth of Cached + AnonPages (/proc/meminfo) from after drop_caches to after \
         the workload; attributed = growth of the page cache of the files involved (fincore) \
         plus RssAnon of the serving processes (Tessera serves in this process)",
    );
    report.note(
        "bytes added: Tessera = growth of the store's allocated bytes (packs + metadata) after \
         sync, block data = growth of stored block bytes; overlayfs and fuse-overlayfs = \
         allocated bytes of the upper dirs; overlayfs-reflink = growth of the bytes used on its xfs",
    );
    for workload in &args.workloads {
        match workload {
            Workload::SmallWrite => {
                for &size in &args.sizes {
                    small_write(env, args, &lowers, size, &mut report)?;
                }
            }
            Workload::Sqlite => {
                for mode in &args.journal_modes {
                    sqlite(env, args, &lowers, *mode, &mut report)?;
                }
            }
            Workload::RandomWrite => random_write(env, args, &lowers, &mut report)?,
            Workload::Containers => containers(env, args, &lowers, &mut report)?,
        }
    }
    Ok(report.finish())
}

/// Sets up each system in turn over `lower` and runs `measure` on it; a system that cannot be
/// set up here (other than Tessera) is skipped with a note.
pub fn each_system(
    env: &Env,
    systems: &[System],
    lower: &Path,
    opts: BedOptions,
    report: &mut Report,
    table: &mut Table,
    mut measure: impl FnMut(&Bed) -> Result<Vec<Value>>,
) -> Result<()> {
    for &system in systems {
        guard::check()?;
        let spinner = env.step(&format!("{}: {}", table.title, system.name()));
        let bed = match Bed::new(system, lower, &env.scratch, opts) {
            Ok(bed) => bed,
            Err(e) if !system.is_tessera() => {
                guard::check()?;
                spinner.finish();
                report.note(format!(
                    "{} skipped in \"{}\": {}",
                    system.name(),
                    table.title,
                    crate::output::error_line(&e)
                ));
                continue;
            }
            Err(e) => return Err(e.context(format!("setting up {}", system.name()))),
        };
        let values = measure(&bed).with_context(|| format!("measuring {}", system.name()));
        spinner.finish();
        table.row(system.name(), values?);
    }
    Ok(())
}

/// The byte at `offset` of the lower file, so a write can be made to change it.
fn lower_byte(lower: &Path, rel: &str, offset: u64) -> Result<u8> {
    let mut byte = [0u8];
    std::fs::File::open(lower.join(rel))?.read_exact_at(&mut byte, offset)?;
    Ok(byte[0])
}

/// A measurement window: usage and memory before, then after.
struct Window {
    usage: Usage,
    memory: Snapshot,
}

impl Window {
    /// Usage first (it syncs), then drop caches, then the memory snapshot.
    fn open(bed: &Bed, rel: &str) -> Result<Window> {
        let usage = bed.usage()?;
        bed.drop_caches()?;
        let memory = Snapshot::take(&bed.attribution(rel));
        Ok(Window { usage, memory })
    }

    fn close(self, bed: &Bed, rel: &str) -> Result<(Usage, Growth)> {
        let growth = Snapshot::take(&bed.attribution(rel)).growth_since(&self.memory);
        let added = bed.usage()?.added_since(&self.usage);
        Ok((added, growth))
    }
}

/// The columns every table here ends with: what the workload cost in disk and memory.
const COST_COLUMNS: [(&str, &str, Unit); 5] = [
    ("bytes_added", "bytes added", Unit::Bytes),
    ("block_bytes_added", "block data added", Unit::Bytes),
    ("disk_total", "total disk", Unit::Bytes),
    ("memory_growth", "memory", Unit::Bytes),
    ("memory_attributed", "attributed", Unit::Bytes),
];

/// A table of the workload's own `columns` followed by [`COST_COLUMNS`].
fn cost_table(title: String, columns: &[(&'static str, &'static str, Unit)]) -> Table {
    Table::new(title, &[columns, &COST_COLUMNS[..]].concat())
}

/// `row` followed by the cells of [`COST_COLUMNS`].
fn with_cost(mut row: Vec<Value>, added: &Usage, growth: Growth) -> Vec<Value> {
    row.extend([
        added.written.into(),
        added.blocks.map_or(Value::Null, Value::from),
        added.total.into(),
        growth.system.into(),
        growth.attributed.into(),
    ]);
    row
}

fn small_write(
    env: &Env,
    args: &Args,
    lowers: &Lowers,
    size: u64,
    report: &mut Report,
) -> Result<()> {
    let spinner = env.step(&format!(
        "generating a {} lower file",
        crate::output::size(size)
    ));
    let lower = lowers.big_file(size)?;
    spinner.finish();
    let runs = if size <= args.runs_up_to {
        args.runs.max(1)
    } else {
        1
    };
    let offset = size / 2;
    let original = lower_byte(&lower, data::BIG, offset)?;
    let mut table = cost_table(
        format!(
            "small write: 1 byte + fsync into the middle of a {} lower file",
            crate::output::size(size)
        ),
        &COLUMNS_FIRST_WRITE,
    )
    .how(format!(
        "open(O_WRONLY) + pwrite(1 byte at {offset}) + fsync + close, median of {runs} run(s), \
         each in a fresh container after drop_caches"
    ));
    let opts = env.bed_options(runs, super::DAEMON_CACHE_BYTES);
    each_system(
        env,
        &args.systems,
        &lower,
        opts,
        report,
        &mut table,
        |bed| {
            let mut timings = Vec::new();
            let mut results = Vec::new();
            for run in 0..runs {
                let window = Window::open(bed, data::BIG)?;
                let byte = original ^ (run as u8 + 1);
                timings.push(probe::first_write(
                    &bed.view(run).join(data::BIG),
                    offset,
                    byte,
                    true,
                )?);
                results.push(window.close(bed, data::BIG)?);
            }
            let t = probe::median_timing(&timings);
            let added = results[0].0;
            let med = |f: fn(&Growth) -> i64| {
                probe::median(&results.iter().map(|r| f(&r.1) as f64).collect::<Vec<_>>()) as i64
            };
            let growth = Growth {
                system: med(|g| g.system),
                attributed: med(|g| g.attributed),
            };
            Ok(with_cost(
                vec![t.total_ms.into(), t.open_ms.into(), t.fsync_ms.into()],
                &added,
                growth,
            ))
        },
    )?;
    report.tables.push(table);
    Ok(())
}

const COLUMNS_FIRST_WRITE: [(&str, &str, Unit); 3] = [
    ("first_write_ms", "first write", Unit::Ms),
    ("open_ms", "of it open", Unit::Ms),
    ("fsync_ms", "of it fsync", Unit::Ms),
];

fn sqlite(
    env: &Env,
    args: &Args,
    lowers: &Lowers,
    mode: JournalMode,
    report: &mut Report,
) -> Result<()> {
    let mode = mode.pragma();
    let spinner = env.step("generating the SQLite image");
    let (lower, rows) = lowers.sqlite(args.db_size)?;
    spinner.finish();
    let db_bytes = std::fs::metadata(lower.join(data::DB))?.len();
    let mut table = cost_table(
        format!(
            "SQLite: {} single-row UPDATE transactions on a {} database from the image, \
             journal_mode={mode}",
            args.updates,
            crate::output::size(db_bytes)
        ),
        &[
            ("first_txn_ms", "first txn", Unit::Ms),
            ("all_txns_s", "all txns", Unit::Seconds),
            ("txn_per_s", "txn/s", Unit::Count),
        ],
    )
    .how(format!(
        "sqlite3 defaults but the journal mode (synchronous=FULL), {rows} rows of 1000 bytes, \
         random rows; first txn = a sqlite3 process doing one UPDATE (includes the copy-up)"
    ));
    let opts = env.bed_options(1, super::DAEMON_CACHE_BYTES);
    let updates = args.updates.max(1);
    each_system(
        env,
        &args.systems,
        &lower,
        opts,
        report,
        &mut table,
        |bed| {
            let db = bed.view(0).join(data::DB);
            let window = Window::open(bed, data::DB)?;
            let first = probe::sqlite_updates(&db, mode, rows, 1, 1)?;
            let rest = probe::sqlite_updates(&db, mode, rows, updates - 1, 2)?;
            let (added, growth) = window.close(bed, data::DB)?;
            let all = (first + rest).as_secs_f64();
            Ok(with_cost(
                vec![
                    (first.as_secs_f64() * 1e3).into(),
                    all.into(),
                    (updates as f64 / all).into(),
                ],
                &added,
                growth,
            ))
        },
    )?;
    report.tables.push(table);
    Ok(())
}

fn random_write(env: &Env, args: &Args, lowers: &Lowers, report: &mut Report) -> Result<()> {
    let lower = lowers.big_file(args.image_size)?;
    let length = match args.seconds {
        Some(s) => fio::Length::Seconds(s),
        None => fio::Length::Ios(args.writes),
    };
    let mut table = cost_table(
        format!(
            "random 4 KiB writes into a {} image file",
            crate::output::size(args.image_size)
        ),
        &[
            ("iops", "IOPS", Unit::Iops),
            ("wall_s", "fio wall time", Unit::Seconds),
        ],
    )
    .how(format!(
        "{} (wall time includes open, i.e. the copy-up, and the final fsync)",
        fio::describe("randwrite", args.image_size, length)
    ));
    let opts = env.bed_options(1, super::DAEMON_CACHE_BYTES);
    each_system(
        env,
        &args.systems,
        &lower,
        opts,
        report,
        &mut table,
        |bed| {
            let window = Window::open(bed, data::BIG)?;
            let result = fio::run(
                &bed.view(0).join(data::BIG),
                "randwrite",
                args.image_size,
                length,
                &[],
            )?;
            let (added, growth) = window.close(bed, data::BIG)?;
            Ok(with_cost(
                vec![result.iops.into(), result.wall_s.into()],
                &added,
                growth,
            ))
        },
    )?;
    report.tables.push(table);
    Ok(())
}

fn containers(env: &Env, args: &Args, lowers: &Lowers, report: &mut Report) -> Result<()> {
    let lower = lowers.big_file(args.image_size)?;
    let n = args.containers.max(1);
    let offset = args.image_size / 2;
    let original = lower_byte(&lower, data::BIG, offset)?;
    let mut table = cost_table(
        format!(
            "{n} containers each change 1 byte of the same {} file",
            crate::output::size(args.image_size)
        ),
        &[
            ("first_write_ms", "median write", Unit::Ms),
            ("all_writes_ms", "all writes", Unit::Ms),
        ],
    )
    .how(format!(
        "one after another: open + pwrite(1 byte at {offset}, a different value per container) \
         + fsync + close; caches dropped once before the first"
    ));
    let opts = env.bed_options(n, super::DAEMON_CACHE_BYTES);
    each_system(
        env,
        &args.systems,
        &lower,
        opts,
        report,
        &mut table,
        |bed| {
            let window = Window::open(bed, data::BIG)?;
            let mut timings: Vec<WriteTiming> = Vec::new();
            for i in 0..bed.containers() {
                let byte = original ^ (i as u8 + 1);
                let path = bed.view(i).join(data::BIG);
                timings.push(probe::first_write(&path, offset, byte, true)?);
            }
            let (added, growth) = window.close(bed, data::BIG)?;
            Ok(with_cost(
                vec![
                    probe::median_timing(&timings).total_ms.into(),
                    timings.iter().map(|t| t.total_ms).sum::<f64>().into(),
                ],
                &added,
                growth,
            ))
        },
    )?;
    report.tables.push(table);
    Ok(())
}
