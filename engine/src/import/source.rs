//! What `tessera import` and `tessera analyze` read: a source named on the command line —
//! a directory, a layer tar (plain, gzip, zstd), an OCI image layout (`DIR` or `DIR:REF`), a
//! `docker save` archive (`FILE` or `FILE:TAG`) or an OCI layout packed as a tar — detected
//! from what is there, and turned into one feeder per layer, bottom first.
//!
//! Detection: a directory holding `oci-layout` is an OCI layout, any other directory a tree.
//! A file is scanned as an uncompressed tar (headers only, seeking past the data): a root
//! `manifest.json` that parses as a docker manifest makes it a `docker save` archive, an
//! `oci-layout` with an `index.json` an OCI archive, anything else a layer tar. A compressed
//! file is a layer tar, unless its first entry shows it is a compressed image archive, which
//! is refused (blobs cannot be found in a compressed stream without unpacking it).
//! `PATH:REF` is tried when `PATH:REF` itself does not exist, at every `:` from the right.
//!
//! Verification happens while a layer is fed: its compressed bytes are hashed on the way in
//! and checked against the descriptor's digest and size, the uncompressed tar against the
//! config's `rootfs.diff_ids`. A mismatch fails the import (which then changes nothing).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::blobs::Blobs;
use super::plan::ImagePlan;
use super::{LayerFeed, LayerFeeder, tar};
use crate::error::{Error, Result};
use crate::oci::short_name;

/// What kind of source a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    Directory,
    LayerTar,
    OciLayout,
    DockerArchive,
    OciArchive,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceKind::Directory => "directory",
            SourceKind::LayerTar => "layer tar",
            SourceKind::OciLayout => "OCI image layout",
            SourceKind::DockerArchive => "docker save archive",
            SourceKind::OciArchive => "OCI archive",
        })
    }
}

enum Form {
    Dir,
    Tar,
    Image(Box<ImagePlan>),
}

/// An opened source.
pub struct Source {
    pub kind: SourceKind,
    /// The resolved path (without any `:REF`).
    pub path: PathBuf,
    form: Form,
}

fn io_error(path: &Path, e: io::Error) -> Error {
    Error::io(format!("reading {}", path.display()), e)
}

/// Splits `spec` into an existing path and an optional reference.
fn resolve(spec: &Path) -> Result<(PathBuf, Option<String>)> {
    if std::fs::symlink_metadata(spec).is_ok() {
        let path = std::fs::canonicalize(spec).map_err(|e| io_error(spec, e))?;
        return Ok((path, None));
    }
    let text = spec.to_string_lossy();
    for (at, _) in text.rmatch_indices(':') {
        let (path, reference) = (&text[..at], &text[at + 1..]);
        if !path.is_empty() && !reference.is_empty() && Path::new(path).exists() {
            let path = std::fs::canonicalize(path).map_err(|e| io_error(Path::new(path), e))?;
            return Ok((path, Some(reference.to_string())));
        }
    }
    Err(io_error(spec, io::Error::from_raw_os_error(libc::ENOENT)))
}

/// Whether a member name belongs to an image archive rather than a root file system.
fn looks_like_image_archive(name: &str) -> bool {
    let name = name.trim_start_matches("./");
    let first = name.split('/').next().unwrap_or("");
    matches!(
        name,
        "manifest.json" | "oci-layout" | "index.json" | "repositories"
    ) || first == "blobs"
        || (first.len() == 64 && first.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// For a compressed file: whether its first entry shows it is an image archive.
fn compressed_image_archive(path: &Path) -> Result<Option<String>> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut archive = ::tar::Archive::new(tar::decompress(file)?);
    let first = archive
        .entries()
        .ok()
        .and_then(|mut e| e.next())
        .and_then(|e| e.ok())
        .map(|e| String::from_utf8_lossy(&e.path_bytes()).into_owned());
    Ok(first.filter(|name| looks_like_image_archive(name)))
}

fn is_compressed(path: &Path) -> Result<bool> {
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let n = file.read(&mut head).map_err(|e| io_error(path, e))?;
    let head = &head[..n];
    Ok(head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]))
}

