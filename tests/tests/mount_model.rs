//! The model-based random test again, through a real mount: random op sequences (see
//! `tessera_tests::model`) run with system calls on a mounted container and on a plain
//! directory (the model), compared after every step. The kernel answers what it answers for
//! every filesystem (path walks, permission checks, fifo opens), so nothing is emulated here.
//!
//! The structural steps are the mount's own: `Commit` commits the mounted container (or, with
//! `close_first`, unmounts, commits and mounts again); `Reopen` unmounts, closes and reopens
//! the whole store and mounts again at the same place. Each image made on the way must keep
//! the tree it had when it was made. Every case mounts, so cases are few (`PROPTEST_CASES`).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use proptest::prelude::*;
use tessera_fusefs::MountConfig;
use tessera_tests::TempStore;
use tessera_tests::model::engine_fs::{errno, snapshot_volume};
use tessera_tests::model::strategy::{Case, case};
use tessera_tests::model::{self, DirFs, FsResult, FsUnderTest, Mode, Op, Snapshot};
use tessera_tests::mount::{MountGuard, can_mount};

/// A container of a temporary store, mounted at a fixed place.
struct Mounted {
    /// Declared first: unmounted before the store goes.
    mount: Option<MountGuard>,
    store: TempStore,
    container: String,
    point: PathBuf,
    config: MountConfig,
    /// Images made by commits, in order.
    committed: Vec<String>,
}

impl Mounted {
    fn mount(&mut self) {
        let volume = self
            .store
            .open_container(&self.container)
            .expect("open container");
        self.mount = Some(MountGuard::at(volume, &self.point, self.config.clone()));
    }

    fn unmount(&mut self) {
        if let Some(mount) = self.mount.take() {
            mount.unmount();
        }
    }

    /// Mounts another container of the store in place of this one.
    fn switch_to(&mut self, container: &str) {
        self.unmount();
        self.container = container.into();
        self.mount();
    }

    fn commit_as(&mut self, image: &str, close_first: bool) -> FsResult {
        if close_first {
            self.unmount();
        }
        let result = self.store.commit_container(&self.container, image);
        if close_first {
            self.mount();
        }
        result.map_err(|e| errno(&e))?;
        self.committed.push(image.into());
        Ok(())
    }

    /// What `Commit` and `Reopen` do to the mount.
    fn structural(&mut self, op: &Op) -> FsResult {
        match op {
            Op::Commit { close_first } => {
                let image = format!("commit{}", self.committed.len());
                self.commit_as(&image, *close_first)
            }
            Op::Reclaim => model::reclaim_all(&self.store).map_err(|e| errno(&e)),
            Op::Reopen => {
                self.unmount();
                self.store.reopen();
                self.mount();
                Ok(())
            }
            other => panic!("{other:?} is not a structural op"),
        }
    }

    fn image_snapshot(&self, image: &str) -> Snapshot {
        snapshot_volume(&self.store.open_image(image).expect("open image"), true)
    }
}

