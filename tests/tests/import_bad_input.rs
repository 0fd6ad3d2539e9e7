//! Import of bad input: every refusal is an error whose message names the offending entry (or
//! the problem, when the archive itself is damaged), and leaves the store exactly as it was —
//! same images, same block counts, same pack files (staging packs deleted) — and reopening
//! fine. Also the path rules that are not refusals: a leading `/` is stripped, and symlinks
//! are stored verbatim and never followed.

use std::io::Read;
use std::path::Path;

use tar::EntryType;
use tessera::store::BlockStoreStats;
use tessera::{ErrorKind, FileKind, Store};
use tessera_tests::tars::TarMaker;
use tessera_tests::*;

const BS: u32 = 16 * 1024;

/// What a failed import must not change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    images: Vec<(String, u64, usize, u64)>,
    stats: BlockStoreStats,
    packs: Vec<(String, u64)>,
}

fn snapshot(store: &Store) -> Snapshot {
    let images = store
        .images()
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.top_layer, i.layers, i.layer_bytes))
        .collect();
    let mut packs: Vec<(String, u64)> = std::fs::read_dir(store.path().join("packs"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().len())
        })
        .collect();
    packs.sort();
    Snapshot {
        images,
        stats: store.block_store_stats(),
        packs,
    }
}

/// A store holding one image, "base", so "unchanged" has something to compare.
fn store_with_base() -> TempStore {
    let t = TempStore::new(BS);
    let src = t.dir.path().join("base-src");
    small_tree(&src);
    t.import_path(&src, "base").unwrap();
    t
}

/// A tar that starts with `payload` (fresh data, so the failed import writes staging packs)
/// and goes on with `rest`.
fn with_payload(seed: u64, rest: impl FnOnce(&mut TarMaker)) -> Vec<u8> {
    let mut maker = TarMaker::new();
    maker.file("payload", &bytes(seed, 300_000));
    rest(&mut maker);
    maker.finish()
}

/// Imports `archive` as a new image; it must fail naming every needle, changing nothing.
fn refused(t: &TempStore, archive: &[u8], needles: &[&str]) -> tessera::Error {
    refused_from(t, archive, needles)
}

fn refused_from(t: &TempStore, reader: impl Read, needles: &[&str]) -> tessera::Error {
    let before = snapshot(t);
    let err = t
        .import_tar(reader, "bad")
        .expect_err("the import must fail");
    let message = err.to_string();
    assert_clear_error(&message, needles);
    assert_eq!(
        snapshot(t),
        before,
        "a failed import changed the store: {message}"
    );
    let opened = t.open_image("bad").map(drop);
    assert_eq!(opened.unwrap_err().kind(), ErrorKind::NotFound);
    err
}

fn check_base(t: &TempStore) {
    let v = t.open_image("base").unwrap();
    assert_eq!(read_file(&v, "etc/hostname"), b"tessera\n");
    assert_eq!(read_file(&v, "usr/lib/big.bin"), bytes(1, 300_000));
}

