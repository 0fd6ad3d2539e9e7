//! `tessera daemon status|stop|run`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::output;
use tessera_daemon::Request;
use tessera_daemon::client;
use tessera_daemon::reply::{DaemonStatus, Stopping};
use tessera_daemon::{DaemonOptions, malloc, protocol, server};

/// Inspect or control the store's daemon.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera daemon status --json")]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// The daemon's pid, mounts and cache figures.
    #[command(after_help = "Example:\n  tessera daemon status --json")]
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Flush, unmount everything and stop.
    #[command(after_help = "Example:\n  tessera daemon stop")]
    Stop {
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon in the foreground (what `tessera mount` starts in the background).
    #[command(after_help = "Example:\n  tessera daemon run --persist")]
    Run {
        /// Keep running with no mounts.
        #[arg(long)]
        persist: bool,
        /// Size of the verified block cache: blocks of which a read asked a part, and every
        /// block read by share-memory mounts.
        #[arg(long, default_value = "1G")]
        cache_size: String,
    },
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    match args.action {
        Action::Status { json } => {
            let Some(stream) = client::daemon(store) else {
                bail!("no tessera daemon runs for store {}", store.display());
            };
            let status: DaemonStatus = protocol::call(stream, &Request::Status)?.report()?;
            if json {
                return output::json(&status);
            }
            super::mount::print_status(&status);
            Ok(())
        }
        Action::Stop { json } => {
            let Some(stream) = client::daemon(store) else {
                bail!("no tessera daemon runs for store {}", store.display());
            };
            let reply: Stopping = protocol::call(stream, &Request::Stop)?.report()?;
            let started = Instant::now();
            // Until the process is gone: it removes its socket first, then unmounts and
            // flushes, and only its exit frees the store lock for the next command.
            let pid = u64::from(reply.stopping);
            while client::daemon(store).is_some() || client::running(pid) {
                if started.elapsed() > Duration::from_secs(60) {
                    bail!("the daemon did not stop within 60 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if json {
                return output::json(&reply);
            }
            println!("daemon stopped");
            Ok(())
        }
        Action::Run {
            persist,
            cache_size,
        } => {
            malloc::fix_mmap_threshold();
            server::run(
                store,
                DaemonOptions {
                    persist,
                    cache_bytes: super::mount::cache_bytes(&cache_size)?,
                    initial_mount: None,
                },
            )
        }
    }
}
