//! Reading a `docker save` archive: `manifest.json` (one entry per image: `Config`,
//! `RepoTags`, `Layers`) and the config and layer members it names. Both layouts docker has
//! written work: the legacy one (`<id>/layer.tar`, `<digest>.json`) and the newer one that
//! is an OCI layout as well (`blobs/sha256/<digest>`, legacy names as symlinks into it).
//! Members named by their digest (`blobs/sha256/HEX`, `HEX.json`, `HEX.tar`) are checked
//! against it; every layer is checked against the config's `rootfs.diff_ids`.

use serde::Deserialize;

use super::blobs::Blobs;
use super::plan::{ImagePlan, LayerPlan};
use crate::error::{Error, Result};
use crate::oci::{Digest, check_blob, diff_ids, parse_config, parse_json, short_name};

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn entries(blobs: &Blobs) -> Result<Vec<Entry>> {
    let at = blobs.location();
    let bytes = blobs
        .read_small("manifest.json", "manifest.json")?
        .ok_or_else(|| Error::NotFound(format!("manifest.json in {at}")))?;
    parse_json(&bytes, &format!("manifest.json of {at}"))
}

/// Whether the archive's `manifest.json` is a docker save manifest (a layer tar may hold a
/// file of that name too).
pub fn recognizes(blobs: &Blobs) -> bool {
    entries(blobs).is_ok()
}

/// The digest a member's name gives it, if any.
fn named_digest(member: &str) -> Option<Digest> {
    let hex = member
        .strip_prefix("blobs/sha256/")
        .or_else(|| member.strip_suffix(".json"))
        .or_else(|| member.strip_suffix(".tar"))?;
    Digest::parse(&format!("sha256:{hex}"), member).ok()
}

fn tags(entries: &[Entry]) -> String {
    let tags: Vec<&str> = entries
        .iter()
        .flat_map(|e| e.repo_tags.iter().flatten())
        .map(String::as_str)
        .collect();
    if tags.is_empty() {
        "no tags".to_string()
    } else {
        tags.join(", ")
    }
}

/// Reads the archive's image named `reference` (a tag, with or without its repository
/// path), or its only image.
pub fn plan(blobs: Blobs, reference: Option<&str>) -> Result<ImagePlan> {
    let at = blobs.location();
    let all = entries(&blobs)?;
    let matches = |tag: &str| Some(tag) == reference || reference == Some(&short_name(tag));
    let (entry, tag) = match reference {
        Some(reference) => all
            .iter()
            .find_map(|e| {
                let tags = e.repo_tags.iter().flatten();
                tags.clone()
                    .find(|t| matches(t))
                    .map(|t| (e, Some(t.clone())))
            })
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "image {reference:?} in docker archive {at} (it holds: {})",
                    tags(&all)
                ))
            })?,
        None => match all.as_slice() {
            [only] => (only, only.repo_tags.iter().flatten().next().cloned()),
            [] => {
                return Err(Error::InvalidInput(format!(
                    "docker archive {at} holds no image"
                )));
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "docker archive {at} holds {} images ({}): name one as FILE:TAG",
                    all.len(),
                    tags(&all)
                )));
            }
        },
    };
    let what = format!("config {}", entry.config);
    let bytes = blobs
        .read_small(&entry.config, &what)?
        .ok_or_else(|| blobs.missing(&entry.config, "config"))?;
    let digest = named_digest(&entry.config).ok_or_else(|| {
        Error::InvalidInput(format!(
            "{what} in {at} is not named by its digest, so it cannot be verified"
        ))
    })?;
    check_blob(
        &digest,
        None,
        &Digest::of(&bytes),
        bytes.len() as u64,
        "config",
    )?;
    let config = parse_config(&bytes, &what)?;
    let diff_ids = diff_ids(&config, &what, entry.layers.len())?;
    let layers = entry
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(member, diff_id)| LayerPlan {
            member: member.clone(),
            digest: named_digest(member),
            size: None,
            diff_id,
        })
        .collect();
    Ok(ImagePlan {
        blobs,
        tag,
        config,
        layers,
    })
}