#[test]
fn bad_paths_are_refused_naming_the_entry() {
    let mut t = store_with_base();
    let before = snapshot(&t);
    let raw = |name: &'static [u8]| {
        move |m: &mut TarMaker| {
            m.raw(name, EntryType::Regular, b"evil", None);
        }
    };
    let err = refused(
        &t,
        &with_payload(10, raw(b"../etc/passwd")),
        &["\"../etc/passwd\"", "'..'"],
    );
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    refused(
        &t,
        &with_payload(11, raw(b"a/../../x")),
        &["\"a/../../x\"", "'..'"],
    );
    refused(
        &t,
        &with_payload(12, raw(b"ok/../inside")),
        &["\"ok/../inside\""],
    );
    let dotdot_link = with_payload(13, |m| {
        m.raw(b"../escape", EntryType::Symlink, b"", Some(b"/etc"));
    });
    refused(&t, &dotdot_link, &["\"../escape\""]);

    // Nothing is placed under a symlink, even one into the host.
    let host = t.dir.path().join("host-dir");
    std::fs::create_dir(&host).unwrap();
    let under_symlink = with_payload(14, |m| {
        m.symlink("a", "/etc").file("a/passwd", b"root::0:0");
        m.symlink("h", host.as_os_str().as_encoded_bytes())
            .file("h/planted", b"x");
    });
    refused(&t, &under_symlink, &["\"a/passwd\"", "symlink \"a\""]);
    let into_host = with_payload(15, |m| {
        m.symlink("h", host.as_os_str().as_encoded_bytes())
            .file("h/planted", b"x");
    });
    refused(&t, &into_host, &["\"h/planted\"", "symlink \"h\""]);
    assert_eq!(
        std::fs::read_dir(&host).unwrap().count(),
        0,
        "host untouched"
    );
    let under_file = with_payload(16, |m| {
        m.file("f", b"a file").file("f/x", b"under it");
    });
    refused(&t, &under_file, &["\"f/x\"", "non-directory \"f\""]);
    let deeper = with_payload(17, |m| {
        m.dir("d").file("d/f", b"").dir("d/f/g/h");
    });
    refused(&t, &deeper, &["\"d/f/g/h\"", "\"d/f\""]);

    // Long names: 255 bytes is the limit of a name, not of a path.
    let long = "x".repeat(256);
    let too_long = with_payload(18, |m| {
        m.file(format!("dir/{long}"), b"long");
    });
    let err = refused(&t, &too_long, &[&format!("\"dir/{long}\""), "256"]);
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let long_dir = with_payload(19, |m| {
        m.file(format!("{long}/f"), b"long");
    });
    refused(&t, &long_dir, &[&format!("\"{long}/f\"")]);

    assert_eq!(snapshot(&t), before);
    t.reopen();
    assert_eq!(snapshot(&t), before, "reopened store");
    check_base(&t);
}

#[test]
fn hard_links_must_name_an_earlier_entry() {
    let t = store_with_base();
    let later = with_payload(20, |m| {
        m.hard_link("early", "later").file("later", b"later");
    });
    refused(&t, &later, &["\"early\"", "\"later\"", "earlier entry"]);
    let missing = with_payload(21, |m| {
        m.hard_link("hl", "nowhere/at-all");
    });
    refused(&t, &missing, &["\"hl\"", "\"nowhere/at-all\""]);
    let to_dir = with_payload(22, |m| {
        m.dir("somedir").hard_link("hd", "somedir");
    });
    refused(&t, &to_dir, &["\"hd\"", "directory \"somedir\""]);
    let dotdot = with_payload(23, |m| {
        m.file("x", b"x").hard_link("hl", "sub/../x");
    });
    refused(&t, &dotdot, &["\"sub/../x\""]);
    // Within one archive, a link may name an earlier entry by any spelling of its path.
    let archive = TarMaker::new()
        .file("etc/x", b"linked")
        .hard_link("y", "/etc/x")
        .hard_link("z", "./etc//x")
        .finish();
    t.import_tar(&archive[..], "links").unwrap();
    let v = t.open_image("links").unwrap();
    let x = v.resolve(b"etc/x").unwrap();
    assert_eq!(x.nlink, 3);
    assert_eq!(v.resolve(b"z").unwrap().node, x.node);
    assert_eq!(read_file(&v, "y"), b"linked");
}

/// A reader that fails after `left` bytes, as a dropped connection would.
struct FailAfter<'a> {
    data: &'a [u8],
    left: usize,
}

impl Read for FailAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("connection reset by peer"));
        }
        let n = buf.len().min(self.left).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.left -= n;
        Ok(n)
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn damaged_archives_are_refused_and_leave_the_store_as_it_was() {
    let mut t = store_with_base();
    let before = snapshot(&t);
    let archive = with_payload(30, |m| {
        m.file("big", &bytes(31, 100_000)).file("second", b"2nd");
    });
    // Entries: payload (512 + 300_032), big (512 + 100_352), second (512 + 512), end (1024).
    let big_at = 512 + 300_032;
    let second_at = big_at + 512 + 100_352;
    refused(
        &t,
        &archive[..big_at + 512 + 50_000],
        &["\"big\"", "truncated"],
    );
    refused(
        &t,
        &archive[..second_at + 200],
        &["damaged archive", "\"big\""],
    );
    refused(
        &t,
        &archive[..big_at + 100],
        &["damaged archive", "\"payload\""],
    );
    let gz = gzip(&archive);
    let err = refused(&t, &gz[..gz.len() / 2], &[]);
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let zst = zstd::encode_all(&archive[..], 1).unwrap();
    let err = refused(&t, &zst[..zst.len() / 2], &[]);
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    refused(&t, &bytes(32, 10_000), &["damaged archive"]);
    let fake_zstd = [&[0x28, 0xb5, 0x2f, 0xfd][..], &bytes(33, 5000)].concat();
    refused(&t, &fake_zstd, &[]);
    refused(&t, b"", &["no entries"]);
    refused(&t, &vec![0u8; 1024], &["no entries"]);
    let interrupted = FailAfter {
        data: &archive,
        left: 200_000,
    };
    refused_from(&t, interrupted, &["connection reset by peer"]);

    // An existing name, and a source that is not there.
    let fine = TarMaker::new().file("ok", &bytes(34, 100_000)).finish();
    let err = t.import_tar(&fine[..], "base").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exists);
    assert!(err.to_string().contains("image base"), "{err}");
    let missing = t.dir.path().join("no-such-source");
    let err = t.import_path(&missing, "other").unwrap_err();
    assert!(err.to_string().contains("no-such-source"), "{err}");

    assert_eq!(snapshot(&t), before);
    t.reopen();
    assert_eq!(snapshot(&t), before, "reopened store");
    check_base(&t);
}

