//! What a mount asks of the kernel at FUSE_INIT.

use fuser::{InitFlags, KernelConfig};

use crate::MountConfig;

/// Asks the kernel for what a mount configured as `mount` wants; whether the kernel leaves the
/// umask to the filesystem (FUSE_DONT_MASK).
pub(crate) fn negotiate(mount: &MountConfig, config: &mut KernelConfig) -> bool {
    let mut wanted = InitFlags::FUSE_PARALLEL_DIROPS
        | InitFlags::FUSE_DO_READDIRPLUS
        | InitFlags::FUSE_READDIRPLUS_AUTO
        | InitFlags::FUSE_ATOMIC_O_TRUNC
        | InitFlags::FUSE_CACHE_SYMLINKS
        | InitFlags::FUSE_ASYNC_DIO
        | InitFlags::FUSE_BIG_WRITES
        | InitFlags::FUSE_MAX_PAGES
        // The volume drops set-ID bits itself (see `set_id`), which spares the kernel a
        // GETATTR before every chown (a third of the requests of `chown -R`).
        | InitFlags::FUSE_HANDLE_KILLPRIV_V2
        // The kernel checks access against POSIX ACLs (stored as xattrs); the volume keeps
        // them and the mode in step and applies default ACLs, or else the umask.
        | InitFlags::FUSE_POSIX_ACL
        | InitFlags::FUSE_DONT_MASK;
    if mount.share_memory {
        wanted |= InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP;
    } else if mount.writeback_cache {
        wanted |= InitFlags::FUSE_WRITEBACK_CACHE;
    }
    let supported = config.capabilities() & wanted;
    if let Err(missing) = config.add_capabilities(supported) {
        tracing::warn!("kernel refused FUSE capabilities {missing:?}");
    }
    let _ = config.set_max_write(1 << 20);
    let _ = config.set_max_readahead(1 << 20);
    let _ = config.set_max_background(64);
    supported.contains(InitFlags::FUSE_DONT_MASK)
}
