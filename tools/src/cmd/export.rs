//! `tessera export`: a tar of an image's or a container's view, an OCI image layout of its
//! layers (`--oci`), or its top layer's diff as an OCI layer tar (`--layer`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use tessera::export::{ExportReport, ExportedLayer, OciExportReport};

use crate::output;
use tessera_daemon::client;
use tessera_daemon::{Request, service};

/// Export an image or a container: a tar of its merged view, an OCI image layout, or the
/// diff of its top layer.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    tessera export web1 -o web1.tar\n  \
    tessera export app:1.0 -o ./oci --oci     # then: umoci unpack --image ./oci:app:1.0 bundle\n  \
    tessera export web1 -o changes.tar --layer")]
pub struct Args {
    /// An image or a container.
    target: String,
    /// Where to write: a tar file, or a directory for --oci (created, or an OCI layout to
    /// add the image to).
    #[arg(short, long)]
    output: PathBuf,
    /// Write an OCI image layout: one gzip layer per layer, ref name = the image's name.
    #[arg(long, conflicts_with = "layer")]
    oci: bool,
    /// Write only the top layer's changes, as an OCI layer tar (with whiteouts).
    #[arg(long)]
    layer: bool,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let path = service::absolute(&args.output)?;
    let spinner = output::Spinner::start("exporting");
    let reply = client::call(
        store,
        Request::Export {
            target: args.target.clone(),
            output: path.clone(),
            oci: args.oci,
            layer: args.layer,
        },
    );
    spinner.finish();
    let reply = reply?;
    if args.oci {
        let r: OciExportReport = reply.report()?;
        if args.json {
            return output::json(&r);
        }
        let bytes: u64 = r.layers.iter().map(|l| l.size).sum();
        println!(
            "exported {} to OCI layout {} as {:?}: {} layer(s), {} compressed, manifest {}",
            args.target,
            path.display(),
            r.reference,
            r.layers.len(),
            output::size(bytes),
            r.manifest
        );
    } else if args.layer {
        let r: ExportedLayer = reply.report()?;
        if args.json {
            return output::json(&r);
        }
        println!(
            "exported the top layer of {} to {} ({} entries, {} of file data, diff id {})",
            args.target,
            path.display(),
            r.entries,
            output::size(r.file_bytes),
            r.diff_id
        );
    } else {
        let r: ExportReport = reply.report()?;
        if args.json {
            return output::json(&r);
        }
        println!(
            "exported {} to {} ({} entries, {} of file data)",
            args.target,
            path.display(),
            r.entries,
            output::size(r.file_bytes)
        );
    }
    Ok(())
}
