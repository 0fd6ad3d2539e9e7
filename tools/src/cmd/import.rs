//! `tessera import`: a directory, a layer tar (plain, .gz, .zst), an OCI image layout or a
//! `docker save` archive becomes an image.

use std::path::{Path, PathBuf};

use anyhow::Result;
use tessera::import::ImportReport;

use crate::output;
use tessera_daemon::client;
use tessera_daemon::{Request, service};

/// Import a directory, a tar, an OCI image layout or a docker save archive as an image.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    tessera import ./rootfs.tar.zst --name debian:12\n  \
    tessera import ./oci-dir:latest --name alpine:3.20   # an OCI layout (umoci, skopeo)\n  \
    tessera import ./busybox.tar                         # docker save; named by its tag")]
pub struct Args {
    /// A directory, a layer tar (plain, gzip or zstd), an OCI image layout (DIR, or DIR:REF
    /// to pick an image by its ref name) or a docker save archive (FILE, or FILE:TAG).
    source: PathBuf,
    /// The image's name (NAME or NAME:TAG). Default: the tag the archive carries.
    #[arg(long)]
    name: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    // Lexical, so a `:REF` suffix survives (the engine splits it off).
    let source = service::absolute(&args.source)?;
    let spinner = output::Spinner::start("importing");
    let reply = client::call_for::<ImportReport>(
        store,
        Request::Import {
            source,
            name: args.name,
        },
    );
    spinner.finish();
    let reply = reply?;
    if args.json {
        return output::json(&reply);
    }
    let r = reply;
    let rate = r.logical_bytes as f64 / r.seconds.max(1e-9) / (1 << 20) as f64;
    let from = r.format.map(|f| format!(" ({f})")).unwrap_or_default();
    println!(
        "imported {}{from}: {} layer(s), {} entries, {} of files, {} zero, in {:.2} s \
         ({rate:.0} MiB/s)",
        r.image,
        r.layers,
        r.entries,
        output::size(r.logical_bytes),
        output::size(r.zero_bytes),
        r.seconds
    );
    let stored = r.logical_bytes - r.zero_bytes;
    println!(
        "stored {} of new blocks; {} were already in the store",
        output::size(r.added_bytes),
        output::size(stored.saturating_sub(r.added_bytes))
    );
    Ok(())
}
