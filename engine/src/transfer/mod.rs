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

use crate::error::Result;
use crate::store::remote::{Remote, RemotePacks};
use crate::store_dir::Store;

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
}