impl Source {
    /// Opens a source named on the command line (see the module docs for the forms). Image
    /// archives have their manifest and config read and verified here; layers are read when
    /// fed.
    pub fn open(spec: &Path) -> Result<Source> {
        let (path, reference) = resolve(spec)?;
        let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
        let (kind, form) = if meta.is_dir() {
            if path.join("oci-layout").exists() {
                let plan = super::oci_layout::plan(Blobs::Dir(path.clone()), reference.as_deref())?;
                (SourceKind::OciLayout, Form::Image(Box::new(plan)))
            } else if let Some(reference) = reference {
                return Err(Error::InvalidInput(format!(
                    "{} is not an OCI image layout (it has no oci-layout file), so it has no \
                     image {reference:?}",
                    path.display()
                )));
            } else {
                (SourceKind::Directory, Form::Dir)
            }
        } else if is_compressed(&path)? {
            if let Some(first) = compressed_image_archive(&path)? {
                return Err(Error::Unsupported(format!(
                    "{} is a compressed image archive (it starts with {first:?}): decompress \
                     it first",
                    path.display()
                )));
            }
            if let Some(reference) = reference {
                return Err(no_images(&path, &reference));
            }
            (SourceKind::LayerTar, Form::Tar)
        } else {
            // A damaged tar is a layer tar here: feeding it names the damage.
            match Blobs::scan_tar(&path) {
                Ok(blobs) => archive_form(blobs, &path, reference)?,
                Err(_) if reference.is_none() => (SourceKind::LayerTar, Form::Tar),
                Err(e) => return Err(e),
            }
        };
        Ok(Source { kind, path, form })
    }

    /// The image name the source carries (its tag, without registry or repository path:
    /// image names have no slashes), if any.
    pub fn tag(&self) -> Option<String> {
        match &self.form {
            Form::Image(plan) => plan.tag.as_deref().map(short_name),
            _ => None,
        }
    }

    /// The image config (OCI or docker), for image archives.
    pub fn config(&self) -> Option<serde_json::Value> {
        match &self.form {
            Form::Image(plan) => Some(plan.config.clone()),
            _ => None,
        }
    }

    pub fn layer_count(&self) -> usize {
        match &self.form {
            Form::Image(plan) => plan.layers.len().max(1),
            _ => 1,
        }
    }

    /// "OCI image layout /x" and the like, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind, self.path.display())
    }

    /// One feeder per layer, bottom first.
    pub fn feeders(&self) -> Vec<LayerFeeder<'_>> {
        match &self.form {
            Form::Dir => {
                let path = &self.path;
                vec![Box::new(move |feed: &mut LayerFeed| {
                    super::dir::feed(feed, path)
                })]
            }
            Form::Tar => {
                let path = &self.path;
                vec![Box::new(move |feed: &mut LayerFeed| {
                    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
                    tar::feed(feed, file)
                })]
            }
            // An image of no layers (`umoci new`) is an empty root.
            Form::Image(plan) if plan.layers.is_empty() => {
                vec![Box::new(|_: &mut LayerFeed| Ok(()))]
            }
            Form::Image(plan) => (0..plan.layers.len())
                .map(|i| {
                    let plan = &**plan;
                    Box::new(move |feed: &mut LayerFeed| plan.feed_layer(feed, i))
                        as LayerFeeder<'_>
                })
                .collect(),
        }
    }
}

fn no_images(path: &Path, reference: &str) -> Error {
    Error::InvalidInput(format!(
        "{} is a layer tar, not an image archive, so it has no image {reference:?}",
        path.display()
    ))
}

/// Tells a docker save archive, an OCI archive and a layer tar apart by their members.
fn archive_form(
    blobs: Blobs,
    path: &Path,
    reference: Option<String>,
) -> Result<(SourceKind, Form)> {
    let (docker, layout) = {
        let names = blobs.names();
        let has = |name: &str| names.contains(&name);
        (has("manifest.json"), has("oci-layout") && has("index.json"))
    };
    if docker && super::docker::recognizes(&blobs) {
        let plan = super::docker::plan(blobs, reference.as_deref())?;
        return Ok((SourceKind::DockerArchive, Form::Image(Box::new(plan))));
    }
    if layout {
        let plan = super::oci_layout::plan(blobs, reference.as_deref())?;
        return Ok((SourceKind::OciArchive, Form::Image(Box::new(plan))));
    }
    match reference {
        Some(reference) => Err(no_images(path, &reference)),
        None => Ok((SourceKind::LayerTar, Form::Tar)),
    }
}
