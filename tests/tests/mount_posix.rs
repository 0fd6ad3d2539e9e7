//! POSIX guarantees of a mounted view that overlayfs does not give, through the kernel:
//! Invariant 6 of docs/design.md (inode numbers stable across copy-up, rename and remount; hard links
//! of the image one inode) and invariant 7 (every descriptor sees the same bytes: a read-only
//! descriptor after another process writes, MAP_SHARED mappings and write(2) both ways), plus
//! the semantics of §9 that only show through a kernel: renaming lower directories,
//! open-but-unlinked files, readdir offsets during `rm -rf`, d_ino, owners of new nodes
//! (the caller, setgid directories, the sticky bit, set-id bits dropped by writes) and the
//! mount options (suid, dev, default_permissions, allow_other).

// mmap has no safe wrapper in std; the one use is the `Mapping` type below.
#![allow(unsafe_code)]

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use tessera::maintenance::FsckOptions;
use tessera_fusefs::MountConfig;
use tessera_tests::mount::{MountGuard, can_mount, mount};
use tessera_tests::{bytes, image_store, read_file};

const BS: usize = 4096;

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

/// A MAP_SHARED mapping of the first `len` bytes of a file, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(file: &File, len: usize, writable: bool) -> Mapping {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: maps `len` bytes of an open descriptor; the result is checked, and the
        // mapping is only touched through `ptr` within `len` bytes until `Drop` unmaps it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Mapping {
            ptr: ptr.cast(),
            len,
        }
    }

    /// A copy of the mapped bytes now (no reference into the mapping outlives the call, as
    /// other descriptors change the pages under it).
    fn read(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len];
        // SAFETY: `ptr` is valid for `len` bytes while the mapping lives; `out` is `len` long.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr, out.as_mut_ptr(), self.len) };
        out
    }

    /// Stores `data` at `offset` through the mapping.
    fn store(&self, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= self.len);
        // SAFETY: the range lies inside the writable mapping.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset), data.len()) };
    }

    /// msync(MS_SYNC): the stores reach the file system.
    fn sync(&self) {
        // SAFETY: `ptr`/`len` describe exactly this mapping.
        let ret = unsafe { libc::msync(self.ptr.cast(), self.len, libc::MS_SYNC) };
        assert_eq!(ret, 0, "msync: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; nothing refers to it afterwards.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[test]
fn invariant_6_inode_numbers_survive_copy_up_rename_and_remount() {
    if !can_mount() {
        return;
    }
    let mut t = image_store(BS as u32, |src| {
        fs::create_dir_all(src.join("usr/lib")).unwrap();
        fs::write(src.join("usr/lib/big.bin"), bytes(1, 100_000)).unwrap();
        fs::write(src.join("small"), b"small").unwrap();
    });
    let m = mount(&t);
    let (file, dir) = (ino(&m.join("usr/lib/big.bin")), ino(&m.join("usr/lib")));
    let small = ino(&m.join("small"));
    assert_ne!(file, dir);
    OpenOptions::new()
        .write(true)
        .open(m.join("usr/lib/big.bin"))
        .unwrap()
        .write_all_at(b"XYZ", 50_000)
        .unwrap();
    fs::set_permissions(m.join("usr/lib"), Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(m.join("small"), Some(7), Some(7)).unwrap();
    assert_eq!(ino(&m.join("usr/lib/big.bin")), file, "copy-up by write");
    assert_eq!(ino(&m.join("usr/lib")), dir, "copy-up by chmod");
    assert_eq!(ino(&m.join("small")), small, "copy-up by chown");
    fs::write(m.join("new"), b"new").unwrap();
    let new = ino(&m.join("new"));
    fs::rename(m.join("usr/lib/big.bin"), m.join("big")).unwrap();
    fs::rename(m.join("usr/lib"), m.join("lib")).unwrap();
    assert_eq!(
        (ino(&m.join("big")), ino(&m.join("lib"))),
        (file, dir),
        "rename"
    );
    // Unmount, close and reopen the whole store, mount again.
    m.unmount();
    t.reopen();
    let m = mount(&t);
    assert_eq!(ino(&m.join("big")), file, "remount");
    assert_eq!(ino(&m.join("lib")), dir);
    assert_eq!(ino(&m.join("small")), small);
    assert_eq!(ino(&m.join("new")), new, "a file the container made");
    assert_eq!(&fs::read(m.join("big")).unwrap()[50_000..50_003], b"XYZ");
    // A container of the committed image shows the same numbers.
    t.commit_container("c", "next").unwrap();
    t.create_container("c2", "next").unwrap();
    let m2 = MountGuard::new(t.open_container("c2").unwrap(), MountConfig::default());
    for (name, want) in [("big", file), ("lib", dir), ("small", small), ("new", new)] {
        assert_eq!(
            ino(&m2.join(name)),
            want,
            "{name} in a container of the commit"
        );
    }
    m2.unmount();
    m.unmount();
}

#[test]
fn invariant_6_hard_links_of_the_image_stay_one_inode() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::create_dir(src.join("d")).unwrap();
        fs::write(src.join("one"), bytes(2, 3 * BS)).unwrap();
        fs::hard_link(src.join("one"), src.join("d/two")).unwrap();
    });
    let m = mount(&t);
    let (one, two) = (m.join("one"), m.join("d/two"));
    let first = fs::metadata(&one).unwrap();
    assert_eq!((first.ino(), first.nlink()), (ino(&two), 2));
    // Write through one name (copy-up), read through the other.
    OpenOptions::new()
        .write(true)
        .open(&one)
        .unwrap()
        .write_all_at(b"through one", BS as u64)
        .unwrap();
    let mut want = bytes(2, 3 * BS);
    want[BS..BS + 11].copy_from_slice(b"through one");
    assert_eq!(fs::read(&two).unwrap(), want);
    assert_eq!((ino(&one), ino(&two)), (first.ino(), first.ino()));
    fs::hard_link(&two, m.join("three")).unwrap();
    assert_eq!(fs::metadata(&one).unwrap().nlink(), 3);
    fs::remove_file(&one).unwrap();
    assert_eq!(fs::metadata(&two).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(m.join("three")).unwrap().ino(), first.ino());
    m.unmount();
    let m = mount(&t);
    let (two, three) = (
        fs::metadata(m.join("d/two")).unwrap(),
        fs::metadata(m.join("three")).unwrap(),
    );
    assert_eq!((two.ino(), two.nlink()), (first.ino(), 2));
    assert_eq!((three.ino(), three.nlink()), (first.ino(), 2));
    assert_eq!(fs::read(m.join("three")).unwrap(), want);
    m.unmount();
}

