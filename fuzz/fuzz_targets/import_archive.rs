//! `tessera import FILE` of an arbitrary file: a docker save archive, an OCI layout packed as a
//! tar, or a layer tar, as the importer recognizes it. An error or an image, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tessera_tests::fuzz::import_archive(data));
