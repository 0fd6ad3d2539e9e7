//! `tessera init`: create a store.

use std::path::Path;

use anyhow::{Context, Result};
use tessera::Store;
use tessera::store::Compression;
use tessera::store_dir::parse_size;

use tessera_daemon::service::store_options;

/// Create a store.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  tessera --store /var/lib/tessera init --block-size 64K --compression zstd:3"
)]
pub struct Args {
    /// Block size: a power of two from 4K to 1M (fixed for the store's life).
    #[arg(long, default_value = "64K")]
    block_size: String,
    /// How blocks are kept: zstd, zstd:LEVEL (1-19) or none (fixed for the store's life).
    /// A block stays uncompressed when compression saves less than an eighth of it. zstd
    /// halves what images take and often more of what containers write, at about a tenth
    /// of random 4 KiB I/O speed (docs/benchmarks.md).
    #[arg(long, default_value = "none")]
    compression: String,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let block_size = parse_size(&args.block_size)
        .and_then(|n| u32::try_from(n).ok())
        .with_context(|| format!("--block-size {:?} is not a size like 64K", args.block_size))?;
    let compression: Compression = args.compression.parse()?;
    Store::init(
        store,
        store_options()
            .block_size(block_size)
            .compression(compression),
    )
    .with_context(|| format!("creating a store at {}", store.display()))?;
    println!(
        "initialized store {} (block size {}, compression {compression})",
        store.display(),
        crate::output::size(block_size as u64)
    );
    Ok(())
}
