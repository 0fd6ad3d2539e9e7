//! Fixtures for the OCI tests: image layouts and `docker save` archives written by hand
//! (index.json, manifests, configs, blobs), layer specs with an in-test model of how OCI
//! layers apply (whiteouts, opaque directories), tree snapshots of views and of unpacked
//! directories, and store snapshots that a failed import must leave unchanged.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tar::EntryType;
use tessera::volume::Volume;
use tessera::{FileKind, NodeId, Store};
use tessera_tests::tars::TarMaker;

pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Plain,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn apply(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Compression::Plain => tar.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(tar).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(tar, 1).unwrap(),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Plain => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// One entry of a layer spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    HardLink(String),
    /// A fifo or device (by kind name), in trees only.
    Other(String),
}

/// A layer: entries in tar order. Names `.wh.X` and `.wh..wh..opq` are OCI whiteouts.
pub type Layer = Vec<(String, Spec)>;

pub fn layer_tar(layer: &Layer) -> Vec<u8> {
    let mut m = TarMaker::new();
    for (path, spec) in layer {
        match spec {
            Spec::Dir => m.dir(path),
            Spec::File(data) => m.file(path, data),
            Spec::Symlink(target) => m.symlink(path, target),
            Spec::HardLink(target) => m.hard_link(path, target),
            Spec::Other(kind) => panic!("{path}: layer specs hold no {kind}"),
        };
    }
    m.finish()
}

/// What a tree shows: path → content (hard links resolved to their content).
pub type Model = BTreeMap<String, Spec>;

/// Applies a layer to a model as the image spec says (whiteouts hide lower entries only;
/// in these specs they come before the entries of their layer).
pub fn apply(model: &mut Model, layer: &Layer) {
    let under = |dir: &str, p: &str| dir.is_empty() || p.starts_with(&format!("{dir}/"));
    for (path, spec) in layer {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if name == ".wh..wh..opq" {
            model.retain(|p, _| !(under(dir, p) && p.as_str() != dir));
        } else if let Some(hidden) = name.strip_prefix(".wh.") {
            let gone = if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            };
            model.retain(|p, _| p != &gone && !p.starts_with(&format!("{gone}/")));
        } else {
            let spec = match spec {
                Spec::HardLink(target) => model[target].clone(),
                other => other.clone(),
            };
            if spec != Spec::Dir {
                model.retain(|p, _| !p.starts_with(&format!("{path}/")));
            }
            model.insert(path.clone(), spec);
        }
    }
}

pub fn model_of(layers: &[&Layer]) -> Model {
    let mut model = Model::new();
    for layer in layers {
        apply(&mut model, layer);
    }
    model
}

/// An image as blobs.
pub struct Image {
    pub layers: Vec<Vec<u8>>,
    pub diff_ids: Vec<String>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub media_types: Vec<&'static str>,
}

pub fn image_config(diff_ids: &[String]) -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "APP=1"],
            "Entrypoint": ["/usr/bin/tool"],
            "Cmd": ["--serve"],
            "WorkingDir": "/opt/app",
            "User": "1000:1000",
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    })
}

impl Image {
    pub fn new(layers: &[&Layer], compression: &[Compression]) -> Image {
        let tars: Vec<Vec<u8>> = layers.iter().map(|l| layer_tar(l)).collect();
        Image::from_tars(&tars, compression, |c| c)
    }

    /// An image of these layer tars; `edit` may change the config before it is hashed.
    pub fn from_tars(
        tars: &[Vec<u8>],
        compression: &[Compression],
        edit: impl FnOnce(Value) -> Value,
    ) -> Image {
        let diff_ids: Vec<String> = tars.iter().map(|t| digest(t)).collect();
        let layers: Vec<Vec<u8>> = tars
            .iter()
            .zip(compression.iter().cycle())
            .map(|(t, c)| c.apply(t))
            .collect();
        let media_types = compression
            .iter()
            .cycle()
            .take(tars.len())
            .map(|c| c.media_type())
            .collect();
        let config = serde_json::to_vec(&edit(image_config(&diff_ids))).unwrap();
        let mut image = Image {
            layers,
            diff_ids,
            config,
            manifest: Vec::new(),
            media_types,
        };
        image.remanifest();
        image
    }

