//! The FUSE namespace and metadata operations through the kernel, driven with std::fs (and
//! rustix where std has no call) on a mounted container and checked against what ext4
//! answers: lookup, getattr, setattr (chmod, chown, utimes, truncate), readdir and
//! readdirplus of large merged directories, create/open/read/write/release, mkdir/rmdir/
//! unlink, renameat2 flags, link/symlink/readlink, mknod of every kind, xattrs of every
//! namespace, statfs, access, and name length limits. Values only the daemon keeps are checked
//! again after a remount, so a kernel cache cannot answer for it. File data operations are in
//! `mount_ops_data.rs`.

use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{
    DirEntryExt, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use rustix::fs::{self as rfs, CWD, FileType, Mode, RenameFlags, XattrFlags};
use tessera_tests::mount::{can_mount, errno, mount, remount};
use tessera_tests::{bytes, image_store, read_file};

const BS: u64 = 4096;

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

#[test]
fn lookup_getattr_and_setattr() {
    if !can_mount() {
        return;
    }
    let data = bytes(1, 10_000);
    let t = image_store(BS as u32, |src| {
        fs::create_dir(src.join("d")).unwrap();
        fs::write(src.join("d/f"), &data).unwrap();
        fs::set_permissions(src.join("d/f"), Permissions::from_mode(0o640)).unwrap();
    });
    let mut m = mount(&t);
    let f = m.join("d/f");
    let meta = fs::metadata(&f).unwrap();
    assert!(meta.is_file());
    assert_eq!(
        (meta.size(), meta.mode() & 0o7777, meta.uid()),
        (10_000, 0o640, 0)
    );
    assert_eq!(errno(fs::metadata(m.join("d/missing"))), libc::ENOENT);
    assert_eq!(errno(fs::metadata(m.join("d/f/x"))), libc::ENOTDIR);

    fs::set_permissions(&f, Permissions::from_mode(0o4751)).unwrap();
    let after = fs::metadata(&f).unwrap();
    assert_eq!(after.mode() & 0o7777, 0o4751);
    assert!((after.ctime(), after.ctime_nsec()) > (meta.ctime(), meta.ctime_nsec()));
    assert_eq!(after.mtime(), meta.mtime(), "chmod must not change mtime");
    // chown of a non-directory drops set-user-id (the kernel asks for it, as on ext4).
    std::os::unix::fs::chown(&f, Some(1000), Some(100)).unwrap();
    let after = fs::metadata(&f).unwrap();
    assert_eq!(
        (after.uid(), after.gid(), after.mode() & 0o7777),
        (1000, 100, 0o751)
    );

    let atime = UNIX_EPOCH + Duration::new(1_000_000, 123_456_789);
    let mtime = UNIX_EPOCH + Duration::new(2_000_000, 987_654_321);
    let times = FileTimes::new().set_accessed(atime).set_modified(mtime);
    File::open(&f).unwrap().set_times(times).unwrap();
    let after = fs::metadata(&f).unwrap();
    assert_eq!(
        (after.atime(), after.atime_nsec()),
        (1_000_000, 123_456_789)
    );
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (2_000_000, 987_654_321)
    );

    let file = rw(&f);
    file.set_len(3000).unwrap();
    assert_eq!(fs::read(&f).unwrap(), &data[..3000]);
    file.set_len(20_000).unwrap();
    let mut want = data[..3000].to_vec();
    want.resize(20_000, 0);
    assert_eq!(fs::read(&f).unwrap(), want);
    assert!(
        file.metadata().unwrap().mtime() > 2_000_000,
        "truncate sets mtime"
    );
    drop(file);

    m = remount(m, &t);
    let meta = fs::metadata(m.join("d/f")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1000, 100, 0o751)
    );
    assert_eq!(meta.atime(), 1_000_000);
    assert_eq!(fs::read(m.join("d/f")).unwrap(), want);
    // The image is untouched.
    let image = t.open_image("img").unwrap();
    assert_eq!(read_file(&image, "d/f"), data);
    m.unmount();
}

