//! `tessera rm` and `tessera rmi`: remove a container or an image.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use tessera::store::{Remote, RemoteUrl};

use crate::output;
use tessera_daemon::Request;
use tessera_daemon::client;

/// Remove a container (refused while it is mounted).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera rm web1")]
pub struct RmArgs {
    name: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Remove an image (refused while a container or another image uses it); with --remote, a
/// remote's image (its manifest; `gc --remote` deletes the packs nothing references then).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  tessera rmi web:v2\n  tessera rmi --remote s3://images/farm web:v1"
)]
pub struct RmiArgs {
    name: String,
    /// Remove the image from this remote (s3://BUCKET/PREFIX) instead of the store.
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run_rm(store: &Path, args: RmArgs) -> Result<()> {
    let reply = client::call_for::<tessera_daemon::reply::Removed>(
        store,
        Request::Rm {
            name: args.name.clone(),
        },
    )?;
    if args.json {
        return output::json(&reply);
    }
    println!("removed container {}", args.name);
    Ok(())
}

pub fn run_rmi(store: &Path, args: RmiArgs) -> Result<()> {
    if let Some(url) = &args.remote {
        // In this process, like `images --remote`: the bucket only, no store.
        let url: RemoteUrl = url.parse()?;
        let remote = Remote::connect(&url)?;
        tessera::transfer::remove_remote_image(&remote, &args.name)
            .with_context(|| format!("removing image {} from {url}", args.name))?;
        if args.json {
            return output::json(&json!({ "removed": args.name, "remote": url.to_string() }));
        }
        println!("removed image {} from {url}", args.name);
        return Ok(());
    }
    let reply = client::call_for::<tessera_daemon::reply::Removed>(
        store,
        Request::Rmi {
            name: args.name.clone(),
        },
    )?;
    if args.json {
        return output::json(&reply);
    }
    println!("removed image {}", args.name);
    Ok(())
}
