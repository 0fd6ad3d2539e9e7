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

#[test]
fn output_cut_by_a_closed_pipe_ends_quietly_as_unix_tools_do() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let bin = env!("CARGO_BIN_EXE_tessera");
    // `tessera completions bash | head -c0`: the reader is gone before the first write, and
    // the script is larger than a pipe buffer, so the write fails with EPIPE.
    let mut child = Command::new(bin)
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
}
