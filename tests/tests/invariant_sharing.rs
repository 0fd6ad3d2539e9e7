//! Invariants 1 and 2 of docs/design.md, each written to fail if it broke: a block the store already
//! holds (sealed pack, open pack, same flush) adds no data; lower layers never change — a write
//! in one container is invisible to every other container and image.

use std::collections::BTreeMap;

use tessera::XattrMode;
use tessera::volume::Volume;
use tessera::{Attr, FileKind, RenameFlags, SetAttr, Store};
use tessera_tests::invariants::*;
use tessera_tests::{TempStore, bytes, node_at, read_file, small_tree, write_file};

#[test]
fn invariant_1_dedup() {
    let bs = 64 * KIB as usize;
    let t = TempStore::new(bs as u32);
    let block = |seed| bytes(seed, bs);
    let (a, b, tail) = (block(1), block(2), bytes(3, 1000));
    let src = t.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("ab"), [&a[..], &b, &tail].concat()).unwrap();
    t.import_path(&src, "base").unwrap(); // sealed packs (adopted)
    t.create_container("c1", "base").unwrap();
    t.create_container("c2", "base").unwrap();
    let (v1, v2) = (
        t.open_container("c1").unwrap(),
        t.open_container("c2").unwrap(),
    );

    // Blocks held in a sealed pack, written again in other files, whole or as a short tail.
    let no_growth = growth(&t, || {
        write_file(&v1, "x", &[&b[..], &a].concat());
        write_file(&v1, "tail", &tail);
        t.sync().unwrap();
    });
    assert_eq!(no_growth, (0, 0), "sealed-pack blocks were stored again");

    // A new block costs one block and one entry (the measurement sees new data) ...
    let d = block(4);
    let one_block = growth(&t, || {
        write_file(&v1, "d", &d);
        t.sync().unwrap();
    });
    assert_eq!(one_block.0, bs as u64);
    // (That one opened a pack; measure a new block in the open pack.)
    let one_block = growth(&t, || {
        write_file(&v1, "f", &block(6));
        t.sync().unwrap();
    });
    assert_eq!(one_block.0, bs as u64);
    // ... and once in the open pack, nothing more: other files, containers, offsets.
    let no_growth = growth(&t, || {
        write_file(&v1, "d-again", &[&a[..], &d].concat());
        write_file(&v2, "d", &d);
        let node = create(&v2, "at-an-offset");
        v2.write(node, 5 * bs as u64, &d).unwrap();
        t.sync().unwrap();
    });
    assert_eq!(no_growth, (0, 0), "open-pack blocks were stored again");

    // One block written into several files and offsets of one flush is stored once (the
    // pack grows by one entry), and a flush of another container adds nothing.
    let e = block(5);
    let stored = growth(&t, || {
        write_file(&v1, "e1", &e);
        write_file(&v1, "e2", &[&e[..], &e].concat());
        v1.sync().unwrap();
        write_file(&v2, "e3", &e);
        t.sync().unwrap();
    });
    assert_eq!(stored, one_block, "one flush stored a block twice");

    // Across layers and containers: a container on a committed image, and a re-import.
    drop(v1);
    t.commit_container("c1", "snap").unwrap();
    t.create_container("c3", "snap").unwrap();
    let v3 = t.open_container("c3").unwrap();
    let no_growth = growth(&t, || {
        write_file(&v3, "all", &[&a[..], &b, &d, &e, &tail].concat());
        t.sync().unwrap();
        let report = t.import_path(&src, "again").unwrap();
        assert_eq!(report.added_bytes, 0, "a re-import stored data");
    });
    assert_eq!(
        no_growth,
        (0, 0),
        "blocks of other layers were stored again"
    );
    assert_eq!(read_file(&v3, "all").len(), 4 * bs + 1000);
}

/// What a view shows, path by path: attributes, a hash of the content or link target, xattrs.
type Seen = BTreeMap<String, (Attr, u64, Vec<(Vec<u8>, Vec<u8>)>)>;

fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn seen(v: &Volume) -> Seen {
    let mut out = Seen::new();
    let mut dirs = vec![(v.root(), String::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        for e in v.list_dir(dir).unwrap() {
            let path = format!("{prefix}/{}", String::from_utf8_lossy(&e.name));
            let attr = v.getattr(e.node).unwrap();
            let data = match e.kind {
                FileKind::File => v.read(e.node, 0, attr.size as usize).unwrap(),
                FileKind::Symlink => v.readlink(e.node).unwrap(),
                _ => Vec::new(),
            };
            let names = v.listxattr(e.node).unwrap();
            let xattrs = names
                .into_iter()
                .map(|n| (v.getxattr(e.node, &n).unwrap(), n));
            let xattrs = xattrs.map(|(value, name)| (name, value)).collect();
            if e.kind == FileKind::Dir {
                dirs.push((e.node, path.clone()));
            }
            out.insert(path, (attr, hash(&data), xattrs));
        }
    }
    out
}

fn image(t: &Store, name: &str) -> Seen {
    seen(&t.open_image(name).unwrap())
}

#[test]
fn invariant_2_lower_layers_never_change() {
    let mut t = TempStore::new(4096);
    let src = t.dir.path().join("src");
    small_tree(&src);
    std::fs::write(src.join("usr/lib/other.bin"), bytes(9, 50_000)).unwrap();
    t.import_path(&src, "base").unwrap();
    let base = image(&t, "base");
    let base_info = t.images().unwrap()[0].clone();
    for c in ["c1", "c2"] {
        t.create_container(c, "base").unwrap();
    }
    let (v1, v2) = (
        t.open_container("c1").unwrap(),
        t.open_container("c2").unwrap(),
    );
    assert_eq!(seen(&v2), base, "a fresh container differs from its image");

    // Every kind of change in c1, durable.
    let big = node_at(&v1, "usr/lib/big.bin");
    v1.write(big, 150_000, b"container one was here").unwrap();
    set_size(&v1, node_at(&v1, "etc/hostname"), 3);
    let change = SetAttr {
        mode: Some(0o600),
        uid: Some(7),
        ..Default::default()
    };
    v1.setattr(big, &change).unwrap();
    v1.setxattr(big, b"user.note", b"c1", XattrMode::Any)
        .unwrap();
    v1.link(big, v1.root(), b"big-link").unwrap();
    v1.unlink(v1.root(), b"hostname-link").unwrap();
    v1.rename(
        v1.root(),
        b"usr",
        v1.root(),
        b"usr2",
        RenameFlags::default(),
    )
    .unwrap();
    write_file(&v1, "new", b"new file");
    v1.fsync(big).unwrap();
    t.sync().unwrap();
    assert_eq!(
        image(&t, "base"),
        base,
        "a container's writes changed its image"
    );
    assert_eq!(
        seen(&v2),
        base,
        "a container's writes showed in another container"
    );

    // Commit, then change the committed files again: the new image must not move either.
    let c1_before_commit = seen(&v1);
    t.commit_container("c1", "snap").unwrap();
    let snap = image(&t, "snap");
    assert_eq!(
        snap, c1_before_commit,
        "commit changed what the container showed"
    );
    v1.write(big, 0, &bytes(4, 70_000)).unwrap();
    set_size(&v1, node_at(&v1, "usr2/lib/other.bin"), 0);
    v1.unlink(v1.root(), b"new").unwrap();
    v1.setxattr(big, b"user.note", b"again", XattrMode::Any)
        .unwrap();
    // And c2 writes the same lower file: invisible to c1 and to both images. (Compared
    // after a flush: a dirty file's st_blocks is only an estimate.)
    t.sync().unwrap();
    let c1_now = seen(&v1);
    v2.write(node_at(&v2, "usr/lib/big.bin"), 0, b"container two")
        .unwrap();
    t.sync().unwrap();
    assert_eq!(seen(&v1), c1_now, "c2's write showed in c1");
    drop((v1, v2));
    t.reopen();
    assert_eq!(image(&t, "base"), base, "base changed (after reopen)");
    assert_eq!(
        image(&t, "snap"),
        snap,
        "a committed image changed (after reopen)"
    );
    let base_again = t
        .images()
        .unwrap()
        .into_iter()
        .find(|i| i.name == "base")
        .unwrap();
    assert_eq!(
        (
            base_again.top_layer,
            base_again.layers,
            base_again.layer_bytes
        ),
        (base_info.top_layer, base_info.layers, base_info.layer_bytes)
    );
}