#[test]
fn invariant_7_read_only_descriptor_sees_writes_of_other_processes() {
    if !can_mount() {
        return;
    }
    let data = bytes(3, 5 * BS);
    let t = image_store(BS as u32, |src| fs::write(src.join("f"), &data).unwrap());
    let m = mount(&t);
    let p = m.join("f");
    // Opened (and read, so pages are cached) while the file is still the image's.
    let reader = File::open(&p).unwrap();
    let mut seen = Vec::new();
    (&reader).read_to_end(&mut seen).unwrap();
    assert_eq!(seen, data);
    let read_at = |offset: u64, len: usize| {
        let mut buf = vec![0u8; len];
        reader.read_exact_at(&mut buf, offset).unwrap();
        buf
    };
    // Another descriptor of this process writes (the copy-up).
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .write_all_at(b"fd2", 10)
        .unwrap();
    assert_eq!(read_at(10, 3), b"fd2");
    // Another process writes, and another extends the file.
    let status = Command::new("sh")
        .arg("-c")
        .arg("printf 'other process' | dd of=\"$1\" bs=1 seek=5000 conv=notrunc status=none")
        .arg("sh")
        .arg(&p)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(read_at(5000, 13), b"other process");
    let status = Command::new("sh")
        .arg("-c")
        .arg("printf 'appended' >> \"$1\"")
        .arg("sh")
        .arg(&p)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(reader.metadata().unwrap().len(), data.len() as u64 + 8);
    assert_eq!(read_at(data.len() as u64, 8), b"appended");
    drop(reader);
    m.unmount();
    let v = t.open_container("c").unwrap();
    let back = read_file(&v, "f");
    assert_eq!(
        (&back[10..13], &back[5000..5013]),
        (&b"fd2"[..], &b"other process"[..])
    );
}

