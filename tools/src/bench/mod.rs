//! `tessera bench`: the comparison harness. Each subcommand runs workloads on several storage
//! systems side by side — Tessera's FUSE mount (served in this process), kernel overlayfs on
//! the work disk, kernel overlayfs on a reflink-capable xfs loop device, fuse-overlayfs — and
//! prints one table per workload with the machine, the date and the load average, so a table
//! can go into the README as printed (`--json` for scripts).
//!
//! Everything a run creates (scratch directories, mounts, loop devices, fuse-overlayfs
//! daemons) is owned by a guard in [`guard`] and removed on success, error, panic or Ctrl-C.
//! This module holds the arguments shared by the subcommands and dispatches; it never
//! measures anything itself.

mod bed;
mod copy_up;
mod data;
mod fio;
mod guard;
mod machine;
mod memory;
mod mount;
mod mount_memory;
mod mount_sync;
mod probe;
mod report;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde::Serialize;

/// Measure Tessera against overlayfs and fuse-overlayfs (needs root).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    tessera bench copy-up --sizes 64M,1G --systems tessera,overlayfs\n  \
    tessera bench mount --runtime 5 --json > mount.json")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    CopyUp(copy_up::Args),
    Mount(mount::Args),
}

/// Options every bench subcommand takes.
#[derive(clap::Args, Clone)]
pub struct Common {
    /// Directory for scratch data (lower files, stores, upper dirs, the xfs image). Its
    /// filesystem is the one "overlayfs" uses for its upper layer. Default: $TMPDIR or /tmp.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Threads serving each Tessera FUSE mount (default: the mount's own default).
    #[arg(long)]
    fuse_threads: Option<usize>,
    /// Block size of the Tessera stores (default: the store default, 64K).
    #[arg(long, value_parser = parse_size)]
    block_size: Option<u64>,
    /// Compression of the Tessera stores: none, zstd or zstd:LEVEL (default: the store
    /// default, none).
    #[arg(long)]
    compression: Option<tessera::store::Compression>,
}

/// A storage system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// Tessera's FUSE mount, default mode (the kernel page cache is the only cache; writes
    /// wait in it, FUSE_WRITEBACK_CACHE).
    Tessera,
    /// Tessera's FUSE mount without the writeback cache: every write is a request.
    TesseraWriteThrough,
    /// Tessera's FUSE mount in share-memory mode (direct I/O, the daemon's block cache).
    TesseraShared,
    /// Kernel overlayfs, lower and upper on the work directory's filesystem.
    Overlayfs,
    /// Kernel overlayfs on xfs with reflink=1 (a loop device), lower and upper on it.
    OverlayfsReflink,
    /// fuse-overlayfs, lower and upper on the work directory's filesystem.
    FuseOverlayfs,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Tessera => "tessera",
            System::TesseraWriteThrough => "tessera-write-through",
            System::TesseraShared => "tessera-shared",
            System::Overlayfs => "overlayfs",
            System::OverlayfsReflink => "overlayfs-reflink",
            System::FuseOverlayfs => "fuse-overlayfs",
        }
    }

    pub fn is_tessera(self) -> bool {
        matches!(
            self,
            System::Tessera | System::TesseraWriteThrough | System::TesseraShared
        )
    }
}

/// The block cache a daemon started by `tessera mount` has (its `--cache-size` default).
pub const DAEMON_CACHE_BYTES: u64 = 1 << 30;

/// What a run needs from its environment, settled once at its start.
pub struct Env {
    pub json: bool,
    pub fuse_threads: Option<usize>,
    pub block_size: Option<u32>,
    pub compression: Option<tessera::store::Compression>,
    /// Scratch directory of this run (removed at the end).
    pub scratch: guard::Scratch,
    pub machine: machine::Machine,
}

impl Env {
    fn new(common: &Common) -> Result<Env> {
        anyhow::ensure!(
            rustix::process::geteuid().is_root(),
            "tessera bench needs root (it mounts overlayfs and FUSE and drops caches)"
        );
        guard::install_interrupt_handler()?;
        let work_dir = common.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&work_dir)
            .with_context(|| format!("creating {}", work_dir.display()))?;
        let work_dir = work_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", work_dir.display()))?;
        guard::sweep_stale(&work_dir);
        let scratch = guard::Scratch::new(&work_dir)?;
        let machine = machine::Machine::probe(&work_dir);
        Ok(Env {
            json: common.json,
            fuse_threads: common.fuse_threads,
            block_size: common.block_size.map(|b| b as u32),
            compression: common.compression,
            scratch,
            machine,
        })
    }

    /// How beds of this run are built: `block_cache_bytes` is the Tessera store's verified
    /// block cache (what a daemon gets from `--cache-size`).
    pub fn bed_options(&self, containers: usize, block_cache_bytes: u64) -> bed::BedOptions {
        bed::BedOptions {
            containers,
            block_cache_bytes: block_cache_bytes as usize,
            threads: self.fuse_threads,
            block_size: self.block_size,
            compression: self.compression,
        }
    }

    /// Prints a progress line (to stderr, unless JSON was asked for) and starts a spinner.
    pub fn step(&self, what: &str) -> crate::output::Spinner {
        tracing::info!("{what}");
        crate::output::Spinner::start(what)
    }
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::CopyUp(args) => {
            let env = Env::new(&args.common)?;
            let result = copy_up::run(&env, &args);
            finish(env, result)
        }
        Command::Mount(args) => {
            let env = Env::new(&args.common)?;
            let result = mount::run(&env, &args);
            finish(env, result)
        }
    }
}

/// Prints the report and removes the scratch directory, whatever happened.
fn finish(env: Env, result: Result<report::Report>) -> Result<()> {
    let report = result?;
    if env.json {
        crate::output::json(&report)?;
    } else {
        report.print();
    }
    drop(env);
    Ok(())
}

/// The command line as typed, for the report.
pub fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(p)
        })
        .unwrap_or_else(|| "tessera".into());
    std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses `64M,1G` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    tessera::store_dir::parse_size(text).ok_or_else(|| format!("not a size: {text}"))
}
