//! Model-based random tests of the engine: random op sequences run on a container's volume and
//! on a plain directory (the model), compared after every step (see `tessera_tests::model`).
//!
//! Each case imports a random tree as the base image, stacks up to two more image layers made
//! of committed op batches, then runs the container under test through a random sequence with
//! `Commit` and `Reopen` steps in it. Every image must show the model's tree of the moment it
//! was made, then and at the end (lower layers never change), and `fsck --verify-data` must
//! find the store clean after a last reopen. Cases: `PROPTEST_CASES` (the default, 32 + 8, runs
//! in about 15 s on 2 cores); ops per case: up to `TESSERA_MODEL_OPS` (default 60). The
//! deterministic tests at the bottom pin bugs the random ones found.

use proptest::prelude::*;
use tessera_tests::TempStore;
use tessera_tests::model::engine_fs::snapshot_volume;
use tessera_tests::model::strategy::{Case, case};
use tessera_tests::model::{
    self, DirFs, EngineFs, Fill, FsUnderTest, Mode, Op, RenameMode, Snapshot,
};

/// The longest op sequence of a case: `TESSERA_MODEL_OPS` (default 60), for longer soak runs.
fn max_ops() -> usize {
    std::env::var("TESSERA_MODEL_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60)
}

/// The model directory and the engine, set up as `case` says: the base image imported from
/// the tree, the stacked layers committed, the container under test open.
struct Setup {
    _model_dir: tempfile::TempDir,
    model: DirFs,
    sut: EngineFs,
    /// Every image made so far, with the tree it must show.
    images: Vec<(String, Snapshot)>,
}

/// Which block store backs the engine under test.
#[derive(Clone, Copy, PartialEq)]
enum Blocks {
    Packs,
    /// `MemoryStore`: nothing outlives the process, so cases run without `Reopen`.
    Memory,
}

fn set_up(block_size: u32, case: &Case, blocks: Blocks) -> Result<Setup, String> {
    let model_dir = tempfile::tempdir().expect("temp dir");
    let root = model_dir.path().join("root");
    std::fs::create_dir(&root).expect("model root");
    let mut model = DirFs::new(&root);
    for op in &case.tree {
        let _ = model::apply(&mut model, op); // only the model: it is the source of the import
    }
    let options = TempStore::options(block_size).blocks_in_memory(blocks == Blocks::Memory);
    let store = TempStore::with_options(block_size, options);
    store
        .import_path(&root, "base")
        .map_err(|e| format!("import: {e}"))?;
    let base = model.snapshot();
    model::same(
        "the imported image",
        &snapshot_volume(&store.open_image("base").expect("base"), true),
        &base,
    )?;
    let mut images = vec![("base".to_string(), base)];
    store.create_container("c0", "base").expect("container");
    let mut sut = EngineFs::open(store, "c0");
    for (i, batch) in case.stacked.iter().enumerate() {
        model::run(&mut sut, &mut model, batch).map_err(|e| format!("stacking layer {i}: {e}"))?;
        let (image, container) = (format!("layer{}", i + 1), format!("c{}", i + 1));
        sut.commit_as(&image, i % 2 == 0)
            .map_err(|e| format!("commit {image}: {}", model::errno_name(e)))?;
        let snap = model.snapshot();
        model::same(
            &format!("image {image}"),
            &sut.image_snapshot(&image),
            &snap,
        )?;
        images.push((image.clone(), snap));
        sut.store()
            .create_container(&container, &image)
            .expect("container");
        sut.switch_to(&container);
    }
    Ok(Setup {
        _model_dir: model_dir,
        model,
        sut,
        images,
    })
}

fn run_case(block_size: u32, case: &Case) -> Result<(), String> {
    run_case_on(block_size, case, Blocks::Packs)
}

fn run_case_on(block_size: u32, case: &Case, blocks: Blocks) -> Result<(), String> {
    let Setup {
        _model_dir,
        mut model,
        mut sut,
        mut images,
    } = set_up(block_size, case, blocks)?;
    let ops = case
        .ops
        .iter()
        .filter(|op| blocks == Blocks::Packs || !matches!(op, Op::Reopen));
    for (index, op) in ops.enumerate() {
        model::step(&mut sut, &mut model, index, op)?;
        if matches!(op, Op::Commit { .. }) {
            let image = sut.committed.last().expect("committed").clone();
            let mut snap = model.snapshot();
            snap.handles.clear(); // an image has no open files
            model::same(
                &format!("image {image}"),
                &sut.image_snapshot(&image),
                &snap,
            )?;
            images.push((image, snap));
        }
    }
    // A last reopen: everything must have been made durable on the way out.
    if blocks == Blocks::Packs {
        model::step(&mut sut, &mut model, case.ops.len(), &Op::Reopen)?;
    }
    model::check_store_and_images(sut.store(), &images, |image| sut.image_snapshot(image))
}

proptest! {
    #![proptest_config(model::proptest_config(32, 2048))]
    #[test]
    fn engine_matches_model_4k_blocks(case in case(max_ops())) {
        run_case(4096, &case).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(model::proptest_config(8, 2048))]
    #[test]
    fn engine_on_the_memory_block_store_matches_model(case in case(max_ops())) {
        run_case_on(4096, &case, Blocks::Memory).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn engine_matches_model_64k_blocks(case in case(max_ops())) {
        run_case(65536, &case).map_err(TestCaseError::fail)?;
    }
}

/// Runs fixed ops on an image of `tree` and on the model, failing on the first difference.
fn replay(block_size: u32, tree: Vec<Op>, ops: Vec<Op>) {
    let case = Case {
        tree,
        stacked: Vec::new(),
        ops,
    };
    if let Err(e) = run_case(block_size, &case) {
        panic!("{e}");
    }
}

fn mkdir(path: &str) -> Op {
    Op::Mkdir {
        path: s(path),
        perm: Mode(0o755),
    }
}

fn create(path: &str) -> Op {
    Op::Create {
        path: s(path),
        perm: Mode(0o644),
    }
}

fn rename(from: &str, to: &str, mode: RenameMode) -> Op {
    Op::Rename {
        from: s(from),
        to: s(to),
        mode,
    }
}

fn s(path: &str) -> String {
    path.to_string()
}

#[test]
fn the_model_catches_a_wrong_answer() {
    // A sequence the engine gets right, checked against a model that was changed behind the
    // engine's back: the comparison must notice (no tautologies).
    let case = Case {
        tree: Vec::new(),
        stacked: Vec::new(),
        ops: vec![Op::Create {
            path: s("a"),
            perm: Mode(0o644),
        }],
    };
    let mut setup = set_up(4096, &case, Blocks::Packs).unwrap();
    model::step(&mut setup.sut, &mut setup.model, 0, &case.ops[0]).unwrap();
    std::fs::write(setup.model.root().join("a"), b"x").unwrap();
    let write = Op::Write {
        path: s("a"),
        offset: 1,
        len: 1,
        fill: Fill::Byte(7),
    };
    let error = model::step(&mut setup.sut, &mut setup.model, 1, &write).unwrap_err();
    assert!(error.contains("/a: content differs"), "{error}");
}

// Found by the random tests: the engine answered EPERM (a directory cannot be linked) where
// link(2) answers EEXIST (the new name exists), which the kernel checks first.
#[test]
fn link_of_a_directory_onto_an_existing_name_is_eexist() {
    let link = Op::Link {
        from: s("a"),
        to: s("c"),
    };
    replay(4096, vec![mkdir("a")], vec![create("c"), link]);
}

// Found by the random tests: renaming a file onto a directory that holds it answered EISDIR;
// rename(2) answers ENOTEMPTY (EINVAL for an exchange).
#[test]
fn rename_onto_an_ancestor_directory_is_enotempty() {
    for mode in [RenameMode::Plain, RenameMode::Exchange] {
        replay(
            4096,
            vec![mkdir("a"), mkdir("a/b"), create("a/b/x")],
            vec![
                rename("a/b/x", "a", mode),
                rename("a/b", "a", mode),
                rename("a/b/x", "a/b", mode),
            ],
        );
    }
}

// Found by the random tests: renaming a missing file to a name over 255 bytes answered
// ENAMETOOLONG; rename(2) looks the source up first and answers ENOENT.
#[test]
fn rename_of_a_missing_file_to_a_too_long_name_is_enoent() {
    let long = "n".repeat(256);
    let longest = "n".repeat(255);
    replay(
        4096,
        vec![create("y")],
        vec![
            rename("x", &long, RenameMode::Plain),
            rename("y", &long, RenameMode::Plain),
            rename("y", &longest, RenameMode::NoReplace),
        ],
    );
}

// Found by the random tests: growing a file whose stored last block is shorter than the new
// size panicked (a block read asked to skip past the end of the stored block).
#[test]
fn growing_a_file_past_its_short_stored_last_block() {
    let write = |offset, len| Op::Write {
        path: s("x"),
        offset,
        len,
        fill: Fill::Random(offset),
    };
    let truncate = |size| Op::Truncate { path: s("x"), size };
    replay(
        4096,
        vec![create("x"), write(0, 1)],
        vec![
            truncate(4),
            write(3, 2),
            Op::Reopen,
            truncate(4100),
            write(4097, 1),
        ],
    );
}
