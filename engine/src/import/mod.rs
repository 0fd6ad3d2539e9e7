//! Import: directories, layer tars (plain, gzip, zstd), OCI image layouts and `docker save`
//! archives become image layers (`source` tells them apart; `oci_layout`, `docker` and `blobs`
//! read image archives into a `plan`, verified against its digests; the format itself is
//! `crate::oci`'s). `analyze` reads the same sources into a block
//! sink instead, to compare block sizes without a store.
//!
//! Data goes through the parallel block pipeline into staging packs; the tree is built in a
//! staging layer; one final metadata transaction publishes the image (and adopts the packs).
//! A failed import deletes its staging packs and layer, so the store is as it was; a crashed
//! one leaves only unrecorded packs and a staging layer, which the next open sweeps.

mod analyze;
pub(crate) mod blobs;
mod builder;
mod dir;
mod docker;
mod oci_layout;
mod pipeline;
mod plan;
mod source;
mod sparse;
mod tar;

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use analyze::{AnalyzeReport, BlockSizeFigures, analyze};
pub use builder::{EntryKind, EntryMeta, components};
pub use pipeline::DataFigures;
pub use source::{Source, SourceKind};

use crate::error::{Error, Result};
use crate::ids::LayerId;
use crate::meta::records::Records;
use crate::store_dir::{Store, check_object_name};
use builder::LayerBuilder;
use pipeline::{ContentId, Pipeline};

/// What an import did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportReport {
    pub image: String,
    pub layers: usize,
    pub entries: u64,
    /// Bytes of regular-file content read.
    pub logical_bytes: u64,
    /// Of those, bytes in zero blocks (holes: stored as nothing).
    pub zero_bytes: u64,
    /// Bytes of new blocks the store now holds (the rest was already there).
    pub added_bytes: u64,
    pub seconds: f64,
    /// What the source was, when imported from a path.
    #[serde(default)]
    pub format: Option<SourceKind>,
}

/// Adds one layer's entries to a [`LayerFeed`] (see [`Store::import_layers`]).
pub type LayerFeeder<'f> = Box<dyn FnOnce(&mut LayerFeed) -> Result<()> + 'f>;

/// Hands one layer's entries to the builder and their data to the pipeline (an import), or
/// only the data to a [`BlockSink`] (`tessera analyze`).
pub struct LayerFeed<'a, 'p, 'e> {
    sink: Sink<'a, 'p, 'e>,
    next_content: &'a mut ContentId,
    block_size: usize,
    entries: u64,
    /// The layer's OCI diff id, when its source knows it (set by the feeder).
    diff_id: Option<String>,
}

enum Sink<'a, 'p, 'e> {
    Import {
        pipeline: &'a mut Pipeline<'p, 'e>,
        builder: LayerBuilder<'a>,
    },
    Blocks(&'a mut dyn BlockSink),
}

/// Where [`LayerFeed`] sends data when it builds no layer: blocks of `block_size` bytes (the
/// last block of a file shorter), holes, and one call per regular file.
pub(crate) trait BlockSink {
    fn block(&mut self, data: Vec<u8>) -> Result<()>;
    fn hole(&mut self, bytes: u64);
    fn file(&mut self, size: u64);
}