fn run_case(block_size: u32, config: MountConfig, case: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (root, point) = (dir.path().join("model"), dir.path().join("mnt"));
    std::fs::create_dir(&root).expect("model root");
    std::fs::create_dir(&point).expect("mount point");
    let mut model = DirFs::new(&root);
    for op in &case.tree {
        let _ = model::apply(&mut model, op); // only the model: it is the source of the import
    }
    let store = TempStore::new(block_size);
    store
        .import_path(&root, "base")
        .map_err(|e| format!("import: {e}"))?;
    store.create_container("c0", "base").expect("container");
    let mut images = vec![("base".to_string(), model.snapshot())];
    let state = Rc::new(RefCell::new(Mounted {
        mount: None,
        store,
        container: "c0".into(),
        point: point.clone(),
        config,
        committed: Vec::new(),
    }));
    state.borrow_mut().mount();
    let hook_state = state.clone();
    let hook = Box::new(move |op: &Op| hook_state.borrow_mut().structural(op));
    let mut sut = DirFs::with_hook(&point, "mount", hook);
    model::same("the mounted image", &sut.snapshot(), &model.snapshot())?;
    // Layers below the container under test, each made through a mount of its own container.
    for (i, batch) in case.stacked.iter().enumerate() {
        model::run(&mut sut, &mut model, batch).map_err(|e| format!("stacking layer {i}: {e}"))?;
        let (image, container) = (format!("layer{}", i + 1), format!("c{}", i + 1));
        let mut s = state.borrow_mut();
        s.commit_as(&image, i % 2 == 0)
            .map_err(|e| format!("commit {image}: {}", model::errno_name(e)))?;
        images.push((image.clone(), model.snapshot()));
        s.store
            .create_container(&container, &image)
            .expect("container");
        s.switch_to(&container);
    }
    for (index, op) in case.ops.iter().enumerate() {
        model::step(&mut sut, &mut model, index, op)?;
        if matches!(op, Op::Commit { .. }) {
            let s = state.borrow();
            let image = s.committed.last().expect("committed").clone();
            let mut snap = model.snapshot();
            snap.handles.clear(); // an image has no open files
            model::same(&format!("image {image}"), &s.image_snapshot(&image), &snap)?;
            images.push((image, snap));
        }
    }
    // A last reopen: everything must have been made durable on the way out.
    model::step(&mut sut, &mut model, case.ops.len(), &Op::Reopen)?;
    drop(sut);
    let mut s = state.borrow_mut();
    s.unmount();
    model::check_store_and_images(&s.store, &images, |image| s.image_snapshot(image))
}

proptest! {
    #![proptest_config(model::proptest_config(10, 256))]
    #[test]
    fn mount_matches_model_4k_blocks(case in case(40)) {
        if can_mount() {
            run_case(4096, MountConfig::default(), &case).map_err(TestCaseError::fail)?;
        }
    }
}

proptest! {
    #![proptest_config(model::proptest_config(4, 256))]
    #[test]
    fn mount_matches_model_64k_blocks(case in case(40)) {
        if can_mount() {
            run_case(65536, MountConfig::default(), &case).map_err(TestCaseError::fail)?;
        }
    }
}

proptest! {
    #![proptest_config(model::proptest_config(3, 256))]
    #[test]
    fn write_through_mount_matches_model(case in case(40)) {
        if can_mount() {
            let through = MountConfig { writeback_cache: false, ..MountConfig::default() };
            run_case(4096, through, &case).map_err(TestCaseError::fail)?;
        }
    }
}

proptest! {
    #![proptest_config(model::proptest_config(3, 256))]
    #[test]
    fn share_memory_mount_matches_model(case in case(40)) {
        if can_mount() {
            let share = MountConfig { share_memory: true, ..MountConfig::default() };
            run_case(4096, share, &case).map_err(TestCaseError::fail)?;
        }
    }
}

/// Runs fixed ops on an empty base image through a mount and on the model.
fn replay(ops: Vec<Op>) -> Result<(), String> {
    let case = Case {
        tree: Vec::new(),
        stacked: Vec::new(),
        ops,
    };
    run_case(4096, MountConfig::default(), &case)
}

#[test]
fn the_mount_model_catches_a_wrong_answer() {
    if !can_mount() {
        return;
    }
    // The same sequence passes; with the model changed behind the mount's back, it must not.
    let ops = vec![
        Op::Create {
            path: "a".into(),
            perm: Mode(0o644),
        },
        Op::Commit { close_first: false },
        Op::Reopen,
    ];
    replay(ops.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (root, point) = (dir.path().join("model"), dir.path().join("mnt"));
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&point).unwrap();
    let store = TempStore::new(4096);
    store.import_path(&root, "base").unwrap();
    store.create_container("c0", "base").unwrap();
    let m = MountGuard::at(
        store.open_container("c0").unwrap(),
        &point,
        MountConfig::default(),
    );
    let mut sut = DirFs::with_hook(&point, "mount", Box::new(|_: &Op| Ok(())));
    let mut model = DirFs::new(&root);
    model::step(&mut sut, &mut model, 0, &ops[0]).unwrap();
    std::fs::write(Path::new(&root).join("a"), b"x").unwrap();
    let error = model::step(&mut sut, &mut model, 1, &Op::Commit { close_first: false });
    assert!(
        error.unwrap_err().contains("/a: "),
        "the difference is reported"
    );
    drop(sut);
    m.unmount();
}
