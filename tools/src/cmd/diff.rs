//! `tessera diff`: what a container changed.

use std::path::Path;

use anyhow::Result;
use tessera::diff::DiffEntry;

use crate::client;
use crate::output;
use crate::service::Request;

/// Show added (A), modified (M) and deleted (D) paths of a container, with changed byte
/// ranges of modified files (block-granular).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera diff web1")]
pub struct Args {
    container: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let reply = client::call(
        store,
        Request::Diff {
            container: args.container,
        },
    )?;
    if args.json {
        return output::json(&reply);
    }
    let entries: Vec<DiffEntry> = serde_json::from_value(reply)?;
    for e in entries {
        let mut line = format!("{} {}", e.change, e.path);
        if e.kind == "dir" {
            line.push('/');
        }
        if let Some((before, after)) = e.sizes {
            if before != after {
                line.push_str(&format!("  size {before} -> {after}"));
            }
            let ranges: Vec<String> = e.ranges.iter().map(|(s, t)| format!("{s}..{t}")).collect();
            if !ranges.is_empty() {
                line.push_str(&format!("  changed {}", ranges.join(", ")));
            }
        }
        println!("{line}");
    }
    Ok(())
}
