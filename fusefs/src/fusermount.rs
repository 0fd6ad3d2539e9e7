//! Mounting without root, as libfuse does it: the setuid `fusermount3` opens /dev/fuse, mounts
//! it on the user's mount point (nosuid, nodev, and only options /etc/fuse.conf allows) and
//! hands the descriptor back over a socket (SCM_RIGHTS); `fusermount3 -u` unmounts. Root
//! mounts with mount(2) itself (fuser's path).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

/// The helper: `$FUSERMOUNT_PATH` (as fuser and libfuse honour it), else `fusermount3`.
fn program() -> std::ffi::OsString {
    std::env::var_os("FUSERMOUNT_PATH").unwrap_or_else(|| "fusermount3".into())
}

/// Mounts a FUSE file system at `mountpoint` with `options` (comma-separated, as `-o` takes
/// them) and returns the connection's /dev/fuse descriptor.
pub fn mount(mountpoint: &Path, options: &str) -> io::Result<OwnedFd> {
    let (ours, theirs) = UnixStream::pair()?;
    // The helper's end must survive exec (std makes every descriptor close-on-exec).
    rustix::io::fcntl_setfd(&theirs, rustix::io::FdFlags::empty())?;
    let child = Command::new(program())
        .arg("-o")
        .arg(options)
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running fusermount3: {e}")))?;
    drop(theirs);
    let received = receive_fd(&ours);
    let output = child.wait_with_output()?;
    match received {
        Ok(Some(fd)) => Ok(fd),
        Ok(None) | Err(_) => {
            let why = String::from_utf8_lossy(&output.stderr).trim().to_string();
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("fusermount3 did not mount ({}): {why}", output.status),
            ))
        }
    }
}

fn receive_fd(socket: &UnixStream) -> io::Result<Option<OwnedFd>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        socket,
        &mut [io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let fd = control.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    Ok(fd)
}

/// `fusermount3 -u`: refuses (EBUSY) while files on the mount are open, unless `lazy` (the
/// mount is detached then, and goes once the last is closed).
pub fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let mut command = Command::new(program());
    command.arg("-u").arg("-q");
    if lazy {
        command.arg("-z");
    }
    let output = command
        .arg("--")
        .arg(mountpoint)
        .stdin(Stdio::null())
        .output()?;
    let why = String::from_utf8_lossy(&output.stderr).trim().to_string();
    // Not mounted (any more): nothing to do, as umount(2)'s EINVAL.
    if output.status.success() || why.contains("not found") || why.contains("Invalid argument") {
        return Ok(());
    }
    let kind = if why.contains("busy") {
        io::ErrorKind::ResourceBusy
    } else {
        io::ErrorKind::Other
    };
    Err(io::Error::new(kind, format!("fusermount3 -u: {why}")))
}

/// The `-o` options of a mount through fusermount3.
pub fn options(fsname: &str, writable: bool, allow_other: bool) -> String {
    // fusermount3 splits on commas and takes backslash escapes.
    let fsname = fsname.replace('\\', "\\\\").replace(',', "\\,");
    let mut options = format!("fsname={fsname},subtype=tessera,default_permissions,noatime");
    options.push_str(if writable { ",rw" } else { ",ro" });
    if allow_other {
        options.push_str(",allow_other");
    }
    options
}
