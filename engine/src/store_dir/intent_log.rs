//! The intent log: what makes an `fsync` cost one disk sync.
//!
//! A file's fsync normally stores its dirty blocks in a pack, syncs the pack and commits the
//! metadata (three syncs and a database transaction). When the fsync'd file's state is simple
//! (see `volume::log_fsync`), the fsync instead appends one record — the file's size, its
//! truncation point and every dirty byte range — to this log and `fdatasync`s it, and leaves
//! the dirty blocks in memory for the flusher to store and commit as usual.
//!
//! A record carries what changed in the file since its previous record (or since the flush
//! before it): the smallest size meanwhile, the size, and the changed blocks' written bytes;
//! and it names the committed state it applies over (block-map root and size). A flush of a
//! logged file records, in the metadata transaction that commits its data, the seq of the
//! file's newest record (`record_flushed`): those records are obsolete. On open, each node's
//! records that are not obsolete are replayed in order through the container's view and
//! committed, so replay never takes a file back in time, whatever order crashes, resets and
//! flushes came in.
//!
//! The log file is written over, never grown per record: a region ahead of the tail is filled
//! with zeros and synced beforehand, so a record's `fdatasync` carries no file-size change.
//! When every record is older than the last full sync (`Store::sync` flushes every view and
//! commits), the tail goes back to the start. Records end with a checksum; a scan stops at the
//! first record that does not check out (a torn tail, or the zeros ahead of it).

use std::sync::{Arc, Mutex};

use std::collections::HashMap;

use crate::error::{IoContext, Result};
use crate::ids::{LayerId, MapRoot, NodeId};
use crate::io::{Io, IoFile, OpenMode};
use crate::layout::StoreLayout;
use crate::meta::{MetaRead, Table, Writer};
use crate::tree::node::TimeNs;

const MAGIC: u32 = 0x5445_4c47; // "TELG"
/// A record of metadata changes (see `meta::logged`).
const MAGIC_META: u32 = 0x5445_4c4d; // "TELM"
/// Zeros are written this far ahead of the tail, in one go.
const PREPARE: u64 = 4 << 20;
/// Past this, fsync takes the ordinary path until the next full sync resets the log.
const MAX_LEN: u64 = 256 << 20;

/// One dirty byte range of a logged file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Range {
    Data { offset: u64, bytes: Vec<u8> },
    Zero { offset: u64, len: u64 },
}

/// What one fsync logged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub seq: u64,
    /// The run of the log it belongs to (assigned by `append`).
    pub run: u64,
    /// The container's writable layer when the record was made.
    pub layer: LayerId,
    pub node: NodeId,
    /// The committed state the record applies to.
    pub base: Base,
    /// Truncate to this first (the smallest size since the base)...
    pub min_size: u64,
    /// ...then to this, then write the ranges.
    pub size: u64,
    pub mtime: Option<TimeNs>,
    pub ranges: Vec<Range>,
}

/// Metadata changes (`meta::Unlogged`, encoded): every change made since the record of
/// changes before it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetaRecord {
    pub seq: u64,
    pub run: u64,
    pub changes: Vec<u8>,
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    Data(Record),
    Meta(MetaRecord),
}

impl Entry {
    pub fn seq(&self) -> u64 {
        match self {
            Entry::Data(r) => r.seq,
            Entry::Meta(m) => m.seq,
        }
    }

    fn run(&self) -> u64 {
        match self {
            Entry::Data(r) => r.run,
            Entry::Meta(m) => m.run,
        }
    }

    fn set(&mut self, seq: u64, run: u64) {
        match self {
            Entry::Data(r) => (r.seq, r.run) = (seq, run),
            Entry::Meta(m) => (m.seq, m.run) = (seq, run),
        }
    }
}

/// The committed state of a node's data a record applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Base {
    pub root: MapRoot,
    pub size: u64,
}

pub(crate) struct IntentLog {
    file: Arc<dyn IoFile>,
    state: Mutex<State>,
    /// Records appended since open.
    appended: std::sync::atomic::AtomicU64,
}

struct State {
    /// Records of one run sit back to back from offset 0; a run starts at every return to
    /// the start, and the scan reads only the first record's run.
    run: u64,
    tail: u64,
    /// Bytes from the start that hold zeros or records, synced.
    prepared: u64,
    next_seq: u64,
    /// Whether the ordinary path must be taken (the log is full, or a write failed).
    closed: bool,
}