#[test]
fn readdir_of_a_large_merged_directory() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::create_dir(src.join("big")).unwrap();
        for i in 0..1200 {
            fs::write(src.join(format!("big/f{i:04}")), i.to_string()).unwrap();
        }
    });
    let m = mount(&t);
    let big = m.join("big");
    for i in 0..300 {
        fs::write(big.join(format!("n{i:03}")), b"new").unwrap();
    }
    for i in 0..100 {
        fs::remove_file(big.join(format!("f{i:04}"))).unwrap();
    }
    fs::create_dir(big.join("sub")).unwrap();
    let mut want: Vec<String> = (100..1200).map(|i| format!("f{i:04}")).collect();
    want.extend((0..300).map(|i| format!("n{i:03}")));
    want.push("sub".into());
    want.sort();

    let mut got = Vec::new();
    for entry in fs::read_dir(&big).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert_eq!(entry.ino(), meta.ino(), "d_ino of {name}");
        assert_eq!(entry.file_type().unwrap().is_dir(), name == "sub", "{name}");
        got.push(name);
    }
    got.sort();
    assert_eq!(got, want);

    // `ls -la` (readdirplus, then the attributes of every entry).
    let out = Command::new("ls").arg("-la").arg(&big).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().skip(1).collect(); // "total N"
    assert_eq!(lines.len(), want.len() + 2, ". and .. and every entry");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('d') && l.ends_with(" sub"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('-') && l.ends_with(" f1199"))
    );
    assert!(lines.iter().all(|l| !l.ends_with(" f0000")));

    // rewinddir shows the directory as it is now, as a new opendir would (POSIX).
    let fd = rfs::open(
        &big,
        rfs::OFlags::DIRECTORY | rfs::OFlags::RDONLY,
        Mode::empty(),
    )
    .unwrap();
    let mut dir = rfs::Dir::new(fd).unwrap();
    let listing = |dir: &mut rfs::Dir| -> Vec<String> {
        let names = dir
            .by_ref()
            .map(|e| e.unwrap().file_name().to_str().unwrap().to_string());
        let mut names: Vec<String> = names.filter(|n| n != "." && n != "..").collect();
        names.sort();
        names
    };
    assert_eq!(listing(&mut dir), want);
    fs::write(big.join("late"), b"late").unwrap();
    fs::remove_file(big.join("f0100")).unwrap();
    dir.rewind();
    let again = listing(&mut dir);
    assert!(
        again.contains(&"late".to_string()),
        "a name created before rewinddir"
    );
    assert!(
        !again.contains(&"f0100".to_string()),
        "a name removed before rewinddir"
    );
    assert_eq!(again.len(), want.len());
    drop(dir);
    m.unmount();
}

#[test]
fn create_open_read_write_and_release() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| fs::create_dir(src.join("d")).unwrap());
    let mut m = mount(&t);
    let p = m.join("d/new");
    let data = bytes(2, 3 * BS as usize + 100);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&p)
        .unwrap();
    let exclusive = OpenOptions::new().write(true).create_new(true).open(&p);
    assert_eq!(errno(exclusive), libc::EEXIST);
    f.write_all(&data).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut back = Vec::new();
    f.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    // A write across a block boundary and one far past the end (the gap reads as zeros).
    f.write_all_at(b"0123456789ABCDEFGHIJ", BS - 10).unwrap();
    f.write_all_at(b"tail", 10 * BS).unwrap();
    drop(f);
    let mut want = data.clone();
    want[BS as usize - 10..BS as usize + 10].copy_from_slice(b"0123456789ABCDEFGHIJ");
    want.resize(10 * BS as usize, 0);
    want.extend_from_slice(b"tail");
    assert_eq!(fs::read(&p).unwrap(), want);
    assert_eq!(mode_of(&p), 0o640);
    assert_eq!(errno(File::open(m.join("d/missing"))), libc::ENOENT);
    assert_eq!(
        errno(OpenOptions::new().write(true).open(m.join("d"))),
        libc::EISDIR
    );

    m = remount(m, &t);
    assert_eq!(fs::read(m.join("d/new")).unwrap(), want);
    m.unmount();
}

