//! `tessera import`: a directory or a tar (plain, .gz, .zst) becomes an image.

use std::path::{Path, PathBuf};

use anyhow::Result;
use tessera::import::ImportReport;

use crate::client;
use crate::output;
use crate::service::{self, Request};

/// Import a directory or a tar archive as an image.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera import ./rootfs.tar.zst --name debian:12")]
pub struct Args {
    /// A directory, or a tar archive (plain, gzip or zstd).
    source: PathBuf,
    /// The image's name (NAME or NAME:TAG).
    #[arg(long)]
    name: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let source = service::absolute(&args.source)?;
    let reply = client::call(
        store,
        Request::Import {
            source,
            name: args.name,
        },
    )?;
    if args.json {
        return output::json(&reply);
    }
    let r: ImportReport = serde_json::from_value(reply)?;
    let rate = r.logical_bytes as f64 / r.seconds.max(1e-9) / (1 << 20) as f64;
    println!(
        "imported {} ({} entries, {} of files, {} zero) in {:.2} s ({rate:.0} MiB/s)",
        r.image,
        r.entries,
        output::size(r.logical_bytes),
        output::size(r.zero_bytes),
        r.seconds
    );
    let stored = r.logical_bytes - r.zero_bytes;
    println!(
        "stored {} of new blocks; {} were already in the store",
        output::size(r.added_bytes),
        output::size(stored.saturating_sub(r.added_bytes))
    );
    Ok(())
}
