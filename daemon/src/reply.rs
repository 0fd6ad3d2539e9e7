//! What a [`Request`](crate::Request) gets back: one typed [`Reply`] per kind of request,
//! the same whether the request ran in the daemon or in the caller's process. On the control
//! socket a reply travels as `{"kind": …, "data": …}`; `--json` prints `data` alone, which is
//! the report itself (the engine's report types, or the small records below).
//!
//! A caller that sent a request knows which reply it expects: [`Reply::report`] takes it out
//! (`let report: ImportReport = reply.report()?`) and names the mismatch otherwise.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};
use tessera::diff::DiffEntry;
use tessera::export::{ExportReport, ExportedLayer, OciExportReport};
use tessera::import::ImportReport;
use tessera::maintenance::{FsckReport, GcReport, ReclaimStatus};
use tessera::stats::StatsReport;
use tessera::store_dir::{ContainerInfo, ImageInfo};
use tessera::transfer::{PullReport, PushReport};

/// `create`: the container made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub container: String,
    pub image: String,
    pub size_limit: Option<u64>,
}

/// `update`: the container's limit now, and the bytes it holds exclusively.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Updated {
    pub container: String,
    pub size_limit: Option<u64>,
    pub exclusive_bytes: u64,
}

/// `commit`: the new image and its top layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Committed {
    pub image: String,
    pub layer: u64,
}

/// `rm`, `rmi`: what went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Removed {
    pub removed: String,
}

/// A mount the daemon made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mounted {
    pub container: String,
    pub mountpoint: PathBuf,
}

/// A mount the daemon took down; `exiting`: the daemon's pid when that was its last mount
/// (it exits, and frees the store, right after replying).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmounted {
    pub container: String,
    pub mountpoint: PathBuf,
    pub exiting: Option<u32>,
}

/// `daemon stop`: the pid of the daemon on its way out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopping {
    pub stopping: u32,
}

/// `daemon restart`: the daemon handing its mounts over, and its keeper, which starts the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restarting {
    pub handing_over: u32,
    pub keeper: u32,
    pub mounts: usize,
}

/// One mount of a daemon's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountStatus {
    pub container: String,
    pub mountpoint: PathBuf,
    pub share_memory: bool,
    pub write_through: bool,
}

/// The verified block cache's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheStatus {
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
}

/// A remote-backed store's traffic and local cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteStatus {
    pub requests: u64,
    pub bytes_fetched: u64,
    pub blocks_fetched: u64,
    pub bytes_sent: u64,
    pub local_pack_bytes: u64,
    pub cache_limit: Option<u64>,
}

/// `daemon status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    /// The process that keeps the mounts up across daemons (`keeper`), if any.
    #[serde(default)]
    pub keeper: Option<u32>,
    /// One pool of FUSE workers serves every mount (`--fuse-pool`).
    #[serde(default)]
    pub fuse_pool: bool,
    pub store: PathBuf,
    pub mounts: Vec<MountStatus>,
    pub dirty_bytes: u64,
    pub block_cache: Option<CacheStatus>,
    pub reclaim: ReclaimStatus,
    pub intent_log_fsyncs: u64,
    pub metadata_commits: u64,
    pub remote: Option<RemoteStatus>,
}

/// Declares [`Reply`], one variant per kind (its name on the wire given once), with
/// [`Reply::kind`] and the [`FromReply`] of each report type.
macro_rules! replies {
    ($($variant:ident($t:ty) = $kind:literal),* $(,)?) => {
        /// The reply to a request, by kind.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(tag = "kind", content = "data")]
        pub enum Reply {
            $(#[serde(rename = $kind)] $variant($t),)*
        }

        impl Reply {
            /// The reply's name, for messages.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Reply::$variant(_) => $kind,)*
                }
            }
        }

        $(impl FromReply for $t {
            const KIND: &'static str = $kind;
            fn from_reply(reply: Reply) -> Option<Self> {
                match reply {
                    Reply::$variant(report) => Some(report),
                    _ => None,
                }
            }
        })*
    };
}

replies!(
    Import(ImportReport) = "import",
    Images(Vec<ImageInfo>) = "images",
    Containers(Vec<ContainerInfo>) = "containers",
    Created(Created) = "created",
    Updated(Updated) = "updated",
    Committed(Committed) = "committed",
    Removed(Removed) = "removed",
    Export(ExportReport) = "export",
    ExportOci(OciExportReport) = "export-oci",
    ExportLayer(ExportedLayer) = "export-layer",
    Diff(Vec<DiffEntry>) = "diff",
    Push(PushReport) = "push",
    Pull(PullReport) = "pull",
    Stats(StatsReport) = "stats",
    Gc(GcReport) = "gc",
    Fsck(FsckReport) = "fsck",
    Mounted(Mounted) = "mounted",
    Unmounted(Unmounted) = "unmounted",
    Status(DaemonStatus) = "status",
    Stopping(Stopping) = "stopping",
    Restarting(Restarting) = "restarting",
);

impl Reply {
    /// The report the caller expects; an error naming both when the reply is another kind.
    pub fn report<T: FromReply>(self) -> Result<T> {
        let kind = self.kind();
        T::from_reply(self).ok_or_else(|| {
            anyhow!(
                "the daemon answered with a {kind} reply where {} was expected (is it another \
                 build of tessera? `tessera daemon stop` and try again)",
                T::KIND
            )
        })
    }
}

/// A report one kind of reply carries.
pub trait FromReply: Sized {
    /// The reply kind that carries it, for messages.
    const KIND: &'static str;
    fn from_reply(reply: Reply) -> Option<Self>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_travels_tagged_and_comes_back_as_its_report() {
        let reply = Reply::Committed(Committed {
            image: "i".into(),
            layer: 7,
        });
        let line = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            line,
            r#"{"kind":"committed","data":{"image":"i","layer":7}}"#
        );
        let back: Reply = serde_json::from_str(&line).unwrap();
        let committed: Committed = back.report().unwrap();
        assert_eq!(committed.layer, 7);
    }

    #[test]
    fn the_wrong_kind_is_a_clear_error() {
        let reply = Reply::Removed(Removed {
            removed: "x".into(),
        });
        let e = reply.report::<Committed>().unwrap_err().to_string();
        assert!(e.contains("removed reply where committed"), "{e}");
    }
}
