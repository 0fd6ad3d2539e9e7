//! Tessera as a user who is not root (uid 65534): `init`, `import`, `create`, `mount` (through
//! fusermount3: nosuid, nodev, no allow_other), reads and writes on the mount, `commit`,
//! `umount` and `fsck`, with the store under the user's home and the daemon's socket under
//! `$XDG_RUNTIME_DIR`; and rootless podman running a container on such a mount. A guard
//! unmounts, stops the daemon and podman's pause process even when the test fails.

#[allow(dead_code)]
mod cli;

use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cli::{alive, output_within, signal, tessera_bin};
use tessera_tests::have_program;
use tessera_tests::mount::can_mount;

const USER: u32 = 65534;

struct Rootless {
    _dir: tempfile::TempDir,
    home: PathBuf,
    runtime: PathBuf,
    mnt: PathBuf,
}

impl Rootless {
    fn new() -> Rootless {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        let runtime = dir.path().join("run");
        let mnt = home.join("mnt");
        for (path, mode) in [(&home, 0o755), (&runtime, 0o700), (&mnt, 0o755)] {
            std::fs::create_dir_all(path).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
            chown(path, Some(USER), Some(USER)).unwrap();
        }
        Rootless {
            _dir: dir,
            home,
            runtime,
            mnt,
        }
    }