#[test]
fn leading_slash_is_stripped_and_symlinks_are_stored_verbatim() {
    let t = TempStore::new(BS);
    let archive = TarMaker::new()
        .raw(b"/etc/x", EntryType::Regular, b"slash", None)
        .raw(b"./etc/y", EntryType::Regular, b"dot", None)
        .raw(b"//usr//lib/", EntryType::Directory, b"", None)
        .symlink("a", "/etc")
        .symlink("up", "../../../../etc/shadow")
        .file("b", b"beside the link")
        .finish();
    t.import_tar(&archive[..], "img").unwrap();
    let v = t.open_image("img").unwrap();
    assert_eq!(read_file(&v, "etc/x"), b"slash");
    assert_eq!(read_file(&v, "etc/y"), b"dot");
    assert_eq!(v.resolve(b"usr/lib").unwrap().kind, FileKind::Dir);
    let a = v.resolve(b"a").unwrap();
    assert_eq!(a.kind, FileKind::Symlink);
    assert_eq!(v.readlink(a.node).unwrap(), b"/etc");
    assert_eq!(
        v.readlink(node_at(&v, "up")).unwrap(),
        b"../../../../etc/shadow"
    );
    assert!(
        v.resolve(b"a/passwd").is_err(),
        "lookups never follow a symlink"
    );
    assert_eq!(read_file(&v, "b"), b"beside the link");
    assert!(!Path::new("/etc/b").exists() && !Path::new("/b").exists());
}

#[test]
fn a_failure_in_a_later_layer_or_a_crash_midway_leaves_nothing_behind() {
    let mut t = store_with_base();
    let before = snapshot(&t);
    let good = with_payload(50, |m| {
        m.dir("etc").file("etc/conf", b"conf");
    });
    let bad = with_payload(51, |m| {
        m.raw(b"etc/../../escape", EntryType::Regular, b"x", None);
    });
    let err = t
        .import_tar_layers(vec![&good[..], &bad[..]], "two-layers")
        .unwrap_err();
    assert!(err.to_string().contains("etc/../../escape"), "{err}");
    assert_eq!(snapshot(&t), before, "layer one is dropped with layer two");

    let err = t.import_tar(&good[..], "bad name").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("\"bad name\""), "{err}");

    // A feeder that dies midway (as a killed import would), after its data went to the
    // pipeline: nothing is published and the staging packs are gone.
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let feeder = |feed: &mut tessera::import::LayerFeed| -> tessera::Result<()> {
            let data = bytes(52, 5 << 20);
            let meta = tessera::import::EntryMeta {
                perm: 0o644,
                ..Default::default()
            };
            feed.file(b"big", meta, data.len() as u64, &mut &data[..])?;
            panic!("the importer was killed");
        };
        t.import_layers("crashed", None, vec![Box::new(feeder)])
    }));
    assert!(crashed.is_err(), "the feeder panicked");
    assert_eq!(snapshot(&t), before, "a crashed import publishes nothing");
    t.reopen();
    assert_eq!(snapshot(&t), before, "reopening sweeps the crash leftovers");
    check_base(&t);
    let report = t.import_tar(&good[..], "after-crash").unwrap();
    assert!(report.added_bytes > 0);
    assert_eq!(
        read_file(&t.open_image("after-crash").unwrap(), "etc/conf"),
        b"conf"
    );
}
