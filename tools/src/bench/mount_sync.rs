//! The `tessera bench mount` fsync workload: how long `fdatasync` takes after a 4 KiB
//! overwrite of the image file, on every system and on the disk itself (a copy of the file in
//! the scratch directory), side by side. What a database's commit costs.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use super::copy_up::each_system;
use super::data::{self, Lowers, Rng};
use super::mount::Args;
use super::report::{Report, Table, Target, Unit};
use super::{Env, System};

const ROUNDS: usize = 1000;

/// Median and 99th percentile of `fdatasync` after a 4 KiB `pwrite` at a random aligned
/// offset, in milliseconds.
fn probe(path: &Path) -> Result<(f64, f64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let pages = (file.metadata()?.len() / 4096).max(1);
    let mut rng = Rng::new(1);
    let mut buf = vec![0u8; 4096];
    let mut times = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        buf[..8].copy_from_slice(&(round as u64).to_le_bytes());
        file.write_all_at(&buf, rng.below(pages) * 4096)?;
        let started = Instant::now();
        file.sync_data()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[ROUNDS / 2], times[ROUNDS * 99 / 100]))
}

pub fn fsync(env: &Env, args: &Args, lowers: &Lowers, report: &mut Report) -> Result<()> {
    let lower = lowers.big_file(args.file_size)?;
    let mut table = Table::new(
        format!(
            "fdatasync after a 4 KiB overwrite of a {} image file",
            crate::output::size(args.file_size)
        ),
        &[
            ("median_ms", "median", Unit::Ms),
            ("p99_ms", "p99", Unit::Ms),
        ],
    )
    .how(format!(
        "{ROUNDS} rounds of pwrite 4 KiB at a random aligned offset, then fdatasync (timed); \
         disk = the same on a copy of the file in the scratch directory"
    ));
    let plain = env.scratch.subdir("fsync-disk")?.join(data::BIG);
    std::fs::copy(lower.join(data::BIG), &plain).context("copying the file for the disk row")?;
    let disk = probe(&plain)?;
    std::fs::remove_file(&plain)?;
    table.row("disk", vec![disk.0.into(), disk.1.into()]);
    let systems: Vec<System> = args
        .systems
        .iter()
        .copied()
        .filter(|s| *s != System::TesseraShared)
        .collect();
    let mut tessera = None;
    let opts = env.bed_options(1, 0);
    each_system(env, &systems, &lower, opts, report, &mut table, |bed| {
        let (median, p99) = probe(&bed.view(0).join(data::BIG))?;
        if bed.system == System::Tessera {
            tessera = Some(median);
        }
        Ok(vec![median.into(), p99.into()])
    })?;
    report.tables.push(table);
    if let Some(median) = tessera {
        report.targets.push(Target::at_most(
            "fsync of a 4 KiB overwrite, median",
            "<= 1.5x the disk's fdatasync",
            median,
            1.5 * disk.0,
            &format!("{median:.3} vs {:.3} ms", disk.0),
        ));
    }
    Ok(())
}
