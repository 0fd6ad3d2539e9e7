//! The S3 server of the remote tests: Ceph's RADOS Gateway brought up by
//! `scripts/s3-server.sh`, stopped on drop when this guard started it. A test that needs it
//! fails (never skips) when the script fails or when TESSERA_REQUIRE_MOUNT=1; it skips only
//! where Ceph is not installed and not required.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Remote, RemoteUrl};

pub(crate) struct S3Server {
    vars: Vec<(String, String)>,
    bucket: String,
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
    pub(crate) fn start() -> Option<S3Server> {
        let required = std::env::var("TESSERA_REQUIRE_MOUNT").as_deref() == Ok("1");
        let installed = Command::new("sh")
            .args(["-c", "command -v radosgw"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed && !required {
            eprintln!("skipped: radosgw is not installed (scripts/setup.sh installs it)");
            return None;
        }
        let started = std::time::Instant::now();
        let owned = run("start").trim() == "started";
        eprintln!(
            "s3 server ready after {:?} (started here: {owned})",
            started.elapsed()
        );
        let mut vars = Vec::new();
        for line in run("env").lines() {
            if let Some((key, value)) = line.trim_start_matches("export ").split_once('=') {
                vars.push((key.to_string(), value.to_string()));
            }
        }
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

    /// A remote under a prefix no other test (or earlier run) uses.
    pub(crate) fn fresh_remote(&self, name: &str) -> Remote {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let url: RemoteUrl = format!(
            "s3://{}/engine-tests/{}-{nanos}-{n}/{name}",
            self.bucket,
            std::process::id()
        )
        .parse()
        .unwrap();
        self.remote_at(&url)
    }

    /// A new client (with its own counters) for a remote.
    pub(crate) fn remote_at(&self, url: &RemoteUrl) -> Remote {
        Remote::connect_with(url, self.vars.clone()).unwrap()
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