    /// Rewrites the manifest for the current blobs.
    pub fn remanifest(&mut self) {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(&self.config),
                "size": self.config.len(),
            },
            "layers": self.layers.iter().zip(&self.media_types).map(|(l, t)| json!({
                "mediaType": t,
                "digest": digest(l),
                "size": l.len(),
            })).collect::<Vec<_>>(),
        });
        self.manifest = serde_json::to_vec(&manifest).unwrap();
    }

    pub fn blobs(&self) -> Vec<&[u8]> {
        let mut out: Vec<&[u8]> = vec![&self.manifest, &self.config];
        out.extend(self.layers.iter().map(Vec::as_slice));
        out
    }
}

pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(hex_of(digest))
}

/// Writes an OCI image layout holding `images` under their ref names (`None`: no name).
pub fn write_layout(dir: &Path, images: &[(Option<&str>, &Image)]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut manifests = Vec::new();
    for (name, image) in images {
        for blob in image.blobs() {
            std::fs::write(blob_path(dir, &digest(blob)), blob).unwrap();
        }
        let mut descriptor = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&image.manifest),
            "size": image.manifest.len(),
        });
        if let Some(name) = name {
            descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
        }
        manifests.push(descriptor);
    }
    let index = json!({ "schemaVersion": 2, "manifests": manifests });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A `docker save` archive. Legacy: `<id>/layer.tar` and `<config hex>.json`; newer: an OCI
/// layout too, with `blobs/sha256/…` in manifest.json and the first layer reached through a
/// legacy-style symlink.
pub fn docker_archive(images: &[(&[&str], &Image)], newer: bool) -> Vec<u8> {
    let mut m = TarMaker::new();
    let mut entries = Vec::new();
    let mut written = BTreeSet::new();
    for (tags, image) in images {
        let mut layers = Vec::new();
        for (i, blob) in image.layers.iter().enumerate() {
            let d = digest(blob);
            if newer {
                let path = format!("blobs/sha256/{}", hex_of(&d));
                if written.insert(path.clone()) {
                    m.file(&path, blob);
                }
                if i == 0 {
                    let legacy = format!("{}/layer.tar", hex_of(&digest(d.as_bytes())));
                    if written.insert(legacy.clone()) {
                        m.dir(hex_of(&digest(d.as_bytes())));
                        m.symlink(&legacy, format!("../{path}"));
                    }
                    layers.push(legacy);
                } else {
                    layers.push(path);
                }
            } else {
                let id = hex_of(&digest(format!("{d}{i}").as_bytes())).to_string();
                let path = format!("{id}/layer.tar");
                if written.insert(path.clone()) {
                    m.dir(&id);
                    m.file(&path, blob);
                }
                layers.push(path);
            }
        }
        let config = if newer {
            format!("blobs/sha256/{}", hex_of(&digest(&image.config)))
        } else {
            format!("{}.json", hex_of(&digest(&image.config)))
        };
        if written.insert(config.clone()) {
            m.file(&config, &image.config);
        }
        if newer {
            let path = format!("blobs/sha256/{}", hex_of(&digest(&image.manifest)));
            if written.insert(path.clone()) {
                m.file(&path, &image.manifest);
            }
        }
        entries.push(json!({ "Config": config, "RepoTags": tags, "Layers": layers }));
    }
    m.file("manifest.json", &serde_json::to_vec(&entries).unwrap());
    if newer {
        m.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        m.file("index.json", br#"{"schemaVersion":2,"manifests":[]}"#);
    }
    m.finish()
}

/// One entry of a tree snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: String,
    pub data: Vec<u8>,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A view as path → item, and its hard-link groups.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub items: BTreeMap<String, Item>,
    pub links: BTreeSet<BTreeSet<String>>,
}

pub fn snapshot(volume: &Volume) -> Tree {
    let mut tree = Tree::default();
    let mut names: BTreeMap<NodeId, BTreeSet<String>> = BTreeMap::new();
    walk_volume(volume, volume.root(), "", &mut tree, &mut names);
    tree.links = names.into_values().filter(|n| n.len() > 1).collect();
    tree
}

