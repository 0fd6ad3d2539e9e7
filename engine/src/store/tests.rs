//! One conformance suite, run against every `BlockStore` implementation.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::pack_store::PackStoreConfig;
use super::*;
use crate::error::ErrorKind;
use crate::format::records::PackRecord;
use crate::ids::PackId;
use crate::io::{Io, OpenMode, SimIo, SimOptions, StorageIo};
use crate::layout::StoreLayout;

/// Four pages: a compressed block can take less room than a whole one.
const BS: usize = 16384;

/// What the suite needs from a backend besides the trait.
trait Harness {
    fn store(&self) -> &dyn BlockStore;
    /// What a metadata commit does: records a checkpoint and acknowledges it.
    fn commit(&mut self) {
        let checkpoint = self.store().sync().unwrap();
        self.record(&checkpoint);
        self.store().acknowledge(&checkpoint);
    }
    fn record(&mut self, _checkpoint: &Checkpoint) {}
    /// Reopens from durable state; `false` when the backend has none.
    fn reopen(&mut self) -> bool;
    /// Flips a byte of a stored block.
    fn corrupt(&self, id: &BlockId);
}

struct MemoryHarness(MemoryStore);

impl Harness for MemoryHarness {
    fn store(&self) -> &dyn BlockStore {
        &self.0
    }
    fn reopen(&mut self) -> bool {
        false
    }
    fn corrupt(&self, id: &BlockId) {
        self.0.corrupt_for_test(id);
    }
}

struct PackHarness {
    io: Arc<SimIo>,
    store: PackStore,
    records: BTreeMap<PackId, PackRecord>,
    config: PackStoreConfig,
}

fn layout() -> StoreLayout {
    StoreLayout::new(PathBuf::from("/store"))
}

fn config() -> PackStoreConfig {
    PackStoreConfig {
        block_size: BS as u32,
        pack_target: 16 * BS as u64,
        cache_bytes: 0,
        format_version: crate::format::FORMAT_VERSION,
        compression: Compression::None,
    }
}

impl PackHarness {
    fn new() -> PackHarness {
        PackHarness::with(config())
    }

    /// Blocks kept zstd-compressed where it pays (the suite's blocks compress).
    fn compressed() -> PackHarness {
        PackHarness::with(PackStoreConfig {
            compression: Compression::Zstd(3),
            ..config()
        })
    }

    fn with(config: PackStoreConfig) -> PackHarness {
        let io = SimIo::new(SimOptions::default());
        let records = BTreeMap::new();
        let store = PackStore::open(io.clone() as Io, layout(), config.clone(), &records).unwrap();
        PackHarness {
            io,
            store,
            records,
            config,
        }
    }
}

/// What a metadata commit records of a checkpoint: the packs' new records, none of the
/// retired ones.
fn record_checkpoint(records: &mut BTreeMap<PackId, PackRecord>, checkpoint: &Checkpoint) {
    records.extend(checkpoint.packs.clone());
    records.retain(|id, _| !checkpoint.retired.contains(id));
}

impl Harness for PackHarness {
    fn store(&self) -> &dyn BlockStore {
        &self.store
    }
    fn record(&mut self, checkpoint: &Checkpoint) {
        record_checkpoint(&mut self.records, checkpoint);
    }
    fn reopen(&mut self) -> bool {
        self.commit();
        self.store = PackStore::open(
            self.io.clone() as Io,
            layout(),
            self.config.clone(),
            &self.records,
        )
        .unwrap();
        true
    }
    fn corrupt(&self, id: &BlockId) {
        let location = self
            .store
            .locations()
            .unwrap()
            .into_iter()
            .find(|(found, _)| found == id)
            .unwrap()
            .1;
        let file = self
            .io
            .open(&layout().pack(location.pack), OpenMode::ReadWrite)
            .unwrap();
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, location.offset).unwrap();
        file.write_all_at(&[byte[0] ^ 0xff], location.offset)
            .unwrap();
    }
}

/// The remote-backed store over a real S3 server. A reopen is a move to a new host: every
/// block is uploaded, the local packs are deleted, and the store opens again with the remote
/// indexes it kept, so what the suite reads after a reopen comes over the network.
struct RemoteHarness {
    dir: tempfile::TempDir,
    remote: Remote,
    store: Option<RemoteStore>,
    records: BTreeMap<PackId, PackRecord>,
}

