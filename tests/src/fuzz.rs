//! The bodies of the cargo-fuzz targets (`fuzz/fuzz_targets/*`), here so that the corpora the
//! fuzzer built and every input that once broke a decoder (`fuzz/regressions/TARGET/`, and
//! the seeds) also run as ordinary tests in CI (`tests/tests/fuzz_regressions.rs`). Each
//! must end in an error or a result for any bytes — a panic is a finding.

use tessera::format::{node, pack, pack_index, records, store_header};
use tessera::io::{OpenMode, SimIo, SimOptions, StorageIo};
use tessera::{Store, StoreOptions};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/Cargo.toml` names them.
pub const TARGETS: [(&str, Target); 4] = [
    ("decoders", decoders),
    ("intent_log", intent_log),
    ("import_tar", import_tar),
    ("import_archive", import_archive),
];

/// Every decoder of an on-disk byte layout; the first byte picks the decoder.
pub fn decoders(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => drop(store_header::StoreHeader::decode(bytes)),
        1 => drop(pack::PackHeader::decode(bytes)),
        2 => drop(pack::decode_segment_header(bytes, 2, 65536)),
        3 => drop(node::decode(bytes)),
        4 => drop(records::Dirent::decode(bytes)),
        5 => drop(records::PackRecord::decode(bytes)),
        _ => {
            for verify in [false, true] {
                if let Ok(view) = pack_index::IndexView::parse(bytes, verify) {
                    for (id, _) in view.iter() {
                        let _ = view.find(&id);
                    }
                }
            }
        }
    }
}

/// Opening a store whose intent log holds the bytes (a torn or corrupt log): it opens with
/// the records that pass their checksums, or fails with an error.
pub fn intent_log(data: &[u8]) {
    let io = SimIo::new(SimOptions::default());
    let options = StoreOptions::default()
        .io(io.clone())
        .block_size(4096)
        .flush_interval(None);
    drop(Store::init("/store", options.clone()).unwrap());
    let log = io
        .open(std::path::Path::new("/store/intent.log"), OpenMode::Create)
        .unwrap();
    log.write_all_at(data, 0).unwrap();
    drop(log);
    let _ = Store::open("/store", options);
}

/// A layer tar of the bytes (plain, or what looks like gzip or zstd): an image, or an error
/// and an unchanged store.
pub fn import_tar(data: &[u8]) {
    let io = SimIo::new(SimOptions::default());
    let options = StoreOptions::default()
        .io(io)
        .block_size(4096)
        .flush_interval(None);
    let store = Store::init("/store", options).unwrap();
    let before = store.images().unwrap().len();
    match store.import_tar(data, "fuzz") {
        Ok(_) => assert_eq!(store.images().unwrap().len(), before + 1),
        Err(_) => assert_eq!(store.images().unwrap().len(), before),
    }
}

/// A file given to `tessera import`: docker save archive, OCI layout tar or layer tar, as
/// the importer recognizes it.
pub fn import_archive(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive.tar");
    std::fs::write(&archive, data).unwrap();
    let options = StoreOptions::default()
        .block_size(4096)
        .flush_interval(None)
        .blocks_in_memory(true);
    let store = Store::init(dir.path().join("store"), options).unwrap();
    let _ = store.import_source(&archive, Some("fuzz"));
}
