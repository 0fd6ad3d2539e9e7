//! `tessera push` and `tessera pull`: images to and from a remote (`s3://BUCKET/PREFIX`, an
//! S3-API object store configured by the AWS_* variables of the process that runs the request:
//! this one, or the store's daemon when one runs).

use std::path::Path;

use anyhow::Result;
use tessera::store::RemoteUrl;
use tessera::transfer::{PullReport, PushReport};

use crate::output;
use tessera_daemon::Request;
use tessera_daemon::client;

/// Publish an image on a remote: uploads the blocks the remote lacks, then the manifest.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  \
    AWS_ENDPOINT_URL=http://127.0.0.1:17480 AWS_ALLOW_HTTP=true \\\n  \
    tessera push debian:12 s3://images/farm")]
pub struct PushArgs {
    /// The local image.
    image: String,
    /// The remote: s3://BUCKET/PREFIX (credentials and endpoint from the AWS_* variables).
    url: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Make a remote image usable locally: fetches its metadata and the blocks the store lacks.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  tessera pull s3://images/farm debian:12 --name debian\n  tessera pull s3://images/farm debian:12 --lazy   # blocks on first read\n  tessera pull s3://images/farm app:1 --lazy --prefetch /usr/bin/app --prefetch /etc"
)]
pub struct PullArgs {
    /// The remote: s3://BUCKET/PREFIX.
    url: String,
    /// The image on the remote.
    image: String,
    /// The local image's name (default: the remote image's).
    #[arg(long)]
    name: Option<String>,
    /// Fetch the metadata only: blocks are fetched on first read, and the store is backed by
    /// the remote from then on (it connects with the AWS_* variables when it opens).
    #[arg(long)]
    lazy: bool,
    /// With --lazy: fetch the blocks of these files (every file under a directory) now, before
    /// anything reads them. Repeat for several paths.
    #[arg(long, value_name = "PATH", requires = "lazy")]
    prefetch: Vec<String>,
    /// With --lazy: keep at most this much of the remote's blocks locally (e.g. 10G; none
    /// lifts a limit); the least recently used are dropped, and fetched again when read.
    /// Blocks containers' writable layers use are never dropped.
    #[arg(long, value_name = "SIZE", requires = "lazy")]
    cache_size: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run_push(store: &Path, args: PushArgs) -> Result<()> {
    let url: RemoteUrl = args.url.parse()?;
    let spinner = output::Spinner::start("pushing");
    let reply = client::call_for::<PushReport>(
        store,
        Request::Push {
            image: args.image,
            url: url.to_string(),
        },
    );
    spinner.finish();
    let reply = reply?;
    if args.json {
        return output::json(&reply);
    }
    let r = reply;
    println!(
        "pushed {} to {}: {} layer(s), {} blocks, {} new ({} of blocks), {} sent in all",
        r.image,
        r.remote,
        r.layers,
        r.blocks,
        r.uploaded.blocks,
        output::size(r.uploaded.block_bytes),
        output::size(r.bytes_sent)
    );
    Ok(())
}

/// `--cache-size`: a size, or 0 for none.
fn parse_cache_size(text: &str) -> Result<u64> {
    if text == "none" {
        return Ok(0);
    }
    match tessera::store_dir::parse_size(text) {
        Some(n) if n > 0 => Ok(n),
        _ => anyhow::bail!("--cache-size {text:?} is not a size like 10G (or none)"),
    }
}

pub fn run_pull(store: &Path, args: PullArgs) -> Result<()> {
    let url: RemoteUrl = args.url.parse()?;
    let spinner = output::Spinner::start("pulling");
    let reply = client::call_for::<PullReport>(
        store,
        Request::Pull {
            url: url.to_string(),
            image: args.image,
            name: args.name,
            lazy: args.lazy,
            prefetch: args.prefetch,
            cache_size: args
                .cache_size
                .as_deref()
                .map(parse_cache_size)
                .transpose()?,
        },
    );
    spinner.finish();
    let reply = reply?;
    if args.json {
        return output::json(&reply);
    }
    let r = reply;
    println!(
        "pulled {} from {}: {} layer(s), {} blocks, {} fetched, {} received in all",
        r.image,
        r.remote,
        r.layers,
        r.blocks,
        r.fetched_blocks,
        output::size(r.bytes_fetched)
    );
    if let Some(p) = r.prefetched {
        println!(
            "prefetched {} file(s), {}: {} blocks fetched, {} received",
            p.files,
            output::size(p.bytes),
            p.fetched_blocks,
            output::size(p.bytes_fetched)
        );
    }
    match (&r.hold, args.lazy) {
        (Some(id), _) => println!(
            "the store holds the packs it reads on the remote (hold {id}: gc --remote keeps them)"
        ),
        (None, true) => println!(
            "warning: no hold written (read-only credentials?): gc --remote may delete the \
             packs this store reads once their image is removed from the remote"
        ),
        (None, false) => {}
    }
    Ok(())
}
