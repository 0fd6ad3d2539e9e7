//! Real-mount fixtures: mounting a container's view through the kernel for a test, and
//! unmounting it in `Drop` even when the test fails. Mounting needs root and /dev/fuse; where
//! they are missing the test is skipped — unless `TESSERA_REQUIRE_MOUNT=1` (CI sets it), in
//! which case a test that cannot mount fails.

use std::path::{Path, PathBuf};

use tessera::Volume;
use tessera_fusefs::{Mount, MountConfig};

/// Whether this machine can mount FUSE file systems. Panics when it cannot and
/// `TESSERA_REQUIRE_MOUNT=1`; otherwise prints why the test is skipped.
pub fn can_mount() -> bool {
    let why = if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing")
    } else if !rustix::process::geteuid().is_root() {
        Some("not running as root")
    } else {
        None
    };
    match why {
        None => true,
        Some(reason) => {
            if std::env::var("TESSERA_REQUIRE_MOUNT").as_deref() == Ok("1") {
                panic!("TESSERA_REQUIRE_MOUNT=1 but this test cannot mount: {reason}");
            }
            eprintln!("skipping a real-mount test: {reason}");
            false
        }
    }
}

/// A mounted view on a temporary directory; unmounted when dropped.
pub struct MountGuard {
    mount: Option<Mount>,
    dir: tempfile::TempDir,
}

impl MountGuard {
    pub fn new(volume: Volume, config: MountConfig) -> MountGuard {
        let dir = tempfile::tempdir().expect("mount point");
        let mount = Mount::new(volume, dir.path(), config).expect("mount");
        MountGuard {
            mount: Some(mount),
            dir,
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the mount.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Unmounts now, reporting failure (Drop only logs).
    pub fn unmount(mut self) {
        if let Some(mount) = self.mount.take() {
            mount.unmount().expect("unmount");
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Some(mount) = self.mount.take() {
            if let Err(e) = mount.unmount() {
                eprintln!("unmounting {}: {e}; detaching", self.dir.path().display());
                let _ =
                    rustix::mount::unmount(self.dir.path(), rustix::mount::UnmountFlags::DETACH);
            }
        }
    }
}
