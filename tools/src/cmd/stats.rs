//! `tessera stats`: dedup and sharing, store-wide and per image, container and layer.

use std::path::Path;

use anyhow::{Context, Result};
use tessera::stats::StatsReport;

use crate::output::{self, size, table};
use tessera_daemon::Request;
use tessera_daemon::client;

/// Report dedup and sharing: logical vs stored bytes, exclusive and shared bytes per image and
/// container, copy-up bytes versus whole-file copy-up, how many layers share each block, and
/// the top files by shared and by copied-up bytes.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  tessera stats --json debian:12 web1\n  tessera stats --html stats.html"
)]
pub struct Args {
    /// Only these images and containers (all when none).
    names: Vec<String>,
    /// How many top files to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Print as JSON.
    #[arg(long, conflicts_with = "html")]
    json: bool,
    /// Write the report as one self-contained HTML page (SVG charts, no script) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let reply = client::call_for::<StatsReport>(
        store,
        Request::Stats {
            names: args.names,
            top: args.top,
        },
    )?;
    if args.json {
        return output::json(&reply);
    }
    let r = reply;
    if let Some(path) = &args.html {
        let page = crate::stats_page::page(&r)?;
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
        return Ok(());
    }
    print(&r);
    Ok(())
}

fn print(r: &StatsReport) {
    let s = &r.store;
    println!(
        "store: {} images, {} containers, {} files in their views; block size {}",
        s.images,
        s.containers,
        s.files,
        size(r.block_size as u64)
    );
    println!(
        "  logical {} ({} in zero blocks) -> {} of distinct blocks referenced ({} blocks): dedup ratio {:.2}x",
        size(s.logical_bytes),
        size(s.zero_bytes),
        size(s.referenced_bytes),
        s.referenced_blocks,
        s.dedup_ratio
    );
    println!(
        "  stored {} blocks ({}; compression {}, {:.2}x) in {} of packs; pending reclaim {} (unreferenced; freed in the background or by gc); metadata {}",
        s.stored_blocks,
        size(s.stored_block_bytes),
        s.compression,
        s.compression_ratio,
        size(s.pack_bytes),
        size(s.reclaimable_bytes),
        size(s.metadata_bytes)
    );
    if let Some(remote) = &r.remote {
        println!(
            "  remote: {} blocks ({}) held only there; local packs {}{}; fetched {} blocks ({}) in {} requests since the store was opened",
            remote.remote_only_blocks,
            size(remote.remote_only_bytes),
            size(remote.local_pack_bytes),
            remote
                .cache_limit
                .map(|l| format!(" (the remote's blocks kept up to {})", size(l)))
                .unwrap_or_default(),
            remote.blocks_fetched,
            size(remote.bytes_fetched),
            remote.requests
        );
    }
    println!();
    let rows: Vec<Vec<String>> = r
        .owners
        .iter()
        .map(|o| {
            vec![
                o.kind.clone(),
                o.name.clone(),
                o.files.to_string(),
                size(o.logical_bytes),
                size(o.referenced_bytes),
                size(o.stored_bytes),
                size(o.exclusive_bytes),
                size(o.shared_bytes),
                format!("{} in {} files", size(o.copied_up_bytes), o.copied_up_files),
                size(o.whole_file_copy_up_bytes),
            ]
        })
        .collect();
    table(
        &[
            "KIND",
            "NAME",
            "FILES",
            "LOGICAL",
            "REFERENCED",
            "STORED",
            "EXCLUSIVE",
            "SHARED",
            "COPY-UP (TESSERA)",
            "WHOLE-FILE COPY-UP",
        ],
        &rows,
    );
    println!();
    let rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .map(|l| {
            vec![
                l.layer.to_string(),
                l.parent.map_or("-".into(), |p| p.to_string()),
                l.records.to_string(),
                size(l.referenced_bytes),
                size(l.new_bytes),
                size(l.copied_up_bytes),
                size(l.whole_file_copy_up_bytes),
            ]
        })
        .collect();
    table(
        &[
            "LAYER",
            "PARENT",
            "FILES",
            "REFERENCED",
            "NEW",
            "COPY-UP",
            "WHOLE-FILE",
        ],
        &rows,
    );
    println!();
    let rows: Vec<Vec<String>> = r
        .sharing
        .iter()
        .map(|b| vec![b.layers.to_string(), b.blocks.to_string(), size(b.bytes)])
        .collect();
    println!("blocks by the number of layers sharing them:");
    table(&["LAYERS", "BLOCKS", "BYTES"], &rows);
    for (title, files, whole) in [
        ("top files by shared bytes:", &r.top_shared_files, false),
        (
            "top files by copied-up bytes:",
            &r.top_copied_up_files,
            true,
        ),
    ] {
        if files.is_empty() {
            continue;
        }
        println!();
        println!("{title}");
        let rows: Vec<Vec<String>> = files
            .iter()
            .map(|f| {
                let mut row = vec![f.owner.clone(), f.path.clone(), size(f.size), size(f.bytes)];
                if whole {
                    row.push(size(f.whole_file_bytes));
                }
                row
            })
            .collect();
        let mut header = vec!["IN", "PATH", "SIZE", "BYTES"];
        if whole {
            header.push("WHOLE-FILE");
        }
        table(&header, &rows);
    }
}
