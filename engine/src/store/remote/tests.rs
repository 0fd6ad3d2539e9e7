//! Tests of what only a remote-backed store does (the conformance suite covers the rest):
//! they need the S3 server, so `store::tests::remote_store_against_rgw` runs them with the
//! one server of this test binary.

use std::collections::BTreeMap;
use std::path::Path;

use super::test_server::S3Server;
use super::{Remote, RemoteStore, bucket};
use crate::error::ErrorKind;
use crate::format::records::PackRecord;
use crate::ids::{BlockId, PackId};
use crate::io::{Io, RealIo};
use crate::layout::StoreLayout;
use crate::store::BlockStore;
use crate::store::pack_store::PackStoreConfig;

const BS: usize = 16384;

pub(crate) fn config() -> PackStoreConfig {
    PackStoreConfig {
        block_size: BS as u32,
        pack_target: 16 * BS as u64,
        cache_bytes: 0,
        format_version: crate::format::FORMAT_VERSION,
        compression: crate::store::Compression::None,
    }
}

pub(crate) fn open(
    dir: &Path,
    remote: &Remote,
    records: &BTreeMap<PackId, PackRecord>,
) -> RemoteStore {
    open_with(dir, remote, records, config())
}

fn open_with(
    dir: &Path,
    remote: &Remote,
    records: &BTreeMap<PackId, PackRecord>,
    config: PackStoreConfig,
) -> RemoteStore {
    let layout = StoreLayout::new(dir);
    RemoteStore::open(RealIo::new() as Io, layout, config, records, remote.clone()).unwrap()
}

fn blocks(seed: u8, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| (0..BS).map(|j| (j * 31 + i * 7) as u8 ^ seed).collect())
        .collect()
}

fn put_all(store: &RemoteStore, data: &[Vec<u8>]) -> Vec<BlockId> {
    let ids: Vec<BlockId> = data.iter().map(|d| BlockId::of(d)).collect();
    let pairs: Vec<(BlockId, &[u8])> = ids.iter().zip(data).map(|(i, d)| (*i, &d[..])).collect();
    store.put(&pairs).unwrap();
    ids
}

