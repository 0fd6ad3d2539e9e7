//! The JSON documents of an image: descriptors, indexes, manifests, the `oci-layout` file, and
//! the parts of the image config Tessera reads (`rootfs.diff_ids`). Every document comes
//! from an untrusted archive: parsing never panics, and errors name the document.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Digest;
use crate::error::{Error, Result};

/// A descriptor (image-spec `descriptor.md`): what a blob is, its digest and size.
#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: Option<u64>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

/// An image index (`index.json`, or a multi-platform image's index blob).
#[derive(Debug, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An image manifest: the config and the layers, bottom first.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The `oci-layout` file of an image layout.
#[derive(Debug, Deserialize)]
pub struct LayoutFile {
    #[serde(rename = "imageLayoutVersion")]
    pub version: String,
}

/// Parses a JSON document; `what` names it for the error.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        let cause: String = e.to_string().chars().take(200).collect();
        Error::InvalidInput(format!("{what} is not valid: {cause}"))
    })
}

/// Parses an image config: a JSON object.
pub fn parse_config(bytes: &[u8], what: &str) -> Result<serde_json::Value> {
    let config: serde_json::Value = parse_json(bytes, what)?;
    if !config.is_object() {
        return Err(Error::InvalidInput(format!("{what} is not a JSON object")));
    }
    Ok(config)
}

/// The config's `rootfs.diff_ids`, which must list one digest per layer.
pub fn diff_ids(config: &serde_json::Value, what: &str, layers: usize) -> Result<Vec<Digest>> {
    let list = config
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .ok_or_else(|| Error::InvalidInput(format!("{what} has no rootfs.diff_ids")))?;
    if list.len() != layers {
        return Err(Error::InvalidInput(format!(
            "{what} lists {} diff_ids for {layers} layers",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let field = format!("rootfs.diff_ids[{i}] of {what}");
            Digest::parse(v.as_str().unwrap_or_default(), &field)
        })
        .collect()
}
