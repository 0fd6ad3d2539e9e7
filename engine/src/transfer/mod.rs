//! Moving images between a store and a remote: `push` publishes a local image (blocks the
//! remote lacks, then its manifest), `pull` makes a remote image usable locally, `gc_remote`
//! deletes the packs no image references and no hold of a store backed by the remote names
//! (`hold.rs`; pushes, lazy pulls and gcs keep apart by leases, `lease.rs`).
//! The manifest format is `manifest.rs`; the blocks go through `store::remote::RemotePacks`.

mod gc;
pub mod hold;
pub mod lease;
pub mod manifest;
mod prefetch;
mod pull;
mod push;
#[cfg(test)]
pub(crate) mod tests;

pub use gc::{DEFAULT_GRACE, RemoteGcOptions, RemoteGcReport, gc_remote, remove_remote_image};
pub use prefetch::PrefetchReport;
pub use pull::{PullReport, RemoteImageInfo, read_manifest, remote_images, remote_images_info};
pub use push::PushReport;

use std::collections::BTreeSet;

use crate::error::Result;
use crate::maintenance::mark;
use crate::store::remote::{PackName, Remote, RemotePacks};
use crate::store_dir::{Store, existing_hold_id, hold_id};

/// A pack uploaded by a push holds up to this many bytes of blocks (it is built in memory).
pub const REMOTE_PACK_TARGET: u64 = 32 << 20;

impl Store {
    /// The remote packs of `remote` this store knows (their indexes are kept in the store).
    pub fn remote_packs(&self, remote: Remote) -> Result<RemotePacks> {
        RemotePacks::open(
            self.inner.io.clone(),
            self.inner.layout.clone(),
            self.block_size(),
            REMOTE_PACK_TARGET,
            remote,
        )
    }

    /// Rewrites this store's hold on the remote it is backed by: the packs holding the remote
    /// blocks its layers reference (or live views, from memory) — what it may still read
    /// from the remote, cached locally or not. Makes the hold first when `create` (a lazy
    /// pull); else a store without one has nothing to rewrite. Returns the hold's id and how
    /// many packs it names; `None` for a store without a remote or a hold. The caller holds
    /// `hold_lock`.
    pub(crate) fn write_own_hold(&self, create: bool) -> Result<Option<(String, usize)>> {
        let Some(packs) = self.blocks().remote_packs() else {
            return Ok(None);
        };
        let (io, layout) = (&self.inner.io, &self.inner.layout);
        let id = match create {
            true => hold_id(io, layout)?,
            false => match existing_hold_id(io, layout)? {
                Some(id) => id,
                None => return Ok(None),
            },
        };
        let mut referenced = mark::mark(self)?.blocks;
        referenced.extend(mark::unflushed(self));
        let held: BTreeSet<PackName> = referenced
            .iter()
            .filter_map(|block| packs.location(block).map(|(pack, _)| pack))
            .collect();
        let held: Vec<PackName> = held.into_iter().collect();
        hold::write_hold(packs.remote(), &id, &held)?;
        Ok(Some((id, held.len())))
    }
}
