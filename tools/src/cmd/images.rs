//! `tessera images`: list images.

use std::path::Path;

use anyhow::Result;
use tessera::store_dir::ImageInfo;

use crate::client;
use crate::output;
use crate::service::Request;

/// List images.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera images --json")]
pub struct Args {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let reply = client::call(store, Request::Images)?;
    if args.json {
        return output::json(&reply);
    }
    let images: Vec<ImageInfo> = serde_json::from_value(reply)?;
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.layers.to_string(),
                output::size(i.layer_bytes),
                output::time(i.created),
            ]
        })
        .collect();
    output::table(&["IMAGE", "LAYERS", "SIZE", "CREATED (UTC)"], &rows);
    Ok(())
}
