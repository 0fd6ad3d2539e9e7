//! Export as OCI: an image or a container as an OCI image layout (`tessera export --oci`),
//! and the top layer's diff as one OCI layer tar (`--layer`).
//!
//! The layout gets one gzip-compressed layer blob per Tessera layer (each the layer's diff
//! over the layers below it, see `layer_diff`), a config (the image's stored config, with
//! `rootfs.diff_ids` rewritten for these layers), a manifest, and an `index.json` entry whose
//! `org.opencontainers.image.ref.name` is the image's name. Exporting into an existing
//! layout adds the image to it (replacing an entry of the same name; blobs are shared).
//! Blobs and `index.json` are written under temporary names and renamed into place.
//! A container's layers are its image's plus its writable layer (flushed first).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::layer_diff::{DiffCounts, LayerDiff};
use crate::error::{Error, IoContext, Result};
use crate::format::records::LayerRecord;
use crate::ids::{LayerId, MapRoot};
use crate::layer::walk;
use crate::meta::records::Records;
use crate::oci::{
    CONFIG_TYPE, Digest, Hashing, INDEX_TYPE, LAYER_GZIP_TYPE, MANIFEST_TYPE, REF_NAME,
    host_platform,
};
use crate::store_dir::Store;
use crate::tree::node::Content;

/// One exported layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedLayer {
    /// Digest of the blob as written (compressed for `--oci`, the tar for `--layer`).
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the blob as written.
    pub size: u64,
    pub entries: u64,
    pub file_bytes: u64,
}

/// What `export --oci` wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OciExportReport {
    pub reference: String,
    pub manifest: String,
    pub config: String,
    pub layers: Vec<ExportedLayer>,
}

/// An image's or a container's layers (top first) and config.
struct Target {
    layers: Vec<LayerId>,
    config: Option<Value>,
}

impl Store {
    /// The layers (top first) and config of an image or a container (containers win, as
    /// in `tessera export`). A container's dirty data is flushed first.
    fn export_target(&self, name: &str) -> Result<Target> {
        let container = self.meta().read().container(name)?;
        if let Some(container) = container {
            self.push_kernel_caches(Some(name))?;
            self.sync()?;
            let r = self.meta().read();
            let config = match container.base {
                Some(_) => r.image(&container.image)?.and_then(|i| i.config),
                None => None,
            };
            return Ok(Target {
                layers: r.stack_of(Some(container.upper))?,
                config,
            });
        }
        let r = self.meta().read();
        let image = r
            .image(name)?
            .ok_or_else(|| Error::NotFound(format!("image or container {name}")))?;
        Ok(Target {
            layers: r.stack_of(Some(image.top))?,
            config: image.config,
        })
    }

    /// Writes the diff of the top layer of `target` (an image or a container) as an
    /// uncompressed OCI layer tar.
    pub fn export_layer(&self, target: &str, out: impl Write) -> Result<ExportedLayer> {
        let layers = self.export_target(target)?.layers;
        let mut out = Hashing::new(out);
        let counts = LayerDiff::new(self, layers).write(&mut out)?;
        let (_, digest, size) = out.into_parts();
        Ok(exported(&digest, &digest, size, counts))
    }

