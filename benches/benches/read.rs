//! Sequential read throughput through `Volume::read` of a 1 GiB file of an image, in 128 KiB
//! and 1 MiB chunks.
//!
//! Setup (not measured): an image holding one 1 GiB file of random data (every block stored,
//! no holes), written through a container and committed. Then the store is reopened twice:
//! - `warm`: with `block_cache_bytes` large enough for the whole file and the view reading
//!   through it (`Volume::set_cache_reads(true)`: the daemon's share-memory mode); one
//!   unmeasured pass fills the cache, the passes after it are measured;
//! - `cold`: without a block cache, so every block is an O_DIRECT read of its pack and a
//!   blake3 verification ("cold-ish": the guest page cache is bypassed; the host's may not be).
//!   Adjacent blocks of one pack are read with one direct read of up to 1 MiB.
//!
//! One warm iteration is one whole pass over the file; one cold iteration reads the next
//! quarter of it (256 MiB, windows rotating through the file), to keep the run short. A floor is printed with the summary to show
//! where cold time goes: blake3 of the same amount of data on one thread (each cold block is
//! verified).
//!
//! Target: >= 2 GB/s warm. Run: `cargo bench -p tessera-benches --bench read`.

use std::cell::Cell;
use std::hint::black_box;
use std::ops::Range;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use tessera::NodeId;
use tessera::volume::Volume;
use tessera_benches::report::{self, Spread};
use tessera_benches::{BenchStore, bench_options, data, fixture, full_run};

const FILE: &str = "data.bin";
const CHUNKS: [(&str, usize); 2] = [("128KiB", 128 << 10), ("1MiB", 1 << 20)];

/// The file read: 1 GiB (16 MiB in the quick pass of `cargo test --benches`).
fn file_size() -> u64 {
    if full_run() { 1 << 30 } else { 16 << 20 }
}

/// Reads `range` of the file front to back in `chunk`-byte reads; returns the bytes read.
fn pass(volume: &Volume, node: NodeId, range: Range<u64>, chunk: usize) -> u64 {
    let mut offset = range.start;
    while offset < range.end {
        let buf = volume.read(node, offset, chunk).expect("read");
        assert!(!buf.is_empty(), "short read at {offset}");
        offset += buf.len() as u64;
        black_box(buf);
    }
    offset - range.start
}

/// An open image view of the file.
struct Target {
    volume: Volume,
    node: NodeId,
    size: u64,
    /// Where the next windowed pass starts.
    next: Cell<u64>,
}

impl Target {
    /// Opens the image; `cached`: reads go through the store's block cache (share-memory mode,
    /// as the daemon's mount sets it).
    fn open(store: &BenchStore, image: &str, size: u64, cached: bool) -> Target {
        let volume = store.open_image(image).expect("opening the image");
        volume.set_cache_reads(cached);
        let attr = volume.resolve(FILE.as_bytes()).expect("resolve");
        assert_eq!(attr.size, size);
        // The bytes are the generator's (checked once, outside any measurement).
        let first = volume.read(attr.node, 0, data::CHUNK).expect("read");
        assert_eq!(first, data::random_chunk(data::seed::READ, 0, data::CHUNK));
        Target {
            volume,
            node: attr.node,
            size,
            next: Cell::new(0),
        }
    }

    /// Times one sequential read of `span` bytes: the whole file when `span` is its size,
    /// else the next window of that length (windows rotate through the file).
    fn timed_pass(&self, chunk: usize, span: u64, times: &mut Vec<Duration>) -> Duration {
        let start_at = self.next.get();
        self.next.set((start_at + span) % self.size);
        let range = start_at..start_at + span;
        let start = Instant::now();
        let n = pass(&self.volume, self.node, range, chunk);
        let time = start.elapsed();
        assert_eq!(n, span);
        times.push(time);
        time
    }
}

