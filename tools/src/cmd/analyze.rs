//! `tessera analyze`: what a store would hold at each candidate block size, for images or
//! directories, without importing them (so the block size can be picked before `init`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tessera::import::AnalyzeReport;
use tessera::store_dir::parse_size;

use crate::output;

/// Compare block sizes on real data: dedup, compression, zero blocks and index size, nothing
/// imported.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    tessera analyze ./rootfs ./debian.tar.zst ./oci-dir:latest\n  \
    tessera analyze ./busybox.tar --block-sizes 4K,64K --json")]
pub struct Args {
    /// Sources as `import` takes them: directories, layer tars, OCI layouts (DIR or
    /// DIR:REF), docker save archives.
    #[arg(required = true)]
    sources: Vec<PathBuf>,
    /// Block sizes to compare (powers of two from 4K to 1M).
    #[arg(long, value_delimiter = ',', default_value = "4K,16K,64K,256K,1M")]
    block_sizes: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let mut sizes = Vec::new();
    for text in &args.block_sizes {
        let Some(size) = parse_size(text).and_then(|s| u32::try_from(s).ok()) else {
            bail!("block size {text:?} is not a size (such as 4K, 64K, 1M)");
        };
        sizes.push(size);
    }
    let sources: Vec<PathBuf> = args
        .sources
        .iter()
        .map(|s| std::path::absolute(s).with_context(|| format!("resolving {}", s.display())))
        .collect::<Result<_>>()?;
    let spinner = output::Spinner::start("analyzing");
    let report = tessera::import::analyze(&sources, &sizes);
    spinner.finish();
    let report = report.context("analyzing")?;
    if args.json {
        return output::json(&report);
    }
    print_report(&report);
    Ok(())
}

fn print_report(r: &AnalyzeReport) {
    for s in &r.sources {
        println!("{}: {}, {} layer(s)", s.source, s.format, s.layers);
    }
    println!(
        "{} file versions, {} of file data, read in {:.2} s",
        r.file_versions,
        output::size(r.logical_bytes),
        r.seconds
    );
    let rows: Vec<Vec<String>> = r
        .block_sizes
        .iter()
        .map(|f| {
            vec![
                output::size(f.block_size as u64),
                output::size(f.logical_bytes),
                output::size(f.unique_bytes),
                f.unique_blocks.to_string(),
                format!("{:.2}", f.dedup_ratio),
                output::size(f.compressed_bytes),
                format!("{:.2}", f.compression_ratio),
                output::size(f.zero_bytes),
                output::size(f.estimated_index_bytes),
            ]
        })
        .collect();
    output::table(
        &[
            "BLOCK",
            "LOGICAL",
            "UNIQUE",
            "BLOCKS",
            "DEDUP",
            "ZSTD:3",
            "RATIO",
            "ZERO",
            "INDEX (EST.)",
        ],
        &rows,
    );
}
