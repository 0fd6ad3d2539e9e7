//! The measured operations, each a plain use of the mount from outside (as a container would
//! use it): the first small write into a file (timed per system call), a whole-file
//! sequential read, `chown -R` of a tree, and SQLite UPDATE transactions. Nothing here knows
//! which system it runs on.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::data::{self, Rng};
use super::guard;

/// One first write, split by system call, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WriteTiming {
    pub open_ms: f64,
    pub write_ms: f64,
    /// 0 when the probe did not fsync.
    pub fsync_ms: f64,
    pub close_ms: f64,
    pub total_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `open(O_WRONLY)`, `pwrite` of one byte at `offset`, optionally `fsync`, `close`.
pub fn first_write(path: &Path, offset: u64, byte: u8, fsync: bool) -> Result<WriteTiming> {
    let t0 = Instant::now();
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let t1 = Instant::now();
    file.write_all_at(&[byte], offset)
        .with_context(|| format!("writing {}", path.display()))?;
    let t2 = Instant::now();
    if fsync {
        file.sync_all()
            .with_context(|| format!("fsync {}", path.display()))?;
    }
    let t3 = Instant::now();
    drop(file);
    let t4 = Instant::now();
    Ok(WriteTiming {
        open_ms: ms(t1 - t0),
        write_ms: ms(t2 - t1),
        fsync_ms: ms(t3 - t2),
        close_ms: ms(t4 - t3),
        total_ms: ms(t4 - t0),
    })
}

/// The median of each field over several probes.
pub fn median_timing(runs: &[WriteTiming]) -> WriteTiming {
    let pick = |f: fn(&WriteTiming) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    WriteTiming {
        open_ms: pick(|t| t.open_ms),
        write_ms: pick(|t| t.write_ms),
        fsync_ms: pick(|t| t.fsync_ms),
        close_ms: pick(|t| t.close_ms),
        total_ms: pick(|t| t.total_ms),
    }
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Reads the whole file in 1 MiB read(2)s; returns the bytes read and the time taken.
pub fn sequential_read(path: &Path) -> Result<(u64, Duration)> {
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut total = 0u64;
    let mut chunks = 0u32;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        chunks += 1;
        if chunks.is_multiple_of(64) {
            guard::check()?;
        }
    }
    Ok((total, started.elapsed()))
}

/// `chown -R 1000:1000 DIR`; returns its wall time.
pub fn chown_tree(dir: &Path) -> Result<Duration> {
    let started = Instant::now();
    guard::run(Command::new("chown").arg("-R").arg("1000:1000").arg(dir))?;
    Ok(started.elapsed())
}

/// `count` single-row UPDATE transactions (autocommit, synchronous=FULL: the sqlite3
/// defaults) in journal mode `mode` on random rows of `t`, in one sqlite3 process; returns
/// its wall time.
pub fn sqlite_updates(db: &Path, mode: &str, rows: u64, count: u64, seed: u64) -> Result<Duration> {
    let mut rng = Rng::new(seed);
    let mut script = String::with_capacity(count as usize * 64);
    // The shell prints the mode it set; sqlite3's output is not read.
    script.push_str(&format!("PRAGMA journal_mode={mode};\n"));
    for _ in 0..count {
        let id = 1 + rng.below(rows);
        script.push_str(&format!(
            "UPDATE t SET v = randomblob(1000) WHERE id = {id};\n"
        ));
    }
    let started = Instant::now();
    data::sqlite(db, &script)?;
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_probes() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0u8; 3 << 20]).unwrap();
        let t = first_write(&path, 1 << 20, 7, true).unwrap();
        assert!(t.total_ms >= t.fsync_ms);
        assert_eq!(std::fs::read(&path).unwrap()[1 << 20], 7);
        assert_eq!(sequential_read(&path).unwrap().0, 3 << 20);
    }
}
