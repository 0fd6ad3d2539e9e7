//! Overlay semantics through the kernel: whiteouts and opaque directories made by `rm` and
//! `rmdir` + `mkdir`, readdir merging three layers, two mounted containers of one image kept
//! apart, commit of a mounted container, and the `--share-memory` mode (FOPEN_DIRECT_IO with
//! FUSE_DIRECT_IO_ALLOW_MMAP) passing the descriptor and mmap coherence checks of invariant 7.

// mmap has no safe wrapper in std; the one use is the share-memory mapping test.
#![allow(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use tessera::maintenance::FsckOptions;
use tessera::{Store, Volume};
use tessera_fusefs::MountConfig;
use tessera_tests::mount::{MountGuard, can_mount};
use tessera_tests::{TempStore, bytes, image_store, read_file};

const BS: usize = 4096;

fn mount(store: &Store, container: &str) -> MountGuard {
    MountGuard::new(
        store.open_container(container).unwrap(),
        MountConfig::default(),
    )
}

/// The names in a mounted directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    out.sort();
    out
}

/// The names in a directory of a view, sorted.
fn view_names(v: &Volume, path: &str) -> Vec<String> {
    let node = v.resolve(path.as_bytes()).unwrap().node;
    let mut out: Vec<String> = v
        .list_dir(node)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    out.sort();
    out
}

/// `(change, path)` of a container's diff, paths without a leading slash.
fn diff(store: &Store, container: &str) -> Vec<(String, String)> {
    store
        .diff_container(container)
        .unwrap()
        .into_iter()
        .map(|d| (d.change, d.path.trim_start_matches('/').to_string()))
        .collect()
}

fn gone(path: &Path) -> bool {
    fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

#[test]
fn rm_of_an_image_file_leaves_a_whiteout() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::create_dir(src.join("etc")).unwrap();
        fs::write(src.join("etc/a"), b"a").unwrap();
        fs::write(src.join("etc/b"), b"b").unwrap();
    });
    let m = mount(&t, "c");
    fs::remove_file(m.join("etc/a")).unwrap();
    assert!(gone(&m.join("etc/a")));
    assert_eq!(names(&m.join("etc")), ["b"]);
    let image = t.open_image("img").unwrap();
    assert_eq!(read_file(&image, "etc/a"), b"a", "the image still has it");
    // The directory changed too (its mtime), as `docker diff` reports "C /etc".
    let want = [("M", "etc"), ("D", "etc/a")].map(|(c, p)| (c.to_string(), p.to_string()));
    assert_eq!(diff(&t, "c"), want);
    m.unmount();
    let m = mount(&t, "c");
    assert!(gone(&m.join("etc/a")), "the whiteout is persistent");
    // A new file of the same name is a new file, not the old one back.
    fs::write(m.join("etc/a"), b"new").unwrap();
    assert_eq!(fs::read(m.join("etc/a")).unwrap(), b"new");
    assert_eq!(names(&m.join("etc")), ["a", "b"]);
    m.unmount();
}

#[test]
fn rmdir_and_mkdir_of_an_image_directory_make_it_opaque() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::create_dir_all(src.join("d/sub")).unwrap();
        fs::write(src.join("d/x"), b"x").unwrap();
        fs::write(src.join("d/y"), b"y").unwrap();
        fs::write(src.join("d/sub/z"), b"z").unwrap();
    });
    let m = mount(&t, "c");
    fs::remove_dir_all(m.join("d")).unwrap();
    fs::create_dir(m.join("d")).unwrap();
    assert!(
        names(&m.join("d")).is_empty(),
        "nothing of the image shows through"
    );
    fs::write(m.join("d/new"), b"new").unwrap();
    fs::create_dir(m.join("d/sub")).unwrap();
    assert_eq!(names(&m.join("d")), ["new", "sub"]);
    assert!(names(&m.join("d/sub")).is_empty());
    assert!(gone(&m.join("d/x")) && gone(&m.join("d/sub/z")));
    m.unmount();
    let m = mount(&t, "c");
    assert_eq!(names(&m.join("d")), ["new", "sub"]);
    assert!(names(&m.join("d/sub")).is_empty());
    let image = t.open_image("img").unwrap();
    assert_eq!(view_names(&image, "d"), ["sub", "x", "y"]);
    let changes = diff(&t, "c");
    for path in ["d/x", "d/y", "d/sub/z"] {
        assert!(
            changes.contains(&("D".into(), path.into())),
            "{path}: {changes:?}"
        );
    }
    assert!(
        changes.contains(&("A".into(), "d/new".into())),
        "{changes:?}"
    );
    m.unmount();
}

