//! One file per subcommand: its arguments (with an example in `--help`) and how it prints.

pub mod analyze;
pub mod bench;
pub mod commit;
pub mod completions;
pub mod containers;
pub mod create;
pub mod daemon;
pub mod demo;
pub mod diff;
pub mod export;
pub mod images;
pub mod import;
pub mod init;
pub mod maintenance;
pub mod mount;
pub mod remote;
pub mod remove;
pub mod snapshotter;
pub mod stats;
