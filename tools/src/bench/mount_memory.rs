//! The two `tessera bench mount` workloads that need their own images: N containers that each
//! change one byte of the same file and then read it whole (memory: does the share-memory
//! mode hold the file once?), and `chown -R` over a tree of small files from the image (time,
//! and what a metadata-only change costs on disk once durable).

use std::time::Instant;

use anyhow::Result;

use super::copy_up::each_system;
use super::data::{self, Lowers};
use super::memory::Snapshot;
use super::mount::{Args, Measured};
use super::probe;
use super::report::{Report, Table, Target, Unit};
use super::{Env, System};

/// N containers each change one byte of the same file, then read it whole.
pub fn shared(
    env: &Env,
    args: &Args,
    lowers: &Lowers,
    measured: &mut Measured,
    report: &mut Report,
) -> Result<()> {
    let systems: Vec<System> = args
        .systems
        .iter()
        .copied()
        .filter(|s| *s != System::TesseraWriteThrough)
        .collect();
    let spinner = env.step("generating the shared-memory image");
    let lower = lowers.big_file(args.shared_size)?;
    spinner.finish();
    let n = args.containers.max(1);
    let offset = args.shared_size / 2;
    let mut table = Table::new(
        format!(
            "{n} containers each change 1 byte of the same {} file, then read it whole",
            crate::output::size(args.shared_size)
        ),
        &[
            ("memory_growth", "memory", Unit::Bytes),
            ("memory_attributed", "attributed", Unit::Bytes),
            ("block_cache", "daemon block cache", Unit::Bytes),
            ("seconds", "time", Unit::Seconds),
        ],
    )
    .how(format!(
        "caches dropped once; then per container: open + pwrite + fsync + close, read the file \
         (1 MiB read(2)s); tessera-shared: store block cache {}",
        crate::output::size(args.cache_size)
    ));
    let opts = env.bed_options(n, args.cache_size);
    each_system(env, &systems, &lower, opts, report, &mut table, |bed| {
        bed.drop_caches()?;
        let before = Snapshot::take(&bed.attribution(data::BIG));
        let started = Instant::now();
        for i in 0..bed.containers() {
            let path = bed.view(i).join(data::BIG);
            probe::first_write(&path, offset, 0x3c ^ i as u8, true)?;
            let (bytes, _) = probe::sequential_read(&path)?;
            anyhow::ensure!(
                bytes == args.shared_size,
                "short read of {}",
                path.display()
            );
        }
        let seconds = started.elapsed().as_secs_f64();
        // Listed again: the upper copies exist only now.
        let growth = Snapshot::take(&bed.attribution(data::BIG)).growth_since(&before);
        measured.put(bed.system, "shared_memory", growth.system as f64);
        measured.put(bed.system, "shared_attributed", growth.attributed as f64);
        let cache = bed
            .store()
            .and_then(|s| s.block_cache_figures())
            .map_or(serde_json::Value::Null, |(held, _, _)| (held as u64).into());
        Ok(vec![
            growth.system.into(),
            growth.attributed.into(),
            cache,
            seconds.into(),
        ])
    })?;
    report.tables.push(table);
    Ok(())
}

/// `chown -R` over the small-file tree of an image, then a sync.
pub fn chown(
    env: &Env,
    args: &Args,
    lowers: &Lowers,
    measured: &mut Measured,
    report: &mut Report,
) -> Result<()> {
    let systems: Vec<System> = args
        .systems
        .iter()
        .copied()
        .filter(|s| *s != System::TesseraShared)
        .collect();
    let spinner = env.step(&format!("generating a tree of {} files", args.files));
    let lower = lowers.tree(args.files)?;
    spinner.finish();
    let mut table = Table::new(
        format!("chown -R over {} small files from the image", args.files),
        &[
            ("chown_s", "chown -R", Unit::Seconds),
            ("sync_s", "then sync", Unit::Seconds),
            ("bytes_added", "bytes added", Unit::Bytes),
            ("disk_total", "total disk", Unit::Bytes),
        ],
    )
    .how(
        "chown -R 1000:1000 after drop_caches; sync = Store::sync (Tessera) or syncfs of the \
         upper filesystem; bytes added = allocated growth once durable",
    );
    let opts = env.bed_options(1, super::DAEMON_CACHE_BYTES);
    each_system(env, &systems, &lower, opts, report, &mut table, |bed| {
        let before = bed.usage()?;
        bed.drop_caches()?;
        let took = probe::chown_tree(&bed.view(0).join(data::TREE))?;
        let started = Instant::now();
        bed.sync()?;
        let synced = started.elapsed();
        let added = bed.usage()?.added_since(&before);
        measured.put(bed.system, "chown_s", took.as_secs_f64());
        measured.put(bed.system, "chown_added", added.written as f64);
        Ok(vec![
            took.as_secs_f64().into(),
            synced.as_secs_f64().into(),
            added.written.into(),
            added.total.into(),
        ])
    })?;
    report.tables.push(table);
    Ok(())
}

/// The shared-memory and chown targets, scaled when the run used smaller sizes.
pub fn targets(args: &Args, m: &Measured, out: &mut Vec<Target>) {
    let mib = |b: f64| format!("{:.0} MiB", b / (1u64 << 20) as f64);
    if let Some(v) = m.get(System::TesseraShared, "shared_memory") {
        let limit = 600.0 * args.shared_size as f64 / 512.0;
        let attributed = m
            .get(System::TesseraShared, "shared_attributed")
            .unwrap_or(0.0);
        let target = Target::at_most(
            &format!("memory, {} containers, share-memory", args.containers),
            &format!("<= {}", mib(limit)),
            v,
            limit,
            &format!("{} (attributed {})", mib(v), mib(attributed)),
        );
        out.push(target.with_attributed(attributed <= limit));
    }
    let scale = args.files as f64 / 20_000.0;
    if let Some(v) = m.get(System::Tessera, "chown_s") {
        let limit = 1.5 * scale;
        out.push(Target::at_most(
            &format!("chown -R of {} files: time", args.files),
            &format!("<= {limit:.2} s"),
            v,
            limit,
            &format!("{v:.2} s"),
        ));
    }
    if let Some(v) = m.get(System::Tessera, "chown_added") {
        let limit = 4.0 * (1u64 << 20) as f64 * scale;
        out.push(Target::at_most(
            &format!("chown -R of {} files: store growth", args.files),
            &format!("<= {:.2} MiB", limit / (1u64 << 20) as f64),
            v,
            limit,
            &format!("{:.2} MiB", v / (1u64 << 20) as f64),
        ));
    }
}
