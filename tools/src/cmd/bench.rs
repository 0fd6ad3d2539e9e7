//! `tessera bench copy-up|mount`: the comparison harness; its arguments and workloads live in
//! `crate::bench` (one file per concern).

pub use crate::bench::{Args, run};