#[test]
fn readdir_merges_three_layers() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::create_dir_all(src.join("d")).unwrap();
        fs::create_dir_all(src.join("o")).unwrap();
        for name in ["a", "b", "c"] {
            fs::write(src.join("d").join(name), format!("base {name}")).unwrap();
        }
        fs::write(src.join("o/old"), b"old").unwrap();
    });
    // Layer 2: add, delete and change.
    let m = mount(&t, "c");
    fs::write(m.join("d/e"), b"layer2 e").unwrap();
    fs::remove_file(m.join("d/b")).unwrap();
    fs::write(m.join("d/a"), b"layer2 a").unwrap();
    m.unmount();
    t.commit_container("c", "v2").unwrap();
    // Layer 3, in a container of the new image: more of each, and an opaque directory.
    t.create_container("c2", "v2").unwrap();
    let m = mount(&t, "c2");
    fs::write(m.join("d/f"), b"layer3 f").unwrap();
    fs::remove_file(m.join("d/c")).unwrap();
    fs::remove_dir_all(m.join("o")).unwrap();
    fs::create_dir(m.join("o")).unwrap();
    fs::write(m.join("o/fresh"), b"fresh").unwrap();
    m.unmount();
    t.commit_container("c2", "v3").unwrap();
    assert_eq!(t.open_image("v3").unwrap().layers().len(), 3);

    t.create_container("c3", "v3").unwrap();
    let m = mount(&t, "c3");
    assert_eq!(names(&m.join("d")), ["a", "e", "f"]);
    assert_eq!(names(&m.join("o")), ["fresh"]);
    assert_eq!(names(m.path()), ["d", "o"]);
    let read = |p: &str| fs::read(m.join(p)).unwrap();
    assert_eq!(
        (read("d/a"), read("d/e"), read("d/f")),
        (
            b"layer2 a".to_vec(),
            b"layer2 e".to_vec(),
            b"layer3 f".to_vec()
        )
    );
    assert!(gone(&m.join("d/b")) && gone(&m.join("d/c")) && gone(&m.join("o/old")));
    // The top (writable) layer merges too: hide an entry of layer 2, add one.
    fs::remove_file(m.join("d/e")).unwrap();
    fs::write(m.join("d/g"), b"top g").unwrap();
    assert_eq!(names(&m.join("d")), ["a", "f", "g"]);
    // Every image keeps its own view.
    let images = [
        ("img", vec!["a", "b", "c"]),
        ("v2", vec!["a", "c", "e"]),
        ("v3", vec!["a", "e", "f"]),
    ];
    for (image, want) in images {
        assert_eq!(
            view_names(&t.open_image(image).unwrap(), "d"),
            want,
            "{image}"
        );
    }
    m.unmount();
}