impl LayerFeed<'_, '_, '_> {
    /// Adds a non-file entry (directory, symlink, hard link, device, fifo, socket).
    pub fn entry(&mut self, path: &[u8], kind: EntryKind, meta: EntryMeta) -> Result<()> {
        self.entries += 1;
        match &mut self.sink {
            Sink::Import { builder, .. } => builder.add(path, kind, meta),
            Sink::Blocks(sink) => {
                let name = path.rsplit(|b| *b == b'/').find(|n| !n.is_empty());
                let whiteout = name.is_some_and(crate::oci::whiteout::is_marker);
                if let EntryKind::File { size, .. } = kind
                    && !whiteout
                {
                    sink.file(size);
                }
                Ok(())
            }
        }
    }

    /// Records the layer's OCI diff id (the sha256 of its uncompressed tar).
    pub fn set_diff_id(&mut self, diff_id: String) {
        self.diff_id = Some(diff_id);
    }

    /// Queues block `index` of `content`.
    pub(super) fn block(&mut self, content: ContentId, index: u64, data: Vec<u8>) -> Result<()> {
        match &mut self.sink {
            Sink::Import { pipeline, .. } => pipeline.block(content, index, data),
            Sink::Blocks(sink) => sink.block(data),
        }
    }

    /// Counts a hole of `bytes` skipped without reading.
    pub(super) fn hole(&mut self, bytes: u64) {
        match &mut self.sink {
            Sink::Import { pipeline, .. } => pipeline.hole(bytes),
            Sink::Blocks(sink) => sink.hole(bytes),
        }
    }

    /// Adds a regular file of `size` bytes read from `data`.
    pub fn file(
        &mut self,
        path: &[u8],
        meta: EntryMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        // Check the path before reading any data, so a bad entry costs nothing.
        components(path)?;
        let content = self.new_content();
        let bs = self.block_size as u64;
        for index in 0..size.div_ceil(bs) {
            let len = (size - index * bs).min(bs) as usize;
            let mut buf = vec![0u8; len];
            data.read_exact(&mut buf).map_err(|e| {
                Error::InvalidInput(format!(
                    "entry {:?} is truncated: {e}",
                    String::from_utf8_lossy(path)
                ))
            })?;
            self.block(content, index, buf)?;
        }
        self.entry(path, EntryKind::File { content, size }, meta)
    }

    pub(super) fn new_content(&mut self) -> ContentId {
        *self.next_content += 1;
        *self.next_content
    }
}

impl Store {
    /// Imports a source as the image `name`: a directory or a layer tar (plain, .gz or .zst,
    /// detected from its bytes) as one layer; an OCI image layout (`DIR`, `DIR:REF`) or a
    /// `docker save` archive (`FILE`, `FILE:TAG`) with one layer per image layer, digests
    /// verified and its config kept (see [`Source`]).
    /// `src` itself may be a symlink (it is resolved first); nothing inside it is followed.
    pub fn import_path(&self, src: &Path, name: &str) -> Result<ImportReport> {
        self.import_source(src, Some(name))
    }