fn read(store: &RemoteStore, id: &BlockId) -> Result<Vec<u8>, crate::error::Error> {
    let mut out = vec![0u8; BS];
    let n = store.get(id, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// Host B opens without a request, attaches what host A uploaded, fetches each block once
/// (verified) and serves it locally from then on (across a reopen too). Reads out of order
/// cost one ranged GET of exactly their block; reads in the pack's order read ahead, in a
/// growing window; a batch costs one GET per pack.
pub(crate) fn reads_through_the_remote_and_keeps_what_it_fetched(server: &S3Server) {
    let remote = server.fresh_remote("read-through");
    let a_dir = tempfile::tempdir().unwrap();
    let a = open(a_dir.path(), &remote, &BTreeMap::new());
    let data = blocks(1, 40);
    let ids = put_all(&a, &data);
    let report = a.upload(&ids).unwrap();
    assert_eq!((report.blocks, report.block_bytes), (40, 40 * BS as u64));
    assert!(report.packs >= 2, "64 KiB packs: {report:?}");
    let host = |name: &str| {
        let dir = tempfile::tempdir().unwrap();
        let remote = server.remote_at(remote.url());
        let store = open(dir.path(), &remote, &BTreeMap::new());
        assert_eq!(
            remote.figures().requests + remote.figures().lists,
            0,
            "{name}"
        );
        assert_eq!(store.packs().refresh().unwrap() as u64, report.packs);
        (dir, remote, store)
    };

    // Backwards: never in order, so no read-ahead.
    let (_c_dir, c_remote, c) = host("backwards");
    assert!(c.locations().unwrap().is_empty(), "nothing local yet");
    let before = c_remote.figures();
    for (id, want) in ids.iter().zip(&data).rev() {
        assert_eq!(read(&c, id).unwrap(), *want);
    }
    let after = c_remote.figures();
    assert_eq!(after.requests - before.requests, 40, "one GET per block");
    assert_eq!(after.bytes_fetched - before.bytes_fetched, 40 * BS as u64);

    // All at once: one GET per pack.
    let (_d_dir, d_remote, d) = host("batch");
    let before = d_remote.figures();
    let mut bufs = vec![vec![0u8; BS]; 40];
    let mut reads: Vec<crate::store::BlockRead<'_>> = ids
        .iter()
        .zip(bufs.iter_mut())
        .map(|(id, buf)| crate::store::BlockRead {
            id: *id,
            dst: &mut buf[..],
            skip: 0,
        })
        .collect();
    d.read_blocks(&mut reads, false).unwrap();
    drop(reads);
    assert!(bufs == data, "the batch read the right bytes");
    let after = d_remote.figures();
    assert_eq!(after.requests - before.requests, report.packs, "{after:?}");
    assert_eq!(after.blocks_fetched - before.blocks_fetched, 40);

    // In order, one block at a time: the window grows, far fewer GETs than blocks.
    let (b_dir, b_remote, b) = host("in order");
    let before = b_remote.figures();
    for (id, want) in ids.iter().zip(&data) {
        assert_eq!(read(&b, id).unwrap(), *want);
        assert_eq!(read(&b, id).unwrap(), *want, "second read, local");
    }
    let after = b_remote.figures();
    let requests = after.requests - before.requests;
    assert!(
        requests <= 3 * report.packs && requests < 12,
        "{requests} GETs"
    );
    assert_eq!(
        after.blocks_fetched - before.blocks_fetched,
        40,
        "each once"
    );
    let fetched = after.bytes_fetched - before.bytes_fetched;
    assert!(
        fetched >= 40 * BS as u64 && fetched < 40 * BS as u64 + report.packs * 8192,
        "{fetched} bytes: the blocks and the gaps between them"
    );
    // What was fetched is kept: recorded with the next commit, served after a reopen.
    let checkpoint = b.sync().unwrap();
    b.acknowledge(&checkpoint);
    drop(b);
    let b = open(b_dir.path(), &b_remote, &checkpoint.packs);
    assert_eq!(
        b.packs().attached_packs().len() as u64,
        report.packs,
        "indexes kept locally"
    );
    for (id, want) in ids.iter().zip(&data) {
        assert_eq!(read(&b, id).unwrap(), *want);
    }
    assert_eq!(
        b_remote.figures(),
        after,
        "the reopened store made no request"
    );
}

/// Reads through a pack in order have the blocks ahead fetched in the background, several
/// windows at once, before the reader asks: after two reads, the next MiB is local without
/// another read — but never past the end of the reader's file. Readers that race (two threads
/// in the same order) fetch no block twice.
pub(crate) fn reads_in_order_stream_ahead_in_the_background(server: &S3Server) {
    let remote = server.fresh_remote("stream");
    let a_dir = tempfile::tempdir().unwrap();
    let big_packs = PackStoreConfig {
        pack_target: 8 << 20,
        ..config()
    };
    let a = open_with(a_dir.path(), &remote, &BTreeMap::new(), big_packs.clone());
    let n = 200;
    let data = blocks(5, n);
    let ids = put_all(&a, &data);
    assert_eq!(a.upload(&ids).unwrap().packs, 1, "one pack");
    let host = || {
        let dir = tempfile::tempdir().unwrap();
        let remote = server.remote_at(remote.url());
        let store = open_with(dir.path(), &remote, &BTreeMap::new(), big_packs.clone());
        store.packs().refresh().unwrap();
        (dir, remote, store)
    };
    let (_b_dir, b_remote, b) = host();
    // In the pack's order (the upload's, not necessarily the list's).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|i| b.packs().known.read().unwrap()[&ids[*i]].entry.offset);
    let local = |store: &RemoteStore, i: usize| store.shared.local.contains(&ids[i]).unwrap();
    let before = b_remote.figures();
    for &i in &order[..2] {
        assert_eq!(read(&b, &ids[i]).unwrap(), data[i]);
    }
    b.wait_for_background();
    let after = b_remote.figures();
    // The second read continued the first: windows of 256 KiB (16 blocks) up to 1 MiB ahead.
    let ahead = (1 << 20) / BS;
    assert!(
        order[2..2 + ahead].iter().all(|&i| local(&b, i)),
        "the next MiB came without a read"
    );
    assert!(
        order[2 + ahead + 16..].iter().all(|&i| !local(&b, i)),
        "nothing far ahead"
    );
    assert_eq!(
        after.requests - before.requests,
        2 + 4,
        "two reads, four windows"
    );
    for &i in &order[2..] {
        assert_eq!(read(&b, &ids[i]).unwrap(), data[i]);
    }
    b.wait_for_background();
    let all = b_remote.figures();
    assert_eq!(
        all.blocks_fetched - before.blocks_fetched,
        n as u64,
        "each once"
    );
    assert!(all.requests - before.requests < 30, "{all:?}");

    // A reader of a file of 20 blocks: nothing past the file's end is fetched ahead.
    let (_d_dir, d_remote, d) = host();
    let before = d_remote.figures();
    for (k, &i) in order[..2].iter().enumerate() {
        let mut buf = vec![0u8; BS];
        let mut reads = [crate::store::BlockRead {
            id: ids[i],
            dst: &mut buf[..],
            skip: 0,
        }];
        d.read_file_blocks(&mut reads, false, 19 - k as u64)
            .unwrap();
        assert_eq!(buf, data[i]);
    }
    d.wait_for_background();
    assert!(
        order[2..20].iter().all(|&i| local(&d, i)),
        "the file's rest"
    );
    assert!(
        order[20..].iter().all(|&i| !local(&d, i)),
        "nothing after it"
    );
    let after = d_remote.figures();
    assert_eq!(after.blocks_fetched - before.blocks_fetched, 20);

    // Two readers at once, in the same order: every block arrives once.
    let (_c_dir, c_remote, c) = host();
    let before = c_remote.figures();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for &i in &order {
                    assert_eq!(read(&c, &ids[i]).unwrap(), data[i]);
                }
            });
        }
    });
    c.wait_for_background();
    let after = c_remote.figures();
    assert_eq!(
        after.blocks_fetched - before.blocks_fetched,
        n as u64,
        "each once"
    );
}

