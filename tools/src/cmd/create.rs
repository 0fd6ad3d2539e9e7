//! `tessera create`: a new container on an image; `tessera update`: change a container's
//! size limit.

use std::path::Path;

use anyhow::Result;

use crate::output;
use tessera_daemon::Request;
use tessera_daemon::client;

/// Create a container on an image (any committed image).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  tessera create web1 --from debian:12\n  tessera create db1 --from postgres:16 --size-limit 10G"
)]
pub struct Args {
    /// The container's name.
    name: String,
    /// The image it starts from.
    #[arg(long)]
    from: String,
    /// The most bytes the container may hold exclusively (blocks no image or other container
    /// shares): past it, writes fail with ENOSPC, and df in its mount shows it. Like 10G.
    #[arg(long)]
    size_limit: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Change a container's size limit (mounted or not: its next write sees it).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera update db1 --size-limit 20G")]
pub struct UpdateArgs {
    /// The container.
    name: String,
    /// The new limit (like 10G), or `none` to remove it.
    #[arg(long)]
    size_limit: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// A size limit as given: bytes, or `none`.
fn parse_limit(text: &str) -> Result<Option<u64>> {
    if text == "none" {
        return Ok(None);
    }
    match tessera::store_dir::parse_size(text) {
        Some(n) if n > 0 => Ok(Some(n)),
        _ => anyhow::bail!("--size-limit {text:?} is not a size like 10G (or none)"),
    }
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let reply = client::call_for::<tessera_daemon::reply::Created>(
        store,
        Request::Create {
            name: args.name.clone(),
            image: args.from.clone(),
            size_limit: args
                .size_limit
                .as_deref()
                .map(parse_limit)
                .transpose()?
                .flatten(),
        },
    )?;
    if args.json {
        return output::json(&reply);
    }
    println!("created container {} from {}", args.name, args.from);
    Ok(())
}

pub fn update(store: &Path, args: UpdateArgs) -> Result<()> {
    let reply = client::call_for::<tessera_daemon::reply::Updated>(
        store,
        Request::Update {
            name: args.name.clone(),
            size_limit: parse_limit(&args.size_limit)?,
        },
    )?;
    if args.json {
        return output::json(&reply);
    }
    let held = output::size(reply.exclusive_bytes);
    match reply.size_limit {
        Some(limit) => println!(
            "container {}: size limit {}, {held} held exclusively",
            args.name,
            output::size(limit)
        ),
        None => println!(
            "container {}: no size limit, {held} held exclusively",
            args.name
        ),
    }
    Ok(())
}
