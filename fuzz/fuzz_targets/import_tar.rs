//! Importing a layer tar of arbitrary bytes (plain, or what looks like gzip or zstd): a clear
//! error and an unchanged store, or an image, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tessera_tests::fuzz::import_tar(data));
