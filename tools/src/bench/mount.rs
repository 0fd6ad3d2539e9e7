//! `tessera bench mount`: the FUSE performance targets, each measured against fuse-overlayfs
//! and kernel overlayfs in the same run — the first 1-byte write into a large image file,
//! sequential reads cold and warm (and the memory a cold read costs), random 4 KiB I/O with
//! fio. The share-memory and `chown -R` workloads live in [`super::mount_memory`]. Every
//! Tessera write workload also runs without the kernel's writeback cache (`tessera-write-through`).

use std::path::Path;

use anyhow::Result;
use clap::ValueEnum;
use serde_json::Value;

use super::bed::Bed;
use super::data::{self, Lowers};
use super::memory::Snapshot;
use super::probe;
use super::report::{Report, Table, Target, Unit};
use super::{Common, Env, System, fio, guard, mount_memory, mount_sync};

const GIB: f64 = (1u64 << 30) as f64;

/// The FUSE performance targets, against fuse-overlayfs and kernel overlayfs.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    tessera bench mount\n  \
    tessera bench mount --runtime 5 --file-size 256M --shared-size 128M --files 2000 --runs 3\n  \
    tessera bench mount --workloads first-write,fio --systems tessera,fuse-overlayfs --json")]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Systems to measure (tessera-shared only runs the shared-memory workload).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tessera,tessera-write-through,tessera-shared,fuse-overlayfs,overlayfs"
    )]
    pub systems: Vec<System>,
    /// Workloads to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "first-write,read,fio,shared-memory,chown,fsync"
    )]
    pub workloads: Vec<Workload>,
    /// Size of the image file written, read and fio'd.
    #[arg(long, value_parser = super::parse_size, default_value = "1G")]
    pub file_size: u64,
    /// fio --runtime in seconds (the targets are stated for 30).
    #[arg(long, default_value_t = 30)]
    pub runtime: u64,
    /// First-write probes per case (each in a fresh container; the median is shown).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Sequential-read rounds (drop_caches, cold read, warm read); medians are shown.
    #[arg(long, default_value_t = 3)]
    pub read_runs: usize,
    /// Size of the image file the shared-memory containers change and read.
    #[arg(long, value_parser = super::parse_size, default_value = "512M")]
    pub shared_size: u64,
    /// Containers in the shared-memory workload.
    #[arg(long, default_value_t = 4)]
    pub containers: usize,
    /// Block cache of the Tessera stores (`tessera mount --cache-size`): read-around for reads
    /// of part of a block, and every block in share-memory mode.
    #[arg(long, value_parser = super::parse_size, default_value = "1G")]
    pub cache_size: u64,
    /// Small files in the image `chown -R` walks.
    #[arg(long, default_value_t = 20_000)]
    pub files: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// The first 1-byte write into the image file (warm, and with fsync).
    FirstWrite,
    /// Sequential read of the image file, cold and warm, and its memory cost.
    Read,
    /// fio random 4 KiB writes and reads.
    Fio,
    /// N containers change a byte of the same file and read it whole: memory.
    SharedMemory,
    /// `chown -R` over a tree of small files from the image.
    Chown,
    /// fdatasync after a 4 KiB overwrite, against the disk's own.
    Fsync,
}

