//! Power cuts in the middle of imports: the image is there completely or not at all, the store
//! reopens clean (staging packs and layers swept), and the same import then succeeds.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use tessera::import::{EntryKind, EntryMeta, LayerFeed};
use tessera::io::{SimIo, SimOptions};
use tessera::{Caller, Error, ErrorKind, Result as EngineResult, Store};
use tessera_tests::bytes;
use tessera_tests::crash::*;

/// What the imports bring: blocks shared with the base image, new data over several packs,
/// zeros, an empty directory.
fn import_tree() -> Tree {
    let mut tree = tree(vec![
        ("app/bin/tool", bytes(1, 300_000)),
        ("app/lib/one.so", bytes(11, 400_000)),
        ("app/lib/two.so", bytes(12, 200_000)),
        ("app/etc/config", b"key=value\n".to_vec()),
        ("app/zeros", vec![0; 100_000]),
    ]);
    tree.insert("app/empty".into(), Entry::Dir);
    tree
}

/// A store on `sim` with the base image and a container holding one fsync'd file.
fn store_with_base(sim: &Arc<SimIo>, base_src: &Path) -> Store {
    let store = Store::init(STORE, options(sim, 4096)).unwrap();
    store.import_path(base_src, "base").unwrap();
    store.create_container(CONTAINER, "base").unwrap();
    let v = store.open_container(CONTAINER).unwrap();
    let node = v
        .create(v.root(), b"kept", 0o644, Caller::ROOT)
        .unwrap()
        .node;
    v.write(node, 0, &bytes(5, 50_000)).unwrap();
    v.fsync(node).unwrap();
    store
}

/// Reopens a store after a crash during an import and checks what was there before.
fn reopen_after_import_crash(sim: &Arc<SimIo>, base: &Tree, context: &str) -> Store {
    let store =
        Store::open(STORE, options(sim, 4096)).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    check_packs(sim, &store).unwrap_or_else(|e| panic!("{context}: {e}"));
    assert_eq!(
        image_tree(&store, "base").as_ref(),
        Ok(base),
        "{context}: base image"
    );
    let v = store.open_container(CONTAINER).unwrap();
    assert_eq!(
        read_all(&v, "kept"),
        content(&bytes(5, 50_000)),
        "{context}: lost"
    );
    store
}

/// An import cut short by an injected I/O error at points over all of its mutating calls
/// (pack appends, index writes and renames, metadata commits, publishing; counted in a dry
/// run), then a power cut: the image is there completely or not at all, the store reopens
/// clean (staging packs and layers swept) and imports it again. Every other cut first heals
/// the disk and checks the store in process: a failed import shows no image (it found a failed
/// publish that left its image record over deleted layers). The other cuts must have seen
/// both outcomes of the crash: the image published, and the image absent.
#[test]
fn crash_during_import_leaves_all_or_nothing() {
    let (base, imported) = (base_tree(), import_tree());
    let tmp = tempfile::tempdir().unwrap();
    let (base_src, src) = (tmp.path().join("base"), tmp.path().join("imp"));
    write_tree(&base_src, &base);
    write_tree(&src, &imported);
    let calls = {
        let sim = SimIo::new(SimOptions::default());
        let store = store_with_base(&sim, &base_src);
        let before = sim.mutating_calls();
        store.import_path(&src, "imp").expect("the dry run");
        sim.mutating_calls() - before
    };
    let (mut published, mut absent) = (0, 0);
    let cuts = cut_points(calls, 70, calls);
    let replay = cuts.len() == 1;
    for (i, budget) in cuts.into_iter().enumerate() {
        let context = format!("cut at call {budget} of {calls}");
        let sim = SimIo::new(SimOptions::default());
        let store = store_with_base(&sim, &base_src);
        sim.fail_after(budget as i64);
        let result = store.import_path(&src, "imp");
        let healed = i % 2 == 1 && budget < calls;
        if healed {
            sim.heal();
            if result.is_err() {
                let gone = store.open_image("imp").map(drop).map_err(|e| e.kind());
                assert_eq!(gone, Err(ErrorKind::NotFound), "{context}: half an image");
                let again = store.import_path(&src, "imp");
                again.unwrap_or_else(|e| panic!("{context}: import after heal: {e}"));
            }
            assert_eq!(
                image_tree(&store, "imp").as_ref(),
                Ok(&imported),
                "{context}"
            );
            store
                .sync()
                .unwrap_or_else(|e| panic!("{context}: sync after heal: {e}"));
        }
        let after = sim.crash(budget);
        drop(store);
        let store = reopen_after_import_crash(&after, &base, &context);
        match image_tree(&store, "imp") {
            Ok(tree) => {
                assert!(
                    tree == imported,
                    "{context}: partial image:\n{}",
                    diff(&imported, &tree)
                );
                published += !healed as u32;
            }
            Err(_) if result.is_ok() || healed => panic!("{context}: the imported image is lost"),
            Err(_) => {
                absent += 1;
                let again = store.import_path(&src, "imp");
                again.unwrap_or_else(|e| panic!("{context}: import after the crash: {e}"));
                assert_eq!(
                    image_tree(&store, "imp").as_ref(),
                    Ok(&imported),
                    "{context}"
                );
            }
        }
    }
    eprintln!("{calls} calls: {published} published, {absent} absent after the crash");
    assert!(
        replay || (published > 0 && absent > 0),
        "the cuts did not reach both outcomes: {published} published, {absent} absent"
    );
}

