//! `tessera snapshotter`: serves containerd's snapshots API (a proxy plugin) on a unix socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use containerd_snapshots::tonic::transport::Server;
use tokio_stream::wrappers::UnixListenerStream;

use crate::snapshotter::TesseraSnapshotter;
use tessera_daemon::client;
use tessera_daemon::protocol;
use tessera_daemon::reply::DaemonStatus;
use tessera_daemon::{Request, service};

/// Serve containerd's snapshots API over the store (configure containerd's
/// `[proxy_plugins.tessera]` with this socket).
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  tessera snapshotter --address /run/tessera-snapshotter.sock\n  ctr run --snapshotter tessera IMAGE ID"
)]
pub struct Args {
    /// The unix socket to listen on (replaced if it exists).
    #[arg(long)]
    address: PathBuf,
    /// The snapshotter's state: its database and the containers' mount points (default:
    /// STORE/snapshotter).
    #[arg(long)]
    root: Option<PathBuf>,
}

pub fn run(store: &Path, args: Args) -> Result<()> {
    let root = match args.root {
        Some(root) => service::absolute(&root)?,
        None => store.join("snapshotter"),
    };
    // The store's daemon serves the mounts; one that this starts stays up with no mounts
    // and is stopped when this stops (if it then serves none).
    let started_daemon = match client::daemon(store) {
        Some(_) => false,
        None => {
            client::start_daemon_with(store, "1G", &["--persist"])?;
            true
        }
    };
    let snapshotter = TesseraSnapshotter::open(store, &root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(async {
        let _ = std::fs::remove_file(&args.address);
        if let Some(dir) = args.address.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let listener = tokio::net::UnixListener::bind(&args.address)
            .with_context(|| format!("listening on {}", args.address.display()))?;
        println!(
            "tessera snapshotter serving store {} on {}",
            store.display(),
            args.address.display()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let _ = stop_tx.send(true);
        });
        let mut stop_serving = stop.clone();
        let serve = Server::builder()
            .add_service(containerd_snapshots::server(Arc::new(snapshotter)))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                let _ = stop_serving.changed().await;
            });
        tokio::pin!(serve);
        // A stop waits for the requests under way, not for clients that stay connected
        // (containerd keeps its connection open): 5 s, then this stops all the same.
        tokio::select! {
            served = &mut serve => served.context("serving"),
            _ = async {
                let _ = stop.changed().await;
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            } => {
                tracing::warn!("clients still connected 5 s after the stop signal: stopping");
                Ok(())
            }
        }
    });
    let _ = std::fs::remove_file(&args.address);
    // The daemon this started stops with it, unless it still serves mounts: running
    // containers keep their rootfs across a restart of the snapshotter (which finds them).
    if started_daemon && let Some(stream) = client::daemon(store) {
        let status: DaemonStatus = protocol::call(stream, &Request::Status)?.report()?;
        let mounts = status.mounts.len();
        if mounts == 0 {
            if let Some(stream) = client::daemon(store) {
                protocol::call(stream, &Request::Stop)?;
            }
        } else {
            println!("the store's daemon keeps serving {mounts} mounts (tessera daemon stop)");
        }
    }
    served
}
