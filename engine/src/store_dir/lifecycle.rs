//! Images and containers: create, commit, remove, list. Every command here is durable when it
//! returns.
//!
//! An image names the top layer of a stack; a container is a writable layer on top of an
//! image's top layer. Commit freezes the writable layer into a new image (metadata only) and
//! gives the container a fresh writable layer on top of it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::Store;
use crate::error::{Error, Result};
use crate::format::records::{ContainerRecord, ImageRecord, LayerRecord, LayerState};
use crate::ids::LayerId;
use crate::meta::records::{NEXT_LAYER, Records};
use crate::meta::{MetaRead, Writer};
use crate::tree::node::{Content, TimeNs};
use crate::volume::{Volume, now_ns};

/// An image as `tessera images` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub top_layer: u64,
    pub layers: usize,
    pub created: TimeNs,
    /// Bytes of regular-file content recorded by the image's layers (each layer's diff).
    pub layer_bytes: u64,
}

/// A container as `tessera containers` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub name: String,
    pub image: String,
    pub writable_layer: u64,
    pub created: TimeNs,
    /// Bytes of regular-file content recorded by its writable layer.
    pub layer_bytes: u64,
    pub mounted: bool,
    /// Its size limit (see `Store::set_size_limit`).
    #[serde(default)]
    pub size_limit: Option<u64>,
}

/// Checks an image or container name: printable, no slash, not empty, at most 255 bytes.
pub fn check_object_name(kind: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.starts_with('-')
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c.is_whitespace());
    if bad {
        return Err(Error::InvalidInput(format!(
            "{name:?} is not a valid {kind} name (no slashes, spaces or control characters)"
        )));
    }
    Ok(())
}

fn new_layer(w: &mut Writer<'_>, parent: Option<LayerId>, state: LayerState) -> Result<LayerId> {
    let id = LayerId(w.next_id(NEXT_LAYER, 1)?);
    w.put_layer(
        id,
        &LayerRecord {
            v: 1,
            parent,
            state,
            created: now_ns(),
            diff_id: None,
        },
    );
    Ok(id)
}

fn layer_bytes<R: MetaRead + ?Sized>(r: &R, layer: LayerId) -> Result<u64> {
    Ok(r.layer_nodes(layer)?
        .iter()
        .map(|(_, node)| match node.content {
            Content::File { size, .. } => size,
            _ => 0,
        })
        .sum())
}

impl Store {
    pub fn images(&self) -> Result<Vec<ImageInfo>> {
        let r = self.meta().read();
        r.images()?
            .into_iter()
            .map(|(name, image)| {
                let stack = r.stack_of(Some(image.top))?;
                let mut bytes = 0;
                for layer in &stack {
                    bytes += layer_bytes(&r, *layer)?;
                }
                Ok(ImageInfo {
                    name,
                    top_layer: image.top.0,
                    layers: stack.len(),
                    created: image.created,
                    layer_bytes: bytes,
                })
            })
            .collect()
    }

    pub fn image_record(&self, name: &str) -> Result<ImageRecord> {
        self.meta()
            .read()
            .image(name)?
            .ok_or_else(|| Error::NotFound(format!("image {name}")))
    }

    pub fn containers(&self) -> Result<Vec<ContainerInfo>> {
        let mounted = self.mounted_containers();
        let r = self.meta().read();
        r.containers()?
            .into_iter()
            .map(|(name, c)| {
                Ok(ContainerInfo {
                    mounted: mounted.contains(&name),
                    layer_bytes: layer_bytes(&r, c.upper)?,
                    name,
                    image: c.image,
                    writable_layer: c.upper.0,
                    created: c.created,
                    size_limit: c.size_limit,
                })
            })
            .collect()
    }

    fn mounted_containers(&self) -> HashSet<String> {
        self.live_volumes()
            .iter()
            .filter_map(|v| v.container_name())
            .collect()
    }

    /// Creates a container on an image: a new, empty writable layer on the image's top layer.
    pub fn create_container(&self, name: &str, image: &str) -> Result<()> {
        self.create_container_limited(name, image, None)
    }