type Hook<'h> = &'h dyn Fn(usize) -> EngineResult<()>;
type Feeder<'f> = Box<dyn FnOnce(&mut LayerFeed) -> EngineResult<()> + 'f>;

/// Imports a two-layer image (the second adds a file and whites one out), calling `hook`
/// before each entry with its index.
fn import_two_layers(store: &Store, hook: Hook<'_>) -> EngineResult<()> {
    let upper = Tree::from([
        ("app/lib/.wh.two.so".to_string(), Entry::File(Vec::new())),
        ("app/new".to_string(), Entry::File(bytes(21, 50_000))),
    ]);
    let feed = |feed: &mut LayerFeed, tree: &Tree, first: usize| -> EngineResult<()> {
        for (i, (path, entry)) in tree.iter().enumerate() {
            hook(first + i)?;
            let meta = EntryMeta {
                perm: 0o755,
                ..Default::default()
            };
            match entry {
                Entry::Dir => feed.entry(path.as_bytes(), EntryKind::Dir, meta)?,
                Entry::File(d) => feed.file(path.as_bytes(), meta, d.len() as u64, &mut &d[..])?,
            }
        }
        Ok(())
    };
    let lower = import_tree();
    let layers: Vec<Feeder<'_>> = vec![
        Box::new(|f: &mut LayerFeed| feed(f, &lower, 0)),
        Box::new(|f: &mut LayerFeed| feed(f, &upper, lower.len())),
    ];
    store.import_layers("imp", None, layers).map(drop)
}

/// A power cut while an import feeds entries — before or after its first layer's tree reached
/// the metadata, with or without a sync just before (which makes the unpublished staging layer
/// durable): no image after the crash, the store reopens clean, and the same import then
/// succeeds and survives another crash.
#[test]
fn crash_while_an_import_feeds_entries() {
    let base = base_tree();
    let tmp = tempfile::tempdir().unwrap();
    write_tree(&tmp.path().join("base"), &base);
    let mut expected = import_tree();
    expected.remove("app/lib/two.so");
    expected.insert("app/new".into(), Entry::File(bytes(21, 50_000)));
    for cut in 0..import_tree().len() + 2 {
        for sync_first in [false, true] {
            let context = format!("cut before entry {cut}, sync first: {sync_first}");
            let sim = SimIo::new(SimOptions::default());
            let store = store_with_base(&sim, &tmp.path().join("base"));
            let crashed: RefCell<Option<Arc<SimIo>>> = RefCell::new(None);
            let hook = |i: usize| {
                if i == cut {
                    if sync_first {
                        store.sync()?;
                    }
                    *crashed.borrow_mut() = Some(sim.crash(cut as u64));
                    return Err(Error::InvalidInput("power cut".into()));
                }
                Ok(())
            };
            assert!(import_two_layers(&store, &hook).is_err(), "{context}");
            drop(store);
            let after = crashed.take().expect("the hook crashed the disk");
            let store = reopen_after_import_crash(&after, &base, &context);
            assert!(
                store.open_image("imp").is_err(),
                "{context}: an unpublished image"
            );
            import_two_layers(&store, &|_| Ok(()))
                .unwrap_or_else(|e| panic!("{context}: import after the crash: {e}"));
            let tree = image_tree(&store, "imp").unwrap_or_else(|e| panic!("{context}: {e}"));
            assert!(tree == expected, "{context}:\n{}", diff(&expected, &tree));
            let again = after.crash(cut as u64 + 1000);
            drop(store);
            let store = reopen_after_import_crash(&again, &base, &context);
            assert_eq!(
                image_tree(&store, "imp").as_ref(),
                Ok(&expected),
                "{context}"
            );
        }
    }
}