    /// Writes `target` (an image or a container) as an OCI image layout in `dir`, named by
    /// the ref-name annotation `reference` (default: the target's name).
    pub fn export_oci(
        &self,
        target: &str,
        dir: &Path,
        reference: Option<&str>,
    ) -> Result<OciExportReport> {
        let reference = reference.unwrap_or(target);
        let Target { layers, config } = self.export_target(target)?;
        let layout = Layout::open(dir)?;
        let mut exported_layers = Vec::new();
        for i in (0..layers.len()).rev() {
            let diff = LayerDiff::new(self, layers[i..].to_vec());
            let layer = layout
                .layer_blob(|out| diff.write(out))
                .map_err(|e| in_layer(e, layers.len() - i, layers.len()))?;
            exported_layers.push(layer);
        }
        let diff_ids: Vec<&str> = exported_layers.iter().map(|l| l.diff_id.as_str()).collect();
        let config = oci_config(config, &diff_ids);
        let config_bytes = serde_json::to_vec(&config).expect("JSON values serialize");
        let config_digest = layout.blob(&config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": CONFIG_TYPE,
                "digest": config_digest.to_string(),
                "size": config_bytes.len(),
            },
            "layers": exported_layers.iter().map(|l| json!({
                "mediaType": LAYER_GZIP_TYPE,
                "digest": l.digest,
                "size": l.size,
            })).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest).expect("JSON values serialize");
        let manifest_digest = layout.blob(&manifest_bytes)?;
        let descriptor = json!({
            "mediaType": MANIFEST_TYPE,
            "digest": manifest_digest.to_string(),
            "size": manifest_bytes.len(),
            "annotations": { REF_NAME: reference },
            "platform": {
                "architecture": config["architecture"],
                "os": config["os"],
            },
        });
        layout.add_to_index(reference, descriptor)?;
        Ok(OciExportReport {
            reference: reference.to_string(),
            manifest: manifest_digest.to_string(),
            config: config_digest.to_string(),
            layers: exported_layers,
        })
    }

    /// The layers of an image or container, bottom first, with their records (diff ids).
    pub fn layer_records(&self, target: &str) -> Result<Vec<(LayerId, LayerRecord)>> {
        let layers = self.export_target(target)?.layers;
        let r = self.meta().read();
        layers
            .iter()
            .rev()
            .map(|id| {
                let record = r
                    .layer(*id)?
                    .ok_or_else(|| Error::Corrupt(format!("layer {id} is missing")))?;
                Ok((*id, record))
            })
            .collect()
    }

    /// The size and block-map root of every regular file the view of an image or container
    /// shows, by path: equal roots mean equal contents (and the same blocks).
    pub fn file_roots(&self, target: &str) -> Result<Vec<(Vec<u8>, u64, MapRoot)>> {
        let layers = self.export_target(target)?.layers;
        let r = self.meta().read();
        let mut out = Vec::new();
        walk::walk(&r, &layers, &mut |visit| {
            if let Content::File { size, root, .. } = visit.record.content {
                out.push((visit.path.to_vec(), size, root));
            }
            Ok(())
        })?;
        Ok(out)
    }
}

fn in_layer(e: Error, n: usize, of: usize) -> Error {
    e.within(&format!("exporting layer {n} of {of}"))
}

fn exported(digest: &Digest, diff_id: &Digest, size: u64, counts: DiffCounts) -> ExportedLayer {
    ExportedLayer {
        digest: digest.to_string(),
        diff_id: diff_id.to_string(),
        size,
        entries: counts.entries,
        file_bytes: counts.file_bytes,
    }
}