#[test]
fn two_mounted_containers_of_one_image_are_isolated() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::create_dir_all(src.join("dir/inner")).unwrap();
        fs::write(src.join("shared"), bytes(1, 3 * BS)).unwrap();
        fs::write(src.join("doomed"), b"doomed").unwrap();
        fs::write(src.join("dir/inner/f"), b"f").unwrap();
    });
    t.create_container("other", "img").unwrap();
    let (m1, m2) = (mount(&t, "c"), mount(&t, "other"));
    let one = OpenOptions::new()
        .write(true)
        .open(m1.join("shared"))
        .unwrap();
    one.write_all_at(b"container one", 100).unwrap();
    fs::remove_file(m1.join("doomed")).unwrap();
    fs::rename(m1.join("dir"), m1.join("moved")).unwrap();
    fs::write(m1.join("new"), b"new").unwrap();
    OpenOptions::new()
        .write(true)
        .open(m2.join("shared"))
        .unwrap()
        .write_all_at(b"container two", 200)
        .unwrap();

    let mut want1 = bytes(1, 3 * BS);
    want1[100..113].copy_from_slice(b"container one");
    let mut want2 = bytes(1, 3 * BS);
    want2[200..213].copy_from_slice(b"container two");
    assert_eq!(fs::read(m1.join("shared")).unwrap(), want1);
    assert_eq!(fs::read(m2.join("shared")).unwrap(), want2);
    assert_eq!(names(m1.path()), ["moved", "new", "shared"]);
    assert_eq!(names(m2.path()), ["dir", "doomed", "shared"]);
    assert_eq!(fs::read(m2.join("dir/inner/f")).unwrap(), b"f");
    assert_eq!(fs::read(m1.join("moved/inner/f")).unwrap(), b"f");
    let image = t.open_image("img").unwrap();
    assert_eq!(view_names(&image, ""), ["dir", "doomed", "shared"]);
    assert_eq!(read_file(&image, "shared"), bytes(1, 3 * BS));
    drop(one);
    m1.unmount();
    m2.unmount();
}

#[test]
fn commit_of_a_mounted_container() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::write(src.join("f"), bytes(2, 2 * BS)).unwrap();
        fs::write(src.join("doomed"), b"doomed").unwrap();
    });
    let m = mount(&t, "c");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("f"))
        .unwrap();
    f.write_all_at(b"before commit", 0).unwrap();
    fs::write(m.join("added"), b"added").unwrap();
    fs::remove_file(m.join("doomed")).unwrap();
    // An open-but-unlinked file is never part of a commit.
    let tmp = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.join("tmp"))
        .unwrap();
    tmp.write_all_at(b"scratch", 0).unwrap();
    fs::remove_file(m.join("tmp")).unwrap();
    t.commit_container("c", "snap").unwrap();
    // The container goes on: its later changes are not in the image.
    f.write_all_at(b"after commit!", 0).unwrap();
    fs::write(m.join("later"), b"later").unwrap();
    tmp.write_all_at(b"still usable", 0).unwrap();

    t.create_container("from-snap", "snap").unwrap();
    let m2 = mount(&t, "from-snap");
    let mut want = bytes(2, 2 * BS);
    want[..13].copy_from_slice(b"before commit");
    assert_eq!(fs::read(m2.join("f")).unwrap(), want);
    assert_eq!(names(m2.path()), ["added", "f"]);
    want[..13].copy_from_slice(b"after commit!");
    assert_eq!(fs::read(m.join("f")).unwrap(), want);
    assert_eq!(names(m.path()), ["added", "f", "later"]);
    drop((f, tmp));
    m.unmount();
    m2.unmount();
    assert_eq!(
        view_names(&t.open_image("snap").unwrap(), ""),
        ["added", "f"]
    );
    let report = t.fsck(&FsckOptions { verify_data: true }).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn an_image_mounts_read_only() {
    if !can_mount() {
        return;
    }
    let t = image_store(BS as u32, |src| {
        fs::create_dir(src.join("d")).unwrap();
        fs::write(src.join("d/f"), b"image").unwrap();
    });
    let m = MountGuard::new(t.open_image("img").unwrap(), MountConfig::default());
    assert_eq!(fs::read(m.join("d/f")).unwrap(), b"image");
    let erofs = |r: std::io::Result<()>| r.unwrap_err().raw_os_error() == Some(libc::EROFS);
    assert!(erofs(
        OpenOptions::new().write(true).open(m.join("d/f")).map(drop)
    ));
    assert!(erofs(fs::write(m.join("d/new"), b"x")));
    assert!(erofs(fs::create_dir(m.join("e"))));
    assert!(erofs(fs::remove_file(m.join("d/f"))));
    assert!(erofs(fs::rename(m.join("d"), m.join("e"))));
    assert_eq!(names(m.path()), ["d"]);
    m.unmount();
}