#[test]
fn mkdir_rmdir_unlink_and_rename_flags() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::create_dir_all(src.join("a")).unwrap();
        fs::create_dir_all(src.join("b/inner")).unwrap();
        fs::write(src.join("a/x"), b"ax").unwrap();
        fs::write(src.join("a/y"), b"ay").unwrap();
        fs::write(src.join("b/z"), b"bz").unwrap();
    });
    let mut m = mount(&t);
    let p = |rel: &str| m.join(rel);
    let nlink = |rel: &str| fs::metadata(m.join(rel)).unwrap().nlink();
    // mkdir / rmdir
    assert_eq!(nlink("a"), 2);
    let stamp = |rel: &str| {
        let meta = fs::metadata(m.join(rel)).unwrap();
        (
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
        )
    };
    let before = stamp("a");
    fs::create_dir(p("a/new")).unwrap();
    let created = stamp("a");
    assert!(
        created.0 > before.0 || created.1 != before.1,
        "mkdir changes the parent's mtime"
    );
    assert!(
        created.2 > before.2 || created.3 != before.3,
        "and its ctime"
    );
    assert_eq!(nlink("a"), 3, "a subdirectory adds a link to its parent");
    assert_eq!(errno(fs::create_dir(p("a/new"))), libc::EEXIST);
    assert_eq!(errno(fs::remove_dir(p("b"))), libc::ENOTEMPTY);
    assert_eq!(errno(fs::remove_dir(p("a/x"))), libc::ENOTDIR);
    fs::remove_dir(p("a/new")).unwrap();
    assert_eq!(nlink("a"), 2);
    assert_ne!(stamp("a"), created, "rmdir changes the parent's times");
    // unlink
    assert_eq!(errno(fs::remove_file(p("b"))), libc::EISDIR);
    assert_eq!(errno(fs::remove_file(p("a/missing"))), libc::ENOENT);
    // renameat2
    let rename = |from: &str, to: &str, flags| rfs::renameat_with(CWD, p(from), CWD, p(to), flags);
    assert_eq!(
        errno(rename("a/x", "a/y", RenameFlags::NOREPLACE)),
        libc::EEXIST
    );
    assert_eq!(fs::read(p("a/y")).unwrap(), b"ay");
    rename("a/x", "a/w", RenameFlags::NOREPLACE).unwrap();
    assert_eq!(errno(fs::metadata(p("a/x"))), libc::ENOENT);
    let (ino_w, ino_y) = (
        fs::metadata(p("a/w")).unwrap().ino(),
        fs::metadata(p("a/y")).unwrap().ino(),
    );
    rename("a/w", "a/y", RenameFlags::EXCHANGE).unwrap();
    assert_eq!(fs::read(p("a/w")).unwrap(), b"ay");
    assert_eq!(fs::read(p("a/y")).unwrap(), b"ax");
    assert_eq!(fs::metadata(p("a/y")).unwrap().ino(), ino_w);
    assert_eq!(fs::metadata(p("a/w")).unwrap().ino(), ino_y);
    assert_eq!(
        errno(rename("a/w", "a/none", RenameFlags::EXCHANGE)),
        libc::ENOENT
    );
    // A file and a directory trade places.
    rename("a/y", "b", RenameFlags::EXCHANGE).unwrap();
    assert_eq!(fs::read(p("b")).unwrap(), b"ax");
    assert_eq!(fs::read(p("a/y/z")).unwrap(), b"bz");
    // Plain rename over a file replaces it; over a non-empty directory it fails.
    fs::rename(p("a/w"), p("b")).unwrap();
    assert_eq!(fs::read(p("b")).unwrap(), b"ay");
    fs::create_dir(p("empty")).unwrap();
    assert_eq!(errno(fs::rename(p("empty"), p("a/y"))), libc::ENOTEMPTY);
    assert_eq!(errno(fs::rename(p("a"), p("a/y/inner/a"))), libc::EINVAL);
    fs::rename(p("a/y/inner"), p("empty")).unwrap();
    assert!(fs::metadata(p("empty")).unwrap().is_dir());
    fs::remove_dir(p("empty")).unwrap();

    m = remount(m, &t);
    let mut names: Vec<_> = walk(m.path());
    names.sort();
    assert_eq!(names, ["a", "a/y", "a/y/z", "b"]);
    assert_eq!(fs::read(m.join("b")).unwrap(), b"ay");
    m.unmount();
}

/// Every path under `root`, relative, in no particular order.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

