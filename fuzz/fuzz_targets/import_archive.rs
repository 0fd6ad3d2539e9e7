//! `tessera import FILE` of an arbitrary file: a docker save archive, an OCI layout packed as a
//! tar, or a layer tar, as the importer recognizes it. An error or an image, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::{Store, StoreOptions};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive.tar");
    std::fs::write(&archive, data).unwrap();
    let options = StoreOptions::default()
        .block_size(4096)
        .flush_interval(None)
        .blocks_in_memory(true);
    let store = Store::init(dir.path().join("store"), options).unwrap();
    let _ = store.import_source(&archive, Some("fuzz"));
});
