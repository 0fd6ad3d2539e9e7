//! `tessera daemon status|stop|restart|run`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::output;
use tessera_daemon::Request;
use tessera_daemon::client;
use tessera_daemon::reply::{DaemonStatus, Restarting, Stopping};
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
    /// Hand every mount over to a new daemon (after an upgrade of the binary, say): the
    /// mounts stay up, their requests wait a moment and are served by the new daemon.
    #[command(after_help = "Example:\n  tessera daemon restart")]
    Restart {
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon in the foreground (what `tessera mount` starts in the background).
    ///
    /// It runs as two processes: a keeper, which holds a copy of every mount's FUSE
    /// descriptor, and the daemon proper, its child. When the daemon exits for a restart or
    /// dies, the mounts stay up and the keeper starts the next daemon, which serves them on.
    #[command(after_help = "Example:\n  tessera daemon run --persist")]
    Run {
        /// Keep running with no mounts.
        #[arg(long)]
        persist: bool,
        /// Size of the verified block cache: blocks of which a read asked a part, and every
        /// block read by share-memory mounts.
        #[arg(long, default_value = "1G")]
        cache_size: String,
        /// Serve every mount with one pool of FUSE workers (twice the CPUs, at least 8)
        /// instead of four threads each: for hosts with many containers. A single busy
        /// mount is slower this way (README, "Node scale").
        #[arg(long)]
        fuse_pool: bool,
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
        Action::Restart { json } => restart(store, json),
        Action::Run {
            persist,
            cache_size,
            fuse_pool,
        } => {
            if std::env::var_os(tessera_daemon::kept::VAR).is_none() {
                let mut args = vec!["--cache-size".into(), cache_size.clone().into()];
                if persist {
                    args.push("--persist".into());
                }
                if fuse_pool {
                    args.push("--fuse-pool".into());
                }
                return tessera_daemon::keeper::run(store, args);
            }
            malloc::fix_mmap_threshold();
            server::run(
                store,
                DaemonOptions {
                    persist,
                    cache_bytes: super::mount::cache_bytes(&cache_size)?,
                    fuse_pool,
                    initial_mount: None,
                },
            )
        }
    }
}

fn restart(store: &Path, json: bool) -> Result<()> {
    let Some(stream) = client::daemon(store) else {
        bail!("no tessera daemon runs for store {}", store.display());
    };
    let old: Restarting = protocol::call(stream, &Request::Restart)?.report()?;
    let started = Instant::now();
    // Until the next daemon answers (the old one exits right after replying).
    let status = loop {
        if let Some(stream) = client::daemon(store)
            && let Ok(reply) = protocol::call(stream, &Request::Status)
            && let Ok(status) = reply.report::<DaemonStatus>()
            && status.pid != old.handing_over
        {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let log = tessera_daemon::paths::DaemonPaths::for_store(store)?.log;
            bail!("no new daemon answered within 60 s (see {})", log.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if json {
        return output::json(&status);
    }
    println!(
        "daemon restarted: pid {} -> {}, {} of {} mounts served on",
        old.handing_over,
        status.pid,
        status.mounts.len(),
        old.mounts
    );
    Ok(())
}
