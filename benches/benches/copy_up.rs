//! Copy-up cost: the first 1-byte write (then fsync) into the middle of a file of an image, in a
//! fresh container, for files of 64 MiB, 1 GiB and 16 GiB at the default 64 KiB block size.
//!
//! Setup (not measured): an image holding one sparse file whose first and last MiB and the
//! blocks around its middle hold random data (so the middle block is a stored block, read and
//! modified, not a hole). Each iteration creates a container on the image, opens it and
//! resolves the file (not measured), then measures `write(1 byte at the middle)` + `fsync`.
//! Each iteration writes a different (offset, value) pair inside the middle block, so every
//! first write makes a block the store lacks: dedup never hides the cost. Around the measured
//! part it records the growth of the store's allocated bytes (`Store::disk_usage`) and of its
//! block data (`block_store_stats().block_bytes`), printed as a table after criterion's output.
//!
//! Targets: under 2 ms at every size; growth at most 2 blocks of data + 1 MiB in total.
//! Run: `cargo bench -p tessera-benches --bench copy_up`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tessera_benches::report::{self, Spread};
use tessera_benches::{BenchStore, FileImage, Growth, Usage, bench_options, data, fixture};

const FILE: &str = "big.bin";
/// Blocks written on each side of the middle block.
const AROUND: u64 = 4;
const SIZES: [(&str, u64); 3] = [("64MiB", 64 << 20), ("1GiB", 1 << 30), ("16GiB", 16 << 30)];
const TARGET: Duration = Duration::from_millis(2);

/// One measured first write.
struct Sample {
    time: Duration,
    /// Of `time`, the part in `write` (copy-up, block-map lookup, read-modify-write of the
    /// block); the rest is `fsync` (hash, pack append, block-map path, pack sync, metadata
    /// commit).
    write: Duration,
    growth: Growth,
}

/// A store holding the lower image of one size, and the samples taken against it.
struct Lower {
    store: BenchStore,
    image: FileImage,
    /// The 1 MiB of random data the middle block lies in (to pick bytes that differ).
    mid_chunk: Vec<u8>,
    next: u64,
    samples: Vec<Sample>,
}

impl Lower {
    fn build(size: u64) -> Lower {
        let store = BenchStore::new(bench_options());
        let bs = store.block_size() as u64;
        let extents = data::sparse_extents(size, bs, AROUND);
        let image =
            fixture::build_file_image(&store, "lower", FILE, size, data::seed::LOWER, &extents);
        let mid = image.size / 2;
        let mid_chunk =
            data::random_chunk(data::seed::LOWER, mid / data::CHUNK as u64, data::CHUNK);
        Lower {
            store,
            image,
            mid_chunk,
            next: 0,
            samples: Vec::new(),
        }
    }

    /// Where iteration `i` writes and what: a byte of the middle block, changed to a value it
    /// never had, a distinct (offset, value) pair per iteration.
    fn target(&self, i: u64) -> (u64, u8) {
        let bs = self.store.block_size() as u64;
        let mid = self.image.size / 2;
        let offset = mid + (i / 255) % bs;
        let original = self.mid_chunk[(offset % data::CHUNK as u64) as usize];
        (offset, original ^ (1 + (i % 255) as u8))
    }

    /// One first write into a fresh container; returns the measured time.
    fn first_write(&mut self) -> Duration {
        let i = self.next;
        self.next += 1;
        let name = format!("c{i}");
        let store = &self.store;
        store
            .create_container(&name, &self.image.image)
            .expect("container");
        let volume = store.open_container(&name).expect("open");
        let node = volume.resolve(FILE.as_bytes()).expect("resolve").node;
        let (offset, byte) = self.target(i);
        let before = Usage::of(store);

        let start = Instant::now();
        volume.write(node, offset, &[byte]).expect("write");
        let write = start.elapsed();
        volume.fsync(node).expect("fsync");
        let time = start.elapsed();

        let growth = Usage::of(store).growth_since(&before);
        drop(volume);
        store.remove_container(&name).expect("remove");
        self.samples.push(Sample {
            time,
            write,
            growth,
        });
        time
    }

    /// The summary of the samples taken (none when criterion's filter skipped this size).
    fn summary_row(&self, label: &str) -> Option<Vec<String>> {
        if self.samples.is_empty() {
            return None;
        }
        let times: Vec<Duration> = self.samples.iter().map(|s| s.time).collect();
        let writes: Vec<Duration> = self.samples.iter().map(|s| s.write).collect();
        let fsyncs: Vec<Duration> = self.samples.iter().map(|s| s.time - s.write).collect();
        let spread = Spread::of(&times);
        let n = self.samples.len() as i64;
        let alloc: Vec<i64> = self.samples.iter().map(|s| s.growth.allocated).collect();
        let data_max = self.samples.iter().map(|s| s.growth.block_bytes).max();
        let data_max = data_max.unwrap_or(0);
        let alloc_max = alloc.iter().copied().max().unwrap_or(0);
        let block = self.store.block_size() as i64;
        let met =
            spread.median < TARGET && data_max <= 2 * block && alloc_max <= 2 * block + (1 << 20);
        Some(vec![
            label.to_string(),
            spread.n.to_string(),
            report::ms(spread.median),
            report::ms(spread.p90),
            report::ms(spread.max),
            report::ms(Spread::of(&writes).median),
            report::ms(Spread::of(&fsyncs).median),
            report::kib(data_max),
            report::kib(alloc.iter().sum::<i64>() / n.max(1)),
            report::kib(alloc_max),
            if met { "met" } else { "MISSED" }.to_string(),
        ])
    }
}

fn copy_up(c: &mut Criterion) {
    let mut rows = Vec::new();
    let mut sync_floor = Vec::new();
    let mut group = c.benchmark_group("copy_up_first_write");
    for (label, size) in SIZES {
        let mut lower = Lower::build(size);
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| lower.first_write()).sum())
        });
        rows.extend(lower.summary_row(label));
        sync_floor.extend(fixture::sync_latency(lower.store.dir(), 20));
    }
    group.finish();
    report::print_table(
        "copy-up: first 1-byte write + fsync into the middle of a lower file (64 KiB blocks), \
         every iteration incl. warm-up; growth per write",
        &[
            "file",
            "writes",
            "median ms",
            "p90 ms",
            "max ms",
            "of which write ms",
            "of which fsync ms",
            "block data max KiB",
            "allocated mean KiB",
            "allocated max KiB",
            "target (<2 ms, <=2 blocks, <=2 blocks+1 MiB)",
        ],
        &rows,
    );
    eprintln!(
        "floor on this disk: 4 KiB append + fdatasync beside the store, median {} ms (n = {})\n",
        report::ms(Spread::of(&sync_floor).median),
        sync_floor.len()
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = copy_up
}
criterion_main!(benches);
