//! Memory figures of a workload. Two views of the same question, "how much memory does this
//! cost":
//!
//! - system-wide: growth of `Cached + AnonPages` in /proc/meminfo, caches dropped before (what
//!   DESIGN.md §8 asks for; other processes on the machine add noise to it), and
//! - attributed: growth of the page cache of the files that can hold the workload's data
//!   (`fincore`: the file as seen through the mount, the lower and upper files, the packs)
//!   plus the anonymous memory of the processes serving the mount (`RssAnon`): immune to other
//!   processes, blind to memory the list misses.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use super::machine::meminfo_field;

/// `Cached + AnonPages`, in bytes.
pub fn cached_and_anon() -> u64 {
    meminfo_field("Cached").unwrap_or(0) + meminfo_field("AnonPages").unwrap_or(0)
}

/// Writes back dirty data, then drops the page cache, dentries and inodes.
pub fn drop_caches() -> Result<()> {
    rustix::fs::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("writing /proc/sys/vm/drop_caches")
}

/// What to count for the attributed figure.
#[derive(Debug, Default, Clone)]
pub struct Attribution {
    pub files: Vec<PathBuf>,
    pub pids: Vec<u32>,
}

impl Attribution {
    /// Page cache of the files plus anonymous memory of the processes, in bytes.
    pub fn bytes(&self) -> u64 {
        resident(&self.files) + self.pids.iter().map(|&p| rss_anon(p)).sum::<u64>()
    }
}

/// Bytes of the files' pages in the page cache (`fincore`); 0 for a file it cannot measure.
fn resident(files: &[PathBuf]) -> u64 {
    let mut total = 0;
    for batch in files.chunks(512) {
        let output = Command::new("fincore")
            .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
            .args(batch)
            .stderr(std::process::Stdio::null())
            .output();
        let Ok(output) = output else {
            return 0;
        };
        total += String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// `RssAnon` of a process, in bytes.
pub fn rss_anon(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Both figures at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub system: u64,
    pub attributed: u64,
}

impl Snapshot {
    pub fn take(attribution: &Attribution) -> Snapshot {
        Snapshot {
            system: cached_and_anon(),
            attributed: attribution.bytes(),
        }
    }

    /// Growth since `before` (negative when memory was freed meanwhile).
    pub fn growth_since(&self, before: &Snapshot) -> Growth {
        Growth {
            system: self.system as i64 - before.system as i64,
            attributed: self.attributed as i64 - before.attributed as i64,
        }
    }
}

/// Memory growth of a workload, in bytes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Growth {
    /// `Cached + AnonPages` of the whole machine.
    pub system: i64,
    /// Page cache of the workload's files plus anonymous memory of the serving processes.
    pub attributed: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(cached_and_anon() > 0);
        assert!(rss_anon(std::process::id()) > 0);
    }
}
