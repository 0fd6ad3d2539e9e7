//! `tessera rm` and `tessera rmi`: remove a container or an image.

use std::path::Path;

use anyhow::Result;

use crate::client;
use crate::output;
use crate::service::Request;

/// Remove a container (refused while it is mounted).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera rm web1")]
pub struct RmArgs {
    name: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Remove an image (refused while a container or another image uses it).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera rmi web:v2")]
pub struct RmiArgs {
    name: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run_rm(store: &Path, args: RmArgs) -> Result<()> {
    let reply = client::call(
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
    let reply = client::call(
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
