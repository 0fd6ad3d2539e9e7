//! An image archive read and verified up to its layers: the config, and per layer where its
//! blob is, its digest and size, and its diff id. Feeding a layer verifies its bytes against
//! all three as they stream through (nothing is unpacked to disk first).

use std::io::{self, Read};

use super::blobs::Blobs;
use super::{LayerFeed, tar};
use crate::error::{Error, Result};
use crate::oci::{Digest, Hashing, check_blob};

/// One layer of an image archive.
pub(super) struct LayerPlan {
    /// Where the blob is, relative to the archive's root.
    pub member: String,
    /// The digest of the blob's bytes, when the archive names one.
    pub digest: Option<Digest>,
    pub size: Option<u64>,
    /// The sha256 of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
}

/// An image of an archive, its manifest and config read and verified.
pub(super) struct ImagePlan {
    pub blobs: Blobs,
    /// The tag the archive gives the image (OCI ref name, docker RepoTags[0]).
    pub tag: Option<String>,
    /// The image config (the whole JSON object).
    pub config: serde_json::Value,
    pub layers: Vec<LayerPlan>,
}

impl ImagePlan {
    /// Feeds layer `i`, verifying its digest, size and diff id.
    pub(super) fn feed_layer(&self, feed: &mut LayerFeed, i: usize) -> Result<()> {
        let layer = &self.layers[i];
        let role = format!("layer {} of {}", i + 1, self.layers.len());
        let what = match &layer.digest {
            Some(digest) => format!("{role} ({digest})"),
            None => format!("{role} ({})", layer.member),
        };
        let Some((reader, _)) = self.blobs.open(&layer.member)? else {
            return Err(match &layer.digest {
                Some(digest) => self.blobs.missing(digest, &role),
                None => self.blobs.missing(&layer.member, &role),
            });
        };
        let mut compressed = Hashing::new(reader);
        let fed = feed_and_hash(feed, &mut compressed);
        // Hash what the tar reader left (padding, trailing data) so the digest is complete.
        let drained = io::copy(&mut compressed, &mut io::sink());
        let (actual, actual_size) = compressed.finish();
        if let Some(digest) = &layer.digest {
            // A wrong blob explains any damage found while reading it: report that first.
            if drained.is_ok() || actual != *digest {
                check_blob(digest, layer.size, &actual, actual_size, &role)?;
            }
        }
        let diff_id = fed.map_err(|e| e.within(&what))?;
        drained.map_err(|e| Error::io(format!("reading {what}"), e))?;
        if diff_id != layer.diff_id {
            return Err(Error::InvalidInput(format!(
                "{what}: its uncompressed tar hashes to {diff_id}, but the image config's \
                 rootfs.diff_ids[{i}] is {}",
                layer.diff_id
            )));
        }
        feed.set_diff_id(diff_id.to_string());
        Ok(())
    }
}

/// Feeds one (possibly compressed) layer tar; returns the sha256 of the uncompressed bytes.
fn feed_and_hash(feed: &mut LayerFeed, compressed: &mut dyn Read) -> Result<Digest> {
    let mut plain = Hashing::new(tar::decompress(compressed)?);
    tar::feed_entries(feed, &mut plain, true)?;
    let read = plain.count();
    let rest = io::copy(&mut plain, &mut io::sink())
        .map_err(|e| Error::InvalidInput(format!("damaged archive (after its last entry): {e}")))?;
    // A tar cut at an entry boundary reads as a shorter archive: only the missing
    // end-of-archive blocks (two zero blocks; the reader stops after the first) tell.
    if read > 0 && rest == 0 {
        return Err(Error::InvalidInput(
            "truncated archive: it ends without its end-of-archive blocks".into(),
        ));
    }
    Ok(plain.finish().0)
}
