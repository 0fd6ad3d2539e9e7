//! Shared code of the Tessera benches (`benches/benches/*.rs`): seeded data generators
//! ([`data`]), stores and images to measure against ([`fixture`]) and the summary tables the
//! benches print beside criterion's output ([`report`]). Everything here is setup or
//! reporting; none of it may run inside a measured loop. See `benches/README.md` for the
//! benches, the commands that run them and the numbers they gave.

pub mod data;
pub mod fixture;
pub mod report;

pub use fixture::{BenchStore, FileImage, Growth, Usage, bench_options, full_run};
