//! What Tessera knows of the OCI image format (and of docker's, which it descends from), in
//! one place for import, export and the snapshotter: digests, the JSON documents of an image
//! (`image`), media types, annotation names, the platform, and whiteout names (`whiteout`).
//! Reading an archive (`import`) and writing a layout (`export`) build on these; neither
//! defines format knowledge of its own.

mod digest;
mod image;
pub mod whiteout;

pub use digest::{Digest, Hashing, check_blob, hex};
pub use image::{
    Descriptor, Index, LayoutFile, Manifest, Platform, diff_ids, parse_config, parse_json,
};

/// The annotation that names an image in an index (the tag umoci and skopeo write).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_GZIP_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Media types of an image index: OCI's and docker's manifest list.
pub const INDEX_TYPES: [&str; 2] = [
    INDEX_TYPE,
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Media types of an image manifest: OCI's and docker's schema 2.
pub const MANIFEST_TYPES: [&str; 2] = [
    MANIFEST_TYPE,
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// This machine's platform as OCI names it.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// The layer media types Tessera can read (the compression is detected from the bytes).
pub fn is_layer_type(media_type: &str) -> bool {
    media_type.is_empty()
        || [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.foreign.diff.tar",
        ]
        .iter()
        .any(|t| {
            media_type
                .strip_prefix(t)
                .is_some_and(|rest| ["", "+gzip", "+zstd", ".gzip"].contains(&rest))
        })
}

/// `registry:5000/library/alpine:3.19` → `alpine:3.19`: a tag without registry or repository
/// path (image names in a store have no slashes).
pub fn short_name(tag: &str) -> String {
    tag.rsplit('/').next().unwrap_or(tag).to_string()
}