/// A short block (a small file) brings the blocks after it in its pack, read in any order:
/// twenty small files cost one GET, not twenty.
pub(crate) fn small_blocks_bring_their_neighbours(server: &S3Server) {
    let remote = server.fresh_remote("neighbours");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(a_dir.path(), &remote, &BTreeMap::new());
    let data: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i + 1; 1000 + i as usize]).collect();
    let ids = put_all(&a, &data);
    assert_eq!(a.upload(&ids).unwrap().packs, 1);
    let b_remote = server.remote_at(remote.url());
    let b = open(b_dir.path(), &b_remote, &BTreeMap::new());
    b.packs().refresh().unwrap();
    let before = b_remote.figures();
    // The first in the pack's order, then the rest backwards.
    let offset = |id: &BlockId| b.packs().known.read().unwrap()[id].entry.offset;
    let first = (0..ids.len()).min_by_key(|i| offset(&ids[*i])).unwrap();
    assert_eq!(read(&b, &ids[first]).unwrap(), data[first]);
    for (id, want) in ids.iter().zip(&data).rev() {
        assert_eq!(read(&b, id).unwrap(), *want);
    }
    let after = b_remote.figures();
    assert_eq!(after.requests - before.requests, 1, "{after:?}");
    assert_eq!(after.blocks_fetched - before.blocks_fetched, 20);
}

/// A block whose remote bytes were changed is neither served nor kept.
pub(crate) fn a_tampered_object_is_never_served_or_kept(server: &S3Server) {
    let remote = server.fresh_remote("tampered");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(a_dir.path(), &remote, &BTreeMap::new());
    let data = blocks(2, 3);
    let ids = put_all(&a, &data);
    a.upload(&ids).unwrap();
    let pack = a.packs().attached_packs().pop().unwrap();
    let key = bucket::pack_key(&pack);
    let mut bytes = remote.get(&key).unwrap();
    let at = a.packs().known.read().unwrap()[&ids[1]].entry;
    bytes[at.offset as usize + 100] ^= 0x5a;
    remote.put(&key, bytes).unwrap();

    let b = open(b_dir.path(), &remote, &BTreeMap::new());
    b.packs().refresh().unwrap();
    let err = read(&b, &ids[1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(&pack.0), "names the object: {err}");
    assert!(b.locations().unwrap().is_empty(), "nothing kept");
    assert!(read(&b, &ids[1]).is_err(), "still refused");
    // Its neighbours in the same object still read.
    assert_eq!(read(&b, &ids[0]).unwrap(), data[0]);
    assert_eq!(read(&b, &ids[2]).unwrap(), data[2]);
}

/// A second upload of an overlapping set sends only the new blocks; a store that attached
/// the remote's packs does not store remote blocks again.
pub(crate) fn uploads_only_what_the_remote_lacks(server: &S3Server) {
    let remote = server.fresh_remote("dedup");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(a_dir.path(), &remote, &BTreeMap::new());
    let first = blocks(3, 20);
    let first_ids = put_all(&a, &first);
    a.upload(&first_ids).unwrap();
    // Host B has the first set and five new blocks; it learns what the remote holds.
    let b = open(b_dir.path(), &remote, &BTreeMap::new());
    b.packs().refresh().unwrap();
    let mut second = first.clone();
    second.extend(blocks(4, 5));
    let second_ids: Vec<BlockId> = second.iter().map(|d| BlockId::of(d)).collect();
    let pairs: Vec<(BlockId, &[u8])> = second_ids
        .iter()
        .zip(&second)
        .map(|(i, d)| (*i, &d[..]))
        .collect();
    assert_eq!(
        b.put(&pairs).unwrap(),
        5 * BS as u64,
        "dedup against the remote"
    );
    let report = b.upload(&second_ids).unwrap();
    assert_eq!((report.blocks, report.block_bytes), (5, 5 * BS as u64));
    assert!(report.bytes_sent < 5 * BS as u64 + 16 * 1024, "{report:?}");
    assert_eq!(b.upload(&second_ids).unwrap().blocks, 0, "nothing twice");
}
