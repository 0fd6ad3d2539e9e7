//! `tessera create`: a new container on an image.

use std::path::Path;

use anyhow::Result;

use crate::client;
use crate::output;
use crate::service::Request;

/// Create a container on an image (any committed image).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera create web1 --from debian:12")]
pub struct Args {
    /// The container's name.
    name: String,
    /// The image it starts from.
    #[arg(long)]
    from: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let reply = client::call(
        store,
        Request::Create {
            name: args.name.clone(),
            image: args.from.clone(),
        },
    )?;
    if args.json {
        return output::json(&reply);
    }
    println!("created container {} from {}", args.name, args.from);
    Ok(())
}
