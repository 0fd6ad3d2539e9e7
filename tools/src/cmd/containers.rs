//! `tessera containers` (`ps`): list containers.

use std::path::Path;

use anyhow::Result;
use tessera::store_dir::ContainerInfo;

use crate::output;
use tessera_daemon::Request;
use tessera_daemon::client;

/// List containers.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera ps")]
pub struct Args {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let reply = client::call_for::<Vec<ContainerInfo>>(store, Request::Containers)?;
    if args.json {
        return output::json(&reply);
    }
    let containers = reply;
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.image.clone(),
                output::size(c.layer_bytes),
                c.size_limit.map(output::size).unwrap_or_else(|| "-".into()),
                if c.mounted { "mounted" } else { "" }.to_string(),
                output::time(c.created),
            ]
        })
        .collect();
    output::table(
        &[
            "CONTAINER",
            "IMAGE",
            "CHANGED",
            "LIMIT",
            "STATE",
            "CREATED (UTC)",
        ],
        &rows,
    );
    Ok(())
}
