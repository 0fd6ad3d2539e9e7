//! `tessera gc` and `tessera fsck`.

use std::path::Path;

use anyhow::{Result, bail};
use tessera::maintenance::{FsckReport, GcReport};

use crate::client;
use crate::output::{self, size};
use crate::service::Request;

/// Reclaim blocks and block-map pages nothing references (repacking mostly-dead packs).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  tessera gc --dry-run\n  tessera gc --repack-below 100")]
pub struct GcArgs {
    /// Report what would be reclaimed without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Rewrite packs whose live bytes are below this percentage of their blocks (100: every
    /// pack holding any garbage). Garbage in packs above it stays, counted as reclaimable.
    #[arg(long, value_name = "PERCENT", default_value_t = 50,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    repack_below: u8,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Check metadata, reachability, pack indexes and link counts (and every block's hash with
/// --verify-data). Exits non-zero when something is wrong.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera fsck --verify-data")]
pub struct FsckArgs {
    /// Read every stored block and check it against its hash.
    #[arg(long)]
    verify_data: bool,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run_gc(store: &Path, args: GcArgs) -> Result<()> {
    let spinner = output::Spinner::start("collecting garbage");
    let reply = client::call(
        store,
        Request::Gc {
            dry_run: args.dry_run,
            repack_below: f64::from(args.repack_below) / 100.0,
        },
    );
    spinner.finish();
    let reply = reply?;
    if args.json {
        return output::json(&reply);
    }
    let r: GcReport = serde_json::from_value(reply)?;
    println!(
        "{} of {} stored blocks are garbage ({})",
        r.garbage_blocks,
        r.stored_blocks,
        size(r.garbage_bytes)
    );
    let verb = if r.dry_run { "would free" } else { "freed" };
    println!(
        "{verb} {} of packs: {} packs rewritten ({} live bytes copied), {} deleted; {} pages dropped ({:.2} s)",
        size(r.bytes_freed),
        r.packs_rewritten,
        size(r.bytes_copied),
        r.packs_deleted,
        r.pages_deleted,
        r.seconds
    );
    Ok(())
}

pub fn run_fsck(store: &Path, args: FsckArgs) -> Result<()> {
    let spinner = output::Spinner::start("checking the store");
    let reply = client::call(
        store,
        Request::Fsck {
            verify_data: args.verify_data,
        },
    );
    spinner.finish();
    let reply = reply?;
    let r: FsckReport = serde_json::from_value(reply.clone())?;
    if args.json {
        output::json(&reply)?;
    } else {
        println!(
            "checked {} layers, {} node records, {} entries, {} views, {} referenced blocks{} in {:.2} s",
            r.layers,
            r.nodes,
            r.entries,
            r.views,
            r.blocks_referenced,
            if args.verify_data {
                format!(
                    ", verified {} blocks ({})",
                    r.blocks_verified,
                    size(r.bytes_verified)
                )
            } else {
                String::new()
            },
            r.seconds
        );
        for problem in &r.problems {
            println!("problem: {problem}");
        }
    }
    if !r.problems.is_empty() {
        bail!("{} problem(s) found", r.problems.len());
    }
    if !args.json {
        println!("no problems found");
    }
    Ok(())
}
