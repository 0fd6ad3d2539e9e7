//! The S3 server of the remote tests: Ceph's RADOS Gateway from `scripts/s3-server.sh`,
//! started once per test binary by the test that needs it and stopped on drop when that test
//! started it. Fails (never skips) when the script fails or TESSERA_REQUIRE_MOUNT=1; skips
//! only where Ceph is not installed and not required. (The engine's unit tests have their
//! own copy: they cannot depend on this crate.)

use std::path::PathBuf;
use std::process::Command;

pub struct S3Server {
    /// The AWS_* variables of its user, and TESSERA_S3_BUCKET.
    pub vars: Vec<(String, String)>,
    pub bucket: String,
    owned: bool,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/s3-server.sh")
}

fn run(arg: &str) -> String {
    let out = Command::new("bash")
        .arg(script())
        .arg(arg)
        .output()
        .unwrap_or_else(|e| panic!("running {} {arg}: {e}", script().display()));
    assert!(
        out.status.success(),
        "{} {arg} failed: {}",
        script().display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl S3Server {
    /// Starts the server (or finds it running); `None` only where it cannot run and is not
    /// required.
    pub fn start() -> Option<S3Server> {
        // Panics when missing and TESSERA_REQUIRE_MOUNT=1, else says the test is skipped.
        if !crate::have_program("/usr/bin/radosgw") {
            return None;
        }
        let started = std::time::Instant::now();
        let owned = run("start").trim() == "started";
        eprintln!(
            "s3 server ready after {:?} (started here: {owned})",
            started.elapsed()
        );
        let vars: Vec<(String, String)> = run("env")
            .lines()
            .filter_map(|line| line.trim_start_matches("export ").split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let bucket = vars
            .iter()
            .find(|(k, _)| k == "TESSERA_S3_BUCKET")
            .map(|(_, v)| v.clone())
            .expect("s3-server.sh env names the bucket");
        Some(S3Server {
            vars,
            bucket,
            owned,
        })
    }

    /// A remote URL under a prefix no other test (or earlier run) uses.
    pub fn fresh_url(&self, name: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!(
            "s3://{}/integration/{}-{nanos}/{name}",
            self.bucket,
            std::process::id()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if self.owned {
            let status = Command::new("bash").arg(script()).arg("stop").status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!("stopping the s3 server failed: {status:?}");
            }
        }
    }
}
