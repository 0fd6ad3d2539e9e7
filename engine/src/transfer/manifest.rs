//! The manifest of an image on a remote (layout 1, docs/design.md §8): everything a host needs
//! to make the image usable except its blocks — its layers' rows (nodes and directory entries,
//! as stored in the metadata tables, without the layer id), the block-map pages its files use,
//! and the remote packs that hold its blocks. JSON, zstd-compressed. No I/O here.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest format version (`"manifest"` field).
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest: u32,
    pub block_size: u32,
    /// When the image was created (ns since the epoch), on the host that made it.
    pub created: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// Bottom first.
    pub layers: Vec<ManifestLayer>,
    /// The bytes of every block-map page the image's files use (hex).
    pub pages: Vec<String>,
    /// The remote packs that hold the image's blocks (hex blake3 names).
    pub packs: Vec<String>,
    /// The image's distinct non-zero blocks and their bytes.
    pub blocks: u64,
    pub block_bytes: u64,
    /// The largest node id the layers use: a host that pulls the image allocates above it.
    pub max_node: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestLayer {
    pub created: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
    /// (node id, node record bytes in hex).
    pub nodes: Vec<(u64, String)>,
    /// (parent node id, name in hex, entry bytes in hex).
    pub dirents: Vec<(u64, String, String)>,
}

impl Manifest {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(self)
            .map_err(|e| Error::InvalidInput(format!("encoding a manifest: {e}")))?;
        zstd::encode_all(&json[..], 3).map_err(|e| Error::io("compressing a manifest", e))
    }

    pub fn decode(bytes: &[u8], what: &str) -> Result<Manifest> {
        let json = zstd::decode_all(bytes)
            .map_err(|e| Error::Corrupt(format!("manifest of {what}: {e}")))?;
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| Error::Corrupt(format!("manifest of {what}: {e}")))?;
        if manifest.manifest != MANIFEST_VERSION {
            return Err(Error::Unsupported(format!(
                "manifest of {what} has version {} (this build reads {MANIFEST_VERSION})",
                manifest.manifest
            )));
        }
        Ok(manifest)
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

pub fn from_hex(text: &str, what: &str) -> Result<Vec<u8>> {
    let bad = || Error::Corrupt(format!("{what}: bad hex"));
    if !text.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip() {
        let manifest = Manifest {
            manifest: MANIFEST_VERSION,
            block_size: 65536,
            created: 7,
            config: None,
            layers: vec![ManifestLayer {
                created: 1,
                diff_id: Some("sha256:00".into()),
                nodes: vec![(1, to_hex(b"\x01\x02"))],
                dirents: vec![(1, to_hex(b"etc"), to_hex(&[2, 0, 0, 0, 0, 0, 0, 0, 2]))],
            }],
            pages: vec![],
            packs: vec!["ab".repeat(32)],
            blocks: 3,
            block_bytes: 10,
            max_node: 2,
        };
        let bytes = manifest.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes, "test").unwrap(), manifest);
        assert!(Manifest::decode(b"junk", "test").is_err());
        assert_eq!(
            from_hex(&to_hex(b"\x00\xffab"), "x").unwrap(),
            b"\x00\xffab"
        );
        assert!(from_hex("abc", "x").is_err());
    }
}