impl RemoteHarness {
    fn new(server: &remote::test_server::S3Server, test: &str) -> RemoteHarness {
        let dir = tempfile::tempdir().unwrap();
        let remote = server.fresh_remote(test);
        let store = remote::tests::open(dir.path(), &remote, &BTreeMap::new());
        RemoteHarness {
            dir,
            remote,
            store: Some(store),
            records: BTreeMap::new(),
        }
    }
}

impl Harness for RemoteHarness {
    fn store(&self) -> &dyn BlockStore {
        self.store.as_ref().unwrap()
    }
    fn record(&mut self, checkpoint: &Checkpoint) {
        record_checkpoint(&mut self.records, checkpoint);
    }
    fn reopen(&mut self) -> bool {
        self.commit();
        let store = self.store.take().unwrap();
        let ids: Vec<BlockId> = store
            .locations()
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        store.upload(&ids).unwrap();
        drop(store);
        std::fs::remove_dir_all(self.dir.path().join("packs")).unwrap();
        self.records.clear();
        let store = remote::tests::open(self.dir.path(), &self.remote, &self.records);
        assert!(store.locations().unwrap().is_empty());
        self.store = Some(store);
        true
    }
    fn corrupt(&self, id: &BlockId) {
        let location = self
            .store()
            .locations()
            .unwrap()
            .into_iter()
            .find(|(found, _)| found == id)
            .expect("the suite corrupts blocks held locally")
            .1;
        let path = StoreLayout::new(self.dir.path()).pack(location.pack);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut byte = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut byte, location.offset).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[byte[0] ^ 0xff], location.offset)
            .unwrap();
    }
}

fn block(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) as u8 | 1)
        .collect()
}

fn put_one(store: &dyn BlockStore, data: &[u8]) -> (BlockId, u64) {
    let id = BlockId::of(data);
    (id, store.put(&[(id, data)]).unwrap())
}

fn read(store: &dyn BlockStore, id: &BlockId) -> Vec<u8> {
    let mut out = vec![0u8; store.block_size()];
    let n = store.get(id, &mut out).unwrap();
    out.truncate(n);
    out
}

fn round_trips_blocks_of_every_length(h: &mut dyn Harness) {
    for (seed, len) in [(1, BS), (2, 1), (3, 100), (4, BS - 1)] {
        let data = block(seed, len);
        let (id, added) = put_one(h.store(), &data);
        assert_eq!(added, len as u64);
        assert!(h.store().contains(&id).unwrap());
        assert_eq!(read(h.store(), &id), data);
    }
}

fn stores_each_block_once(h: &mut dyn Harness) {
    let data = block(9, BS);
    let id = BlockId::of(&data);
    assert_eq!(
        h.store().put(&[(id, &data), (id, &data)]).unwrap(),
        BS as u64
    );
    assert_eq!(h.store().put(&[(id, &data)]).unwrap(), 0);
    assert_eq!(h.store().stats().blocks, 1);
}

fn never_stores_the_zero_block(h: &mut dyn Harness) {
    let zeros = vec![0u8; BS];
    assert_eq!(h.store().put(&[(BlockId::ZERO, &zeros)]).unwrap(), 0);
    assert!(h.store().contains(&BlockId::ZERO).unwrap());
    assert_eq!(h.store().stats().blocks, 0);
}

