//! The README's first command: `tessera demo` runs its tour and reports what the two one-byte
//! edits cost — two blocks of block data, measured after they reached the packs (an fsync alone
//! leaves them in the intent log, where the demo once counted nothing).

#[allow(dead_code)]
mod cli;

use std::process::Command;
use std::time::Duration;

use cli::{output_within, tessera_bin};

#[test]
fn the_demo_reports_two_blocks_for_two_one_byte_edits() {
    let out = output_within(
        Command::new(tessera_bin()).args(["demo", "--large-file-mib", "16"]),
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("block data added by Tessera's copy-up: 128.0 KiB (2 blocks of 64.0 KiB)"),
        "{stdout}"
    );
    assert!(stdout.contains("== done"), "{stdout}");
}
