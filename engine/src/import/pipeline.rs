//! The import data path: the caller's thread reads files and cuts them into blocks; hasher
//! threads compute block ids (zero blocks cost nothing more); one writer thread stores the
//! blocks the store lacks into the import's staging packs. Channels are bounded, so memory
//! stays flat whatever the import's size.

use std::collections::BTreeMap;
use std::thread::{self, ScopedJoinHandle};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::error::{Error, Result};
use crate::ids::BlockId;
use crate::store::Staging;

/// Identifies one file's content within an import.
pub type ContentId = usize;

struct Job {
    content: ContentId,
    index: u64,
    data: Vec<u8>,
}

struct Hashed {
    content: ContentId,
    index: u64,
    id: BlockId,
    data: Vec<u8>,
}

/// Byte counts of an import's data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataFigures {
    /// Bytes of every regular file read.
    pub logical: u64,
    /// Of those, bytes in zero blocks (stored as holes).
    pub zero: u64,
    /// Bytes of blocks the store did not hold and now does.
    pub added: u64,
}

/// Feeds blocks in; `finish` returns every content's block ids.
pub struct Pipeline<'scope, 'env> {
    jobs: Option<Sender<Job>>,
    hashers: Vec<ScopedJoinHandle<'scope, ()>>,
    writer: Option<ScopedJoinHandle<'scope, WriterOutcome<'env>>>,
    logical: u64,
    zero: u64,
}

/// Block ids of each content, by block index (absent: zero block).
pub type Contents = BTreeMap<ContentId, BTreeMap<u64, BlockId>>;

/// What the writer thread hands back: the staging packs (dropped, so deleted, on failure).
type WriterOutcome<'env> = Result<(Contents, u64, Box<dyn Staging + 'env>)>;

impl<'scope, 'env> Pipeline<'scope, 'env> {
    pub fn start(
        scope: &'scope thread::Scope<'scope, 'env>,
        staging: Box<dyn Staging + 'env>,
    ) -> Self {
        let threads = thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(1);
        let (job_tx, job_rx) = bounded::<Job>(64);
        let (hashed_tx, hashed_rx) = bounded::<Hashed>(64);
        let hashers = (0..threads)
            .map(|_| {
                let rx = job_rx.clone();
                let tx = hashed_tx.clone();
                scope.spawn(move || hash_loop(rx, tx))
            })
            .collect();
        drop(hashed_tx);
        let writer = scope.spawn(move || write_loop(hashed_rx, staging));
        Pipeline {
            jobs: Some(job_tx),
            hashers,
            writer: Some(writer),
            logical: 0,
            zero: 0,
        }
    }

    /// Queues block `index` of `content`.
    pub fn block(&mut self, content: ContentId, index: u64, data: Vec<u8>) -> Result<()> {
        self.logical += data.len() as u64;
        if crate::ids::is_all_zero(&data) {
            self.zero += data.len() as u64;
            return Ok(());
        }
        let sender = self.jobs.as_ref().expect("pipeline is running");
        sender
            .send(Job {
                content,
                index,
                data,
            })
            .map_err(|_| Error::Io {
                context: "import pipeline".into(),
                source: std::io::Error::other("the block writer stopped"),
            })
    }

    /// Counts bytes of a hole skipped without reading (sparse source files).
    pub fn hole(&mut self, bytes: u64) {
        self.logical += bytes;
        self.zero += bytes;
    }

    /// Waits for every queued block; returns each content's block ids, the byte figures and
    /// the staging packs holding the new blocks.
    pub fn finish(mut self) -> Result<(Contents, DataFigures, Box<dyn Staging + 'env>)> {
        drop(self.jobs.take());
        for hasher in self.hashers.drain(..) {
            hasher.join().expect("hasher does not panic");
        }
        let (contents, added, staging) = self
            .writer
            .take()
            .expect("writer runs")
            .join()
            .expect("writer does not panic")?;
        let figures = DataFigures {
            logical: self.logical,
            zero: self.zero,
            added,
        };
        Ok((contents, figures, staging))
    }
}

fn hash_loop(rx: Receiver<Job>, tx: Sender<Hashed>) {
    for job in rx {
        let id = BlockId(*blake3::hash(&job.data).as_bytes());
        let hashed = Hashed {
            content: job.content,
            index: job.index,
            id,
            data: job.data,
        };
        if tx.send(hashed).is_err() {
            return;
        }
    }
}

/// Stores hashed blocks in batches of about 4 MiB.
fn write_loop(rx: Receiver<Hashed>, mut staging: Box<dyn Staging + '_>) -> WriterOutcome<'_> {
    const BATCH_BYTES: usize = 4 << 20;
    let mut contents = Contents::new();
    let mut batch: Vec<Hashed> = Vec::new();
    let mut batch_bytes = 0;
    let mut added = 0;
    let mut failure = None;
    let mut flush = |batch: &mut Vec<Hashed>, failure: &mut Option<Error>| {
        if failure.is_none() {
            let blocks: Vec<(BlockId, &[u8])> =
                batch.iter().map(|h| (h.id, h.data.as_slice())).collect();
            match staging.put(&blocks) {
                Ok(n) => added += n,
                Err(e) => *failure = Some(e),
            }
        }
        batch.clear();
    };
    for hashed in rx {
        contents
            .entry(hashed.content)
            .or_default()
            .insert(hashed.index, hashed.id);
        batch_bytes += hashed.data.len();
        batch.push(hashed);
        if batch_bytes >= BATCH_BYTES {
            flush(&mut batch, &mut failure);
            batch_bytes = 0;
        }
    }
    flush(&mut batch, &mut failure);
    match failure {
        Some(e) => Err(e),
        None => Ok((contents, added, staging)),
    }
}