fn refuses_unknown_and_oversized_blocks(h: &mut dyn Harness) {
    let mut out = vec![0u8; BS];
    let err = h.store().get(&BlockId::of(b"never"), &mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    let big = block(5, BS + 1);
    assert!(h.store().put(&[(BlockId::of(&big), &big)]).is_err());
}

fn detects_corruption(h: &mut dyn Harness) {
    let data = block(11, BS);
    let (id, _) = put_one(h.store(), &data);
    h.corrupt(&id);
    let mut out = vec![0u8; BS];
    let err = h.store().get(&id, &mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

fn keeps_synced_blocks_across_reopen(h: &mut dyn Harness) {
    // Enough blocks to seal several packs (64 KiB target, 4 KiB blocks).
    let blocks: Vec<Vec<u8>> = (0..60).map(|i| block(100 + i, BS)).collect();
    for data in &blocks {
        put_one(h.store(), data);
    }
    if !h.reopen() {
        return;
    }
    for data in &blocks {
        assert_eq!(read(h.store(), &BlockId::of(data)), *data);
    }
    // Appending after a reopen keeps working, and dedups against what was there.
    assert_eq!(put_one(h.store(), &blocks[0]).1, 0);
    let (id, added) = put_one(h.store(), &block(999, 10));
    assert_eq!(added, 10);
    assert!(h.reopen());
    assert_eq!(read(h.store(), &id), block(999, 10));
}

/// Settled means the next sync has nothing to add: a durable backend is not settled while a
/// put or a checkpoint waits, and every backend is settled once a commit took its checkpoint.
fn is_settled_only_when_a_commit_took_everything(h: &mut dyn Harness) {
    h.commit();
    assert!(h.store().is_settled());
    put_one(h.store(), &block(31, BS));
    let durable = h.reopen();
    put_one(h.store(), &block(32, BS));
    if durable {
        assert!(!h.store().is_settled(), "a put waits for a sync");
        let checkpoint = h.store().sync().unwrap();
        assert!(
            !h.store().is_settled(),
            "the checkpoint is not recorded yet"
        );
        h.record(&checkpoint);
        h.store().acknowledge(&checkpoint);
    } else {
        h.commit();
    }
    assert!(h.store().is_settled());
}

fn reads_many_blocks_in_one_call(h: &mut dyn Harness) {
    let blocks: Vec<Vec<u8>> = (0..8).map(|i| block(200 + i, BS - i as usize)).collect();
    for data in &blocks {
        put_one(h.store(), data);
    }
    for use_cache in [false, true] {
        let mut outs = vec![vec![9u8; 100]; blocks.len()];
        let mut reads: Vec<BlockRead<'_>> = outs
            .iter_mut()
            .enumerate()
            .map(|(i, dst)| BlockRead {
                id: BlockId::of(&blocks[i]),
                dst: &mut dst[..],
                skip: BS - 50 - i * 3,
            })
            .collect();
        // Backwards, so a backend that batches has to sort.
        reads.reverse();
        h.store().read_blocks(&mut reads, use_cache).unwrap();
        for (i, out) in outs.iter().enumerate() {
            let skip = BS - 50 - i * 3;
            let mut want = blocks[i][skip.min(blocks[i].len())..].to_vec();
            want.resize(100, 0);
            assert_eq!(*out, want, "block {i}");
        }
    }
}

fn staged_blocks_appear_only_when_adopted(h: &mut dyn Harness) {
    let data = block(300, BS);
    let id = BlockId::of(&data);
    {
        let mut staging = h.store().stage().unwrap();
        assert_eq!(staging.put(&[(id, &data)]).unwrap(), BS as u64);
        assert!(staging.holds(&id));
        assert!(!h.store().contains(&id).unwrap());
    }
    assert!(!h.store().contains(&id).unwrap(), "dropped staging leaked");
    let mut staging = h.store().stage().unwrap();
    staging.put(&[(id, &data)]).unwrap();
    // A block the store holds already is not staged again.
    let (held, _) = put_one(h.store(), &block(301, BS));
    assert_eq!(staging.put(&[(held, &block(301, BS))]).unwrap(), 0);
    staging.adopt().unwrap();
    assert_eq!(read(h.store(), &id), data);
    if h.reopen() {
        assert_eq!(read(h.store(), &id), data);
    }
}

fn reclaims_what_is_not_live_and_keeps_what_is(h: &mut dyn Harness) {
    // Several packs (64 KiB target), half of each garbage.
    let blocks: Vec<Vec<u8>> = (0..60).map(|i| block(400 + i, BS)).collect();
    for data in &blocks {
        put_one(h.store(), data);
    }
    h.commit();
    // With everything live, a plan holds nothing and carrying it out changes nothing.
    let everything = h.store().plan_reclaim(&|_| true).unwrap();
    assert_eq!((everything.units.len(), everything.garbage_blocks), (0, 0));
    h.store().reclaim(&everything).unwrap();
    assert_eq!(h.store().stats().blocks, 60);
    let live: HashSet<BlockId> = blocks.iter().step_by(2).map(|d| BlockId::of(d)).collect();
    let is_live = |id: &BlockId| live.contains(id);
    let plan = h.store().plan_reclaim(&is_live).unwrap();
    assert_eq!(plan.garbage_blocks, 30);
    assert_eq!(plan.stored_blocks, 60);
    // A reader of live blocks never misses one while packs move.
    std::thread::scope(|scope| {
        let store = h.store();
        let reader = scope.spawn(|| {
            for _ in 0..20 {
                for data in blocks.iter().step_by(2) {
                    assert_eq!(read(store, &BlockId::of(data)), *data);
                }
            }
        });
        store.reclaim(&plan).unwrap();
        reader.join().unwrap();
    });
    h.commit();
    h.store().delete_retired().unwrap();
    let check = |h: &dyn Harness| {
        for (i, data) in blocks.iter().enumerate() {
            let id = BlockId::of(data);
            assert_eq!(h.store().contains(&id).unwrap(), i % 2 == 0, "block {i}");
            if i % 2 == 0 {
                assert_eq!(read(h.store(), &id), *data);
            }
        }
        assert_eq!(h.store().stats().blocks, 30);
    };
    check(h);
    if h.reopen() {
        check(h);
        // Nothing left to reclaim.
        let plan = h.store().plan_reclaim(&is_live).unwrap();
        assert_eq!((plan.garbage_blocks, plan.units.len()), (0, 0));
    }
}

macro_rules! conformance {
    ($($test:ident),*) => {
        /// The suite and the remote store's own tests over the one S3 server of this test
        /// binary (started here, stopped when the guard drops).
        #[test]
        fn remote_store_against_rgw() {
            let Some(server) = remote::test_server::S3Server::start() else {
                return;
            };
            $(
                eprintln!("remote: {}", stringify!($test));
                $test(&mut RemoteHarness::new(&server, stringify!($test)));
            )*
            remote::tests::reads_through_the_remote_and_keeps_what_it_fetched(&server);
            remote::tests::small_blocks_bring_their_neighbours(&server);
            remote::tests::reads_in_order_stream_ahead_in_the_background(&server);
            remote::tests::a_tampered_object_is_never_served_or_kept(&server);
            remote::tests::uploads_only_what_the_remote_lacks(&server);
            crate::transfer::tests::a_half_finished_push_is_invisible_and_resumed(&server);
            crate::transfer::tests::two_pushes_of_sharing_images_at_once(&server);
        }
        mod memory {
            use super::*;
            $(#[test] fn $test() { super::$test(&mut MemoryHarness(MemoryStore::new(BS))); })*
        }
        mod pack {
            use super::*;
            $(#[test] fn $test() { super::$test(&mut PackHarness::new()); })*
        }
        mod compressed {
            use super::*;
            $(#[test] fn $test() { super::$test(&mut PackHarness::compressed()); })*
        }
    };
}

conformance!(
    round_trips_blocks_of_every_length,
    stores_each_block_once,
    never_stores_the_zero_block,
    refuses_unknown_and_oversized_blocks,
    detects_corruption,
    keeps_synced_blocks_across_reopen,
    is_settled_only_when_a_commit_took_everything,
    reads_many_blocks_in_one_call,
    staged_blocks_appear_only_when_adopted,
    reclaims_what_is_not_live_and_keeps_what_is
);

/// A compressed store keeps compressible blocks in less room and the rest as they are, and
/// reads both back (from the open pack, then sealed, then after a reopen).
#[test]
fn a_compressed_store_keeps_what_compresses_smaller() {
    let mut h = PackHarness::compressed();
    let text = block(1, BS);
    let mut noise = vec![0u8; BS];
    blake3::Hasher::new()
        .update(b"noise")
        .finalize_xof()
        .fill(&mut noise);
    let (text_id, added) = put_one(&h.store, &text);
    assert_eq!(added, BS as u64, "put counts the block's own bytes");
    let (noise_id, _) = put_one(&h.store, &noise);
    let stored = |h: &PackHarness, id: BlockId| {
        h.store
            .locations()
            .unwrap()
            .into_iter()
            .find(|(found, _)| *found == id)
            .unwrap()
            .1
            .len as usize
    };
    assert!(stored(&h, text_id) <= BS / 8, "{}", stored(&h, text_id));
    assert_eq!(stored(&h, noise_id), BS);
    for round in 0..2 {
        assert_eq!(read(&h.store, &text_id), text, "round {round}");
        assert_eq!(read(&h.store, &noise_id), noise, "round {round}");
        let checkpoint = h.store.sync().unwrap();
        h.record(&checkpoint);
        assert!(h.reopen());
    }
    // The stats count what is stored: the compressed block's frame, the other whole.
    let stats = h.store.stats();
    assert_eq!(stats.block_bytes, (stored(&h, text_id) + BS) as u64);
}

/// A crash at any point of a reclamation leaves every live block readable after recovery.
#[test]
fn a_crash_during_reclamation_loses_no_live_block() {
    // Plain and compressed packs (the copies are compressed again as they are stored).
    for compressed in [false, true] {
        for cut in 1..40 {
            crash_during_reclamation(compressed, cut);
        }
    }
}

fn crash_during_reclamation(compressed: bool, cut: usize) {
    let mut h = match compressed {
        false => PackHarness::new(),
        true => PackHarness::compressed(),
    };
    let blocks: Vec<Vec<u8>> = (0..40).map(|i| block(500 + i, BS)).collect();
    for data in &blocks {
        put_one(&h.store, data);
    }
    h.commit();
    let live: HashSet<BlockId> = blocks.iter().step_by(3).map(|d| BlockId::of(d)).collect();
    let plan = h.store.plan_reclaim(&|id| live.contains(id)).unwrap();
    h.io.fail_after(cut as i64);
    let done = h
        .store
        .reclaim(&plan)
        .and_then(|_| h.store.sync())
        .map(|checkpoint| {
            h.record(&checkpoint);
            h.store.acknowledge(&checkpoint);
        })
        .and_then(|_| h.store.delete_retired());
    let io = h.io.crash(cut as u64);
    let store = PackStore::open(io.clone() as Io, layout(), h.config.clone(), &h.records).unwrap();
    for (id, data) in blocks.iter().map(|d| (BlockId::of(d), d)) {
        if !live.contains(&id) {
            continue;
        }
        let mut out = vec![0u8; BS];
        let n = store
            .get(&id, &mut out)
            .unwrap_or_else(|e| panic!("cut {cut}, compressed {compressed} ({done:?}): {e}"));
        assert_eq!(&out[..n], &data[..]);
    }
}

#[test]
fn unsynced_blocks_are_cut_back_after_a_crash() {
    let mut h = PackHarness::new();
    let kept = block(1, BS);
    put_one(&h.store, &kept);
    assert!(h.reopen());
    let lost = block(2, BS);
    put_one(&h.store, &lost);
    h.store.sync().unwrap(); // synced but never recorded by metadata
    let io = h.io.crash(3);
    let store = PackStore::open(io.clone() as Io, layout(), config(), &h.records).unwrap();
    assert_eq!(read(&store, &BlockId::of(&kept)), kept);
    assert!(!store.contains(&BlockId::of(&lost)).unwrap());
}

#[test]
fn a_missing_index_is_rebuilt_from_the_pack() {
    let mut h = PackHarness::new();
    let blocks: Vec<Vec<u8>> = (0..40).map(|i| block(i, BS)).collect();
    for data in &blocks {
        put_one(&h.store, data);
    }
    assert!(h.reopen());
    let sealed = h
        .records
        .iter()
        .find(|(_, r)| r.sealed)
        .map(|(id, _)| *id)
        .unwrap();
    h.io.remove_file(&layout().index(sealed)).unwrap();
    assert!(h.reopen());
    for data in &blocks {
        assert_eq!(read(&h.store, &BlockId::of(data)), *data);
    }
}

/// Regression: a seal cut short by an I/O error (the pack's sync or its index write) dropped
/// the open pack's writer while the open table still listed its blocks. A retried put then
/// skipped them as stored, the next pack replaced the table, and a sync recorded the old pack
/// at its old length: the blocks were lost in memory at once and on disk after a reopen.
#[test]
fn a_failed_seal_keeps_its_blocks() {
    for budget in 3..7 {
        let mut h = PackHarness::new();
        // 16 blocks and a segment header pass the 64 KiB target: this put seals.
        let blocks: Vec<Vec<u8>> = (0..16).map(|i| block(i, BS)).collect();
        let refs: Vec<(BlockId, &[u8])> = blocks
            .iter()
            .map(|d| (BlockId::of(d), d.as_slice()))
            .collect();
        h.io.fail_after(budget);
        assert!(h.store.put(&refs).is_err(), "budget {budget}: no failure");
        h.io.heal();
        h.store.put(&refs).unwrap();
        put_one(&h.store, &block(99, BS));
        for data in &blocks {
            assert_eq!(read(&h.store, &BlockId::of(data)), *data, "budget {budget}");
        }
        assert!(h.reopen());
        for data in &blocks {
            assert_eq!(read(&h.store, &BlockId::of(data)), *data, "budget {budget}");
        }
    }
}

/// A sealed pack cut short keeps serving what it still holds, and reclamation leaves it as it
/// is (it used to fail copying a block the cut took, so no garbage anywhere was reclaimed).
#[test]
fn reclamation_leaves_a_damaged_pack_alone() {
    let mut h = PackHarness::new();
    let blocks: Vec<Vec<u8>> = (0..40).map(|i| block(500 + i, BS)).collect();
    for data in &blocks {
        put_one(&h.store, data);
    }
    assert!(h.reopen());
    let ids: Vec<BlockId> = blocks.iter().map(|d| BlockId::of(d)).collect();
    let place = |h: &PackHarness, id: &BlockId| {
        h.store
            .locations()
            .unwrap()
            .into_iter()
            .find(|(found, _)| found == id)
            .unwrap()
            .1
    };
    // Cut the first pack just before its third block.
    let cut = place(&h, &ids[2]);
    let file =
        h.io.open(&layout().pack(cut.pack), OpenMode::ReadWrite)
            .unwrap();
    file.set_len(cut.offset).unwrap();
    file.sync_data().unwrap();
    h.store = PackStore::open(h.io.clone() as Io, layout(), config(), &h.records).unwrap();
    assert_eq!(h.store.damage().len(), 1, "{:?}", h.store.damage());
    // Everything but blocks 1 (in the damaged pack) and 30 (in another) is live.
    let garbage = [ids[1], ids[30]];
    let plan = h.store.plan_reclaim(&|id| !garbage.contains(id)).unwrap();
    assert!(plan.units.iter().all(|u| u.pack != cut.pack), "{plan:?}");
    h.store.reclaim(&plan).unwrap();
    h.commit();
    assert_eq!(read(&h.store, &ids[0]), blocks[0]);
    assert_eq!(read(&h.store, &ids[31]), blocks[31]);
    assert!(!h.store.contains(&ids[30]).unwrap() || plan.units.is_empty());
}

#[test]
fn a_read_of_part_of_a_block_keeps_the_verified_block_for_its_neighbours() {
    let mut h = PackHarness::new();
    let cached = PackStoreConfig {
        cache_bytes: 1 << 20,
        ..config()
    };
    h.store = PackStore::open(h.io.clone() as Io, layout(), cached, &h.records).unwrap();
    let (a, b, c) = (block(1, BS), block(2, BS), block(3, BS));
    let ids = [&a, &b, &c].map(|data| put_one(&h.store, data).0);
    let read_part = |h: &PackHarness, id: BlockId, skip: usize| {
        let mut out = vec![0u8; 100];
        let mut reads = [BlockRead {
            id,
            dst: &mut out,
            skip,
        }];
        h.store.read_blocks(&mut reads, false).map(|()| out)
    };
    // A whole block passes the cache by; part of one is read whole, verified and kept.
    let mut whole = vec![0u8; BS];
    h.store
        .read_blocks(
            &mut [BlockRead {
                id: ids[0],
                dst: &mut whole,
                skip: 0,
            }],
            false,
        )
        .unwrap();
    assert_eq!(whole, a);
    // Nothing kept, and no miss counted: the cache is not for whole-block reads.
    assert_eq!(h.store.cache_figures().unwrap(), (0, 0, 0));
    assert_eq!(read_part(&h, ids[1], 0).unwrap(), b[..100]);
    assert_eq!(h.store.cache_figures().unwrap(), (BS, 0, 1));
    // Its neighbour is served from memory: the damaged bytes on disk are not read again.
    h.corrupt(&ids[1]);
    assert_eq!(read_part(&h, ids[1], 200).unwrap(), b[200..300]);
    assert_eq!(h.store.cache_figures().unwrap(), (BS, 1, 1));
    // A block that fails verification is an error and is not kept.
    h.corrupt(&ids[2]);
    let err = read_part(&h, ids[2], 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(h.store.cache_figures().unwrap().0, BS);
}
