//! The summaries benches print beside criterion's own output: the machine and its load when
//! the numbers were taken, statistics of collected samples, and plain-text tables. Printing
//! only (to stderr); nothing here measures or touches a store.

use std::time::Duration;

/// The 1-, 5- and 15-minute load averages (from /proc/loadavg), as text.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One line about the machine: cores, CPU model, load now.
pub fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}, load {}", load_average())
}

/// CPU time (user + system) used so far by this process's threads and by the children it
/// has waited for, from /proc/self/stat (in USER_HZ ticks, 100 per second on Linux).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime, stime, cutime, cstime are fields 14..=17 of the line, 12..=15 after the name.
    let ticks: u64 = fields.get(11..15).map_or(0, |f| f.iter().sum());
    Duration::from_millis(ticks * 10)
}

/// Order statistics of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    pub n: usize,
    pub min: Duration,
    pub median: Duration,
    pub p90: Duration,
    pub max: Duration,
}

impl Spread {
    pub fn of(samples: &[Duration]) -> Spread {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Spread {
            n: sorted.len(),
            min: at(0.0),
            median: at(0.5),
            p90: at(0.9),
            max: at(1.0),
        }
    }
}

/// Milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Decimal megabytes per second (10^6 bytes), as the targets are stated.
pub fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// A byte count in KiB with one decimal (signed: growth can be negative).
pub fn kib(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

/// Prints a table to stderr: a title, a header row and rows, columns padded to fit.
pub fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    eprintln!("\n{title}");
    eprintln!("{}", line(header.to_vec()));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    eprintln!("| {} |", rule.join(" | "));
    for row in rows {
        eprintln!("{}", line(row.iter().map(String::as_str).collect()));
    }
    eprintln!("({})", machine_line());
    if !crate::full_run() {
        eprintln!("(quick pass of `cargo test --benches` on small data: not a measurement)");
    }
    eprintln!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_orders() {
        let ms = |n| Duration::from_millis(n);
        let s = Spread::of(&[ms(5), ms(1), ms(3), ms(2), ms(4)]);
        assert_eq!((s.n, s.min, s.median, s.max), (5, ms(1), ms(3), ms(5)));
        assert_eq!(mb_per_s(2_000_000, Duration::from_secs(2)), 1.0);
        assert_eq!(kib(-2048), "-2.0");
        let before = cpu_time();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_time() > before, "CPU time advances");
    }
}
