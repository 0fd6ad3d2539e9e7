//! Opening a store whose intent log holds arbitrary bytes (a torn or corrupt log): the store
//! opens with the records that pass their checksums, or fails with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tessera_tests::fuzz::intent_log(data));
