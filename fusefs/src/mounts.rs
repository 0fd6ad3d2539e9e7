//! The host side of mounts: finding Tessera mounts in /proc/self/mountinfo, clearing stale ones
//! left by a killed daemon ("transport endpoint is not connected"), and tuning the mount's
//! read-ahead.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A FUSE mount of tessera as /proc/self/mountinfo shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mountpoint: PathBuf,
    pub source: String,
    /// "major:minor" of the mount (for /sys/class/bdi).
    pub device: String,
}

/// Decodes the octal escapes (`\040` for a space) of mountinfo fields.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every tessera FUSE mount of this mount namespace.
pub fn list() -> io::Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let rest: Vec<&str> = right.split(' ').collect();
        // Mounted through fusermount the type is "fuse.tessera"; mounted by root with mount(2)
        // (fuser's own path) it is plain "fuse" and only the source (fsname) says tessera.
        let ours = rest.len() >= 2
            && (rest[0] == "fuse.tessera" || (rest[0] == "fuse" && rest[1].starts_with("tessera")));
        if fields.len() < 5 || !ours {
            continue;
        }
        out.push(MountInfo {
            mountpoint: PathBuf::from(unescape(fields[4])),
            source: unescape(rest[1]),
            device: fields[2].to_string(),
        });
    }
    out
}

/// Whether `path` is a tessera mount whose daemon is gone: ENOTCONN, or ECONNABORTED while
/// the kernel is still aborting the dead daemon's connection. Asked with statfs, which always
/// goes to the daemon (stat is answered from the attribute cache for its TTL after a kill).
pub fn is_stale(path: &Path) -> bool {
    match rustix::fs::statfs(path) {
        Err(e) => matches!(
            e,
            rustix::io::Errno::NOTCONN | rustix::io::Errno::CONNABORTED
        ),
        Ok(_) => false,
    }
}

/// Unmounts `path` — with umount(2) as root, through `fusermount3 -u` otherwise — refusing
/// (EBUSY) while files on it are open, unless `detach` (lazy: gone once the last is closed).
/// A path that is not mounted is not an error.
pub fn unmount(path: &Path, detach: bool) -> io::Result<()> {
    if !rustix::process::geteuid().is_root() {
        return crate::fusermount::unmount(path, detach);
    }
    let flags = if detach {
        rustix::mount::UnmountFlags::DETACH
    } else {
        rustix::mount::UnmountFlags::empty()
    };
    match rustix::mount::unmount(path, flags) {
        Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Detaches a stale tessera mount at `path`, so a new one can take its place. A live mount is
/// left alone (mounting over it then fails with a clear error).
pub fn clear_stale(path: &Path) -> io::Result<()> {
    let canonical = std::path::absolute(path)?;
    let mounted = list()?.into_iter().any(|m| m.mountpoint == canonical);
    if mounted && is_stale(&canonical) {
        tracing::warn!("clearing stale mount {}", canonical.display());
        unmount(&canonical, true)?;
    } else if mounted {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is already a tessera mount", canonical.display()),
        ));
    }
    Ok(())
}

/// Aborts the FUSE connection behind a mount point: every pending and future request of it
/// fails, and the serving threads see the device go away. Through fusectl when it is mounted,
/// else with a forced unmount (MNT_FORCE makes FUSE abort the connection even while the
/// mount is busy).
pub fn abort_connection(path: &Path) {
    let Some(id) = connection_of(path) else {
        return;
    };
    if !abort_connection_id(id) {
        match rustix::mount::unmount(path, rustix::mount::UnmountFlags::FORCE) {
            Ok(()) | Err(rustix::io::Errno::BUSY) => {}
            Err(e) => tracing::warn!(
                "cannot abort the FUSE connection of {}: {e}",
                path.display()
            ),
        }
    }
}

/// The FUSE connection of the mount at `path` (its device's minor number), which names it
/// under /sys/fs/fuse/connections.
pub fn connection_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| libc::minor(m.dev()) as u64)
}

/// Aborts FUSE connection `id` through fusectl (mounted here first when it is not, as root);
/// whether it could.
pub fn abort_connection_id(id: u64) -> bool {
    let dir = Path::new("/sys/fs/fuse/connections");
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
        && rustix::process::geteuid().is_root()
    {
        let mounted = rustix::mount::mount(
            "fusectl",
            dir,
            "fusectl",
            rustix::mount::MountFlags::empty(),
            None,
        );
        if let Err(e) = mounted {
            tracing::debug!("mounting fusectl at {}: {e}", dir.display());
        }
    }
    let abort = dir.join(id.to_string()).join("abort");
    match std::fs::write(&abort, "1") {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(
                "cannot abort the FUSE connection through {}: {e}",
                abort.display()
            );
            false
        }
    }
}

/// Raises the mount's read-ahead (the FUSE default of 128 KiB starves sequential reads).
pub fn raise_read_ahead(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let dev = meta.dev();
    let bdi = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    if let Err(e) = std::fs::write(&bdi, "4096") {
        tracing::debug!("cannot raise read-ahead ({bdi}): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tessera_mounts_in_mountinfo() {
        let text = "36 35 98:0 / /mnt1 rw,noatime master:1 - ext3 /dev/root rw\n\
                    99 30 0:52 / /tmp/with\\040space rw,nosuid - fuse.tessera tessera:c1 rw,user_id=0\n";
        let found = parse_mountinfo(text);
        assert_eq!(
            found,
            vec![MountInfo {
                mountpoint: PathBuf::from("/tmp/with space"),
                source: "tessera:c1".into(),
                device: "0:52".into(),
            }]
        );
    }

    #[test]
    fn finds_tessera_mounts_made_with_mount_syscall() {
        // Mounted by root through mount(2) the type is plain "fuse"; other FUSE file systems
        // are not ours.
        let text = "42 27 0:39 / /tmp/m1 rw,noatime - fuse tessera:c1 rw,user_id=0\n\
                    43 27 0:40 / /tmp/m2 rw,noatime - fuse tessera rw,user_id=0\n\
                    44 27 0:41 / /tmp/m3 rw - fuse sshfs#host: rw,user_id=0\n\
                    45 27 0:42 / /tmp/m4 rw - fuse.fuse-overlayfs fuse-overlayfs rw\n";
        let found: Vec<PathBuf> = parse_mountinfo(text)
            .into_iter()
            .map(|m| m.mountpoint)
            .collect();
        assert_eq!(found, [PathBuf::from("/tmp/m1"), PathBuf::from("/tmp/m2")]);
    }
}
