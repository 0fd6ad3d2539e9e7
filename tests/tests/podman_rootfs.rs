//! podman runs a container on a Tessera mount (`podman run --rootfs MOUNTPOINT`, as root, with
//! runc): the process sees the image's files, what it writes lands in the container's
//! writable layer, and a commit of the container holds it. runc cannot raise the default
//! rlimits on these machines, with any rootfs, hence the `--ulimit`s.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tessera_fusefs::MountConfig;
use tessera_tests::mount::{MountGuard, can_mount};
use tessera_tests::{have_program, image_store, read_file};

#[allow(dead_code)]
mod cli;

/// A busybox root: /bin/busybox (static) and the applets the test runs.
fn busybox_tree(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "echo", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    for dir in ["etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("etc/motd"), "from the image\n").unwrap();
}

#[test]
fn podman_runs_a_container_on_a_tessera_mount() {
    if !can_mount()
        || !have_program("/usr/bin/podman")
        || !have_program("/usr/sbin/runc")
        || !have_program("/bin/busybox")
    {
        return;
    }
    let t = image_store(64 * 1024, busybox_tree);
    let m = MountGuard::new(t.open_container("c").unwrap(), MountConfig::default());
    let mut podman = Command::new("podman");
    podman
        .args(["--runtime", "/usr/sbin/runc", "run", "--rm"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .arg("--rootfs")
        .arg(m.path())
        .args([
            "/bin/sh",
            "-c",
            "cat /etc/motd && echo written by the container > /root/out && ls /bin",
        ]);
    let out = cli::output_within(&mut podman, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "podman: {out:?}");
    assert!(stdout.starts_with("from the image\n"), "{stdout}");
    assert!(stdout.contains("busybox"), "{stdout}");
    assert_eq!(
        std::fs::read(m.join("root/out")).unwrap(),
        b"written by the container\n"
    );
    m.unmount();
    t.commit_container("c", "after-podman").unwrap();
    let image = t.open_image("after-podman").unwrap();
    assert_eq!(read_file(&image, "root/out"), b"written by the container\n");
    assert_eq!(read_file(&image, "etc/motd"), b"from the image\n");
}
