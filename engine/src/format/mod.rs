//! On-disk byte layouts and version constants: pure encode/decode, no I/O. Every file starts
//! with a magic number and a format version; `docs/design.md` is the written spec.

pub mod codec;
pub mod node;
pub mod pack;
pub mod pack_index;
pub mod records;
pub mod store_header;

/// The store format this build writes (see the version log in `docs/design.md`).
pub const FORMAT_VERSION: u32 = 2;

/// The oldest store format this build opens. A store keeps the version it was made with,
/// and so do the packs and indexes written into it: version 1 stores are never compressed.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// Alignment of pack entries, so blocks can be read with O_DIRECT.
pub const PACK_ALIGN: u64 = 4096;