#[test]
fn invariant_7_mmap_shared_is_coherent_with_write() {
    if !can_mount() {
        return;
    }
    let data = bytes(4, 4 * BS);
    let t = image_store(BS as u32, |src| fs::write(src.join("f"), &data).unwrap());
    let m = mount(&t);
    let p = m.join("f");
    // A read-only shared mapping made while the file is still the image's.
    let ro = File::open(&p).unwrap();
    let view = Mapping::new(&ro, 4 * BS, false);
    assert_eq!(view.read(), data);
    let writer = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    writer.write_all_at(b"by write(2)", 100).unwrap();
    assert_eq!(
        &view.read()[100..111],
        b"by write(2)",
        "the mapping sees write(2)"
    );
    // Stores through a writable mapping reach write(2) readers and the daemon after msync.
    let rw = Mapping::new(&writer, 4 * BS, true);
    rw.store(3 * BS - 2, b"by the mapping");
    rw.sync();
    let mut buf = [0u8; 14];
    File::open(&p)
        .unwrap()
        .read_exact_at(&mut buf, 3 * BS as u64 - 2)
        .unwrap();
    assert_eq!(&buf, b"by the mapping");
    assert_eq!(&view.read()[3 * BS - 2..3 * BS + 12], b"by the mapping");
    drop((rw, view, writer, ro));
    m.unmount();
    let mut want = data.clone();
    want[100..111].copy_from_slice(b"by write(2)");
    want[3 * BS - 2..3 * BS + 12].copy_from_slice(b"by the mapping");
    assert_eq!(read_file(&t.open_container("c").unwrap(), "f"), want);
}

#[test]
fn renaming_a_lower_directory_moves_its_contents() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::create_dir_all(src.join("usr/share/doc/pkg")).unwrap();
        fs::write(src.join("usr/share/doc/pkg/README"), b"readme").unwrap();
        fs::write(src.join("usr/share/x"), b"x").unwrap();
        fs::create_dir(src.join("opt")).unwrap();
    });
    let m = mount(&t);
    let doc = ino(&m.join("usr/share/doc"));
    fs::rename(m.join("usr"), m.join("usr2")).unwrap();
    fs::rename(m.join("usr2/share/doc"), m.join("opt/doc")).unwrap();
    assert_eq!(ino(&m.join("opt/doc")), doc);
    assert_eq!(fs::read(m.join("opt/doc/pkg/README")).unwrap(), b"readme");
    assert_eq!(fs::read(m.join("usr2/share/x")).unwrap(), b"x");
    fs::write(m.join("opt/doc/pkg/NEW"), b"new").unwrap();
    for gone in ["usr", "usr2/share/doc"] {
        assert!(fs::symlink_metadata(m.join(gone)).is_err(), "{gone}");
    }
    m.unmount();
    let m = mount(&t);
    assert_eq!(fs::read(m.join("opt/doc/pkg/README")).unwrap(), b"readme");
    assert_eq!(fs::read(m.join("opt/doc/pkg/NEW")).unwrap(), b"new");
    let image = t.open_image("img").unwrap();
    assert_eq!(read_file(&image, "usr/share/doc/pkg/README"), b"readme");
    assert!(image.resolve(b"opt/doc").is_err());
    m.unmount();
}