impl IntentLog {
    /// Opens (creating) the log and reads every record that checks out. Seqs go on above
    /// `seen` (the highest seq the metadata names).
    pub fn open(io: &Io, layout: &StoreLayout, seen: u64) -> Result<(IntentLog, Vec<Entry>)> {
        let path = layout.root().join("intent.log");
        let file = io
            .open(&path, OpenMode::Create)
            .ctx(|| format!("opening {}", path.display()))?;
        // The name must survive a crash as surely as the records in it.
        io.sync_dir(layout.root())
            .ctx(|| format!("syncing {}", layout.root().display()))?;
        let len = file
            .len()
            .ctx(|| format!("reading length of {}", path.display()))?;
        let (records, zeros) = scan(&*file, len)?;
        let next_seq = records.iter().map(Entry::seq).max().unwrap_or(0).max(seen) + 1;
        let log = IntentLog {
            file,
            state: Mutex::new(State {
                // Above every run on disk, so no old record can pass for one of this run.
                run: records
                    .iter()
                    .map(Entry::run)
                    .max()
                    .unwrap_or(0)
                    .max(next_seq)
                    + 1,
                tail: 0,
                // Zeros from the start (no record found) are prepared already.
                prepared: if records.is_empty() { zeros } else { 0 },
                next_seq,
                closed: false,
            }),
            appended: Default::default(),
        };
        Ok((log, records))
    }

    /// Starts the log afresh (after replay committed what it held): zeros over the first
    /// records, synced, so an old record can never be read as part of the new run.
    pub fn restart(&self) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        if state.prepared < PREPARE {
            self.prepare(&mut state, 0, PREPARE)?;
        }
        state.tail = 0;
        Ok(())
    }

    /// Appends `entries` (their seqs are assigned here, in order) and syncs them: one write,
    /// one `fdatasync`. `Ok(false)`: the log is full or closed; nothing was written and the
    /// caller takes the ordinary path.
    pub fn append(&self, entries: &mut [Entry]) -> Result<bool> {
        let mut state = self.state.lock().unwrap();
        let mut bytes = Vec::new();
        for (i, entry) in entries.iter_mut().enumerate() {
            entry.set(state.next_seq + i as u64, state.run);
            bytes.extend_from_slice(&encode(entry));
        }
        let end = state.tail + bytes.len() as u64;
        if state.closed || end > MAX_LEN {
            return Ok(false);
        }
        if end > state.prepared {
            let from = state.prepared;
            if let Err(e) = self.prepare(&mut state, from, end + PREPARE) {
                state.closed = true;
                return Err(e);
            }
        }
        let written = self
            .file
            .write_all_at(&bytes, state.tail)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // What was written may be torn: no later record may follow it. It may also be
            // whole and read after a crash: its seqs are never given to another record.
            state.closed = true;
            state.next_seq += entries.len() as u64;
            return Err(crate::error::Error::io("writing the intent log", e));
        }
        state.tail = end;
        state.next_seq += entries.len() as u64;
        self.appended
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    /// fsyncs served by the log since open.
    pub fn appended(&self) -> u64 {
        self.appended.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The seq the next record gets: records below it exist now.
    pub fn next_seq(&self) -> u64 {
        self.state.lock().unwrap().next_seq
    }

    /// A full sync committed every record below `seq`: when no newer one exists, the log
    /// starts over from the beginning (and a log closed by an error opens again).
    pub fn covered(&self, seq: u64) {
        let mut state = self.state.lock().unwrap();
        if state.next_seq == seq && (state.tail > 0 || state.closed) {
            state.tail = 0;
            state.run += 1;
            state.closed = false;
        }
    }

    /// Writes zeros over `[from, to)` and syncs them; `prepared` becomes at least `to`.
    fn prepare(&self, state: &mut State, from: u64, to: u64) -> Result<()> {
        let zeros = vec![0u8; (to - from) as usize];
        self.file
            .write_all_at(&zeros, from)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| crate::error::Error::io("preparing the intent log", e))?;
        state.prepared = state.prepared.max(to);
        Ok(())
    }
}

/// Keys of `record_flushed` in the counters table: the prefix, the layer, the node.
const FLUSHED: &[u8] = b"intent-log-flushed/";

fn flushed_key(layer: LayerId, node: NodeId) -> Vec<u8> {
    let mut key = FLUSHED.to_vec();
    key.extend_from_slice(&layer.0.to_be_bytes());
    key.extend_from_slice(&node.0.to_be_bytes());
    key
}

/// Records, in the transaction that commits a flush of the node, that its records up to
/// `seq` are obsolete.
pub(crate) fn record_flushed(w: &mut Writer<'_>, layer: LayerId, node: NodeId, seq: u64) {
    w.put(
        Table::Counters,
        &flushed_key(layer, node),
        &seq.to_le_bytes(),
    );
}

