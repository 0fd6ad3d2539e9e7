//! Per-container size limits: what counts is the bytes a container holds exclusively (blocks
//! no image or other container references), a write past the limit fails with ENOSPC and
//! leaves everything else as it was, space comes back when the container deletes, and the
//! view's statfs shows the limit and the use.

use tessera::ErrorKind;
use tessera_tests::{TempStore, bytes, node_at, read_file, write_file};

const BS: u32 = 65536;
const MIB: u64 = 1 << 20;

fn store() -> TempStore {
    let t = TempStore::new(BS);
    let src = t.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("model.bin"), bytes(1, 4 << 20)).unwrap();
    t.import_path(&src, "img").unwrap();
    t.create_container_limited("c", "img", Some(MIB)).unwrap();
    t
}

/// Writes `len` bytes of `seed` into a new file in 64 KiB steps; returns how many were written
/// and the error that stopped it.
fn fill(
    v: &tessera::volume::Volume,
    name: &str,
    seed: u64,
    len: usize,
) -> (usize, Option<tessera::Error>) {
    let node = v
        .create(v.root(), name.as_bytes(), 0o644, tessera::Caller::ROOT)
        .unwrap()
        .node;
    let data = bytes(seed, len);
    let mut at = 0;
    while at < len {
        let end = (at + BS as usize).min(len);
        if let Err(e) = v.write(node, at as u64, &data[at..end]) {
            return (at, Some(e));
        }
        at = end;
    }
    (at, None)
}

#[test]
fn a_container_holds_at_most_its_limit_exclusively() {
    let t = store();
    let v = t.open_container("c").unwrap();
    // One byte of the 4 MiB image file costs one block of the limit.
    v.write(node_at(&v, "model.bin"), 3 << 20, b"x").unwrap();
    let (limit, used) = v.size_limit_use().unwrap().unwrap();
    assert_eq!(limit, MIB);
    assert_eq!(used, BS as u64, "one edited block");
    // A copy of the image's file shares every block with the image: it costs nothing.
    write_file(&v, "copy.bin", &bytes(1, 4 << 20));
    assert_eq!(t.size_limit_use("c").unwrap(), (Some(MIB), BS as u64));
    // New data stops at the limit, with ENOSPC.
    let (written, err) = fill(&v, "new.bin", 7, 2 << 20);
    let err = err.expect("2 MiB of new data fit a 1 MiB limit");
    assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
    assert!(err.to_string().contains("size limit"), "{err}");
    assert!(written as u64 <= MIB - BS as u64, "{written} bytes went in");
    assert!(written as u64 >= MIB / 2, "only {written} bytes went in");
    let (_, held) = t.size_limit_use("c").unwrap();
    assert!(held <= MIB, "{held} bytes held");
    // What was written is intact, and so is the rest.
    assert_eq!(read_file(&v, "new.bin"), bytes(7, written));
    assert_eq!(read_file(&v, "model.bin")[3 << 20], b'x');
    // The view looks like a file system of the limit's size.
    let fs = v.statfs().unwrap();
    assert_eq!(fs.blocks * fs.block_size as u64, MIB);
    assert!(fs.blocks_available * (fs.block_size as u64) <= MIB - held);
    // Deleting gives the space back.
    v.unlink(v.root(), b"new.bin").unwrap();
    let (written, err) = fill(&v, "again.bin", 8, 512 << 10);
    assert!(err.is_none(), "{err:?} after {written} bytes");
    // A raised limit (here: none) lets the write through.
    let (_, err) = fill(&v, "big.bin", 9, 2 << 20);
    assert!(err.is_some());
    t.set_size_limit("c", None).unwrap();
    let (_, err) = fill(&v, "big2.bin", 10, 2 << 20);
    assert!(err.is_none(), "{err:?}");
    assert!(v.size_limit_use().unwrap().is_none());
}

#[test]
fn the_limit_is_kept_in_the_container_record_and_other_containers_are_free() {
    let mut t = store();
    t.create_container("free", "img").unwrap();
    t.reopen();
    assert_eq!(t.size_limit_use("c").unwrap().0, Some(MIB));
    assert_eq!(t.size_limit_use("free").unwrap().0, None);
    let free = t.open_container("free").unwrap();
    let (_, err) = fill(&free, "big.bin", 3, 3 << 20);
    assert!(err.is_none(), "{err:?}");
    let v = t.open_container("c").unwrap();
    let (_, err) = fill(&v, "big.bin", 4, 3 << 20);
    assert_eq!(err.unwrap().kind(), ErrorKind::NoSpace);
    assert!(t.set_size_limit("nope", Some(1)).is_err());
}
