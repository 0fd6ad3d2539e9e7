//! `tessera analyze`: what importing some sources would store at each candidate block size,
//! without a store. The sources are read by the very feeders an import uses (so the same
//! forms, the same digest checks), but their data goes to a block sink instead of the
//! import's builder and pipeline: blocks of the largest size are cut once on the reading
//! thread, and hasher threads (one per core) split each into the smaller sizes, hash them
//! (blake3, as the store does) and count distinct non-zero blocks per size.
//!
//! Compression per size: each distinct block is compressed as a store made with the default
//! `--compression` keeps it (zstd:3, kept only where it saves an eighth; store/compress.rs).
//!
//! Index estimate per size: pack-index entries (44 bytes per unique block) plus block-map
//! pages (4 KiB each; a file version of n > 1 blocks has the pages of a 128-ary tree over n).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};
use serde::{Deserialize, Serialize};

use super::{BlockSink, LayerFeed, Sink, Source, SourceKind};
use crate::error::{Error, Result};
use crate::ids::is_all_zero;
use crate::store::compress::{self, Compression, DEFAULT_ZSTD_LEVEL};
use crate::tree::block_map::FANOUT;

/// How a store made with the default `--compression` keeps blocks.
const COMPRESSION: Compression = Compression::Zstd(DEFAULT_ZSTD_LEVEL);

/// Bytes of one pack-index entry (id, offset, length).
pub const INDEX_ENTRY_BYTES: u64 = 44;
/// Bytes of one block-map page.
pub const PAGE_BYTES: u64 = 4096;

/// What `analyze` read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalyzedSource {
    pub source: String,
    pub format: SourceKind,
    pub layers: usize,
}

/// The figures for one block size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockSizeFigures {
    pub block_size: u32,
    /// Bytes of every regular file of every layer.
    pub logical_bytes: u64,
    /// Of those, bytes in all-zero blocks (stored as nothing).
    pub zero_bytes: u64,
    /// Distinct non-zero blocks, and their bytes: what the packs would hold.
    pub unique_blocks: u64,
    pub unique_bytes: u64,
    /// What the unique blocks would take compressed as a default store keeps them.
    pub compressed_bytes: u64,
    /// Unique bytes ÷ compressed bytes.
    pub compression_ratio: f64,
    /// Non-zero logical bytes ÷ unique bytes.
    pub dedup_ratio: f64,
    /// Pack-index entries for the unique blocks.
    pub pack_index_bytes: u64,
    /// Block-map pages of every file version.
    pub block_map_bytes: u64,
    /// The two above together.
    pub estimated_index_bytes: u64,
}

/// The report of `analyze`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalyzeReport {
    pub sources: Vec<AnalyzedSource>,
    /// Regular files read (each layer's version of a file counts).
    pub file_versions: u64,
    pub logical_bytes: u64,
    pub block_sizes: Vec<BlockSizeFigures>,
    pub seconds: f64,
}

/// Pages of the block map of a file of `n` blocks.
fn map_pages(n: u64) -> u64 {
    let mut pages = 0;
    let mut level = n;
    while level > 1 {
        level = level.div_ceil(FANOUT);
        pages += level;
    }
    pages
}

/// What one hasher thread counted.
struct Tally {
    zero: Vec<u64>,
    /// Per size: distinct blocks, each with its length and its compressed length.
    unique: Vec<HashMap<[u8; 16], (u32, u32)>>,
}

fn hash_loop(rx: Receiver<Vec<u8>>, sizes: &[u32]) -> Tally {
    let mut tally = Tally {
        zero: vec![0; sizes.len()],
        unique: vec![HashMap::new(); sizes.len()],
    };
    for data in rx {
        for (i, bs) in sizes.iter().enumerate() {
            for block in data.chunks(*bs as usize) {
                if is_all_zero(block) {
                    tally.zero[i] += block.len() as u64;
                } else {
                    let id = blake3::hash(block);
                    let key: [u8; 16] = id.as_bytes()[..16].try_into().expect("16 bytes");
                    tally.unique[i].entry(key).or_insert_with(|| {
                        let stored = compress::compress(COMPRESSION, block)
                            .map_or(block.len(), |frame| frame.len());
                        (block.len() as u32, stored as u32)
                    });
                }
            }
        }
    }
    tally
}

/// Receives the data of every source.
struct HashSink<'s> {
    tx: Sender<Vec<u8>>,
    sizes: &'s [u32],
    logical: u64,
    holes: u64,
    files: u64,
    pages: Vec<u64>,
}

