//! `tessera commit`: a new image from a container's changes (metadata only).

use std::path::Path;

use anyhow::Result;

use crate::output;
use tessera_daemon::Request;
use tessera_daemon::client;

/// Commit a container's changes as a new image; the container goes on on top of it.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera commit web1 --name web:v2")]
pub struct Args {
    /// The container to commit.
    container: String,
    /// The new image's name.
    #[arg(long)]
    name: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    // A mounted container's daemon pushes what the kernel caches of it before committing.
    let reply = client::call_for::<tessera_daemon::reply::Committed>(
        store,
        Request::Commit {
            container: args.container.clone(),
            image: args.name.clone(),
        },
    )?;
    if args.json {
        return output::json(&reply);
    }
    println!("committed {} as image {}", args.container, args.name);
    Ok(())
}
