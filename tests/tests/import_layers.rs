//! Layer tars merge as the OCI image spec says: `.wh.NAME` deletes from the layers below (a
//! 0:0 character device too), `.wh..wh..opq` hides every lower entry of its directory but none
//! of its own layer's (wherever the marker comes), a directory can replace a file and a file
//! a directory, and a hard link may name a path of a lower layer.

use tessera::{ErrorKind, FileKind, Volume};
use tessera_tests::tars::TarMaker;
use tessera_tests::trees::{export, shown, tar_tree};
use tessera_tests::*;

const BS: usize = 16 * 1024;

/// Base layer, then whiteouts, an opaque directory, type changes, and a hard link into a
/// lower layer.
fn layer_tars() -> Vec<Vec<u8>> {
    let base = TarMaker::new()
        .dir("etc")
        .file("etc/passwd", b"root:x:0:0")
        .file("etc/gone", b"to be deleted")
        .dir("opq")
        .file("opq/a", b"lower a")
        .dir("opq/sub")
        .file("opq/sub/b", b"lower b")
        .dir("late-opq/sub")
        .file("late-opq/sub/old", b"old")
        .file("late-opq/old", b"old")
        .dir("late-opq/deep/er")
        .file("late-opq/deep/er/old", b"old")
        .dir("d2f")
        .file("d2f/inner", b"inner")
        .file("f2d", b"was a file")
        .dir("gone-dir/x")
        .file("gone-dir/x/y", b"y")
        .file("lib/libc.so", &bytes(9, 3 * BS))
        .file("keep", b"old keep")
        .file("chardev-gone", b"deleted by a 0:0 device")
        .finish();
    let middle = TarMaker::new()
        .file("etc/.wh.gone", b"")
        .file(".wh.gone-dir", b"")
        .file(".wh.never-existed", b"")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"upper new")
        .file("late-opq/sub/new", b"new under a lower dir")
        .file("late-opq/fresh", b"fresh")
        .file("late-opq/deep/er/f", b"f")
        .file("late-opq/.wh..wh..opq", b"")
        .file("d2f", b"now a file")
        .dir("f2d")
        .file("f2d/child", b"child")
        .file(".wh.keep", b"")
        .file("keep", b"new keep")
        .raw(b"chardev-gone", tar::EntryType::Char, b"", None)
        .finish();
    let top = TarMaker::new()
        .hard_link("lib/libc.so.6", "lib/libc.so")
        .file("etc/gone", b"back again")
        .finish();
    vec![base, middle, top]
}

fn file_of(volume: &Volume, path: &str) -> Vec<u8> {
    let attr = volume.resolve(path.as_bytes()).unwrap();
    assert_eq!(attr.kind, FileKind::File, "{path}");
    read_file(volume, path)
}

fn names(volume: &Volume, path: &str) -> Vec<String> {
    let dir = volume.resolve(path.as_bytes()).unwrap().node;
    let mut out: Vec<String> = volume
        .list_dir(dir)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    out.sort();
    out
}

#[test]
fn layer_tars_merge_with_oci_whiteouts() {
    let t = TempStore::new(BS as u32);
    let tars = layer_tars();
    let readers: Vec<&[u8]> = tars.iter().map(Vec::as_slice).collect();
    let report = t.import_tar_layers(readers, "stack").unwrap();
    assert_eq!(report.layers, 3);
    let v = t.open_image("stack").unwrap();
    let missing = |path: &str| {
        let e = v.resolve(path.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{path}: {e}");
    };
    assert_eq!(file_of(&v, "etc/passwd"), b"root:x:0:0");
    assert_eq!(
        file_of(&v, "keep"),
        b"new keep",
        "re-created after its whiteout"
    );
    missing("chardev-gone");
    assert_eq!(
        file_of(&v, "etc/gone"),
        b"back again",
        "re-added above its whiteout"
    );
    missing("gone-dir");
    missing("gone-dir/x/y");
    missing("never-existed");
    assert_eq!(names(&v, "opq"), ["new"]);
    missing("opq/a");
    missing("opq/sub/b");
    assert_eq!(file_of(&v, "opq/new"), b"upper new");
    // The opaque marker hides only the lower layers' entries, even when it comes last.
    assert_eq!(names(&v, "late-opq"), ["deep", "fresh", "sub"]);
    assert_eq!(names(&v, "late-opq/sub"), ["new"]);
    assert_eq!(names(&v, "late-opq/deep"), ["er"]);
    assert_eq!(names(&v, "late-opq/deep/er"), ["f"]);
    assert_eq!(file_of(&v, "d2f"), b"now a file");
    missing("d2f/inner");
    assert_eq!(v.resolve(b"f2d").unwrap().kind, FileKind::Dir);
    assert_eq!(names(&v, "f2d"), ["child"]);
    let lib = v.resolve(b"lib/libc.so").unwrap();
    let link = v.resolve(b"lib/libc.so.6").unwrap();
    assert_eq!(lib.node, link.node, "one node, two names");
    assert_eq!((lib.nlink, link.nlink), (2, 2));
    assert_eq!(file_of(&v, "lib/libc.so.6"), bytes(9, 3 * BS));
    // No whiteout leaks into the view or its export.
    let (tree, _) = tar_tree(&export(&v));
    let leaked: Vec<_> = tree
        .items
        .keys()
        .filter(|k| k.windows(4).any(|w| w == b".wh."))
        .map(|k| shown(k))
        .collect();
    assert!(leaked.is_empty(), "whiteouts exported: {leaked:?}");
    assert_eq!(tree.links.len(), 1);
}