#[test]
fn open_unlinked_files_stay_usable_until_closed() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::write(src.join("lower"), bytes(5, 2 * BS)).unwrap()
    });
    let m = mount(&t);
    for name in ["lower", "upper"] {
        let p = m.join(name);
        if name == "upper" {
            fs::write(&p, bytes(5, 2 * BS)).unwrap();
        }
        let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        fs::remove_file(&p).unwrap();
        assert!(fs::symlink_metadata(&p).is_err(), "{name} has no name left");
        assert_eq!(f.metadata().unwrap().nlink(), 0, "{name}");
        f.write_all_at(b"still writable", 3 * BS as u64).unwrap();
        let mut want = bytes(5, 2 * BS);
        want.resize(3 * BS, 0);
        want.extend_from_slice(b"still writable");
        let mut back = vec![0; want.len()];
        f.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, want, "{name}");
        // The name is free for a new file meanwhile.
        fs::write(&p, b"another file").unwrap();
        assert_ne!(ino(&p), f.metadata().unwrap().ino());
        f.sync_all().unwrap();
        assert_eq!(f.metadata().unwrap().len(), want.len() as u64);
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), b"another file");
    }
    // A rename over an open file unlinks it the same way.
    fs::write(m.join("victim"), b"victim").unwrap();
    let victim = File::open(m.join("victim")).unwrap();
    fs::rename(m.join("lower"), m.join("victim")).unwrap();
    assert_eq!(victim.metadata().unwrap().nlink(), 0);
    let mut back = Vec::new();
    (&victim).read_to_end(&mut back).unwrap();
    assert_eq!(back, b"victim");
    assert_eq!(fs::read(m.join("victim")).unwrap(), b"another file");
    drop(victim);
    m.unmount();
    // The store is consistent after the last closes freed them.
    let report = t.fsck(&FsckOptions { verify_data: true }).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn rm_rf_of_a_large_image_directory_and_d_ino() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        for dir in ["big", "big2"] {
            fs::create_dir_all(src.join(dir).join("sub/deeper")).unwrap();
            for i in 0..1100 {
                fs::write(src.join(format!("{dir}/file-{i:05}")), i.to_string()).unwrap();
            }
            fs::write(src.join(dir).join("sub/deeper/leaf"), b"leaf").unwrap();
        }
    });
    let m = mount(&t);
    let mut checked = 0;
    for entry in fs::read_dir(m.join("big")).unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.ino(), ino(&entry.path()), "d_ino == st_ino");
        checked += 1;
    }
    assert_eq!(checked, 1101);
    let out = Command::new("rm")
        .arg("-rf")
        .arg(m.join("big"))
        .output()
        .unwrap();
    assert!(out.status.success(), "rm -rf: {out:?}");
    assert!(fs::symlink_metadata(m.join("big")).is_err());
    // Removing each entry while one directory stream goes on reading.
    let mut seen = 0;
    for entry in fs::read_dir(m.join("big2")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fs::remove_dir_all(&path).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
        seen += 1;
    }
    assert_eq!(seen, 1101, "no entry skipped while others were removed");
    fs::remove_dir(m.join("big2")).unwrap();
    m.unmount();
    let v = t.open_container("c").unwrap();
    assert!(v.list_dir(v.root()).unwrap().is_empty());
}

#[test]
fn new_nodes_belong_to_the_caller_and_follow_setgid_directories() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::create_dir(src.join("tmp")).unwrap();
        fs::set_permissions(src.join("tmp"), Permissions::from_mode(0o1777)).unwrap();
        fs::create_dir(src.join("shared")).unwrap();
        std::os::unix::fs::chown(src.join("shared"), Some(0), Some(100)).unwrap();
        fs::set_permissions(src.join("shared"), Permissions::from_mode(0o2777)).unwrap();
        fs::write(src.join("tmp/setuid"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("tmp/setuid"), Permissions::from_mode(0o6777)).unwrap();
    });
    let m = mount(&t);
    let as_user = |dir: &str, script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(m.join(dir))
            .uid(1000)
            .gid(1000)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
    };
    as_user("tmp", "touch f && mkdir d && ln -s f s && mkfifo p");
    for name in ["f", "d", "s", "p"] {
        let meta = fs::symlink_metadata(m.join("tmp").join(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "{name}");
    }
    as_user("shared", "touch f && mkdir d");
    let (f, d) = (
        fs::metadata(m.join("shared/f")).unwrap(),
        fs::metadata(m.join("shared/d")).unwrap(),
    );
    assert_eq!(
        (f.uid(), f.gid()),
        (1000, 100),
        "a setgid directory gives its group"
    );
    assert_eq!(
        (d.gid(), d.mode() & 0o2000),
        (100, 0o2000),
        "and its setgid bit to subdirectories"
    );
    // A write by another user drops set-user-id and set-group-id (as ext4 does).
    as_user("tmp", "echo more >> setuid");
    assert_eq!(
        fs::metadata(m.join("tmp/setuid")).unwrap().mode() & 0o7777,
        0o777
    );
    // The sticky bit: another user may not remove the file.
    let out = Command::new("rm")
        .arg("-f")
        .arg(m.join("tmp/f"))
        .uid(1001)
        .gid(1001)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(m.join("tmp/f").exists());
    m.unmount();
}

