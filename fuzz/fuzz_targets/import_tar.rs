//! Importing a layer tar of arbitrary bytes (plain, or what looks like gzip or zstd): a clear
//! error and an unchanged store, or an image, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::io::{SimIo, SimOptions};
use tessera::{Store, StoreOptions};

fuzz_target!(|data: &[u8]| {
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
});
