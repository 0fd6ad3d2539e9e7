//! One file per subcommand: its arguments (with an example in `--help`) and how it prints.

pub mod commit;
pub mod containers;
pub mod create;
pub mod daemon;
pub mod demo;
pub mod export;
pub mod images;
pub mod import;
pub mod init;
pub mod mount;
pub mod remove;
