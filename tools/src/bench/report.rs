//! What a bench run reports: the command, the machine, one table per workload (a row per
//! system, with the load average when the row was measured), the targets met or missed, and
//! notes (skipped systems, caveats). Printed as aligned text or as JSON; numbers stay numbers
//! in JSON (bytes, milliseconds, IOPS), units are only added for humans.

use serde::Serialize;
use serde_json::Value;

use super::machine::{self, Machine};
use crate::output;

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    Ms,
    Bytes,
    Iops,
    GibPerSec,
    Seconds,
    Count,
}

#[derive(Debug, Serialize)]
pub struct Column {
    pub key: &'static str,
    pub header: &'static str,
    pub unit: Unit,
}

#[derive(Debug, Serialize)]
pub struct Table {
    pub title: String,
    /// How the workload ran (e.g. the fio command line).
    pub how: Vec<String>,
    pub columns: Vec<Column>,
    pub rows: Vec<serde_json::Map<String, Value>>,
}

impl Table {
    pub fn new(title: impl Into<String>, columns: &[(&'static str, &'static str, Unit)]) -> Table {
        Table {
            title: title.into(),
            how: Vec::new(),
            columns: columns
                .iter()
                .map(|&(key, header, unit)| Column { key, header, unit })
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn how(mut self, line: impl Into<String>) -> Table {
        self.how.push(line.into());
        self
    }

    /// A row for `system`; `values` follow the columns (Null for "not measured").
    pub fn row(&mut self, system: &str, values: Vec<Value>) {
        assert_eq!(values.len(), self.columns.len(), "one value per column");
        let mut row = serde_json::Map::new();
        row.insert("system".into(), system.into());
        for (column, value) in self.columns.iter().zip(values) {
            row.insert(column.key.into(), value);
        }
        row.insert("load".into(), machine::load()[0].into());
        self.rows.push(row);
    }

    fn print(&self) {
        println!("\n### {}", self.title);
        for line in &self.how {
            println!("{line}");
        }
        if self.rows.is_empty() {
            println!("(no system ran)");
            return;
        }
        let mut header = vec!["system"];
        header.extend(self.columns.iter().map(|c| c.header));
        header.push("load");
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| {
                let mut cells = vec![row["system"].as_str().unwrap_or("").to_string()];
                cells.extend(self.columns.iter().map(|c| format(&row[c.key], c.unit)));
                cells.push(format!("{:.1}", row["load"].as_f64().unwrap_or(0.0)));
                cells
            })
            .collect();
        output::table(&header, &rows);
    }
}

/// A bytes value that may be negative (memory growth).
pub fn signed_size(bytes: i64) -> String {
    if bytes < 0 {
        format!("-{}", output::size(bytes.unsigned_abs()))
    } else {
        output::size(bytes as u64)
    }
}

pub fn format(value: &Value, unit: Unit) -> String {
    let Some(n) = value.as_f64() else {
        return value.as_str().unwrap_or("-").to_string();
    };
    match unit {
        Unit::Ms if n < 10.0 => format!("{n:.3} ms"),
        Unit::Ms => format!("{n:.1} ms"),
        Unit::Bytes => signed_size(n as i64),
        Unit::Iops => format!("{n:.0}"),
        Unit::GibPerSec => format!("{n:.2} GiB/s"),
        Unit::Seconds => format!("{n:.2} s"),
        Unit::Count => format!("{n:.0}"),
    }
}

/// A performance target of the project and how this run did against it.
#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: String,
    /// None: not measured in this run (a system was skipped).
    pub met: Option<bool>,
    /// By how much it was met or missed.
    pub margin: String,
}

impl Target {
    /// A "lower is better" target: `measured <= limit`.
    pub fn at_most(name: &str, target: &str, measured: f64, limit: f64, show: &str) -> Target {
        let met = measured <= limit;
        let margin = if met {
            format!("{:.0}% under", (1.0 - measured / limit) * 100.0)
        } else {
            format!("missed by {:.0}%", (measured / limit - 1.0) * 100.0)
        };
        Target {
            name: name.into(),
            target: target.into(),
            measured: show.into(),
            met: Some(met),
            margin,
        }
    }

    /// Adds the verdict of the attributed memory figure (immune to other processes) when
    /// it differs from the system-wide one.
    pub fn with_attributed(mut self, met: bool) -> Target {
        if self.met != Some(met) {
            let verdict = if met { "met" } else { "missed" };
            self.margin = format!("{}; attributed figure: {verdict}", self.margin);
        }
        self
    }

    /// A "higher is better" target: `measured >= limit`.
    pub fn at_least(name: &str, target: &str, measured: f64, limit: f64, show: &str) -> Target {
        let met = measured >= limit;
        let margin = if met {
            format!("{:.0}% over", (measured / limit - 1.0) * 100.0)
        } else {
            format!("missed by {:.0}%", (1.0 - measured / limit) * 100.0)
        };
        Target {
            name: name.into(),
            target: target.into(),
            measured: show.into(),
            met: Some(met),
            margin,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub machine: Machine,
    pub tables: Vec<Table>,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
    pub load_at_end: [f64; 3],
    pub finished: String,
}

impl Report {
    pub fn new(machine: &Machine) -> Report {
        Report {
            command: super::command_line(),
            machine: machine.clone(),
            tables: Vec::new(),
            targets: Vec::new(),
            notes: Vec::new(),
            load_at_end: [0.0; 3],
            finished: String::new(),
        }
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        tracing::info!("{text}");
        self.notes.push(text);
    }

    pub fn finish(mut self) -> Report {
        self.load_at_end = machine::load();
        self.finished = machine::now();
        self
    }

    pub fn print(&self) {
        println!("$ {}", self.command);
        for line in self.machine.describe() {
            println!("{line}");
        }
        for table in &self.tables {
            table.print();
        }
        if !self.targets.is_empty() {
            println!("\n### Targets");
            let rows: Vec<Vec<String>> = self
                .targets
                .iter()
                .map(|t| {
                    let verdict = match t.met {
                        Some(true) => "met",
                        Some(false) => "MISSED",
                        None => "not measured",
                    };
                    vec![
                        t.name.clone(),
                        t.target.clone(),
                        t.measured.clone(),
                        verdict.into(),
                        t.margin.clone(),
                    ]
                })
                .collect();
            output::table(&["target", "wanted", "measured", "", "margin"], &rows);
        }
        if !self.notes.is_empty() {
            println!("\nNotes:");
            for note in &self.notes {
                println!("- {note}");
            }
        }
        println!(
            "\nfinished {} UTC; load average at end: {}",
            self.finished,
            machine::describe_load(self.load_at_end, self.machine.cpus)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_targets() {
        assert_eq!(format(&Value::from(0.4567), Unit::Ms), "0.457 ms");
        assert_eq!(format(&Value::from(-2048), Unit::Bytes), "-2.0 KiB");
        assert_eq!(format(&Value::Null, Unit::Iops), "-");
        let t = Target::at_most("x", "< 1 ms", 0.5, 1.0, "0.5 ms");
        assert_eq!((t.met, t.margin.as_str()), (Some(true), "50% under"));
        let t = Target::at_least("y", ">= 300k", 150.0, 300.0, "150");
        assert_eq!((t.met, t.margin.as_str()), (Some(false), "missed by 50%"));
    }
}