#[test]
fn links_symlinks_and_device_nodes() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| fs::write(src.join("f"), b"data").unwrap());
    let mut m = mount(&t);
    fs::hard_link(m.join("f"), m.join("g")).unwrap();
    let (f, g) = (
        fs::metadata(m.join("f")).unwrap(),
        fs::metadata(m.join("g")).unwrap(),
    );
    assert_eq!((f.ino(), f.nlink(), g.nlink()), (g.ino(), 2, 2));
    assert_eq!(errno(fs::hard_link(m.join("f"), m.join("g"))), libc::EEXIST);
    std::os::unix::fs::symlink("f", m.join("s")).unwrap();
    assert!(
        fs::symlink_metadata(m.join("s"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_link(m.join("s")).unwrap(), Path::new("f"));
    assert_eq!(fs::read(m.join("s")).unwrap(), b"data");
    assert_eq!(errno(fs::read_link(m.join("f"))), libc::EINVAL);

    let mknod =
        |name: &str, kind, dev| rfs::mknodat(CWD, m.join(name), kind, Mode::from(0o640), dev);
    mknod("fifo", FileType::Fifo, 0).unwrap();
    mknod("null", FileType::CharacterDevice, rfs::makedev(1, 3)).unwrap();
    mknod("loop", FileType::BlockDevice, rfs::makedev(7, 0)).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(m.join("sock")).unwrap();
    drop(listener);
    // A 0:0 character device is the whiteout encoding: refused, as overlayfs does.
    assert_eq!(
        errno(mknod("wh", FileType::CharacterDevice, 0)),
        libc::EPERM
    );
    assert_eq!(errno(fs::metadata(m.join("wh"))), libc::ENOENT);

    m = remount(m, &t);
    let ft = |name: &str| fs::symlink_metadata(m.join(name)).unwrap();
    assert!(ft("fifo").file_type().is_fifo());
    assert!(ft("null").file_type().is_char_device());
    assert_eq!(ft("null").rdev(), rfs::makedev(1, 3));
    assert!(ft("loop").file_type().is_block_device());
    assert_eq!(ft("loop").rdev(), rfs::makedev(7, 0));
    assert!(ft("sock").file_type().is_socket());
    assert_eq!(ft("fifo").mode() & 0o7777, 0o640);
    assert_eq!((ft("f").ino(), ft("f").nlink()), (ft("g").ino(), 2));
    assert_eq!(fs::read_link(m.join("s")).unwrap(), Path::new("f"));
    m.unmount();
}

#[test]
fn xattrs_of_every_namespace() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::write(src.join("f"), b"x").unwrap();
        xattr::set(src.join("f"), "user.img", b"lower").unwrap();
        fs::create_dir(src.join("d")).unwrap();
    });
    let mut m = mount(&t);
    let f = m.join("f");
    assert_eq!(xattr::get(&f, "user.img").unwrap().unwrap(), b"lower");
    let set = |name: &str, value: &[u8], flags| rfs::setxattr(&f, name, value, flags);
    set("user.a", b"0123456789", XattrFlags::empty()).unwrap();
    assert_eq!(errno(set("user.a", b"z", XattrFlags::CREATE)), libc::EEXIST);
    assert_eq!(
        errno(set("user.none", b"z", XattrFlags::REPLACE)),
        libc::ENODATA
    );
    // Sizes: a size query, then a buffer too small.
    assert_eq!(rfs::getxattr_query(&f, "user.a").unwrap(), 10);
    assert_eq!(
        errno(rfs::getxattr(&f, "user.a", &mut [0u8; 2][..])),
        libc::ERANGE
    );
    let list_len = rfs::listxattr_query(&f).unwrap();
    assert_eq!(list_len, "user.img\0user.a\0".len());
    assert_eq!(errno(rfs::listxattr(&f, &mut [0u8; 4][..])), libc::ERANGE);
    set("user.a", b"replaced", XattrFlags::REPLACE).unwrap();
    set("trusted.t", b"trusted value", XattrFlags::CREATE).unwrap();
    // VFS_CAP_REVISION_2 | effective, CAP_NET_BIND_SERVICE permitted.
    let mut cap = vec![0u8; 20];
    cap[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 10).to_le_bytes());
    set("security.capability", &cap, XattrFlags::empty()).unwrap();
    xattr::set(m.join("d"), "user.dir", b"on a directory").unwrap();
    // The largest value Linux allows (64 KiB); one byte more is refused (E2BIG).
    let big = bytes(20, 65536);
    xattr::set(m.join("d"), "user.big", &big).unwrap();
    assert_eq!(xattr::get(m.join("d"), "user.big").unwrap().unwrap(), big);
    assert_eq!(
        errno(xattr::set(m.join("d"), "user.big", &vec![1; 65537])),
        libc::E2BIG
    );
    xattr::set(&f, "user.gone", b"soon").unwrap();
    xattr::remove(&f, "user.gone").unwrap();
    assert_eq!(errno(rfs::removexattr(&f, "user.gone")), libc::ENODATA);
    assert_eq!(
        errno(rfs::getxattr(&f, "user.gone", &mut [0u8; 64][..])),
        libc::ENODATA
    );

    m = remount(m, &t);
    let f = m.join("f");
    let mut names: Vec<String> = xattr::list(&f)
        .unwrap()
        .map(|n| n.into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["security.capability", "trusted.t", "user.a", "user.img"]
    );
    assert_eq!(xattr::get(&f, "user.a").unwrap().unwrap(), b"replaced");
    assert_eq!(
        xattr::get(&f, "trusted.t").unwrap().unwrap(),
        b"trusted value"
    );
    assert_eq!(xattr::get(&f, "security.capability").unwrap().unwrap(), cap);
    assert_eq!(
        xattr::get(m.join("d"), "user.dir").unwrap().unwrap(),
        b"on a directory"
    );
    assert_eq!(xattr::get(m.join("d"), "user.big").unwrap().unwrap(), big);
    let image = t.open_image("img").unwrap();
    let node = image.resolve(b"f").unwrap().node;
    assert_eq!(image.listxattr(node).unwrap(), [b"user.img".to_vec()]);
    m.unmount();
}

