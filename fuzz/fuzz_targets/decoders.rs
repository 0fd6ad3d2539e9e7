//! Every decoder of an on-disk byte layout, on arbitrary bytes: an error, never a panic. The
//! first byte picks the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tessera_tests::fuzz::decoders(data));