impl BlockSink for HashSink<'_> {
    fn block(&mut self, data: Vec<u8>) -> Result<()> {
        self.logical += data.len() as u64;
        self.tx.send(data).map_err(|_| Error::Io {
            context: "analyzing".into(),
            source: std::io::Error::other("the hashers stopped"),
        })
    }

    fn hole(&mut self, bytes: u64) {
        self.logical += bytes;
        self.holes += bytes;
    }

    fn file(&mut self, size: u64) {
        self.files += 1;
        for (i, bs) in self.sizes.iter().enumerate() {
            self.pages[i] += map_pages(size.div_ceil(*bs as u64));
        }
    }
}

/// Checks candidate block sizes: powers of two from 4 KiB to 1 MiB.
fn check_sizes(sizes: &[u32]) -> Result<Vec<u32>> {
    if sizes.is_empty() {
        return Err(Error::InvalidInput("no block sizes to analyze".into()));
    }
    for bs in sizes {
        if !bs.is_power_of_two() || !(4096..=1 << 20).contains(bs) {
            return Err(Error::InvalidInput(format!(
                "block size {bs} is not a power of two from 4K to 1M"
            )));
        }
    }
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    Ok(sorted)
}

/// Reads `sources` (any form `import` takes) and reports, per block size, what a store of
/// that block size would hold. Nothing is written anywhere.
pub fn analyze(sources: &[PathBuf], block_sizes: &[u32]) -> Result<AnalyzeReport> {
    let started = Instant::now();
    let sizes = check_sizes(block_sizes)?;
    let opened = sources
        .iter()
        .map(|s| Source::open(s))
        .collect::<Result<Vec<_>>>()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = bounded::<Vec<u8>>(2 * threads);
    let sizes_ref = &sizes;
    let (sink, tallies) = std::thread::scope(|scope| {
        let hashers: Vec<_> = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                scope.spawn(move || hash_loop(rx, sizes_ref))
            })
            .collect();
        drop(rx);
        let mut sink = HashSink {
            tx,
            sizes: sizes_ref,
            logical: 0,
            holes: 0,
            files: 0,
            pages: vec![0; sizes_ref.len()],
        };
        let fed = feed_all(&opened, &mut sink, *sizes_ref.last().expect("checked"));
        let HashSink {
            tx,
            logical,
            holes,
            files,
            pages,
            ..
        } = sink;
        drop(tx);
        let tallies: Vec<Tally> = hashers
            .into_iter()
            .map(|h| h.join().expect("hasher does not panic"))
            .collect();
        fed.map(|()| ((logical, holes, files, pages), tallies))
    })?;
    let (logical, holes, files, pages) = sink;
    let mut figures = Vec::new();
    for (i, bs) in sizes.iter().enumerate() {
        let mut unique: HashMap<[u8; 16], (u32, u32)> = HashMap::new();
        let mut zero = holes;
        for tally in &tallies {
            zero += tally.zero[i];
            unique.extend(tally.unique[i].iter().map(|(k, v)| (*k, *v)));
        }
        let unique_bytes: u64 = unique.values().map(|v| v.0 as u64).sum();
        let compressed_bytes: u64 = unique.values().map(|v| v.1 as u64).sum();
        let unique_blocks = unique.len() as u64;
        let pack_index_bytes = unique_blocks * INDEX_ENTRY_BYTES;
        let block_map_bytes = pages[i] * PAGE_BYTES;
        figures.push(BlockSizeFigures {
            block_size: *bs,
            logical_bytes: logical,
            zero_bytes: zero,
            unique_blocks,
            unique_bytes,
            compressed_bytes,
            compression_ratio: if compressed_bytes == 0 {
                1.0
            } else {
                unique_bytes as f64 / compressed_bytes as f64
            },
            dedup_ratio: if unique_bytes == 0 {
                1.0
            } else {
                (logical - zero) as f64 / unique_bytes as f64
            },
            pack_index_bytes,
            block_map_bytes,
            estimated_index_bytes: pack_index_bytes + block_map_bytes,
        });
    }
    Ok(AnalyzeReport {
        sources: sources
            .iter()
            .zip(&opened)
            .map(|(spec, source)| AnalyzedSource {
                source: spec.display().to_string(),
                format: source.kind,
                layers: source.layer_count(),
            })
            .collect(),
        file_versions: files,
        logical_bytes: logical,
        block_sizes: figures,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn feed_all(sources: &[Source], sink: &mut HashSink<'_>, block_size: u32) -> Result<()> {
    let mut next_content = 0;
    for source in sources {
        for feeder in source.feeders() {
            let mut feed = LayerFeed {
                sink: Sink::Blocks(sink),
                next_content: &mut next_content,
                block_size: block_size as usize,
                entries: 0,
                diff_id: None,
            };
            feeder(&mut feed).map_err(|e| e.within(&source.describe()))?;
        }
    }
    Ok(())
}