/// The figures the targets are judged on, by system.
#[derive(Default)]
pub struct Measured(Vec<(System, &'static str, f64)>);

impl Measured {
    pub fn put(&mut self, system: System, key: &'static str, value: f64) {
        self.0.push((system, key, value));
    }

    pub fn get(&self, system: System, key: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|(s, k, _)| *s == system && *k == key)
            .map(|e| e.2)
    }
}

struct Tables {
    write: Table,
    read: Table,
    fio: Table,
}

pub fn run(env: &Env, args: &Args) -> Result<Report> {
    let mut report = Report::new(&env.machine);
    let lowers = Lowers::new(env.scratch.subdir("lower")?);
    let mut measured = Measured::default();
    let size = crate::output::size(args.file_size);
    let length = fio::Length::Seconds(args.runtime);
    let mut tables = Tables {
        write: Table::new(
            format!("first 1-byte write into a {size} image file"),
            &[
                ("warm_ms", "open+write+close", Unit::Ms),
                ("warm_write_ms", "of it write", Unit::Ms),
                ("fsync_total_ms", "with fsync", Unit::Ms),
                ("fsync_ms", "of it fsync", Unit::Ms),
                ("bytes_added", "bytes added", Unit::Bytes),
                ("block_bytes_added", "block data added", Unit::Bytes),
            ],
        )
        .how(format!(
            "median of {} fresh containers per case; warm = the file was stat'ed first, no \
             drop_caches; bytes added after the fsync case",
            args.runs
        )),
        read: Table::new(
            format!("sequential read of a {size} image file (1 MiB read(2)s)"),
            &[
                ("cold_gib_s", "cold", Unit::GibPerSec),
                ("warm_gib_s", "warm", Unit::GibPerSec),
                ("cold_memory", "memory (cold read)", Unit::Bytes),
                ("cold_attributed", "attributed", Unit::Bytes),
            ],
        )
        .how(format!(
            "median of {} rounds of: drop_caches, cold read, warm read (the same file again); \
             memory = growth of Cached + AnonPages over the first cold read",
            args.read_runs.max(1)
        )),
        fio: Table::new(
            format!("random 4 KiB I/O on a {size} image file"),
            &[
                ("randwrite_iops", "randwrite IOPS", Unit::Iops),
                ("randwrite_added", "bytes added", Unit::Bytes),
                ("randwrite_settled", "added, 10 s later", Unit::Bytes),
                ("randread_iops", "randread IOPS", Unit::Iops),
                ("randread_warm_iops", "randread, cached", Unit::Iops),
            ],
        )
        .how(fio::describe("randwrite", args.file_size, length))
        .how(fio::describe("randread", args.file_size, length))
        .how(
            "each in a fresh container after drop_caches (fio's default invalidate=1 drops the \
             file's cache too); randread, cached = the same randread with --invalidate=0 after \
             reading the whole file once",
        )
        .how(
            "bytes added = the writable side's growth right after randwrite (Tessera: the \
             store's disk usage, no gc); 10 s later = the same after 10 s idle, once the \
             background reclaimer had its chance",
        ),
    };
    let wants = |w| args.workloads.contains(&w);
    if wants(Workload::FirstWrite) || wants(Workload::Read) || wants(Workload::Fio) {
        let spinner = env.step(&format!("generating a {size} lower file"));
        let lower = lowers.big_file(args.file_size)?;
        spinner.finish();
        for &system in &args.systems {
            if system == System::TesseraShared {
                continue;
            }
            guard::check()?;
            per_system(
                env,
                args,
                &lower,
                system,
                &mut tables,
                &mut measured,
                &mut report,
            )?;
        }
        for (workload, table) in [
            (Workload::FirstWrite, tables.write),
            (Workload::Read, tables.read),
            (Workload::Fio, tables.fio),
        ] {
            if wants(workload) {
                report.tables.push(table);
            }
        }
    }
    if wants(Workload::SharedMemory) {
        mount_memory::shared(env, args, &lowers, &mut measured, &mut report)?;
    }
    if wants(Workload::Fsync) {
        mount_sync::fsync(env, args, &lowers, &mut report)?;
    }
    if wants(Workload::Chown) {
        mount_memory::chown(env, args, &lowers, &mut measured, &mut report)?;
    }
    targets(args, &measured, &mut report);
    Ok(report.finish())
}

/// The first-write, read and fio workloads on one system, each in its own container(s).
fn per_system(
    env: &Env,
    args: &Args,
    lower: &Path,
    system: System,
    tables: &mut Tables,
    measured: &mut Measured,
    report: &mut Report,
) -> Result<()> {
    let runs = args.runs.max(1);
    let spinner = env.step(&format!("setting up {}", system.name()));
    let opts = env.bed_options(2 * runs + 3, args.cache_size);
    let bed = match Bed::new(system, lower, &env.scratch, opts) {
        Ok(bed) => bed,
        Err(e) if !system.is_tessera() => {
            guard::check()?;
            report.note(format!(
                "{} skipped: {}",
                system.name(),
                crate::output::error_line(&e)
            ));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    spinner.finish();
    let wants = |w| args.workloads.contains(&w);
    let writes_only = system == System::TesseraWriteThrough;
    if wants(Workload::FirstWrite) {
        let spinner = env.step(&format!("first writes on {}", system.name()));
        let values = first_writes(args, &bed, measured)?;
        spinner.finish();
        tables.write.row(system.name(), values);
    }
    if wants(Workload::Read) && !writes_only {
        let spinner = env.step(&format!("sequential reads on {}", system.name()));
        let values = reads(args, &bed, 2 * runs, measured)?;
        spinner.finish();
        tables.read.row(system.name(), values);
    }
    if wants(Workload::Fio) {
        let spinner = env.step(&format!("fio on {}", system.name()));
        let values = fio_runs(args, &bed, 2 * runs + 1, !writes_only, measured)?;
        spinner.finish();
        tables.fio.row(system.name(), values);
    }
    Ok(())
}

fn first_writes(args: &Args, bed: &Bed, measured: &mut Measured) -> Result<Vec<Value>> {
    let runs = args.runs.max(1);
    let offset = args.file_size / 2;
    let mut warm = Vec::new();
    for i in 0..runs {
        let path = bed.view(i).join(data::BIG);
        std::fs::metadata(&path)?;
        warm.push(probe::first_write(&path, offset, 0x5a ^ i as u8, false)?);
        tracing::info!(
            "{}: warm write {:?}",
            bed.system.name(),
            warm[warm.len() - 1]
        );
        guard::check()?;
    }
    let mut synced = Vec::new();
    let mut first_added = None;
    for i in runs..2 * runs {
        let path = bed.view(i).join(data::BIG);
        std::fs::metadata(&path)?;
        let before = bed.usage()?;
        synced.push(probe::first_write(&path, offset, 0xa5 ^ i as u8, true)?);
        tracing::info!(
            "{}: synced write {:?}",
            bed.system.name(),
            synced[synced.len() - 1]
        );
        let added = bed.usage()?.added_since(&before);
        first_added.get_or_insert(added);
        guard::check()?;
    }
    let (warm, synced) = (probe::median_timing(&warm), probe::median_timing(&synced));
    let added = first_added.unwrap_or_default();
    measured.put(bed.system, "warm_ms", warm.total_ms);
    measured.put(bed.system, "fsync_total_ms", synced.total_ms);
    if let Some(blocks) = added.blocks {
        measured.put(bed.system, "block_bytes_added", blocks as f64);
    }
    if let Some(store) = bed.store() {
        measured.put(bed.system, "block_size", store.block_size() as f64);
    }
    Ok(vec![
        warm.total_ms.into(),
        warm.write_ms.into(),
        synced.total_ms.into(),
        synced.fsync_ms.into(),
        added.written.into(),
        added.blocks.map_or(Value::Null, Value::from),
    ])
}

fn reads(args: &Args, bed: &Bed, container: usize, measured: &mut Measured) -> Result<Vec<Value>> {
    let path = bed.view(container).join(data::BIG);
    let gib_s = |bytes: u64, took: std::time::Duration| bytes as f64 / GIB / took.as_secs_f64();
    let (mut colds, mut warms, mut growths) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.read_runs.max(1) {
        bed.drop_caches()?;
        let before = Snapshot::take(&bed.attribution(data::BIG));
        let (bytes, cold) = probe::sequential_read(&path)?;
        growths.push(Snapshot::take(&bed.attribution(data::BIG)).growth_since(&before));
        anyhow::ensure!(
            bytes == args.file_size,
            "read {bytes} of {}",
            path.display()
        );
        let (_, warm) = probe::sequential_read(&path)?;
        colds.push(gib_s(bytes, cold));
        warms.push(gib_s(bytes, warm));
    }
    tracing::info!("{}: cold {colds:?} warm {warms:?} GiB/s", bed.system.name());
    let (cold, warm) = (probe::median(&colds), probe::median(&warms));
    let growth = growths[0];
    measured.put(bed.system, "cold_gib_s", cold);
    measured.put(bed.system, "warm_gib_s", warm);
    measured.put(bed.system, "cold_memory", growth.system as f64);
    measured.put(bed.system, "cold_attributed", growth.attributed as f64);
    Ok(vec![
        cold.into(),
        warm.into(),
        growth.system.into(),
        growth.attributed.into(),
    ])
}

fn fio_runs(
    args: &Args,
    bed: &Bed,
    container: usize,
    read_too: bool,
    measured: &mut Measured,
) -> Result<Vec<Value>> {
    let length = fio::Length::Seconds(args.runtime);
    let size = args.file_size;
    let before = bed.usage()?;
    bed.drop_caches()?;
    let write = fio::run(
        &bed.view(container).join(data::BIG),
        "randwrite",
        size,
        length,
        &[],
    )?;
    let added = bed.usage()?.added_since(&before);
    std::thread::sleep(std::time::Duration::from_secs(10));
    let settled = bed.usage()?.added_since(&before);
    measured.put(bed.system, "randwrite_iops", write.iops);
    let (mut cold, mut warm) = (Value::Null, Value::Null);
    if read_too {
        let path = bed.view(container + 1).join(data::BIG);
        bed.drop_caches()?;
        let read = fio::run(&path, "randread", size, length, &[])?;
        measured.put(bed.system, "randread_iops", read.iops);
        cold = read.iops.into();
        probe::sequential_read(&path)?;
        let read = fio::run(&path, "randread", size, length, &["--invalidate=0"])?;
        measured.put(bed.system, "randread_warm_iops", read.iops);
        warm = read.iops.into();
    }
    Ok(vec![
        write.iops.into(),
        added.written.into(),
        settled.written.into(),
        cold,
        warm,
    ])
}

/// Judges every target this run measured.
fn targets(args: &Args, m: &Measured, report: &mut Report) {
    use System::{FuseOverlayfs as Fo, Tessera as T, TesseraWriteThrough as Twt};
    let mut out = Vec::new();
    let mib = |b: f64| format!("{:.0} MiB", b / (1u64 << 20) as f64);
    for (system, label) in [(T, ""), (Twt, " (write-through)")] {
        if let Some(v) = m.get(system, "warm_ms") {
            let name = format!("first write, open+write+close, warm{label}");
            out.push(Target::at_most(
                &name,
                "< 1 ms",
                v,
                1.0,
                &format!("{v:.3} ms"),
            ));
        }
        if let Some(v) = m.get(system, "fsync_total_ms") {
            let name = format!("first write with fsync{label}");
            out.push(Target::at_most(
                &name,
                "< 5 ms",
                v,
                5.0,
                &format!("{v:.3} ms"),
            ));
        }
        if let Some(v) = m.get(system, "block_bytes_added") {
            let block = m.get(system, "block_size").unwrap_or(65536.0);
            let name = format!("first write: data added{label}");
            let show = format!(
                "{:.1} blocks of {}",
                v / block,
                crate::output::size(block as u64)
            );
            out.push(Target::at_most(&name, "<= 2 blocks", v, 2.0 * block, &show));
        }
    }
    let vs = |key: &str, s: System| m.get(s, key).zip(m.get(Fo, key));
    if let Some((t, f)) = vs("warm_gib_s", T) {
        let show = format!("{t:.2} vs {f:.2} GiB/s");
        out.push(Target::at_least(
            "sequential read, warm",
            "within 5% of fuse-overlayfs",
            t,
            0.95 * f,
            &show,
        ));
    }
    if let Some((t, f)) = vs("cold_gib_s", T) {
        let show = format!("{t:.2} vs {f:.2} GiB/s");
        out.push(Target::at_least(
            "sequential read, cold",
            "ahead of fuse-overlayfs",
            t,
            f,
            &show,
        ));
    }
    for (system, label) in [(T, ""), (Twt, " (write-through)")] {
        if let Some((t, f)) = vs("randwrite_iops", system) {
            let name = format!("fio randwrite IOPS{label}");
            let show = format!("{t:.0} vs {f:.0} ({:.1}x)", t / f.max(1.0));
            out.push(Target::at_least(
                &name,
                ">= 5x fuse-overlayfs",
                t,
                5.0 * f,
                &show,
            ));
        }
    }
    if let Some(t) = m.get(T, "randread_iops") {
        let cached = m.get(T, "randread_warm_iops").unwrap_or(0.0);
        out.push(Target::at_least(
            "fio randread IOPS (buffered)",
            ">= 300k",
            t,
            300_000.0,
            &format!("{t:.0} (file cached first: {cached:.0})"),
        ));
    }
    if let Some(t) = m.get(T, "cold_memory") {
        let limit = 1.1 * args.file_size as f64;
        let name = "memory of a cold read (default mode)";
        let attributed = m.get(T, "cold_attributed").unwrap_or(0.0);
        let show = format!("{} (attributed {})", mib(t), mib(attributed));
        let target = Target::at_most(name, &format!("<= {}", mib(limit)), t, limit, &show);
        out.push(target.with_attributed(attributed <= limit));
    }
    mount_memory::targets(args, m, &mut out);
    report.targets.extend(out);
}