/// The image config for the exported layers: the stored one (or a minimal one), with
/// `rootfs` for these layers, the required `architecture` and `os`, and a history that
/// lists one entry per layer.
fn oci_config(stored: Option<Value>, diff_ids: &[&str]) -> Value {
    let mut config = match stored {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let (os, arch) = host_platform();
    config.entry("architecture").or_insert_with(|| json!(arch));
    config.entry("os").or_insert_with(|| json!(os));
    config.entry("config").or_insert_with(|| json!({}));
    config.insert(
        "rootfs".into(),
        json!({ "type": "layers", "diff_ids": diff_ids }),
    );
    let layers_in_history = config.get("history").and_then(Value::as_array).map(|h| {
        h.iter()
            .filter(|e| e.get("empty_layer").and_then(Value::as_bool) != Some(true))
            .count()
    });
    match layers_in_history {
        Some(n) if n == diff_ids.len() => {}
        Some(n) if n < diff_ids.len() => {
            let history = config["history"].as_array_mut().expect("checked");
            for _ in n..diff_ids.len() {
                history.push(json!({ "created_by": "tessera" }));
            }
        }
        _ => {
            config.remove("history");
        }
    }
    Value::Object(config)
}

/// An OCI image layout being written.
struct Layout {
    dir: PathBuf,
    blobs: PathBuf,
}

#[derive(Deserialize)]
struct LayoutFile {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

impl Layout {
    /// Creates the layout, or opens an existing one to add to it.
    fn open(dir: &Path) -> Result<Layout> {
        let marker = dir.join("oci-layout");
        if marker.exists() {
            let text = fs::read(&marker).ctx(|| format!("reading {}", marker.display()))?;
            let parsed: std::result::Result<LayoutFile, _> = serde_json::from_slice(&text);
            if !parsed.is_ok_and(|l| l.version.starts_with("1.")) {
                return Err(Error::InvalidInput(format!(
                    "{} is not an OCI layout of version 1.x",
                    marker.display()
                )));
            }
        } else if dir.exists() {
            let mut entries = fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))?;
            if entries.next().is_some() {
                return Err(Error::Exists(format!(
                    "{} (and it is not an OCI layout)",
                    dir.display()
                )));
            }
        }
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).ctx(|| format!("creating {}", blobs.display()))?;
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
            blobs,
        })
    }

    fn temp(&self) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.blobs.join(format!(".tmp-{}-{n}", std::process::id()))
    }

    /// Moves a finished temporary blob to its name (or drops it when the layout has it).
    fn place(&self, temp: &Path, digest: &Digest) -> Result<()> {
        let path = self.blobs.join(&digest.hex);
        if path.exists() {
            let _ = fs::remove_file(temp);
            return Ok(());
        }
        fs::rename(temp, &path).ctx(|| format!("writing {}", path.display()))
    }

    fn blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let temp = self.temp();
        fs::write(&temp, bytes).ctx(|| format!("writing {}", temp.display()))?;
        self.place(&temp, &digest)?;
        Ok(digest)
    }

    /// Writes a gzip-compressed layer blob from the tar `write` produces.
    fn layer_blob(
        &self,
        write: impl FnOnce(&mut dyn Write) -> Result<DiffCounts>,
    ) -> Result<ExportedLayer> {
        let temp = self.temp();
        let result = (|| {
            let file = File::create(&temp).ctx(|| format!("creating {}", temp.display()))?;
            let compressed = Hashing::new(BufWriter::with_capacity(1 << 20, file));
            let gzip = flate2::write::GzEncoder::new(compressed, flate2::Compression::fast());
            let mut plain = Hashing::new(gzip);
            let counts = write(&mut plain)?;
            let (gzip, diff_id, _) = plain.into_parts();
            let compressed = gzip
                .finish()
                .ctx(|| format!("writing {}", temp.display()))?;
            let (mut file, digest, size) = compressed.into_parts();
            file.flush().ctx(|| format!("writing {}", temp.display()))?;
            Ok((digest, diff_id, size, counts))
        })();
        match result {
            Ok((digest, diff_id, size, counts)) => {
                self.place(&temp, &digest)?;
                Ok(exported(&digest, &diff_id, size, counts))
            }
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    /// Adds a manifest to `index.json`, replacing any entry of the same ref name.
    fn add_to_index(&self, reference: &str, descriptor: Value) -> Result<()> {
        let path = self.dir.join("index.json");
        let mut index = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    Error::InvalidInput(format!("{} is not valid JSON", path.display()))
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [] })
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let mut manifests: Vec<Value> = index
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        manifests.retain(|m| {
            m.pointer("/annotations").and_then(|a| a.get(REF_NAME)) != Some(&json!(reference))
        });
        manifests.push(descriptor);
        index["manifests"] = Value::Array(manifests);
        let bytes = serde_json::to_vec(&index).expect("JSON values serialize");
        write_atomic(&path, &bytes)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = path.with_extension("tmp");
    fs::write(&temp, bytes).ctx(|| format!("writing {}", temp.display()))?;
    fs::rename(&temp, path).ctx(|| format!("writing {}", path.display()))
}
