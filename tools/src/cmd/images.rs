//! `tessera images`: list images.

use std::path::Path;

use anyhow::{Context, Result};
use tessera::store::{Remote, RemoteUrl};
use tessera::store_dir::ImageInfo;

use crate::output;
use tessera_daemon::Request;
use tessera_daemon::client;

/// List images.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  tessera images --json\n  tessera images --remote s3://images/farm"
)]
pub struct Args {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// List the images of a remote (s3://BUCKET/PREFIX) instead of the store's.
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    if let Some(url) = &args.remote {
        return run_remote(url, args.json);
    }
    let reply = client::call_for::<Vec<ImageInfo>>(store, Request::Images)?;
    if args.json {
        return output::json(&reply);
    }
    let images = reply;
    let rows = images
        .iter()
        .map(|i| (&i.name, i.layers, i.layer_bytes, i.created));
    print_table("SIZE", rows);
    Ok(())
}

/// The images table: name, layers, a size (its header given), creation time.
fn print_table<'a>(size_header: &str, images: impl Iterator<Item = (&'a String, usize, u64, i64)>) {
    let rows: Vec<Vec<String>> = images
        .map(|(name, layers, bytes, created)| {
            vec![
                name.clone(),
                layers.to_string(),
                output::size(bytes),
                output::time(created),
            ]
        })
        .collect();
    output::table(&["IMAGE", "LAYERS", size_header, "CREATED (UTC)"], &rows);
}

/// Lists a remote's images: reads each manifest (no store needed).
fn run_remote(url: &str, json: bool) -> Result<()> {
    let url: RemoteUrl = url.parse()?;
    let remote = Remote::connect(&url)?;
    let images = tessera::transfer::remote_images_info(&remote)
        .with_context(|| format!("listing the images of {url}"))?;
    if json {
        return output::json(&serde_json::to_value(images)?);
    }
    let rows = images
        .iter()
        .map(|i| (&i.name, i.layers, i.block_bytes, i.created));
    print_table("BLOCKS SIZE", rows);
    Ok(())
}
