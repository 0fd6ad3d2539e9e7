//! Keeping idle mounts cheap in memory. fuser gives each FUSE serving thread a 16 MiB request
//! buffer, allocated zeroed. glibc's malloc raises its mmap threshold each time a large block
//! is freed; past that, such a buffer comes from a thread's heap arena, where `calloc` zeroes
//! it by hand — every page resident, 16 MiB per thread, ~23 MiB per idle mount (20 idle
//! mounts: 465 MiB anonymous memory). With the threshold fixed at 1 MiB the buffers stay
//! mmap'd, fresh zero pages resident only as far as requests fill them (20 idle mounts: 4 MiB).
//!
//! glibc takes the setting from the environment at startup, so the daemon re-executes itself
//! once with it set (same pid, same arguments) rather than calling `mallopt` (no `unsafe`
//! here). Other C libraries ignore the variable.

use std::os::unix::process::CommandExt;

/// The variable glibc reads, and the threshold (bytes).
pub const VAR: &str = "MALLOC_MMAP_THRESHOLD_";
pub const THRESHOLD: &str = "1048576";

/// Re-executes this process with the threshold set, unless it is set already. Returns only
/// when it is set, or when the re-execution failed (then the daemon runs as it is).
pub fn fix_mmap_threshold() {
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(VAR, THRESHOLD)
        .exec();
    tracing::warn!("could not re-execute with {VAR} set ({error}); idle mounts cost more memory");
}
