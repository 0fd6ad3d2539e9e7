//! Tessera: a block-level, deduplicating, copy-on-write storage engine for container images.
//!
//! Files of every layer are mosaics of fixed-size blocks kept once in a shared,
//! content-addressed store; containers edit their files block by block; a [`Volume`] presents
//! one container's merged view through a filesystem-shaped API.

pub mod diff;
pub mod error;
pub mod format;
pub mod ids;
pub mod io;
pub mod layout;
pub mod store;
pub mod tree;

pub use error::{Error, ErrorKind, Result};
pub use ids::{BlockId, LayerId, MapRoot, NodeId, PackId, PageId};
pub mod layer;
pub mod maintenance;
pub mod meta;
pub mod oci;
pub mod stats;
pub mod store_dir;
pub mod volume;

pub use layer::mutate::RenameFlags;
pub use store_dir::{Store, StoreOptions};
pub use tree::node::FileKind;
pub use volume::{Attr, Caller, Fallocate, KernelCache, SeekTarget, SetAttr, Volume, XattrMode};
pub mod export;
pub mod import;
pub mod transfer;