    /// Like [`Store::import_path`]; without a name, the image takes the tag its archive
    /// carries (an error when it carries none).
    pub fn import_source(&self, src: &Path, name: Option<&str>) -> Result<ImportReport> {
        let source = Source::open(src)?;
        let name = match name {
            Some(name) => name.to_string(),
            None => source.tag().ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{} carries no image tag: name the image (--name NAME:TAG)",
                    source.describe()
                ))
            })?,
        };
        let mut report = self.import_layers(&name, source.config(), source.feeders())?;
        report.format = Some(source.kind);
        Ok(report)
    }

    /// Imports one layer tar (plain, gzip or zstd) as the image `name`.
    pub fn import_tar(&self, reader: impl Read, name: &str) -> Result<ImportReport> {
        let mut reader = Some(reader);
        self.import_layers(
            name,
            None,
            vec![Box::new(move |feed: &mut LayerFeed| {
                tar::feed(feed, reader.take().expect("fed once"))
            })],
        )
    }

    /// Imports several layer tars (each plain, gzip or zstd), bottom first, as the image `name`:
    /// one layer per tar, with OCI whiteouts applied against the layers below. All or nothing.
    pub fn import_tar_layers<'r, R: Read + 'r>(
        &self,
        readers: Vec<R>,
        name: &str,
    ) -> Result<ImportReport> {
        let feeders = readers
            .into_iter()
            .map(|reader| {
                Box::new(move |feed: &mut LayerFeed| tar::feed(feed, reader)) as LayerFeeder<'r>
            })
            .collect();
        self.import_layers(name, None, feeders)
    }

    /// Imports a stack of layers, bottom first, as image `name`. Each feeder adds one layer's
    /// entries. All or nothing.
    pub fn import_layers<'f>(
        &self,
        name: &str,
        config: Option<serde_json::Value>,
        layers: Vec<LayerFeeder<'f>>,
    ) -> Result<ImportReport> {
        check_object_name("image", name)?;
        if self.meta().read().image(name)?.is_some() {
            return Err(Error::Exists(format!("image {name}")));
        }
        let started = Instant::now();
        // Dedup may reference stored blocks no layer references: reclamation must wait.
        let _blocks_stay = self.reclaim_guard();
        let mut made: Vec<LayerId> = Vec::new();
        let count = layers.len();
        let outcome = std::thread::scope(|scope| {
            let mut pipeline = Pipeline::start(scope, self.blocks().stage()?);
            let fed = self.feed_layers(&mut pipeline, layers, &mut made);
            let finished = pipeline.finish();
            let (entries, files) = fed?;
            let (contents, figures, staging) = finished?;
            builder::fill_contents(self, &made, &files, &contents)?;
            Ok((entries, figures, staging))
        });
        let (entries, figures, staging) = match outcome {
            Ok(done) => done,
            Err(e) => {
                self.discard_layers(&made);
                return Err(e);
            }
        };
        staging.adopt()?;
        if let Err(e) = self.publish_image(name, &made, config) {
            self.discard_layers(&made);
            return Err(e);
        }
        Ok(ImportReport {
            image: name.to_string(),
            layers: count,
            entries,
            logical_bytes: figures.logical,
            zero_bytes: figures.zero,
            added_bytes: figures.added,
            seconds: started.elapsed().as_secs_f64(),
            format: None,
        })
    }

    #[allow(clippy::type_complexity)]
    fn feed_layers<'f>(
        &self,
        pipeline: &mut Pipeline<'_, '_>,
        layers: Vec<LayerFeeder<'f>>,
        made: &mut Vec<LayerId>,
    ) -> Result<(u64, Vec<(crate::ids::NodeId, ContentId, u64)>)> {
        let mut next_content = 0;
        let mut entries = 0;
        let mut files = Vec::new();
        for feeder in layers {
            let parent = made.last().copied();
            let layer = self.new_staging_layer(parent)?;
            let lower = {
                let mut lower = made.clone();
                lower.reverse();
                lower
            };
            made.push(layer);
            let mut feed = LayerFeed {
                sink: Sink::Import {
                    pipeline: &mut *pipeline,
                    builder: LayerBuilder::new(self, lower, layer),
                },
                next_content: &mut next_content,
                block_size: self.block_size() as usize,
                entries: 0,
                diff_id: None,
            };
            feeder(&mut feed)?;
            entries += feed.entries;
            if let Some(diff_id) = feed.diff_id.take() {
                self.set_layer_diff_id(layer, diff_id)?;
            }
            if let Sink::Import { builder, .. } = feed.sink {
                files.extend(builder.finish_tree()?);
            }
        }
        Ok((entries, files))
    }

    /// Records a staging layer's OCI diff id (kept when the layer is published).
    fn set_layer_diff_id(&self, layer: LayerId, diff_id: String) -> Result<()> {
        self.meta().write(|w| {
            let mut record = w
                .layer(layer)?
                .ok_or_else(|| Error::Corrupt(format!("staging layer {layer} vanished")))?;
            record.diff_id = Some(diff_id);
            w.put_layer(layer, &record);
            Ok(())
        })
    }

    /// Removes staging layers of a failed import (best effort: the next open sweeps them too).
    pub(crate) fn discard_layers(&self, layers: &[LayerId]) {
        let removed = self.meta().write(|w| {
            // A publish whose commit failed left its image record in memory: it goes too.
            for (name, image) in w.images()? {
                if layers.contains(&image.top) {
                    w.delete_image(&name);
                }
            }
            for layer in layers {
                w.delete_layer(*layer)?;
            }
            Ok(())
        });
        if let Err(e) = removed.and_then(|()| self.commit_metadata()) {
            tracing::warn!("removing the layers of a failed import: {e}");
        }
    }
}
