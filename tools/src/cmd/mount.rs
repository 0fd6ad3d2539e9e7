//! `tessera mount` and `tessera umount`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::output;
use tessera_daemon::client;
use tessera_daemon::reply::{DaemonStatus, Unmounted};
use tessera_daemon::{DaemonOptions, MountRequest, malloc, protocol, server};
use tessera_daemon::{Request, service};

/// Mount a container's view (starts the store's daemon if none runs).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera mount web1 /mnt/web1 && ls /mnt/web1")]
pub struct Args {
    container: String,
    mountpoint: PathBuf,
    /// Serve reads from the daemon's one verified block cache (FOPEN_DIRECT_IO, mmap
    /// allowed): containers reading the same blocks hold them in memory once.
    #[arg(long)]
    share_memory: bool,
    /// Send every write to the daemon as it happens instead of letting the kernel cache it
    /// (FUSE_WRITEBACK_CACHE, the default): slower small writes, nothing held by the kernel.
    #[arg(long, conflicts_with = "share_memory")]
    write_through: bool,
    /// Run the daemon in this terminal (until Ctrl-C or the last unmount).
    #[arg(long)]
    foreground: bool,
    /// Size of the daemon's verified block cache when this starts it: blocks of which a read
    /// asked a part (their neighbours are the likely next reads), and every block read by
    /// share-memory mounts.
    #[arg(long, default_value = "1G")]
    cache_size: String,
    /// When this starts the daemon: one pool of FUSE workers for every mount (see `tessera
    /// daemon run --fuse-pool`).
    #[arg(long)]
    fuse_pool: bool,
}

/// Flush and unmount a mount point.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera umount /mnt/web1")]
pub struct UmountArgs {
    mountpoint: PathBuf,
}

pub fn cache_bytes(text: &str) -> Result<usize> {
    tessera::store_dir::parse_size(text)
        .map(|n| n as usize)
        .with_context(|| format!("{text:?} is not a size like 1G"))
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let mountpoint = service::absolute(&args.mountpoint)?;
    // A mount left by a killed daemon answers ENOTCONN (not even a directory): detach it.
    if tessera_fusefs::mounts::is_stale(&mountpoint) {
        tessera_fusefs::mounts::clear_stale(&mountpoint)
            .with_context(|| format!("clearing stale mount {}", mountpoint.display()))?;
    }
    if !mountpoint.is_dir() {
        bail!("mount point {} is not a directory", mountpoint.display());
    }
    let request = MountRequest {
        container: args.container.clone(),
        mountpoint: mountpoint.clone(),
        share_memory: args.share_memory,
        write_through: args.write_through,
    };
    if args.foreground {
        if client::daemon(store).is_some() {
            bail!("a daemon already serves this store; mount without --foreground");
        }
        malloc::fix_mmap_threshold();
        println!(
            "mounting {} at {} (Ctrl-C to stop)",
            args.container,
            mountpoint.display()
        );
        let options = DaemonOptions {
            persist: false,
            cache_bytes: cache_bytes(&args.cache_size)?,
            fuse_pool: args.fuse_pool,
            initial_mount: Some(request),
        };
        return server::run(store, options);
    }
    let stream = match client::daemon(store) {
        Some(stream) => stream,
        None => {
            cache_bytes(&args.cache_size)?;
            let pool: &[&str] = if args.fuse_pool {
                &["--fuse-pool"]
            } else {
                &[]
            };
            client::start_daemon_with(store, &args.cache_size, pool)?
        }
    };
    protocol::call(
        stream,
        &Request::Mount {
            container: request.container,
            mountpoint: request.mountpoint,
            share_memory: request.share_memory,
            write_through: request.write_through,
        },
    )?;
    println!("mounted {} at {}", args.container, mountpoint.display());
    Ok(())
}

pub fn run_umount(store: &Path, args: UmountArgs) -> Result<()> {
    let mountpoint = service::absolute(&args.mountpoint)?;
    if let Some(stream) = client::daemon(store) {
        let request = Request::Umount {
            mountpoint: mountpoint.clone(),
        };
        match protocol::call(stream, &request) {
            Ok(reply) => {
                let reply: Unmounted = reply.report()?;
                // The daemon's last mount: it exits, and frees the store, right after.
                if let Some(pid) = reply.exiting.map(u64::from) {
                    let started = std::time::Instant::now();
                    while client::running(pid)
                        && started.elapsed() < std::time::Duration::from_secs(60)
                    {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
                println!("unmounted {}", mountpoint.display());
                return Ok(());
            }
            // Left by an earlier, killed daemon: not this one's, but clear it all the same.
            Err(_) if tessera_fusefs::mounts::is_stale(&mountpoint) => {}
            Err(e) => return Err(e),
        }
    }
    if tessera_fusefs::mounts::is_stale(&mountpoint) {
        tessera_fusefs::mounts::clear_stale(&mountpoint)?;
        println!(
            "cleared stale mount {} (its daemon was gone)",
            mountpoint.display()
        );
        return Ok(());
    }
    bail!("no tessera daemon serves {}", mountpoint.display())
}

pub fn print_status(status: &DaemonStatus) {
    let mounts = &status.mounts;
    println!(
        "daemon pid {} serving {} ({} mount{})",
        status.pid,
        status.store.display(),
        mounts.len(),
        if mounts.len() == 1 { "" } else { "s" }
    );
    if status.fuse_pool {
        println!("one pool of FUSE workers serves every mount");
    }
    match status.keeper {
        Some(keeper) => println!("keeper pid {keeper}: the mounts outlive this daemon"),
        None => println!("no keeper: the mounts end with this daemon"),
    }
    let rows: Vec<Vec<String>> = mounts
        .iter()
        .map(|m| {
            vec![
                m.container.clone(),
                m.mountpoint.display().to_string(),
                if m.share_memory {
                    "share-memory"
                } else if m.write_through {
                    "write-through"
                } else {
                    "writeback"
                }
                .to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        output::table(&["CONTAINER", "MOUNT POINT", "CACHING"], &rows);
    }
    println!("dirty data: {}", output::size(status.dirty_bytes));
    if let Some(cache) = &status.block_cache {
        println!(
            "block cache: {} held, {} hits, {} misses",
            output::size(cache.bytes),
            cache.hits,
            cache.misses
        );
    }
    println!(
        "durability: {} fsyncs served by the intent log (one disk sync each), {} metadata commits",
        status.intent_log_fsyncs, status.metadata_commits
    );
    if let Some(remote) = &status.remote {
        println!(
            "remote: {} requests, {} fetched, {} sent; the local packs (its cache) hold {}",
            remote.requests,
            output::size(remote.bytes_fetched),
            output::size(remote.bytes_sent),
            output::size(remote.local_pack_bytes)
        );
    }
    let reclaim = &status.reclaim;
    println!(
        "reclaim: {} passes freed {}; pending: {} left by the last pass, {} stored since{}",
        reclaim.passes,
        output::size(reclaim.bytes_freed),
        output::size(reclaim.garbage_left),
        output::size(reclaim.stored_since),
        reclaim
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default()
    );
}
