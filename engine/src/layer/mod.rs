//! Layers and overlay semantics, split by operation the way Linux `fs/overlayfs` splits
//! namei / readdir / copy_up / dir: [`lookup`] finds names and nodes top-down, [`readdir`]
//! merges listings, [`copy_up`] brings a lower node's metadata into the writable layer, and
//! [`mutate`] creates, links, unlinks and renames with whiteouts.
//!
//! Layers are keyed by node, not path: a directory's entries in layer L are the dirents
//! (L, dir node, name). A view of directory D merges D's entries of every layer, top first; a
//! whiteout hides the name below it. A directory created where a lower one was deleted gets a
//! new node id, so it has no lower entries: it is opaque without a flag. Renaming a lower
//! directory moves one entry and its contents follow, because they are keyed by its node.

pub mod copy_up;
pub mod lookup;
pub mod mutate;
pub mod readdir;
pub mod walk;

use crate::error::{Error, Result};
use crate::ids::LayerId;

/// The layers a view reads, top first. When `writable`, the first is the container's layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    pub layers: Vec<LayerId>,
    pub writable: bool,
}

impl Stack {
    /// The writable layer, or `ReadOnly` for an image view.
    pub fn upper(&self) -> Result<LayerId> {
        match (self.writable, self.layers.first()) {
            (true, Some(layer)) => Ok(*layer),
            _ => Err(Error::ReadOnly("this view".into())),
        }
    }

    /// The layers below the writable one (all of them for an image view).
    pub fn lower(&self) -> &[LayerId] {
        if self.writable {
            &self.layers[1..]
        } else {
            &self.layers
        }
    }
}

/// The longest name a directory entry may have.
pub const NAME_MAX: usize = 255;

/// Checks a name for a new or looked-up directory entry.
pub fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong(name.len()));
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Error::InvalidInput(format!(
            "{:?} is not a valid file name",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}