/// Every node's obsolete-up-to seq.
pub(crate) fn flushed(r: &impl MetaRead) -> Result<HashMap<(LayerId, NodeId), u64>> {
    let mut out = HashMap::new();
    for (key, value) in r.scan(Table::Counters, FLUSHED)? {
        let ids = &key[FLUSHED.len()..];
        if ids.len() != 16 || value.len() != 8 {
            continue;
        }
        let layer = LayerId(u64::from_be_bytes(ids[..8].try_into().expect("8 bytes")));
        let node = NodeId(u64::from_be_bytes(ids[8..].try_into().expect("8 bytes")));
        out.insert(
            (layer, node),
            u64::from_le_bytes(value.try_into().expect("8 bytes")),
        );
    }
    Ok(out)
}

/// Forgets every `record_flushed` (once the log holds no record).
pub(crate) fn forget_flushed(w: &mut Writer<'_>) -> Result<()> {
    for (key, _) in w.scan(Table::Counters, FLUSHED)? {
        w.delete(Table::Counters, &key);
    }
    Ok(())
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn encode(entry: &Entry) -> Vec<u8> {
    let r = match entry {
        Entry::Data(r) => r,
        Entry::Meta(m) => {
            let mut out = Vec::with_capacity(40 + m.changes.len());
            out.extend_from_slice(&MAGIC_META.to_le_bytes());
            out.extend_from_slice(&[0u8; 4]);
            put_u64(&mut out, m.seq);
            put_u64(&mut out, m.run);
            out.extend_from_slice(&m.changes);
            return seal(out);
        }
    };
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // length, filled in below
    put_u64(&mut out, r.seq);
    put_u64(&mut out, r.run);
    put_u64(&mut out, r.layer.0);
    put_u64(&mut out, r.node.0);
    out.extend_from_slice(&r.base.root.0);
    put_u64(&mut out, r.base.size);
    put_u64(&mut out, r.min_size);
    put_u64(&mut out, r.size);
    put_u64(&mut out, r.mtime.map_or(u64::MAX, |t| t as u64));
    out.push(r.mtime.is_some() as u8);
    put_u64(&mut out, r.ranges.len() as u64);
    for range in &r.ranges {
        match range {
            Range::Data { offset, bytes } => {
                out.push(0);
                put_u64(&mut out, *offset);
                put_u64(&mut out, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
            Range::Zero { offset, len } => {
                out.push(1);
                put_u64(&mut out, *offset);
                put_u64(&mut out, *len);
            }
        }
    }
    seal(out)
}

/// Fills in the length of a record's bytes and appends its checksum.
fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let len = (out.len() + 16) as u32;
    out[4..8].copy_from_slice(&len.to_le_bytes());
    let sum = blake3::hash(&out);
    out.extend_from_slice(&sum.as_bytes()[..16]);
    out
}

/// Reads fields off a record's bytes; `None` when they run out.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
}

fn decode(body: &[u8]) -> Option<Entry> {
    let mut c = Cursor(&body[8..]);
    if body[..4] == MAGIC_META.to_le_bytes() {
        return Some(Entry::Meta(MetaRecord {
            seq: c.u64()?,
            run: c.u64()?,
            changes: c.0.to_vec(),
        }));
    }
    let seq = c.u64()?;
    let run = c.u64()?;
    let layer = LayerId(c.u64()?);
    let node = NodeId(c.u64()?);
    let root = MapRoot(c.take(32)?.try_into().ok()?);
    let base = Base {
        root,
        size: c.u64()?,
    };
    let min_size = c.u64()?;
    let size = c.u64()?;
    let mtime = c.u64()? as i64;
    let mtime = (c.u8()? == 1).then_some(mtime);
    let count = c.u64()?;
    let mut ranges = Vec::new();
    for _ in 0..count {
        let kind = c.u8()?;
        let offset = c.u64()?;
        let len = c.u64()?;
        ranges.push(match kind {
            0 => Range::Data {
                offset,
                bytes: c.take(usize::try_from(len).ok()?)?.to_vec(),
            },
            1 => Range::Zero { offset, len },
            _ => return None,
        });
    }
    Some(Entry::Data(Record {
        seq,
        run,
        layer,
        node,
        base,
        min_size,
        size,
        mtime,
        ranges,
    }))
}

/// Every record from the start up to the first that does not check out, in order, and how
/// many bytes from the start are zeros.
fn scan(file: &dyn IoFile, len: u64) -> Result<(Vec<Entry>, u64)> {
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| crate::error::Error::io("reading the intent log", e))?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let magic = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let rlen = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        if (magic != MAGIC && magic != MAGIC_META) || rlen < 24 || at + rlen > bytes.len() {
            break;
        }
        let (body, sum) = bytes[at..at + rlen].split_at(rlen - 16);
        if blake3::hash(body).as_bytes()[..16] != *sum {
            break;
        }
        match decode(body) {
            // A record of an older run that happens to follow this run's last one.
            Some(record)
                if records
                    .first()
                    .is_some_and(|f: &Entry| f.run() != record.run()) =>
            {
                break;
            }
            Some(record) => records.push(record),
            None => break,
        }
        at += rlen;
    }
    let zeros = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len()) as u64;
    Ok((records, zeros))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{SimIo, SimOptions, StorageIo};

    fn record(node: u64, fill: u8) -> Entry {
        Entry::Data(Record {
            seq: 0,
            run: 0,
            layer: LayerId(3),
            node: NodeId(node),
            base: Base {
                root: MapRoot([fill; 32]),
                size: 100,
            },
            min_size: 10,
            size: 9000,
            mtime: Some(123),
            ranges: vec![
                Range::Data {
                    offset: 4096,
                    bytes: vec![fill; 300],
                },
                Range::Zero {
                    offset: 0,
                    len: 4096,
                },
            ],
        })
    }

    fn layout() -> StoreLayout {
        StoreLayout::new(std::path::PathBuf::from("/store"))
    }

    /// Opens the log on `io`: the log and the entries it found.
    fn open(io: &Arc<SimIo>) -> (IntentLog, Vec<Entry>) {
        IntentLog::open(&(io.clone() as Io), &layout(), 0).unwrap()
    }

    /// A log on a fresh simulated disk.
    fn fresh() -> (Arc<SimIo>, IntentLog) {
        let io = SimIo::new(SimOptions::default());
        io.create_dir_all(&layout().packs_dir()).unwrap();
        let (log, found) = open(&io);
        assert!(found.is_empty());
        (io, log)
    }

    #[test]
    fn records_survive_a_crash_once_appended_and_a_torn_tail_is_ignored() {
        let (io, log) = fresh();
        let mut a = record(7, 1);
        let mut b = record(8, 2);
        assert!(log.append(std::slice::from_mut(&mut a)).unwrap());
        assert!(log.append(std::slice::from_mut(&mut b)).unwrap());
        assert_eq!((a.seq(), b.seq()), (1, 2));
        let crashed = io.crash(1);
        let (log, found) = open(&crashed);
        assert_eq!(found, vec![a.clone(), b.clone()]);
        assert_eq!(log.next_seq(), 3);
        // A torn third record: the scan stops before it.
        let mut c = record(9, 3);
        let bytes = encode(&{
            c.set(3, a.run());
            c.clone()
        });
        let at = (encode(&a).len() + encode(&b).len()) as u64;
        let file = crashed
            .open(&layout().root().join("intent.log"), OpenMode::ReadWrite)
            .unwrap();
        file.write_all_at(&bytes[..bytes.len() - 1], at).unwrap();
        let (_, found) = open(&crashed);
        assert_eq!(found, vec![a, b]);
    }

    #[test]
    fn a_covered_log_starts_over_and_old_records_are_not_read_after_a_restart() {
        let (io, log) = fresh();
        let (mut a, mut a2) = (record(7, 1), record(7, 4));
        log.append(std::slice::from_mut(&mut a)).unwrap();
        log.append(std::slice::from_mut(&mut a2)).unwrap();
        log.covered(log.next_seq());
        // As long as `a`: `a2` of the old run follows it, and must not be read as this run's.
        let mut b = record(8, 2);
        log.append(std::slice::from_mut(&mut b)).unwrap();
        assert_eq!(encode(&b).len(), encode(&a).len());
        let (log, found) = open(&io);
        assert_eq!(found, vec![b]);
        log.restart().unwrap();
        let (_, found) = open(&io);
        assert!(found.is_empty());
    }

    #[test]
    fn a_failed_append_closes_the_log_and_its_seq_is_never_reused() {
        let (io, log) = fresh();
        log.restart().unwrap();
        let mut a = record(7, 1);
        io.fail_after(1); // the write lands, its sync fails
        assert!(log.append(std::slice::from_mut(&mut a)).is_err());
        io.heal();
        let mut b = record(8, 2);
        assert!(!log.append(std::slice::from_mut(&mut b)).unwrap(), "closed");
        log.covered(log.next_seq());
        assert!(log.append(std::slice::from_mut(&mut b)).unwrap());
        assert!(b.seq() > a.seq(), "{} reused", a.seq());
    }

    #[test]
    fn a_record_of_metadata_changes_and_one_of_data_share_one_append() {
        let (io, log) = fresh();
        let mut entries = [
            Entry::Meta(MetaRecord {
                seq: 0,
                run: 0,
                changes: b"opaque to the log".to_vec(),
            }),
            record(7, 1),
        ];
        assert!(log.append(&mut entries).unwrap());
        assert_eq!((entries[0].seq(), entries[1].seq()), (1, 2));
        let (_, found) = open(&io.crash_losing_unsynced());
        assert_eq!(found, entries.to_vec());
    }
}
