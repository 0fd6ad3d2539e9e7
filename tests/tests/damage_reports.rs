//! Damage on disk hits only what it hits: a flipped byte in a pack, or a sealed pack cut
//! short, makes reads of the blocks it took fail (Corrupt or Io: EIO through a mount, with a
//! log line naming the pack and offset), every other file still reads, the store still opens,
//! and `fsck --verify-data` names exactly the files of the images and containers that are hit.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use tessera::ErrorKind;
use tessera::maintenance::FsckOptions;
use tessera_tests::{TempStore, bytes};

const BS: usize = 4096;

/// An image of three 512 KiB files and a small one, over several sealed packs, and a
/// container on it.
fn store() -> TempStore {
    let options = TempStore::options(BS as u32).pack_target(256 << 10);
    let t = TempStore::with_options(BS as u32, options);
    let src = t.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for (name, seed) in [("a.bin", 1), ("b.bin", 2), ("c.bin", 3)] {
        std::fs::write(src.join(name), bytes(seed, 512 << 10)).unwrap();
    }
    std::fs::write(src.join("small.txt"), b"small and intact\n").unwrap();
    t.import_path(&src, "img").unwrap();
    t.create_container("c1", "img").unwrap();
    t
}

/// The pack file and offset where `needle` (a block's bytes) is stored.
fn find(t: &TempStore, needle: &[u8]) -> (PathBuf, u64) {
    for entry in std::fs::read_dir(t.path().join("packs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "pack") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        if let Some(at) = data.windows(needle.len()).position(|w| w == needle) {
            return (path, at as u64);
        }
    }
    panic!("block not found in any pack");
}

fn read(t: &TempStore, view: &str, path: &str) -> tessera::Result<Vec<u8>> {
    let v = match view {
        "img" => t.open_image("img")?,
        _ => t.open_container(view)?,
    };
    let attr = v.resolve(path.as_bytes())?;
    v.read(attr.node, 0, attr.size as usize)
}

fn fsck(t: &TempStore) -> Vec<String> {
    let report = t.fsck(&FsckOptions { verify_data: true }).unwrap();
    report.problems
}

#[test]
fn a_flipped_byte_fails_the_files_that_read_it_and_fsck_names_them() {
    let mut t = store();
    let block = bytes(1, 512 << 10)[300 * 1024..301 * 1024].to_vec();
    let (pack, at) = find(&t, &block);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pack)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], at).unwrap();
    t.reopen();
    for view in ["img", "c1"] {
        let err = read(&t, view, "a.bin").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("pack"), "{err}");
        assert_eq!(read(&t, view, "b.bin").unwrap(), bytes(2, 512 << 10));
        assert_eq!(read(&t, view, "c.bin").unwrap(), bytes(3, 512 << 10));
        assert_eq!(read(&t, view, "small.txt").unwrap(), b"small and intact\n");
    }
    let problems = fsck(&t);
    let files: Vec<&String> = problems.iter().filter(|p| p.contains("file ")).collect();
    assert_eq!(files.len(), 2, "{problems:#?}");
    // The files hit come first, ahead of the blocks behind them.
    assert_eq!(
        &problems[..2],
        &files.iter().map(|f| f.to_string()).collect::<Vec<_>>()[..]
    );
    assert!(
        files[0].starts_with("image img: file \"a.bin\""),
        "{problems:#?}"
    );
    assert!(
        files[1].starts_with("container c1: file \"a.bin\""),
        "{problems:#?}"
    );
    assert!(files[0].contains("1 of its blocks"), "{problems:#?}");
}

#[test]
fn a_sealed_pack_cut_short_loses_only_its_blocks() {
    let mut t = store();
    // Cut the pack holding the middle of c.bin just before that block.
    let block = bytes(3, 512 << 10)[256 * 1024..257 * 1024].to_vec();
    let (pack, at) = find(&t, &block);
    assert!(
        pack.with_extension("idx").exists(),
        "the cut pack must be a sealed one (it has an index)"
    );
    let cut = at - at % BS as u64;
    // Which files the cut takes blocks of: the import stores files in parallel, so this is
    // read from where their blocks are, not assumed from their names.
    let files = [
        ("a.bin", bytes(1, 512 << 10)),
        ("b.bin", bytes(2, 512 << 10)),
        ("c.bin", bytes(3, 512 << 10)),
        ("small.txt", b"small and intact\n".to_vec()),
    ];
    let places = block_places(&t);
    let hit: Vec<&str> = files
        .iter()
        .filter(|(_, data)| {
            data.chunks(BS).any(|b| {
                // A short block is stored zero-padded to the alignment.
                let mut b = b.to_vec();
                b.resize(BS, 0);
                let (p, o) = &places[&b];
                *p == pack && *o >= cut
            })
        })
        .map(|(name, _)| *name)
        .collect();
    assert!(hit.contains(&"c.bin"));
    OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(cut)
        .unwrap();
    // The store still opens (it used to refuse: "pack N holds … bytes but the metadata
    // recorded …").
    t.reopen();
    for view in ["img", "c1"] {
        for (name, data) in &files {
            match read(&t, view, name) {
                Ok(got) => {
                    assert!(!hit.contains(name), "{view}: {name} read despite the cut");
                    assert_eq!(&got, data, "{view}: {name}");
                }
                Err(err) => {
                    assert!(hit.contains(name), "{view}: {name}: {err}");
                    assert!(
                        matches!(err.kind(), ErrorKind::Io | ErrorKind::Corrupt),
                        "{err}"
                    );
                }
            }
        }
    }
    // gc works around the damaged pack (it used to fail copying a block the cut took): it
    // reclaims elsewhere and leaves the pack for fsck to report.
    t.gc(&tessera::maintenance::GcOptions {
        repack_below: 1.0,
        ..Default::default()
    })
    .expect("gc with a damaged pack");
    assert!(pack.exists(), "gc removed the damaged pack");
    let problems = fsck(&t);
    let name = pack
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches('0');
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&format!("pack {name}: holds {cut} bytes"))),
        "{problems:#?}"
    );
    // fsck names exactly the files the cut took blocks of, in the image and the container.
    let named: Vec<&String> = problems.iter().filter(|p| p.contains("file ")).collect();
    assert_eq!(named.len(), 2 * hit.len(), "{hit:?} {problems:#?}");
    for file in &hit {
        for view in ["image img", "container c1"] {
            let line = format!("{view}: file \"{file}\"");
            assert!(
                named.iter().any(|p| p.starts_with(&line)),
                "{line}: {problems:#?}"
            );
        }
    }
}

/// Where every block of every pack is: its bytes (blocks are aligned in a pack, and this
/// store's blocks are one alignment unit each) mapped to its pack and offset.
fn block_places(t: &TempStore) -> HashMap<Vec<u8>, (PathBuf, u64)> {
    let mut places = HashMap::new();
    for entry in std::fs::read_dir(t.path().join("packs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "pack") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        for (i, chunk) in data.chunks(BS).enumerate() {
            places.insert(chunk.to_vec(), (path.clone(), (i * BS) as u64));
        }
    }
    places
}
