//! What can be asked of a store, as data: every CLI command that touches a store builds a
//! [`Request`], and [`execute`] carries it out against an open `Store` and answers a typed
//! [`Reply`]. Requests run in the caller's process when no daemon owns the store
//! (`call_local`); the daemon runs the very same `execute` for requests arriving on its
//! control socket (see `client`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tessera::maintenance::{FsckOptions, GcOptions};
use tessera::stats::StatsOptions;
use tessera::{Store, StoreOptions};

use crate::reply::{Committed, Created, Removed, Reply, Updated};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Import {
        /// A path, or `PATH:REF` for an image of an OCI layout or docker archive.
        source: PathBuf,
        /// `None`: the tag the source carries.
        #[serde(default)]
        name: Option<String>,
    },
    Images,
    Containers,
    Create {
        name: String,
        image: String,
        #[serde(default)]
        size_limit: Option<u64>,
    },
    /// Sets or removes a container's size limit.
    Update {
        name: String,
        size_limit: Option<u64>,
    },
    Commit {
        container: String,
        image: String,
    },
    Rm {
        name: String,
    },
    Rmi {
        name: String,
    },
    Export {
        target: String,
        output: PathBuf,
        /// Write an OCI image layout directory.
        #[serde(default)]
        oci: bool,
        /// Write the top layer's diff as an OCI layer tar.
        #[serde(default)]
        layer: bool,
    },
    Diff {
        container: String,
    },
    /// Publish a local image on a remote (`s3://BUCKET/PREFIX`).
    Push {
        image: String,
        url: String,
    },
    /// Make a remote image usable locally, as `name` (default: its remote name).
    Pull {
        url: String,
        image: String,
        #[serde(default)]
        name: Option<String>,
        /// Metadata only: blocks are fetched on first read (the store becomes backed by the
        /// remote).
        #[serde(default)]
        lazy: bool,
        /// Paths of the image whose blocks a lazy pull fetches at once.
        #[serde(default)]
        prefetch: Vec<String>,
        /// The limit on the remote's blocks kept locally (0: none), for a lazy pull.
        #[serde(default)]
        cache_size: Option<u64>,
    },
    Stats {
        names: Vec<String>,
        top: usize,
    },
    Gc {
        dry_run: bool,
        /// Share of live bytes under which a pack is rewritten (`GcOptions::repack_below`).
        #[serde(default = "default_repack_below")]
        repack_below: f64,
    },
    Fsck {
        verify_data: bool,
    },
    /// Daemon only: mount a container's view.
    Mount {
        container: String,
        mountpoint: PathBuf,
        share_memory: bool,
        /// No writeback cache: every write is a request to the daemon.
        #[serde(default)]
        write_through: bool,
    },
    /// Daemon only: flush and unmount.
    Umount {
        mountpoint: PathBuf,
    },
    /// Daemon only: pid, mounts, cache figures.
    Status,
    /// Daemon only: flush, unmount everything and exit.
    Stop,
    /// Daemon only: hand every mount over to a new daemon (its keeper starts it) and exit.
    Restart,
}

