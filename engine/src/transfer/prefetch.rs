//! `tessera pull --lazy --prefetch PATH`: the blocks of named files of an image (every file
//! under a named directory) are fetched first, through the ordinary read path, so what comes
//! is verified and kept as any read's blocks are, in batches the remote store coalesces.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store_dir::Store;
use crate::tree::node::FileKind;
use crate::volume::Volume;

/// Bytes read per call: the blocks of one call are fetched together.
const CHUNK: u64 = 8 << 20;

/// What a prefetch read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefetchReport {
    pub files: u64,
    /// The files' bytes (holes included), now held locally.
    pub bytes: u64,
    /// Blocks fetched from the remote for them (the others were local), and every byte read.
    pub fetched_blocks: u64,
    pub bytes_fetched: u64,
}

impl Store {
    /// Makes the blocks of the files at `paths` in image `image` local (a directory: every
    /// file under it). A path that does not exist is an error naming it; nothing is undone.
    pub fn prefetch(&self, image: &str, paths: &[String]) -> Result<PrefetchReport> {
        let view = self.open_image(image)?;
        let figures = || self.blocks().remote_packs().map(|p| p.figures());
        let before = figures().unwrap_or_default();
        let mut report = PrefetchReport::default();
        // Every path first: a misspelt one fails before anything is fetched.
        let mut named = Vec::with_capacity(paths.len());
        for path in paths {
            let at = view
                .resolve(path.trim_start_matches('/').as_bytes())
                .map_err(|e| match e {
                    Error::NotFound(_) => {
                        Error::NotFound(format!("prefetch: no {path} in image {image}"))
                    }
                    e => e,
                })?;
            named.push(at);
        }
        for at in named {
            let mut pending = vec![(at.node, at.kind, at.size)];
            while let Some((node, kind, size)) = pending.pop() {
                match kind {
                    FileKind::File => read_all(&view, node, size, &mut report)?,
                    FileKind::Dir => {
                        for entry in view.list_dir(node)? {
                            if entry.name == b"." || entry.name == b".." {
                                continue;
                            }
                            let attr = view.getattr(entry.node)?;
                            pending.push((attr.node, attr.kind, attr.size));
                        }
                    }
                    _ => {}
                }
            }
        }
        let after = figures().unwrap_or_default();
        report.fetched_blocks = after.blocks_fetched - before.blocks_fetched;
        report.bytes_fetched = after.bytes_fetched - before.bytes_fetched;
        Ok(report)
    }
}

fn read_all(
    view: &Volume,
    node: crate::ids::NodeId,
    size: u64,
    report: &mut PrefetchReport,
) -> Result<()> {
    let mut at = 0;
    while at < size {
        let n = CHUNK.min(size - at);
        view.read(node, at, n as usize)?;
        at += n;
    }
    report.files += 1;
    report.bytes += size;
    Ok(())
}
