//! `tessera completions`: shell completion scripts.

use anyhow::Result;
use clap::CommandFactory;

/// Print a shell completion script.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera completions bash > /etc/bash_completion.d/tessera")]
pub struct Args {
    shell: clap_complete::Shell,
}

pub fn run(args: Args) -> Result<()> {
    let mut command = crate::Cli::command();
    clap_complete::generate(args.shell, &mut command, "tessera", &mut std::io::stdout());
    Ok(())
}