/// The mount's line in /proc/self/mountinfo: (per-mount options, fs type, super options).
fn mountinfo(path: &Path) -> (String, String, String) {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_str().unwrap();
    for line in text.lines() {
        let (left, right) = line.split_once(" - ").unwrap();
        let fields: Vec<&str> = left.split(' ').collect();
        if fields[4] == path {
            let rest: Vec<&str> = right.split(' ').collect();
            return (fields[5].into(), rest[0].into(), rest[2].into());
        }
    }
    panic!("{path} is not in /proc/self/mountinfo");
}

#[test]
fn mount_options_keep_setuid_and_allow_devices() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::create_dir(src.join("bin")).unwrap();
        fs::copy("/usr/bin/id", src.join("bin/id")).unwrap();
        fs::set_permissions(src.join("bin/id"), Permissions::from_mode(0o4755)).unwrap();
        fs::write(src.join("secret"), b"secret").unwrap();
        fs::set_permissions(src.join("secret"), Permissions::from_mode(0o600)).unwrap();
        fs::write(src.join("public"), b"public").unwrap();
        fs::set_permissions(src.join("public"), Permissions::from_mode(0o644)).unwrap();
        let zero = src.join("zero");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &zero,
            rustix::fs::FileType::CharacterDevice,
            0o666.into(),
            rustix::fs::makedev(1, 5),
        )
        .unwrap();
    });
    let m = mount(&t);
    let (per_mount, fstype, options) = mountinfo(m.path());
    assert_eq!(fstype, "fuse.tessera");
    for refused in ["nosuid", "nodev", "noexec"] {
        assert!(!per_mount.split(',').any(|o| o == refused), "{per_mount}");
    }
    for wanted in ["default_permissions", "allow_other"] {
        assert!(options.split(',').any(|o| o == wanted), "{options}");
    }
    let listed = tessera_fusefs::mounts::list().unwrap();
    assert!(
        listed.iter().any(|l| l.mountpoint == m.path()),
        "{listed:?}"
    );
    // The setuid bit is kept and honoured: `id` run by nobody has euid 0.
    assert_eq!(
        fs::metadata(m.join("bin/id")).unwrap().mode() & 0o7777,
        0o4755
    );
    let nobody = |program: &Path, arg: Option<&Path>| {
        let mut cmd = Command::new(program);
        cmd.args(arg).uid(65534).gid(65534);
        cmd.output().unwrap()
    };
    let out = nobody(&m.join("bin/id"), None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("euid=0"), "{out:?}");
    // The kernel checks modes for other users (default_permissions, allow_other).
    let cat = Path::new("/bin/cat");
    assert!(!nobody(cat, Some(&m.join("secret"))).status.success());
    assert_eq!(nobody(cat, Some(&m.join("public"))).stdout, b"public");
    // Device nodes work: one from the image (1:5, zero) and one made now (1:3, null).
    let mut zeros = [7u8; 16];
    File::open(m.join("zero"))
        .unwrap()
        .read_exact(&mut zeros)
        .unwrap();
    assert_eq!(zeros, [0u8; 16]);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        m.join("null"),
        rustix::fs::FileType::CharacterDevice,
        0o666.into(),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let mut null = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("null"))
        .unwrap();
    assert_eq!(std::io::Write::write(&mut null, b"discarded").unwrap(), 9);
    let mut rest = Vec::new();
    assert_eq!(null.read_to_end(&mut rest).unwrap(), 0);
    drop(null);
    m.unmount();
}
