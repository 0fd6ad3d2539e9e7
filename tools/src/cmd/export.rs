//! `tessera export`: a tar of an image's or a container's view.

use std::path::{Path, PathBuf};

use anyhow::Result;
use tessera::export::ExportReport;

use crate::client;
use crate::output;
use crate::service::{self, Request};

/// Export an image or a container as a tar of its merged view.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera export web1 -o web1.tar")]
pub struct Args {
    /// An image or a container.
    target: String,
    /// Where to write the tar.
    #[arg(short, long)]
    output: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let path = service::absolute(&args.output)?;
    let reply = client::call(
        store,
        Request::Export {
            target: args.target.clone(),
            output: path.clone(),
        },
    )?;
    if args.json {
        return output::json(&reply);
    }
    let r: ExportReport = serde_json::from_value(reply)?;
    println!(
        "exported {} to {} ({} entries, {} of file data)",
        args.target,
        path.display(),
        r.entries,
        output::size(r.file_bytes)
    );
    Ok(())
}