/// A store with a block cache (share-memory reads go through it), image `img` with one file.
fn cached_store(dir: &Path, data: &[u8]) -> Store {
    let options = TempStore::options(BS as u32).block_cache_bytes(8 << 20);
    let store = Store::init(dir.join("store"), options).unwrap();
    fs::create_dir(dir.join("src")).unwrap();
    fs::write(dir.join("src/f"), data).unwrap();
    store.import_path(&dir.join("src"), "img").unwrap();
    store.create_container("c", "img").unwrap();
    store
}

fn share_memory() -> MountConfig {
    MountConfig {
        share_memory: true,
        ..MountConfig::default()
    }
}

#[test]
fn share_memory_read_only_descriptor_sees_writes() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(3, 4 * BS);
    let store = cached_store(dir.path(), &data);
    let m = MountGuard::new(store.open_container("c").unwrap(), share_memory());
    let p = m.join("f");
    let reader = File::open(&p).unwrap();
    let mut seen = Vec::new();
    (&reader).read_to_end(&mut seen).unwrap();
    assert_eq!(seen, data);
    // Direct I/O: a second read goes to the daemon again (its cache), not to a page cache.
    let (_, hits, _) = store.block_cache_figures().expect("a block cache");
    reader.read_exact_at(&mut seen, 0).unwrap();
    let (_, hits_again, _) = store.block_cache_figures().unwrap();
    assert!(
        hits_again >= hits + 4,
        "read(2) bypasses the page cache: {hits} -> {hits_again}"
    );
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .write_all_at(b"written", 4000)
        .unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("printf 'other process' | dd of=\"$1\" bs=1 seek=9000 conv=notrunc status=none")
        .arg("sh")
        .arg(&p)
        .status()
        .unwrap();
    assert!(status.success());
    let mut buf = [0u8; 13];
    reader.read_exact_at(&mut buf[..7], 4000).unwrap();
    assert_eq!(&buf[..7], b"written");
    reader.read_exact_at(&mut buf, 9000).unwrap();
    assert_eq!(&buf, b"other process");
    drop(reader);
    m.unmount();
}

#[test]
fn share_memory_mmap_shared_is_coherent() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(4, 4 * BS);
    let store = cached_store(dir.path(), &data);
    let m = MountGuard::new(store.open_container("c").unwrap(), share_memory());
    let p = m.join("f");
    let file = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let len = 4 * BS;
    // SAFETY: maps `len` bytes of an open file of that size; the result is checked, the
    // mapping is only accessed within `len` bytes by raw copies (never through references
    // that other writers could invalidate), and it is unmapped before the file is closed.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
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
    let ptr = ptr.cast::<u8>();
    let snapshot = || {
        let mut out = vec![0u8; len];
        // SAFETY: see above.
        unsafe { std::ptr::copy_nonoverlapping(ptr, out.as_mut_ptr(), len) };
        out
    };
    assert_eq!(snapshot(), data);
    // write(2) (direct I/O to the daemon) shows in the mapping.
    file.write_all_at(b"by write(2)", 100).unwrap();
    assert_eq!(&snapshot()[100..111], b"by write(2)");
    // A store through the mapping, after msync, shows to read(2) (direct I/O from the daemon).
    let stored = b"by the mapping";
    // SAFETY: the range lies inside the mapping; `msync` gets exactly the mapping.
    let ret = unsafe {
        std::ptr::copy_nonoverlapping(stored.as_ptr(), ptr.add(2 * BS - 3), stored.len());
        libc::msync(ptr.cast(), len, libc::MS_SYNC)
    };
    assert_eq!(ret, 0, "msync: {}", std::io::Error::last_os_error());
    let mut buf = [0u8; 14];
    File::open(&p)
        .unwrap()
        .read_exact_at(&mut buf, 2 * BS as u64 - 3)
        .unwrap();
    assert_eq!(&buf, stored);
    // SAFETY: unmaps exactly the mapping made above; nothing uses `ptr` afterwards.
    assert_eq!(unsafe { libc::munmap(ptr.cast(), len) }, 0);
    drop(file);
    m.unmount();
    let mut want = data.clone();
    want[100..111].copy_from_slice(b"by write(2)");
    want[2 * BS - 3..2 * BS + 11].copy_from_slice(stored);
    assert_eq!(read_file(&store.open_container("c").unwrap(), "f"), want);
}
