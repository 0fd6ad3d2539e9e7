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
    path: PathBuf,
    /// The temporary mount point, when the guard made it (removed after the unmount).
    _dir: Option<tempfile::TempDir>,
}

impl MountGuard {
    pub fn new(volume: Volume, config: MountConfig) -> MountGuard {
        let dir = tempfile::tempdir().expect("mount point");
        let mut guard = MountGuard::at(volume, dir.path(), config);
        guard._dir = Some(dir);
        guard
    }

    /// Mounts on an existing directory the caller keeps, so that a view can be unmounted and
    /// mounted again at the same place.
    pub fn at(volume: Volume, path: &Path, config: MountConfig) -> MountGuard {
        let mount = Mount::new(volume, path, config).expect("mount");
        MountGuard {
            mount: Some(mount),
            path: path.to_path_buf(),
            _dir: None,
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the mount.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Pushes the writes the kernel caches for the mount (writeback cache, shared mappings)
    /// to the volume's memory: a syncfs, as the mount's own writeback thread does.
    pub fn push_kernel_cache(&self) {
        let root = std::fs::File::open(self.path()).unwrap();
        rustix::fs::syncfs(&root).unwrap();
    }

    /// Unmounts now, reporting failure (Drop only logs).
    pub fn unmount(mut self) {
        if let Some(mount) = self.mount.take() {
            wait_until_idle(&self.path);
            mount.unmount().expect("unmount");
        }
    }
}

/// Unmounts the kernel side of a mount, retrying for up to 2 s while it is busy: a child
/// process that another test thread forks holds copies of all of this process's descriptors
/// (files on the mount among them) until its exec closes them. A mount that stays busy is left
/// for `Mount::unmount` to report.
fn wait_until_idle(path: &Path) {
    for _ in 0..100 {
        match rustix::mount::unmount(path, rustix::mount::UnmountFlags::empty()) {
            Err(rustix::io::Errno::BUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => return,
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Some(mount) = self.mount.take() {
            wait_until_idle(&self.path);
            if let Err(e) = mount.unmount() {
                eprintln!("unmounting {}: {e}; detaching", self.path.display());
                let _ = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH);
            }
        }
    }
}

/// Mounts container `c` of `t` (see [`crate::image_store`]) in the default mode.
pub fn mount(t: &crate::TempStore) -> MountGuard {
    MountGuard::new(t.open_container("c").unwrap(), MountConfig::default())
}

/// Unmounts (which must succeed: nothing left open) and mounts container `c` again.
pub fn remount(m: MountGuard, t: &crate::TempStore) -> MountGuard {
    m.unmount();
    mount(t)
}

/// The errno of a call that must fail.
pub fn errno<T: std::fmt::Debug, E: Into<std::io::Error>>(result: Result<T, E>) -> i32 {
    let e: std::io::Error = result.map_err(Into::into).expect_err("the call must fail");
    e.raw_os_error()
        .unwrap_or_else(|| panic!("no errno in {e}"))
}