#[test]
fn statfs_and_access() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::write(src.join("plain"), b"x").unwrap();
        fs::set_permissions(src.join("plain"), Permissions::from_mode(0o644)).unwrap();
        fs::write(src.join("tool"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("tool"), Permissions::from_mode(0o755)).unwrap();
    });
    let m = mount(&t);
    let s = rfs::statvfs(m.path()).unwrap();
    let host = rfs::statvfs(t.path()).unwrap();
    assert_eq!((s.f_bsize, s.f_frsize, s.f_namemax), (BS, BS, 255));
    assert_eq!(
        s.f_blocks,
        host.f_blocks * host.f_frsize / BS,
        "the store's file system"
    );
    assert!(s.f_bavail > 0 && s.f_bavail <= s.f_blocks);
    use rfs::Access;
    rfs::access(m.join("plain"), Access::READ_OK | Access::WRITE_OK).unwrap();
    rfs::access(m.join("tool"), Access::EXEC_OK).unwrap();
    // Root may execute only what has an execute bit.
    assert_eq!(
        errno(rfs::access(m.join("plain"), Access::EXEC_OK)),
        libc::EACCES
    );
    assert_eq!(
        errno(rfs::access(m.join("missing"), Access::EXISTS)),
        libc::ENOENT
    );
    m.unmount();
}

#[test]
fn names_over_255_bytes_and_long_paths() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| fs::write(src.join("f"), b"f").unwrap());
    let m = mount(&t);
    let long = m.join(&"x".repeat(256));
    assert_eq!(errno(File::create(&long)), libc::ENAMETOOLONG);
    assert_eq!(errno(fs::create_dir(&long)), libc::ENAMETOOLONG);
    assert_eq!(errno(fs::metadata(&long)), libc::ENAMETOOLONG);
    assert_eq!(
        errno(std::os::unix::fs::symlink("f", &long)),
        libc::ENAMETOOLONG
    );
    assert_eq!(errno(fs::hard_link(m.join("f"), &long)), libc::ENAMETOOLONG);
    assert_eq!(errno(fs::rename(m.join("f"), &long)), libc::ENAMETOOLONG);
    let longest = "y".repeat(255);
    fs::write(m.join(&longest), b"ok").unwrap();
    assert_eq!(fs::read(m.join(&longest)).unwrap(), b"ok");
    // A path longer than PATH_MAX, walked one directory at a time.
    let name = "z".repeat(200);
    let mut dir = rfs::open(m.path(), rfs::OFlags::DIRECTORY, Mode::empty()).unwrap();
    for _ in 0..25 {
        rfs::mkdirat(&dir, &name, Mode::from(0o755)).unwrap();
        dir = rfs::openat(&dir, &name, rfs::OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
    let leaf = rfs::openat(
        &dir,
        "leaf",
        rfs::OFlags::CREATE | rfs::OFlags::WRONLY,
        Mode::from(0o644),
    )
    .unwrap();
    assert_eq!(rustix::io::write(&leaf, b"deep").unwrap(), 4);
    drop((leaf, dir));
    let mut dir = rfs::open(m.path(), rfs::OFlags::DIRECTORY, Mode::empty()).unwrap();
    for _ in 0..25 {
        dir = rfs::openat(&dir, &name, rfs::OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
    let leaf = rfs::openat(&dir, "leaf", rfs::OFlags::RDONLY, Mode::empty()).unwrap();
    let mut back = [0u8; 8];
    assert_eq!(rustix::io::read(&leaf, &mut back[..]).unwrap(), 4);
    assert_eq!(&back[..4], b"deep");
    drop((leaf, dir));
    m.unmount();
}