/// Carries out one request (daemon-only ones excepted: the daemon answers those itself).
pub fn execute(store: &Store, request: Request) -> Result<Reply> {
    Ok(match request {
        Request::Import { source, name } => {
            let report = store
                .import_source(&source, name.as_deref())
                .with_context(|| format!("importing {}", source.display()))?;
            Reply::Import(report)
        }
        Request::Images => Reply::Images(store.images()?),
        Request::Containers => Reply::Containers(store.containers()?),
        Request::Create {
            name,
            image,
            size_limit,
        } => {
            store
                .create_container_limited(&name, &image, size_limit)
                .with_context(|| format!("creating container {name}"))?;
            Reply::Created(Created {
                container: name,
                image,
                size_limit,
            })
        }
        Request::Update { name, size_limit } => {
            store
                .set_size_limit(&name, size_limit)
                .with_context(|| format!("updating container {name}"))?;
            let (size_limit, held) = store
                .size_limit_use(&name)
                .with_context(|| format!("measuring container {name}"))?;
            Reply::Updated(Updated {
                container: name,
                size_limit,
                exclusive_bytes: held,
            })
        }
        Request::Commit { container, image } => {
            let layer = store
                .commit_container(&container, &image)
                .with_context(|| format!("committing container {container}"))?;
            Reply::Committed(Committed {
                image,
                layer: layer.0,
            })
        }
        Request::Rm { name } => {
            store
                .remove_container(&name)
                .with_context(|| format!("removing container {name}"))?;
            Reply::Removed(Removed { removed: name })
        }
        Request::Rmi { name } => {
            store
                .remove_image(&name)
                .with_context(|| format!("removing image {name}"))?;
            Reply::Removed(Removed { removed: name })
        }
        Request::Export {
            target,
            output,
            oci,
            layer,
        } => match (oci, layer) {
            (true, true) => anyhow::bail!("--oci and --layer exclude each other"),
            (true, false) => Reply::ExportOci(
                store
                    .export_oci(&target, &output, None)
                    .with_context(|| format!("exporting {target} to {}", output.display()))?,
            ),
            (false, true) => export_layer(store, &target, &output)?,
            (false, false) => export(store, &target, &output)?,
        },
        Request::Diff { container } => Reply::Diff(
            store
                .diff_container(&container)
                .with_context(|| format!("diffing container {container}"))?,
        ),
        Request::Push { image, url } => {
            let packs = remote_packs(store, &url)?;
            let report = store
                .push(&image, &packs)
                .with_context(|| format!("pushing {image} to {url}"))?;
            Reply::Push(report)
        }
        Request::Pull {
            url,
            image,
            name,
            lazy,
            prefetch,
            cache_size,
        } => {
            let local = name.unwrap_or_else(|| image.clone());
            let mut report = if lazy {
                store.pull_lazy(&image, &local)
            } else {
                store.pull(&remote_packs(store, &url)?, &image, &local)
            }
            .with_context(|| format!("pulling {image} from {url}"))?;
            if let Some(limit) = cache_size {
                store.set_cache_limit(Some(limit).filter(|l| *l > 0))?;
            }
            if !prefetch.is_empty() {
                match store.prefetch(&local, &prefetch) {
                    Ok(prefetched) => report.prefetched = Some(prefetched),
                    Err(e) => {
                        // A pull that fails leaves no image behind.
                        store.remove_image(&local).ok();
                        return Err(anyhow::Error::new(e))
                            .with_context(|| format!("pulling {image} from {url}"));
                    }
                }
            }
            Reply::Pull(report)
        }
        Request::Stats { names, top } => {
            Reply::Stats(tessera::stats::stats(store, &StatsOptions { names, top })?)
        }
        Request::Gc {
            dry_run,
            repack_below,
        } => Reply::Gc(store.gc(&GcOptions {
            dry_run,
            repack_below,
        })?),
        Request::Fsck { verify_data } => Reply::Fsck(store.fsck(&FsckOptions { verify_data })?),
        Request::Mount { .. }
        | Request::Umount { .. }
        | Request::Status
        | Request::Stop
        | Request::Restart => {
            anyhow::bail!("no tessera daemon runs for this store")
        }
    })
}

fn export(store: &Store, target: &str, output: &Path) -> Result<Reply> {
    let is_container = store.containers()?.iter().any(|c| c.name == target);
    let volume = if is_container {
        store.container_view(target)
    } else {
        store.open_image(target)
    }
    .with_context(|| format!("opening {target}"))?;
    let file =
        std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let report = volume
        .export_tar(writer)
        .with_context(|| format!("exporting {target} to {}", output.display()))?;
    Ok(Reply::Export(report))
}

fn export_layer(store: &Store, target: &str, output: &Path) -> Result<Reply> {
    let file =
        std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let report = store.export_layer(target, &mut writer).with_context(|| {
        format!(
            "exporting the top layer of {target} to {}",
            output.display()
        )
    })?;
    std::io::Write::flush(&mut writer).with_context(|| format!("writing {}", output.display()))?;
    Ok(Reply::ExportLayer(report))
}

/// The packs of a remote the store knows, with a client configured by this process's AWS_*
/// variables.
fn remote_packs(store: &Store, url: &str) -> Result<tessera::store::remote::RemotePacks> {
    let url: tessera::store::RemoteUrl = url.parse()?;
    let remote = tessera::store::Remote::connect(&url)?;
    Ok(store.remote_packs(remote)?)
}

/// Options the CLI opens stores with.
pub fn store_options() -> StoreOptions {
    StoreOptions::default()
}

/// Runs a request in this process against the store at `path` (no daemon runs).
pub fn call_local(path: &Path, request: Request) -> Result<Reply> {
    let mut options = store_options();
    if let Request::Pull {
        url, lazy: true, ..
    } = &request
    {
        // A lazy pull opens the store over the remote (it is backed by it from then on).
        let url: tessera::store::RemoteUrl = url.parse()?;
        options = options.remote(tessera::store::Remote::connect(&url)?);
    }
    let store = Store::open(path, options)?;
    let reply = execute(&store, request)?;
    store.sync()?;
    Ok(reply)
}

/// Makes a path absolute (a daemon does not share the CLI's working directory).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// `repack_below` of a request that does not say (a client older than the option).
fn default_repack_below() -> f64 {
    GcOptions::default().repack_below
}
