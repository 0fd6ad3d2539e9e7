//! Read-only views of immutable files. This is the engine's one module with `unsafe`: creating a
//! memory map. The SAFETY argument is that the engine only maps files it never writes, truncates
//! or replaces in place again (sealed pack indexes: written to a temporary name, synced, renamed
//! into place, and from then on only read or deleted — deleting a mapped file keeps the mapping
//! valid on Linux). No safe caller can get a slice whose backing bytes change underneath it.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Deref;

/// The bytes of a whole file: a memory map in production, an owned copy in simulation.
pub enum Mapped {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Mapped {
    /// Maps `file` read-only. The caller guarantees the file is immutable (see the module doc).
    pub(super) fn map_immutable(file: &File) -> io::Result<Mapped> {
        if file.metadata()?.len() == 0 {
            return Ok(Mapped::Owned(Vec::new()));
        }
        // SAFETY: only immutable files are mapped (module doc); the map is read-only, so no
        // aliasing &mut exists, and the file is never truncated while the map lives.
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(Mapped::Map(map))
    }
}

impl Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Mapped::Map(map) => map,
            Mapped::Owned(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapped({} bytes)", self.len())
    }
}
