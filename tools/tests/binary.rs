//! The built `tessera` binary starts and describes itself. Also makes `cargo test` build the
//! binary (a package's binaries are built for its integration tests), which the CLI tests of
//! `tests/tests/cli_mounted.rs` run from `target/<profile>/tessera`.

use std::process::Command;

#[test]
fn the_binary_prints_its_version_and_help() {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let version = Command::new(bin).arg("--version").output().unwrap();
    assert!(version.status.success());
    let text = String::from_utf8(version.stdout).unwrap();
    assert!(text.starts_with("tessera "), "{text}");
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(
        String::from_utf8(help.stdout)
            .unwrap()
            .contains("Commands:")
    );
}
