//! Store formats: a store made by the previous release (format version 1, before
//! compression) opens, reads and takes writes as it is; a zstd store compresses what pays and
//! reads it back; a default store does not compress.

use std::path::Path;
use std::process::Command;

use tessera::maintenance::FsckOptions;
use tessera::store::Compression;
use tessera::{Store, StoreOptions};
use tessera_tests::{TempStore, bytes, read_file, write_file};

/// The files of the image `old` in tests/fixtures/store-v1.tar.gz, a store made by the
/// release before compression (`tessera init`, `import layer.tar --name old`, `create box
/// --from old`).
fn old_text() -> Vec<u8> {
    (0..20000)
        .flat_map(|i| format!("line {i} of a compressible text file\n").into_bytes())
        .collect()
}

fn old_noise() -> Vec<u8> {
    let mut x: u64 = 1;
    (0..100_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

fn unpack_fixture(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store");
    std::fs::create_dir(&store).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/store-v1.tar.gz");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(&store)
        .status()
        .unwrap();
    assert!(status.success(), "unpacking {}", fixture.display());
    store
}

fn options() -> StoreOptions {
    StoreOptions::default().flush_interval(None)
}

fn pack_versions(store: &Path) -> Vec<u32> {
    let mut versions: Vec<u32> = std::fs::read_dir(store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .map(|p| {
            let header = std::fs::read(&p).unwrap();
            u32::from_le_bytes(header[8..12].try_into().unwrap())
        })
        .collect();
    versions.sort();
    versions
}

#[test]
fn a_version_1_store_opens_reads_and_stays_version_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = unpack_fixture(dir.path());
    let written = bytes(5, 300_000);
    {
        let store = Store::open(&path, options()).unwrap();
        assert_eq!(store.format(), (1, Compression::None));
        let image = store.open_image("old").unwrap();
        assert_eq!(
            read_file(&image, "etc/motd"),
            b"hello from a version 1 store\n"
        );
        assert_eq!(read_file(&image, "data/text"), old_text());
        assert_eq!(read_file(&image, "data/noise"), old_noise());
        let box_ = store.open_container("box").unwrap();
        write_file(&box_, "data/text2", &old_text());
        write_file(&box_, "new", &written);
        drop((image, box_));
        store.sync().unwrap();
        store.commit_container("box", "new-image").unwrap();
    }
    let store = Store::open(&path, options()).unwrap();
    assert_eq!(store.format(), (1, Compression::None));
    let image = store.open_image("new-image").unwrap();
    assert_eq!(read_file(&image, "data/text2"), old_text());
    assert_eq!(read_file(&image, "new"), written);
    assert_eq!(read_file(&image, "data/noise"), old_noise());
    let report = store.fsck(&FsckOptions { verify_data: true }).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    drop((image, store));
    // The packs it wrote are version 1 too: an older build still reads the store.
    let versions = pack_versions(&path);
    assert!(versions.len() >= 2, "{versions:?}");
    assert!(versions.iter().all(|v| *v == 1), "{versions:?}");
}

#[test]
fn a_new_store_compresses_what_pays_and_reads_it_back() {
    let text = old_text();
    let noise = bytes(9, 1 << 20);
    let t = TempStore::with_options(
        65536,
        TempStore::options(65536).compression("zstd".parse().unwrap()),
    );
    assert_eq!(t.format(), (2, Compression::Zstd(3)));
    let src = t.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("text"), &text).unwrap();
    std::fs::write(src.join("noise"), &noise).unwrap();
    t.import_path(&src, "img").unwrap();
    t.create_container("c", "img").unwrap();
    // Written through a container too (the flush path, not only an import's staging).
    let volume = t.open_container("c").unwrap();
    let more: Vec<u8> = text.iter().rev().copied().collect();
    write_file(&volume, "more", &more);
    drop(volume);
    t.sync().unwrap();
    let report = tessera::stats::stats(&t, &Default::default()).unwrap();
    let s = &report.store;
    assert_eq!(s.compression, "zstd:3");
    // The texts compress several times, the noise not at all: stored is the noise and a
    // fraction of the texts.
    let texts = (text.len() + more.len()) as u64;
    assert_eq!(s.referenced_bytes, texts + noise.len() as u64);
    assert!(s.stored_block_bytes >= noise.len() as u64, "{s:?}");
    assert!(
        s.stored_block_bytes < noise.len() as u64 + texts / 3,
        "{s:?}"
    );
    assert!(s.compression_ratio > 1.3, "{s:?}");
    let image = report.owners.iter().find(|o| o.name == "img").unwrap();
    assert!(image.stored_bytes < image.referenced_bytes, "{image:?}");
    drop(report);
    let mut t = t;
    t.reopen();
    let volume = t.open_container("c").unwrap();
    assert_eq!(read_file(&volume, "text"), text);
    assert_eq!(read_file(&volume, "noise"), noise);
    assert_eq!(read_file(&volume, "more"), more);
    drop(volume);
    let report = t.fsck(&FsckOptions { verify_data: true }).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn a_default_store_stores_blocks_as_they_are() {
    let t = TempStore::new(65536);
    assert_eq!(t.format(), (2, Compression::None));
    let src = t.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let text = old_text();
    std::fs::write(src.join("text"), &text).unwrap();
    t.import_path(&src, "img").unwrap();
    let report = tessera::stats::stats(&t, &Default::default()).unwrap();
    assert_eq!(report.store.compression, "none");
    assert_eq!(report.store.stored_block_bytes, text.len() as u64);
}

#[allow(dead_code)]
mod cli;

#[test]
fn init_takes_a_compression_and_stats_shows_it() {
    let cli = cli::Cli::bare();
    assert_eq!(
        cli.json(&["stats", "--json"])["store"]["compression"],
        "none"
    );
    std::fs::remove_dir_all(&cli.store).unwrap();
    cli.fails(&["init", "--compression", "lz4"], "compression \"lz4\"");
    assert!(!cli.store.join("tessera-store").exists());
    let out = cli.ok(&["init", "--compression", "zstd:5"]);
    assert!(out.contains("compression zstd:5"), "{out}");
    let src = cli.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("text"), old_text()).unwrap();
    cli.ok(&["import", src.to_str().unwrap(), "--name", "img"]);
    let stats = cli.json(&["stats", "--json"]);
    assert_eq!(stats["store"]["compression"], "zstd:5");
    let stored = stats["store"]["stored_block_bytes"].as_u64().unwrap();
    assert!(stored * 4 < old_text().len() as u64, "{stats}");
    let text = cli.ok(&["stats"]);
    assert!(text.contains("compression zstd:5"), "{text}");
}