    /// Creates a container that may hold at most `size_limit` bytes exclusively (see
    /// `Store::set_size_limit`).
    pub fn create_container_limited(
        &self,
        name: &str,
        image: &str,
        size_limit: Option<u64>,
    ) -> Result<()> {
        check_object_name("container", name)?;
        self.meta().write(|w| {
            if w.container(name)?.is_some() {
                return Err(Error::Exists(format!("container {name}")));
            }
            let base = w
                .image(image)?
                .ok_or_else(|| Error::NotFound(format!("image {image}")))?
                .top;
            let upper = new_layer(w, Some(base), LayerState::Writable)?;
            w.put_container(
                name,
                &ContainerRecord {
                    v: 1,
                    image: image.to_string(),
                    base: Some(base),
                    upper,
                    created: now_ns(),
                    size_limit,
                },
            );
            Ok(())
        })?;
        self.commit_metadata()
    }

    /// Sets (or, with `None`, removes) the most bytes container `name` may hold exclusively
    /// — blocks no image or other container references (see `volume::size_limit`). A mounted
    /// container's next write sees it; writes already made are kept even if past it.
    pub fn set_size_limit(&self, name: &str, bytes: Option<u64>) -> Result<()> {
        self.meta().write(|w| {
            let mut record = w
                .container(name)?
                .ok_or_else(|| Error::NotFound(format!("container {name}")))?;
            record.size_limit = bytes;
            w.put_container(name, &record);
            Ok(())
        })?;
        self.commit_metadata()?;
        for shared in self.live_volumes() {
            if shared.container_name().as_deref() == Some(name) {
                crate::volume::Volume::from_shared(shared).set_size_limit(bytes);
            }
        }
        Ok(())
    }

    /// A container's size limit, and the bytes it holds exclusively now (a scan of the store;
    /// what kernels cache of its mount counts too).
    pub fn size_limit_use(&self, name: &str) -> Result<(Option<u64>, u64)> {
        let limit = self
            .meta()
            .read()
            .container(name)?
            .ok_or_else(|| Error::NotFound(format!("container {name}")))?
            .size_limit;
        self.push_kernel_caches(Some(name))?;
        Ok((limit, crate::stats::exclusive_bytes(self, name)?))
    }

    /// Freezes a container's writable layer into the new image `image` (metadata only) and
    /// continues the container on a fresh writable layer. Works while the container is open:
    /// its dirty data is flushed first (crash-consistent, like `docker commit`).
    pub fn commit_container(&self, container: &str, image: &str) -> Result<LayerId> {
        check_object_name("image", image)?;
        self.push_kernel_caches(Some(container))?;
        let volume = self
            .live_volumes()
            .into_iter()
            .find(|v| v.container_name().as_deref() == Some(container));
        let frozen = match volume {
            Some(volume) => Volume::from_shared(volume).freeze(image)?,
            None => {
                let _flush = self.flush_guard();
                self.meta().write(|w| freeze_layer(w, container, image))?.0
            }
        };
        self.commit_metadata()?;
        Ok(frozen)
    }

    /// Removes a container and its writable layer. Refused while it is open (mounted).
    pub fn remove_container(&self, name: &str) -> Result<()> {
        if self.mounted_containers().contains(name) {
            return Err(Error::Busy(format!("container {name} is mounted")));
        }
        self.meta().write(|w| {
            let c = w
                .container(name)?
                .ok_or_else(|| Error::NotFound(format!("container {name}")))?;
            w.delete_layer(c.upper)?;
            w.delete_container(name);
            Ok(())
        })?;
        self.commit_metadata()
    }