fn read(c: &mut Criterion) {
    let size = file_size();
    let mut store = BenchStore::new(bench_options());
    let whole = 0..size;
    let built = Instant::now();
    let image = fixture::build_file_image(
        &store,
        "read",
        FILE,
        size,
        data::seed::READ,
        std::slice::from_ref(&whole),
    );
    eprintln!(
        "setup: wrote the {} MiB image through a container in {:.1} s",
        size >> 20,
        built.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    let mut group = c.benchmark_group("read");
    group.sampling_mode(SamplingMode::Flat);
    for mode in ["warm", "cold"] {
        // A cold pass is slow: it reads a quarter of the file (rotating), to keep the run short.
        let span = if mode == "warm" { size } else { size / 4 };
        group.throughput(Throughput::Bytes(span));
        let cache = if mode == "warm" { size + size / 4 } else { 0 };
        store.reopen(bench_options().block_cache_bytes(cache as usize));
        let target = Target::open(&store, &image.image, size, mode == "warm");
        if mode == "warm" {
            pass(&target.volume, target.node, 0..size, 1 << 20);
            let (held, _, _) = store.block_cache_figures().expect("a block cache");
            assert!(
                held as u64 >= size,
                "the cache holds {held} bytes of {size}"
            );
        }
        for (label, chunk) in CHUNKS {
            let mut times = Vec::new();
            group.bench_function(BenchmarkId::new(mode, label), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| target.timed_pass(chunk, span, &mut times))
                        .sum()
                })
            });
            if times.is_empty() {
                continue;
            }
            let median = Spread::of(&times).median;
            let mbps = report::mb_per_s(span, median);
            let verdict = match mode {
                "warm" if mbps >= 2000.0 => "met (>= 2000 MB/s)",
                "warm" => "MISSED (>= 2000 MB/s)",
                _ => "-",
            };
            rows.push(vec![
                mode.to_string(),
                label.to_string(),
                format!("{} MiB", span >> 20),
                times.len().to_string(),
                report::ms(median),
                format!("{mbps:.0}"),
                verdict.to_string(),
            ]);
        }
    }
    group.finish();
    let packs = tessera::layout::StoreLayout::new(store.store_path()).packs_dir();
    let direct = direct_read_floor(&packs);
    drop(store);
    let floor = blake3_floor(size);
    report::print_table(
        &format!(
            "read: sequential reads of a {} MiB file via Volume::read, median pass",
            size >> 20
        ),
        &[
            "mode",
            "chunk",
            "pass",
            "passes",
            "median ms",
            "MB/s",
            "target",
        ],
        &rows,
    );
    eprintln!(
        "floors: blake3 of the same amount in 64 KiB blocks on one thread: {floor:.0} MB/s \
         (every cold block is verified); `dd bs=1M iflag=direct` of the store's packs: \
         {direct:.0} MB/s (the disk under the cold path)\n"
    );
}

/// Decimal MB/s of reading every pack under `dir` with `dd bs=1M iflag=direct` (O_DIRECT
/// sequential reads, as the cold path does, without any engine work).
fn direct_read_floor(dir: &std::path::Path) -> f64 {
    let mut bytes = 0;
    let mut time = Duration::ZERO;
    for entry in std::fs::read_dir(dir).expect("listing packs") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "pack") {
            continue;
        }
        bytes += std::fs::metadata(&path).expect("stat").len();
        let start = Instant::now();
        let status = std::process::Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["of=/dev/null", "bs=1M", "iflag=direct", "status=none"])
            .status()
            .expect("running dd");
        time += start.elapsed();
        assert!(status.success(), "dd failed: {status}");
    }
    report::mb_per_s(bytes, time)
}

/// Decimal MB/s of blake3 over `size` bytes in 64 KiB blocks on one thread (as the cold path
/// verifies each block it loads).
fn blake3_floor(size: u64) -> f64 {
    let block = data::random_bytes(data::seed::READ, 64 << 10);
    let blocks = size / block.len() as u64;
    let start = Instant::now();
    for _ in 0..blocks {
        black_box(blake3::hash(black_box(&block)));
    }
    report::mb_per_s(size, start.elapsed())
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = read
}
criterion_main!(benches);
