//! `gc --remote`: deletes the packs of a remote that no image's manifest references
//! (docs/design.md §8, "Garbage collection on a remote").
//!
//! Under a gc lease, and only when no live push or lazy-pull lease is listed (`lease.rs`):
//! every manifest is read (the packs they reference stay), then every hold (`hold.rs`: the
//! packs stores backed by the remote rely on stay too), then the packs' directory is listed
//! once; a pack nothing references and whose objects are older than the grace period (by the
//! server's clock) is deleted, its index first (a pack without an index is invisible to `refresh`; an
//! index without its pack would let a push rely on blocks that are gone). The grace protects
//! the packs of pushes that take no lease (older builds) and of pushes that stopped before
//! their manifest and will be resumed.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::hold::{HoldInfo, read_holds, release_hold};
use super::lease::{Lease, LeaseKind};
use super::{read_manifest, remote_images};
use crate::error::{Error, Result};
use crate::store::remote::bucket::{self, PackName};
use crate::store::remote::{Listed, Remote};

/// The default grace period: unreferenced packs younger than this stay.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct RemoteGcOptions {
    /// Report what would be deleted; write and delete nothing (no lease either).
    pub dry_run: bool,
    /// Unreferenced packs younger than this stay.
    pub grace: Duration,
    /// Holds to drop first (of stores gone for good), by id.
    pub release_holds: Vec<String>,
}

impl Default for RemoteGcOptions {
    fn default() -> RemoteGcOptions {
        RemoteGcOptions {
            dry_run: false,
            grace: DEFAULT_GRACE,
            release_holds: Vec::new(),
        }
    }
}

/// What a remote gc found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteGcReport {
    pub remote: String,
    pub dry_run: bool,
    pub grace_seconds: u64,
    pub images: usize,
    /// Packs on the remote (a pack or an index object of that name), and those referenced.
    pub packs: usize,
    pub referenced_packs: usize,
    /// The holds of stores backed by the remote (after the releases asked for), and the packs
    /// kept only because a hold names them.
    pub holds: Vec<HoldInfo>,
    pub held_packs: usize,
    /// Holds released (or that would be, with `dry_run`).
    pub released_holds: Vec<String>,
    /// Unreferenced packs kept because they are younger than the grace period.
    pub young_packs: usize,
    pub young_bytes: u64,
    /// Packs deleted (or that would be, with `dry_run`) and the bytes of their objects.
    pub deleted_packs: usize,
    pub deleted_bytes: u64,
    /// Their names.
    pub deleted: Vec<String>,
    pub seconds: f64,
}

/// The objects of one pack name found by the listing.
#[derive(Default)]
struct Found {
    pack: Option<Listed>,
    index: Option<Listed>,
}

impl Found {
    fn bytes(&self) -> u64 {
        [&self.pack, &self.index]
            .iter()
            .flat_map(|o| o.iter())
            .map(|o| o.size)
            .sum()
    }

    /// The newest write of its objects (ms since the epoch, server clock).
    fn modified_ms(&self) -> i64 {
        [&self.pack, &self.index]
            .iter()
            .flat_map(|o| o.iter())
            .map(|o| o.modified_ms)
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// Deletes the packs of `remote` no image references and older than the grace period.
pub fn gc_remote(remote: &Remote, options: &RemoteGcOptions) -> Result<RemoteGcReport> {
    let started = Instant::now();
    let mut report = RemoteGcReport {
        remote: remote.url().to_string(),
        dry_run: options.dry_run,
        grace_seconds: options.grace.as_secs(),
        ..RemoteGcReport::default()
    };
    // The lease first, then the leases of pushes, then the manifests (lease.rs): a push whose
    // manifest this gc does not read holds a lease it sees, or waits for this gc to end.
    let (lease, now_ms) = if options.dry_run {
        (None, now_ms())
    } else {
        let lease = Lease::take(remote, LeaseKind::Gc)?;
        let leases = lease.others()?;
        let pushes = leases.live_of(LeaseKind::Push) + leases.live_of(LeaseKind::Pull);
        if pushes > 0 {
            return Err(Error::Busy(format!(
                "{pushes} push(es) or lazy pull(s) of {} under way: nothing deleted; run gc \
                 again later",
                remote.url()
            )));
        }
        for stale in &leases.stale {
            tracing::info!("deleting the stale lease {}", stale.name);
            remote.delete(&bucket::lease_key(&stale.name))?;
        }
        (Some(lease), leases.now_ms)
    };

    let mut referenced = HashSet::new();
    for name in remote_images(remote)? {
        let manifest = match read_manifest(remote, &name) {
            Ok(manifest) => manifest,
            // Removed since the listing: it references nothing now.
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        report.images += 1;
        referenced.extend(manifest.packs);
    }
    for id in &options.release_holds {
        if !options.dry_run {
            release_hold(remote, id)?;
        }
        report.released_holds.push(id.clone());
    }
    let mut held = HashSet::new();
    for (hold, written_ms) in read_holds(remote)? {
        if options.release_holds.contains(&hold.store) {
            continue;
        }
        report.holds.push(HoldInfo {
            store: hold.store,
            host: hold.host,
            packs: hold.packs.len(),
            written_ms,
        });
        held.extend(
            hold.packs
                .into_iter()
                .filter(|pack| !referenced.contains(pack)),
        );
    }

    let mut found: BTreeMap<PackName, Found> = BTreeMap::new();
    for object in remote.list_detailed(&bucket::packs_dir())? {
        let Some((name, is_index)) = PackName::from_file_name(&object.name) else {
            continue;
        };
        let entry = found.entry(name).or_default();
        *(if is_index {
            &mut entry.index
        } else {
            &mut entry.pack
        }) = Some(object);
    }
    report.packs = found.len();
    let grace_ms = options.grace.as_millis() as i64;
    let mut doomed = Vec::new();
    for (name, objects) in &found {
        if referenced.contains(&name.0) {
            report.referenced_packs += 1;
        } else if held.contains(&name.0) {
            report.held_packs += 1;
        } else if now_ms - objects.modified_ms() < grace_ms {
            report.young_packs += 1;
            report.young_bytes += objects.bytes();
        } else {
            doomed.push((name, objects));
        }
    }

    for (name, objects) in doomed {
        if let Some(lease) = &lease {
            lease.check_fresh()?;
            if objects.index.is_some() {
                remote.delete(&bucket::index_key(name))?;
            }
            if objects.pack.is_some() {
                remote.delete(&bucket::pack_key(name))?;
            }
            tracing::debug!(pack = %name.0, "deleted an unreferenced remote pack");
        }
        report.deleted_packs += 1;
        report.deleted_bytes += objects.bytes();
        report.deleted.push(name.0.clone());
    }
    if let Some(lease) = lease {
        lease.release();
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// This host's clock (a dry run writes no lease to learn the server's).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Removes image `name` from a remote: its manifest is deleted (its packs stay until a gc).
pub fn remove_remote_image(remote: &Remote, name: &str) -> Result<()> {
    crate::store_dir::check_object_name("image", name)?;
    if !remote.exists(&bucket::image_key(name))? {
        return Err(Error::NotFound(format!("image {name} on {}", remote.url())));
    }
    remote.delete(&bucket::image_key(name))
}
