//! `tessera diff`: what a container changed.

use std::path::Path;

use anyhow::Result;
use tessera::diff::DiffEntry;

use crate::output;
use tessera_daemon::Request;
use tessera_daemon::client;

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
    let reply = client::call_for::<Vec<DiffEntry>>(
        store,
        Request::Diff {
            container: args.container,
        },
    )?;
    if args.json {
        return output::json(&reply);
    }
    let entries = reply;
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