fn walk_volume(
    volume: &Volume,
    dir: NodeId,
    prefix: &str,
    tree: &mut Tree,
    names: &mut BTreeMap<NodeId, BTreeSet<String>>,
) {
    for entry in volume.list_dir(dir).unwrap() {
        let name = String::from_utf8(entry.name.clone()).unwrap();
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let attr = volume.getattr(entry.node).unwrap();
        let (kind, data) = match attr.kind {
            FileKind::Dir => ("dir", Vec::new()),
            FileKind::File => (
                "file",
                volume.read(entry.node, 0, attr.size as usize).unwrap(),
            ),
            FileKind::Symlink => ("symlink", volume.readlink(entry.node).unwrap()),
            other => (format!("{other:?}").leak() as &str, Vec::new()),
        };
        let xattrs = volume
            .listxattr(entry.node)
            .unwrap()
            .into_iter()
            .map(|n| {
                let v = volume.getxattr(entry.node, &n).unwrap();
                (n, v)
            })
            .collect();
        if attr.kind != FileKind::Dir {
            names.entry(entry.node).or_default().insert(path.clone());
        }
        tree.items.insert(
            path.clone(),
            Item {
                kind: kind.to_string(),
                data,
                perm: attr.perm as u32,
                uid: attr.uid,
                gid: attr.gid,
                mtime: attr.mtime.div_euclid(1_000_000_000),
                xattrs,
            },
        );
        if attr.kind == FileKind::Dir {
            walk_volume(volume, entry.node, &path, tree, names);
        }
    }
}

/// A directory on disk as a model (contents only; hard links as their content).
pub fn model_of_dir(root: &Path) -> Model {
    let mut model = Model::new();
    fn walk(root: &Path, dir: &Path, model: &mut Model) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let spec = if meta.is_dir() {
                Spec::Dir
            } else if meta.file_type().is_fifo() {
                Spec::Other("Fifo".into())
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                Spec::Symlink(String::from_utf8(target.as_os_str().as_bytes().to_vec()).unwrap())
            } else {
                Spec::File(std::fs::read(&path).unwrap())
            };
            model.insert(rel, spec);
            if meta.is_dir() {
                walk(root, &path, model);
            }
        }
    }
    walk(root, root, &mut model);
    model
}

/// A tree snapshot reduced to a model.
pub fn model_of_tree(tree: &Tree) -> Model {
    tree.items
        .iter()
        .map(|(p, item)| {
            let spec = match item.kind.as_str() {
                "dir" => Spec::Dir,
                "file" => Spec::File(item.data.clone()),
                "symlink" => Spec::Symlink(String::from_utf8(item.data.clone()).unwrap()),
                other => Spec::Other(other.to_string()),
            };
            (p.clone(), spec)
        })
        .collect()
}

/// Compares models path by path, naming the first difference.
pub fn assert_same_model(expected: &Model, actual: &Model, what: &str) {
    let want: Vec<&String> = expected.keys().collect();
    let got: Vec<&String> = actual.keys().collect();
    assert_eq!(want, got, "{what}: paths differ");
    for (path, spec) in expected {
        assert!(
            &actual[path] == spec,
            "{what}: {path} differs ({:?} vs {:?})",
            short(spec),
            short(&actual[path])
        );
    }
}

fn short(spec: &Spec) -> String {
    match spec {
        Spec::File(d) => format!("file of {} bytes", d.len()),
        other => format!("{other:?}"),
    }
}

/// What a failed import must leave as it was.
#[derive(Debug, PartialEq)]
pub struct StoreState {
    pub images: Vec<String>,
    pub stats: Value,
}

pub fn store_state(store: &Store) -> StoreState {
    let report = store.fsck(&Default::default()).unwrap();
    assert!(report.is_clean(), "fsck: {:?}", report.problems);
    let stats = tessera::stats::stats(store, &Default::default()).unwrap();
    let mut stats = serde_json::to_value(stats).unwrap();
    // The database file's allocated size is not the store's content: a failed import still
    // consumed node and layer ids, and any later commit (fsck's, say) may grow the file.
    stats["store"]
        .as_object_mut()
        .unwrap()
        .remove("metadata_bytes");
    StoreState {
        images: store
            .images()
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect(),
        stats,
    }
}

pub fn umoci(args: &[&str]) {
    let out = std::process::Command::new("umoci")
        .args(args)
        .output()
        .expect("running umoci");
    assert!(
        out.status.success(),
        "umoci {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A raw tar entry (names the tar crate refuses to write).
pub fn raw_entry(m: &mut TarMaker, name: &str, kind: EntryType, link: Option<&str>) {
    m.raw(name.as_bytes(), kind, b"", link.map(str::as_bytes));
}
