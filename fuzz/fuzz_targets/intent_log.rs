//! Opening a store whose intent log holds arbitrary bytes (a torn or corrupt log): the store
//! opens with the records that pass their checksums, or fails with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::io::{OpenMode, SimIo, SimOptions, StorageIo};
use tessera::{Store, StoreOptions};

fuzz_target!(|data: &[u8]| {
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
});
