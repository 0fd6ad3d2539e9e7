//! `tessera`: the command line of the Tessera storage engine. A thin main: parse, pick the
//! store, run one subcommand (each in its own file under `cmd/`), print one clear line and
//! exit non-zero on error.

mod bench;
mod cmd;
mod output;
mod snapshotter;
mod stats_page;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Block-level, deduplicating, copy-on-write storage for container images.
#[derive(Parser)]
#[command(name = "tessera", version, about, propagate_version = true)]
pub struct Cli {
    /// The store directory (default: $TESSERA_STORE, else /var/lib/tessera as root, else
    /// ~/.local/share/tessera).
    #[arg(long, global = true, env = "TESSERA_STORE")]
    store: Option<PathBuf>,

    /// Log more (repeat for even more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Init(cmd::init::Args),
    Import(cmd::import::Args),
    Analyze(cmd::analyze::Args),
    Images(cmd::images::Args),
    #[command(visible_alias = "ps")]
    Containers(cmd::containers::Args),
    Create(cmd::create::Args),
    Update(cmd::create::UpdateArgs),
    Commit(cmd::commit::Args),
    Rm(cmd::remove::RmArgs),
    Rmi(cmd::remove::RmiArgs),
    Export(cmd::export::Args),
    Push(cmd::remote::PushArgs),
    Pull(cmd::remote::PullArgs),
    Mount(cmd::mount::Args),
    Umount(cmd::mount::UmountArgs),
    Daemon(cmd::daemon::Args),
    Diff(cmd::diff::Args),
    Stats(cmd::stats::Args),
    Snapshotter(cmd::snapshotter::Args),
    Gc(cmd::maintenance::GcArgs),
    Fsck(cmd::maintenance::FsckArgs),
    Completions(cmd::completions::Args),
    Demo(cmd::demo::Args),
    Bench(cmd::bench::Args),
}

fn default_store() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/tessera");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("tessera")
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // fuser logs a warning for every unmount it finds already done: keep it to errors.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
        .add_directive("fuser=error".parse().expect("a valid directive"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Output cut short by a pipe (`tessera stats | head`) ends the command as it ends Unix tools:
/// killed by SIGPIPE, silently. (Rust ignores SIGPIPE, so the write fails with EPIPE and
/// `println!` panics.)
fn die_of_sigpipe_on_a_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // `println!`'s panic, and clap_complete's, name the error.
        let message = info.to_string();
        if message.contains("Broken pipe") || message.contains("BrokenPipe") {
            let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
            std::process::exit(141);
        }
        report(info);
    }));
}

fn main() -> ExitCode {
    die_of_sigpipe_on_a_closed_stdout();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let store = cli.store.clone().unwrap_or_else(default_store);
    let result = match cli.command {
        Command::Init(args) => cmd::init::run(&store, args),
        Command::Import(args) => cmd::import::run(&store, args),
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Images(args) => cmd::images::run(&store, args),
        Command::Containers(args) => cmd::containers::run(&store, args),
        Command::Create(args) => cmd::create::run(&store, args),
        Command::Update(args) => cmd::create::update(&store, args),
        Command::Commit(args) => cmd::commit::run(&store, args),
        Command::Rm(args) => cmd::remove::run_rm(&store, args),
        Command::Rmi(args) => cmd::remove::run_rmi(&store, args),
        Command::Export(args) => cmd::export::run(&store, args),
        Command::Push(args) => cmd::remote::run_push(&store, args),
        Command::Pull(args) => cmd::remote::run_pull(&store, args),
        Command::Mount(args) => cmd::mount::run(&store, args),
        Command::Umount(args) => cmd::mount::run_umount(&store, args),
        Command::Daemon(args) => cmd::daemon::run(&store, args),
        Command::Diff(args) => cmd::diff::run(&store, args),
        Command::Stats(args) => cmd::stats::run(&store, args),
        Command::Snapshotter(args) => cmd::snapshotter::run(&store, args),
        Command::Gc(args) => cmd::maintenance::run_gc(&store, args),
        Command::Fsck(args) => cmd::maintenance::run_fsck(&store, args),
        Command::Completions(args) => cmd::completions::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Bench(args) => cmd::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera: {}", output::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
