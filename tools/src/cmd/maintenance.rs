//! `tessera gc` (of the store, or of a remote with --remote) and `tessera fsck`.

use std::path::Path;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tessera::maintenance::{FsckReport, GcReport};
use tessera::store::{Remote, RemoteUrl};
use tessera::transfer::{DEFAULT_GRACE, RemoteGcOptions, gc_remote};

use crate::output::{self, size};
use tessera_daemon::Request;
use tessera_daemon::client;

/// Reclaim blocks and block-map pages nothing references (repacking mostly-dead packs); with
/// --remote, delete the packs of a remote that no remote image references.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  tessera gc --dry-run\n  tessera gc --repack-below 100\n  \
    tessera gc --remote s3://images/farm --dry-run"
)]
pub struct GcArgs {
    /// Report what would be reclaimed without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Collect a remote's garbage instead of the store's (s3://BUCKET/PREFIX; credentials and
    /// endpoint from the AWS_* variables). Refused while a push to the remote runs.
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    /// With --remote: unreferenced packs younger than this stay (like 90s, 30m, 1h, 2d; 0).
    #[arg(long, value_name = "DURATION", requires = "remote", value_parser = parse_duration)]
    grace: Option<Duration>,
    /// With --remote: drop the hold of a store backed by the remote that is gone for good
    /// (its id, as gc --remote lists the holds), so the packs only it relied on can go.
    #[arg(long, value_name = "ID", requires = "remote")]
    release_hold: Vec<String>,
    /// Rewrite packs whose live bytes are below this percentage of their blocks (100: every
    /// pack holding any garbage). Garbage in packs above it stays, counted as reclaimable.
    #[arg(long, value_name = "PERCENT", default_value_t = 50, conflicts_with = "remote",
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
    if let Some(url) = &args.remote {
        return run_remote_gc(url, &args);
    }
    let spinner = output::Spinner::start("collecting garbage");
    let reply = client::call_for::<GcReport>(
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
    let r = reply;
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
    if let Some(e) = r.evicted {
        println!(
            "cache of the remote's blocks: {} held, limit {}: dropped {} blocks ({})",
            size(e.cached_bytes),
            size(e.limit),
            e.blocks_dropped,
            size(e.bytes_dropped)
        );
    }
    if let Some(packs) = r.held_packs {
        println!("this store's hold on its remote now names {packs} packs");
    }
    Ok(())
}

/// Runs in this process, as `images --remote` does: it touches the bucket only, no store.
fn run_remote_gc(url: &str, args: &GcArgs) -> Result<()> {
    let url: RemoteUrl = url.parse()?;
    let remote = Remote::connect(&url)?;
    let options = RemoteGcOptions {
        dry_run: args.dry_run,
        grace: args.grace.unwrap_or(DEFAULT_GRACE),
        release_holds: args.release_hold.clone(),
    };
    let spinner = output::Spinner::start("collecting the remote's garbage");
    let report = gc_remote(&remote, &options);
    spinner.finish();
    let r = report.with_context(|| format!("collecting the garbage of {url}"))?;
    if args.json {
        return output::json(&r);
    }
    println!(
        "{} image(s) reference {} of {} packs; {} unreferenced younger than {} s kept ({})",
        r.images,
        r.referenced_packs,
        r.packs,
        r.young_packs,
        r.grace_seconds,
        size(r.young_bytes)
    );
    for id in &r.released_holds {
        let verb = if r.dry_run {
            "would release"
        } else {
            "released"
        };
        println!("{verb} hold {id}");
    }
    if !r.holds.is_empty() {
        println!(
            "{} more pack(s) kept: {} store(s) backed by the remote hold them",
            r.held_packs,
            r.holds.len()
        );
        let rows: Vec<Vec<String>> = r
            .holds
            .iter()
            .map(|h| vec![h.store.clone(), h.host.clone(), h.packs.to_string()])
            .collect();
        output::table(&["HOLD", "HOST", "PACKS"], &rows);
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} {} unreferenced pack(s), {} ({:.2} s)",
        r.deleted_packs,
        size(r.deleted_bytes),
        r.seconds
    );
    Ok(())
}

/// A duration: a number with an optional unit s, m, h or d (seconds by default).
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, like 30m"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{text:?}: the unit is one of s, m, h, d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

pub fn run_fsck(store: &Path, args: FsckArgs) -> Result<()> {
    let spinner = output::Spinner::start("checking the store");
    let reply = client::call_for::<FsckReport>(
        store,
        Request::Fsck {
            verify_data: args.verify_data,
        },
    );
    spinner.finish();
    let r = reply?;
    if args.json {
        output::json(&r)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "1w", "-1s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