    /// Removes an image. Refused while a container or another image is built on it. Layers
    /// that nothing else uses go with it (their blocks are reclaimed by gc).
    pub fn remove_image(&self, name: &str) -> Result<()> {
        self.meta().write(|w| {
            let image = w
                .image(name)?
                .ok_or_else(|| Error::NotFound(format!("image {name}")))?;
            let mut used_elsewhere = HashSet::new();
            for (other, record) in w.images()? {
                if other == name {
                    continue;
                }
                let stack = w.stack_of(Some(record.top))?;
                if stack[1..].contains(&image.top) {
                    return Err(Error::Busy(format!(
                        "image {name} is the base of image {other}"
                    )));
                }
                used_elsewhere.extend(stack);
            }
            for (container, record) in w.containers()? {
                let stack = w.stack_of(Some(record.upper))?;
                if stack.contains(&image.top) {
                    return Err(Error::Busy(format!(
                        "image {name} is used by container {container}"
                    )));
                }
                used_elsewhere.extend(stack);
            }
            w.delete_image(name);
            for layer in w.stack_of(Some(image.top))? {
                if used_elsewhere.contains(&layer) {
                    break;
                }
                w.delete_layer(layer)?;
            }
            Ok(())
        })?;
        self.commit_metadata()
    }

    /// Publishes a finished import: the staging layers become committed and `name` names the
    /// top one. One atomic metadata operation, durable when this returns.
    pub(crate) fn publish_image(
        &self,
        name: &str,
        layers: &[LayerId],
        config: Option<serde_json::Value>,
    ) -> Result<()> {
        let top = *layers
            .last()
            .ok_or_else(|| Error::InvalidInput("an image needs at least one layer".into()))?;
        self.meta().write(|w| {
            if w.image(name)?.is_some() {
                return Err(Error::Exists(format!("image {name}")));
            }
            for layer in layers {
                let mut record = w
                    .layer(*layer)?
                    .ok_or_else(|| Error::Corrupt(format!("staging layer {layer} vanished")))?;
                record.state = LayerState::Committed;
                w.put_layer(*layer, &record);
            }
            w.put_image(
                name,
                &ImageRecord {
                    v: 1,
                    top,
                    created: now_ns(),
                    config,
                },
            );
            Ok(())
        })?;
        self.commit_metadata()
    }

    /// Creates an image of one empty layer (a root directory and nothing else), the base of
    /// containers built from scratch.
    pub fn create_empty_image(&self, name: &str) -> Result<()> {
        check_object_name("image", name)?;
        let layer = self.new_staging_layer(None)?;
        self.publish_image(name, &[layer], None)
    }

    /// Starts a staging layer for an import (swept at the next open unless published).
    pub(crate) fn new_staging_layer(&self, parent: Option<LayerId>) -> Result<LayerId> {
        self.meta()
            .write(|w| new_layer(w, parent, LayerState::Staging))
    }
}

/// The metadata part of commit: freezes the container's writable layer as image `image` and
/// starts a new writable layer. Orphans move up (commit never includes them). Returns the
/// frozen layer and the new writable one.
pub(crate) fn freeze_layer(
    w: &mut Writer<'_>,
    container: &str,
    image: &str,
) -> Result<(LayerId, LayerId)> {
    if w.image(image)?.is_some() {
        return Err(Error::Exists(format!("image {image} (remove it first)")));
    }
    let mut c = w
        .container(container)?
        .ok_or_else(|| Error::NotFound(format!("container {container}")))?;
    let frozen = c.upper;
    let fresh = new_layer(w, Some(frozen), LayerState::Writable)?;
    for node in w.orphans(frozen)? {
        if let Some(record) = w.node(frozen, node)? {
            w.put_node(fresh, node, &record);
        }
        w.delete_node(frozen, node);
        w.delete_orphan(frozen, node);
        w.put_orphan(fresh, node);
    }
    let mut record = w
        .layer(frozen)?
        .ok_or_else(|| Error::Corrupt(format!("layer {frozen} is missing")))?;
    record.state = LayerState::Committed;
    w.put_layer(frozen, &record);
    let config = match &c.base {
        Some(_) => w.image(&c.image)?.and_then(|i| i.config),
        None => None,
    };
    w.put_image(
        image,
        &ImageRecord {
            v: 1,
            top: frozen,
            created: now_ns(),
            config,
        },
    );
    c.base = Some(frozen);
    c.upper = fresh;
    w.put_container(container, &c);
    Ok((frozen, fresh))
}
