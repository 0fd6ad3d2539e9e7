//! Random 4 KiB I/O with fio, run exactly as the targets are stated:
//! `fio --ioengine=psync --bs=4k --iodepth=1 --size=… --end_fsync=1 --rw=…` plus either
//! `--runtime=N --time_based` or `--number_ios=N`, with JSON output parsed for IOPS.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::guard;

/// How long a fio job runs.
#[derive(Debug, Clone, Copy)]
pub enum Length {
    Seconds(u64),
    Ios(u64),
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FioResult {
    /// fio's own IOPS figure (over its I/O time).
    pub iops: f64,
    /// I/Os done.
    pub ios: u64,
    /// Wall time of the whole fio process (open and copy-up, I/O, the final fsync).
    pub wall_s: f64,
}

/// The fio command line for `rw` (`randwrite` or `randread`) on `file`.
pub fn command(file: &Path, rw: &str, size: u64, length: Length, extra: &[&str]) -> Command {
    let mut command = Command::new("fio");
    command
        .arg("--name=bench")
        .arg(format!("--filename={}", file.display()))
        .args(["--ioengine=psync", "--bs=4k", "--iodepth=1"])
        .arg(format!("--size={size}"));
    match length {
        Length::Seconds(s) => command.arg(format!("--runtime={s}")).arg("--time_based"),
        Length::Ios(n) => command.arg(format!("--number_ios={n}")),
    };
    command
        .arg("--end_fsync=1")
        .arg(format!("--rw={rw}"))
        .args(extra)
        .arg("--output-format=json");
    command
}

/// The command as a reader can retype it (for the report).
pub fn describe(rw: &str, size: u64, length: Length) -> String {
    let length = match length {
        Length::Seconds(s) => format!("--runtime={s} --time_based"),
        Length::Ios(n) => format!("--number_ios={n}"),
    };
    format!(
        "fio --name=bench --filename=FILE --ioengine=psync --bs=4k --iodepth=1 --size={size} \
         {length} --end_fsync=1 --rw={rw}"
    )
}

/// Runs fio; `extra` options go after the standard ones (e.g. `--invalidate=0`).
pub fn run(file: &Path, rw: &str, size: u64, length: Length, extra: &[&str]) -> Result<FioResult> {
    let started = Instant::now();
    let out = guard::run(&mut command(file, rw, size, length, extra))?;
    let wall_s = started.elapsed().as_secs_f64();
    parse(&out, rw, wall_s)
}

fn parse(out: &str, rw: &str, wall_s: f64) -> Result<FioResult> {
    let json = out.find('{').map_or(out, |i| &out[i..]);
    let value: serde_json::Value = serde_json::from_str(json).context("parsing fio's JSON")?;
    let side = if rw.contains("write") {
        "write"
    } else {
        "read"
    };
    let stats = &value["jobs"][0][side];
    let iops = stats["iops"]
        .as_f64()
        .context("fio's JSON has no IOPS figure")?;
    Ok(FioResult {
        iops,
        ios: stats["total_ios"].as_u64().unwrap_or(0),
        wall_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fio_json() {
        let out = "note: a warning\n{\"jobs\":[{\"write\":{\"iops\":1234.5,\"total_ios\":99}}]}";
        let r = parse(out, "randwrite", 2.0).unwrap();
        assert_eq!((r.iops, r.ios), (1234.5, 99));
        assert!(describe("randread", 1 << 30, Length::Seconds(30)).contains("--time_based"));
    }
}
