//! Reading an OCI image layout (image-spec `image-layout.md`), as a directory or packed in a
//! tar: `oci-layout`, `index.json`, and the manifest and config blobs under `blobs/sha256/`,
//! each checked against its descriptor's digest and size. An image is picked by its
//! `org.opencontainers.image.ref.name` annotation (the tag umoci and skopeo write), or is the
//! only one; a nested image index (a multi-platform image) is resolved to the manifest for
//! this machine's platform.

use super::blobs::Blobs;
use super::plan::{ImagePlan, LayerPlan};
use crate::error::{Error, Result};
use crate::oci::{
    Descriptor, Digest, INDEX_TYPES, Index, LayoutFile, MANIFEST_TYPES, Manifest, REF_NAME,
    diff_ids, host_platform, is_layer_type, parse_config, parse_json,
};

/// Reads the layout at `blobs` and the image `reference` names (or its only image).
pub fn plan(blobs: Blobs, reference: Option<&str>) -> Result<ImagePlan> {
    let at = blobs.location();
    let layout = blobs
        .read_small("oci-layout", "oci-layout")?
        .ok_or_else(|| Error::NotFound(format!("oci-layout in {at}")))?;
    let layout: LayoutFile = parse_json(&layout, &format!("oci-layout of {at}"))?;
    if !layout.version.starts_with("1.") {
        return Err(Error::Unsupported(format!(
            "OCI layout {at} has version {:?} (this build reads 1.x)",
            layout.version
        )));
    }
    let index = blobs
        .read_small("index.json", "index.json")?
        .ok_or_else(|| Error::NotFound(format!("index.json in {at}")))?;
    let index: Index = parse_json(&index, &format!("index.json of {at}"))?;
    if index.schema_version != 2 {
        return Err(Error::Unsupported(format!(
            "index.json of {at} has schemaVersion {} (expected 2)",
            index.schema_version
        )));
    }
    let chosen = choose(&index.manifests, reference, &at)?;
    let tag = chosen.annotations.get(REF_NAME).cloned();
    let manifest = resolve(&blobs, chosen, 0)?;
    let (config, layers) = read_manifest(&blobs, &manifest)?;
    Ok(ImagePlan {
        blobs,
        tag,
        config,
        layers,
    })
}

fn refs(manifests: &[Descriptor]) -> String {
    let mut names: Vec<&str> = manifests
        .iter()
        .map(|d| {
            d.annotations
                .get(REF_NAME)
                .map_or("(no name)", String::as_str)
        })
        .collect();
    names.dedup();
    names.join(", ")
}

/// The index entry `reference` names, or the only image.
fn choose<'d>(
    manifests: &'d [Descriptor],
    reference: Option<&str>,
    at: &str,
) -> Result<&'d Descriptor> {
    let candidates: Vec<&Descriptor> = match reference {
        Some(reference) => manifests
            .iter()
            .filter(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(reference))
            .collect(),
        None => manifests.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(match reference {
            Some(reference) if !manifests.is_empty() => Error::NotFound(format!(
                "image {reference:?} in OCI layout {at} (it holds: {})",
                refs(manifests)
            )),
            _ => Error::InvalidInput(format!("OCI layout {at} holds no image")),
        });
    }
    if candidates.len() == 1 {
        return Ok(candidates[0]);
    }
    // Several entries of one name (or none) may be the platforms of one image.
    let first = candidates[0].annotations.get(REF_NAME);
    let one_name = candidates
        .iter()
        .all(|d| d.annotations.get(REF_NAME) == first);
    if one_name && let Some(found) = by_platform(&candidates) {
        return Ok(found);
    }
    Err(Error::InvalidInput(format!(
        "OCI layout {at} holds {} images (refs: {}): name one as DIR:REF",
        candidates.len(),
        refs(manifests)
    )))
}

fn by_platform<'d>(candidates: &[&'d Descriptor]) -> Option<&'d Descriptor> {
    let (os, arch) = host_platform();
    candidates
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
        .copied()
}

/// Follows image indexes down to a manifest descriptor.
fn resolve(blobs: &Blobs, descriptor: &Descriptor, depth: u32) -> Result<Descriptor> {
    if !INDEX_TYPES.contains(&descriptor.media_type.as_str()) {
        return Ok(descriptor.clone());
    }
    let digest = Digest::parse(&descriptor.digest, "an image index")?;
    if depth > 4 {
        return Err(Error::InvalidInput(format!(
            "image index {digest} nests indexes too deep"
        )));
    }
    let bytes = blobs.read_verified(&digest, descriptor.size, "image index")?;
    let index: Index = parse_json(&bytes, &format!("image index {digest}"))?;
    let candidates: Vec<&Descriptor> = index.manifests.iter().collect();
    let chosen = match candidates.len() {
        0 => None,
        1 => Some(candidates[0]),
        _ => by_platform(&candidates),
    }
    .ok_or_else(|| {
        let (os, arch) = host_platform();
        Error::NotFound(format!(
            "a manifest for platform {os}/{arch} in image index {digest}"
        ))
    })?;
    resolve(blobs, chosen, depth + 1)
}

/// Reads and checks a manifest and its config; returns the config and the layers.
fn read_manifest(
    blobs: &Blobs,
    descriptor: &Descriptor,
) -> Result<(serde_json::Value, Vec<LayerPlan>)> {
    let digest = Digest::parse(&descriptor.digest, "the image's manifest")?;
    if !descriptor.media_type.is_empty()
        && !MANIFEST_TYPES.contains(&descriptor.media_type.as_str())
    {
        return Err(Error::Unsupported(format!(
            "manifest {digest} has media type {:?}",
            descriptor.media_type
        )));
    }
    let bytes = blobs.read_verified(&digest, descriptor.size, "manifest")?;
    let what = format!("manifest {digest}");
    let manifest: Manifest = parse_json(&bytes, &what)?;
    if manifest.schema_version != 2 {
        return Err(Error::Unsupported(format!(
            "{what} has schemaVersion {} (expected 2)",
            manifest.schema_version
        )));
    }
    if let Some(media_type) = &manifest.media_type
        && !MANIFEST_TYPES.contains(&media_type.as_str())
    {
        return Err(Error::Unsupported(format!(
            "{what} has media type {media_type:?}"
        )));
    }
    let config_digest = Digest::parse(&manifest.config.digest, &format!("the config of {what}"))?;
    let config = blobs.read_verified(&config_digest, manifest.config.size, "config")?;
    let config = parse_config(&config, &format!("config {config_digest}"))?;
    let diff_ids = diff_ids(
        &config,
        &format!("config {config_digest}"),
        manifest.layers.len(),
    )?;
    let layers = manifest
        .layers
        .iter()
        .zip(diff_ids)
        .enumerate()
        .map(|(i, (layer, diff_id))| {
            let what = format!("layer {} of {what}", i + 1);
            let digest = Digest::parse(&layer.digest, &what)?;
            if !is_layer_type(&layer.media_type) {
                return Err(Error::Unsupported(format!(
                    "{what} ({digest}) has media type {:?}, which is not a tar layer",
                    layer.media_type
                )));
            }
            Ok(LayerPlan {
                member: digest.blob_path(),
                digest: Some(digest),
                size: layer.size,
                diff_id,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((config, layers))
}