    /// Runs `program args` as the user, in its home, with only its own environment.
    fn run_program(&self, program: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(&self.home)
            .env_clear()
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .uid(USER)
            .gid(USER);
        output_within(&mut command, Duration::from_secs(60))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run_program(tessera_bin(), args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tessera {args:?} as uid {USER} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn sh(&self, script: &str) -> String {
        let out = self.run_program(Path::new("/bin/sh"), &["-c", script]);
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        // Nothing here may panic: stop the daemon, then detach whatever is left.
        let status = self.run_program(tessera_bin(), &["daemon", "status", "--json"]);
        let status = serde_json::from_slice::<serde_json::Value>(&status.stdout).ok();
        let pid = |key: &str| status.as_ref().and_then(|s| s[key].as_u64());
        let _ = self.run_program(tessera_bin(), &["daemon", "stop"]);
        // The keeper first: killed after the daemon, it would start another.
        for pid in [pid("keeper"), pid("pid")].into_iter().flatten() {
            if alive(pid as u32) {
                signal(pid as u32, rustix::process::Signal::KILL);
            }
        }
        let _ = rustix::mount::unmount(&self.mnt, rustix::mount::UnmountFlags::DETACH);
        // Rootless podman leaves a pause process holding its user and mount namespaces.
        let pause = self.runtime.join("libpod/tmp/pause.pid");
        if let Some(pid) = std::fs::read_to_string(pause)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|p| alive(*p))
        {
            signal(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Whether a user who is not root can open /dev/fuse, as fusermount3 needs (distributions
/// make it 0666; scripts/setup.sh does where it is not).
fn dev_fuse_is_open_to_users() -> bool {
    let mode = std::fs::metadata("/dev/fuse").map_or(0, |m| m.permissions().mode());
    if mode & 0o006 == 0o006 {
        return true;
    }
    if std::env::var("TESSERA_REQUIRE_MOUNT").as_deref() == Ok("1") {
        panic!("/dev/fuse is {mode:o}: users cannot mount (scripts/setup.sh makes it 0666)");
    }
    eprintln!("skipping: /dev/fuse is {mode:o}, users cannot mount");
    false
}

#[test]
fn a_user_who_is_not_root_can_init_mount_write_commit_and_umount() {
    if !can_mount() || !dev_fuse_is_open_to_users() {
        return;
    }
    let u = Rootless::new();
    let src = u.home.join("src");
    u.sh("mkdir -p src/etc && echo hello > src/etc/motd && head -c 300000 /dev/urandom > src/big");
    u.ok(&["init"]);
    // The default store of a user: under its home.
    assert!(u.home.join(".local/share/tessera/tessera-store").exists());
    u.ok(&["import", src.to_str().unwrap(), "--name", "base"]);
    u.ok(&["create", "c1", "--from", "base"]);
    let mnt = u.mnt.to_str().unwrap();
    u.ok(&["mount", "c1", mnt]);
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.contains(mnt)).expect("mounted");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    assert!(line.contains(&format!("user_id={USER}")), "{line}");
    // The socket sits under $XDG_RUNTIME_DIR.
    let sockets: Vec<_> = std::fs::read_dir(u.runtime.join("tessera"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sock"))
        .collect();
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    let script = "cat mnt/etc/motd; echo changed > mnt/etc/motd; mkdir mnt/new; \
                  printf data > mnt/new/f; cmp src/big mnt/big && echo same";
    assert_eq!(u.sh(script), "hello\nsame\n");
    // Root is not let in (no allow_other): the mount is the user's alone.
    assert!(std::fs::read(u.mnt.join("new/f")).is_err());
    u.ok(&["commit", "c1", "--name", "next"]);
    u.ok(&["umount", mnt]);
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(mnt)
    );
    let fsck = u.ok(&["fsck", "--verify-data"]);
    assert!(fsck.contains("no problems found"), "{fsck}");
    let exported = u.home.join("next.tar");
    u.ok(&["export", "next", "-o", exported.to_str().unwrap()]);
    let listing = u.sh("tar -xOf next.tar ./etc/motd 2>/dev/null || tar -xOf next.tar etc/motd");
    assert_eq!(listing, "changed\n");
}

/// Rootless podman (`podman run --rootfs`) runs a container on a user's Tessera mount: the
/// container sees the image's files, what it writes lands in the Tessera container (the user
/// reads it on the mount, a commit holds it). The user has no /etc/subuid range, so podman
/// maps only the user's own uid (root in the container), and `--network=none` needs no
/// slirp4netns. The options go before the mount point: `--rootfs` is a switch, and the first
/// argument after the options is the root, the rest the command.
#[test]
fn rootless_podman_runs_a_container_on_a_users_mount() {
    if !can_mount()
        || !dev_fuse_is_open_to_users()
        || !have_program("/usr/bin/podman")
        || !have_program("/bin/busybox")
    {
        return;
    }
    let u = Rootless::new();
    u.sh(
        "mkdir -p src/bin src/etc src/proc src/dev src/sys src/tmp && cp /bin/busybox src/bin/ \
          && ln -s busybox src/bin/sh && ln -s busybox src/bin/cat \
          && echo from-the-image > src/etc/motd",
    );
    u.ok(&["init"]);
    u.ok(&[
        "import",
        u.home.join("src").to_str().unwrap(),
        "--name",
        "bb",
    ]);
    u.ok(&["create", "c1", "--from", "bb"]);
    let mnt = u.mnt.to_str().unwrap();
    u.ok(&["mount", "c1", mnt]);
    let script = "cat /etc/motd; echo written-in-podman > /etc/motd; busybox id -u";
    let out = u.run_program(
        Path::new("/usr/bin/podman"),
        &[
            "run",
            "--rm",
            "--network=none",
            "--rootfs",
            mnt,
            "/bin/sh",
            "-c",
            script,
        ],
    );
    assert!(
        out.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-the-image\n0\n");
    assert_eq!(u.sh("cat mnt/etc/motd"), "written-in-podman\n");
    u.ok(&["commit", "c1", "--name", "next"]);
    u.ok(&["umount", mnt]);
    u.ok(&[
        "export",
        "next",
        "-o",
        u.home.join("next.tar").to_str().unwrap(),
    ]);
    let motd = u.sh("tar -xOf next.tar ./etc/motd 2>/dev/null || tar -xOf next.tar etc/motd");
    assert_eq!(motd, "written-in-podman\n");
}
