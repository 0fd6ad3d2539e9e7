//! Push and pull against the S3 server (run by `store::tests::remote_store_against_rgw`, the
//! one test of this binary that starts it): a push that stops before its manifest publishes
//! nothing and is resumed by the next one; two pushes of images that share blocks at once.

use std::path::Path;

use crate::store::remote::test_server::S3Server;
use crate::store_dir::{Store, StoreOptions};
use crate::transfer::remote_images;
use crate::volume::Volume;

fn options() -> StoreOptions {
    StoreOptions::default()
        .block_size(4096)
        .flush_interval(None)
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 + i / 7) as u8 ^ seed).collect()
}

/// A store with image `one` (a.bin) and image `two` (a.bin and b.bin).
fn store_with_two_images(dir: &Path) -> Store {
    let store = Store::init(dir.join("store"), options()).unwrap();
    for (name, files) in [("one", &["a.bin"][..]), ("two", &["a.bin", "b.bin"][..])] {
        let src = dir.join(name);
        std::fs::create_dir_all(&src).unwrap();
        for (i, file) in files.iter().enumerate() {
            std::fs::write(src.join(file), data(i as u8 + 1, 200_000)).unwrap();
        }
        store.import_path(&src, name).unwrap();
    }
    store
}

fn read_file(view: &Volume, path: &str) -> Vec<u8> {
    let attr = view.resolve(path.as_bytes()).unwrap();
    view.read(attr.node, 0, attr.size as usize).unwrap()
}

/// Blocks uploaded by a push that died before its manifest: no image is listed, and the next
/// push of the image sends only the blocks still missing.
pub(crate) fn a_half_finished_push_is_invisible_and_resumed(server: &S3Server) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_images(dir.path());
    let remote = server.fresh_remote("half-push");
    let packs = store.remote_packs(remote.clone()).unwrap();
    let collected = super::push::collect(&store, "one").unwrap();
    let half = collected.blocks.len() / 2;
    packs
        .upload(&collected.blocks[..half], store.blocks())
        .unwrap();
    assert!(remote_images(&remote).unwrap().is_empty(), "no half image");
    let report = store.push("one", &packs).unwrap();
    assert_eq!(
        report.uploaded.blocks as usize,
        collected.blocks.len() - half
    );
    assert_eq!(remote_images(&remote).unwrap(), ["one"]);
}

/// Two pushes of images that share blocks, at once: both publish, and both pull whole.
pub(crate) fn two_pushes_of_sharing_images_at_once(server: &S3Server) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_images(dir.path());
    let remote = server.fresh_remote("two-pushes");
    std::thread::scope(|scope| {
        for name in ["one", "two"] {
            let (store, remote) = (&store, server.remote_at(remote.url()));
            scope.spawn(move || {
                let packs = store.remote_packs(remote).unwrap();
                store.push(name, &packs).unwrap();
            });
        }
    });
    assert_eq!(remote_images(&remote).unwrap(), ["one", "two"]);
    let other = tempfile::tempdir().unwrap();
    let pulled = Store::init(other.path().join("store"), options()).unwrap();
    let packs = pulled.remote_packs(remote).unwrap();
    for name in ["one", "two"] {
        pulled.pull(&packs, name, name).unwrap();
    }
    let two = pulled.open_image("two").unwrap();
    assert_eq!(read_file(&two, "a.bin"), data(1, 200_000));
    assert_eq!(read_file(&two, "b.bin"), data(2, 200_000));
    assert_eq!(
        read_file(&pulled.open_image("one").unwrap(), "a.bin"),
        data(1, 200_000)
    );
}
