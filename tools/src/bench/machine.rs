//! The machine a run measured: CPUs, CPU model, memory, kernel, the work directory's
//! filesystem, the date and the load average — printed above every table so it can be
//! pasted into the README as is. Reads /proc only; never fails (unknown fields say so).

use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub kernel: String,
    pub work_dir: PathBuf,
    /// Filesystem type and device of the work directory, e.g. `ext4 (/dev/vda)`.
    pub work_fs: String,
    /// `YYYY-MM-DD HH:MM` UTC, when the run started.
    pub date: String,
    /// 1, 5 and 15 minute load averages when the run started.
    pub load_at_start: [f64; 3],
}

impl Machine {
    pub fn probe(work_dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, v)| v.trim().to_string());
        let (fs, device) = filesystem_of(work_dir);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_bytes: meminfo_field("MemTotal").unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
            work_dir: work_dir.to_path_buf(),
            work_fs: format!("{fs} ({device})"),
            date: now(),
            load_at_start: load(),
        }
    }

    /// The lines printed above the tables.
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!(
                "machine: {} CPUs ({}), {} RAM, Linux {}",
                self.cpus,
                self.cpu_model,
                crate::output::size(self.memory_bytes),
                self.kernel
            ),
            format!("work dir: {} on {}", self.work_dir.display(), self.work_fs),
            format!(
                "date: {} UTC; load average at start: {}",
                self.date,
                describe_load(self.load_at_start, self.cpus)
            ),
        ]
    }
}

/// The current date and time, `YYYY-MM-DD HH:MM` UTC.
pub fn now() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    crate::output::time(ns)
}

/// The 1, 5 and 15 minute load averages.
pub fn load() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut out = [0.0; 3];
    for (slot, field) in out.iter_mut().zip(text.split_whitespace()) {
        *slot = field.parse().unwrap_or(0.0);
    }
    out
}

/// `5.48 7.61 7.65 (busy: above the 2 CPUs)`.
pub fn describe_load(load: [f64; 3], cpus: usize) -> String {
    let text = format!("{:.2} {:.2} {:.2}", load[0], load[1], load[2]);
    if load[0] > cpus as f64 * 0.5 {
        format!("{text} (busy: other work ran during the measurement; numbers are indicative)")
    } else {
        text
    }
}

/// A /proc/meminfo field in bytes.
pub fn meminfo_field(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    })
}

/// Filesystem type and source of the mount holding `path` (longest mount-point prefix).
fn filesystem_of(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(usize, String, String)> = None;
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let point = PathBuf::from(point.replace("\\040", " "));
        if !path.starts_with(&point) {
            continue;
        }
        let depth = point.components().count();
        let mut rest = right.split(' ');
        let (kind, source) = (rest.next().unwrap_or("?"), rest.next().unwrap_or("?"));
        if best.as_ref().is_none_or(|(d, _, _)| depth >= *d) {
            best = Some((depth, kind.to_string(), source.to_string()));
        }
    }
    best.map_or_else(|| ("unknown".into(), "?".into()), |(_, k, s)| (k, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_this_machine() {
        let machine = Machine::probe(Path::new("/"));
        assert!(machine.cpus >= 1);
        assert!(machine.memory_bytes > 0);
        assert_ne!(machine.work_fs, "unknown (?)");
        assert_eq!(machine.describe().len(), 3);
    }
}
