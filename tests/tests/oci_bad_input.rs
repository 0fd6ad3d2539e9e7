//! Bad image archives: a truncated layer, a blob that does not match its digest, a missing
//! blob, a wrong diff id, a descriptor of the wrong size, a malformed digest, path
//! traversal, an entry placed under a symlink (in one layer or across two), a compressed
//! docker archive, an unknown reference. Each import fails with one clear line naming the
//! problem and the object, and leaves the store exactly as it was: fsck clean, the same
//! stats report, the same images.

mod oci_support;

use std::path::{Path, PathBuf};

use oci_support::*;
use tar::EntryType;
use tessera::ErrorKind;
use tessera_tests::tars::TarMaker;
use tessera_tests::*;

const BS: u32 = 16 * 1024;

fn lower_tar() -> Vec<u8> {
    let mut m = TarMaker::new();
    m.dir("etc")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .file("big.bin", &bytes(1, 200_000));
    m.finish()
}

/// A second layer with fresh data (so a failed import has written staging packs) and `rest`.
fn upper_tar(rest: impl FnOnce(&mut TarMaker)) -> Vec<u8> {
    let mut m = TarMaker::new();
    m.file("payload.bin", &bytes(2, 300_000));
    rest(&mut m);
    m.finish()
}

fn good_upper() -> Vec<u8> {
    upper_tar(|m| {
        m.file("etc/motd", b"hi\n");
    })
}

/// A store holding image `base` (imported from an OCI layout).
fn store() -> TempStore {
    let t = TempStore::new(BS);
    let dir = t.dir.path().join("base-layout");
    let image = Image::from_tars(&[lower_tar()], &[Compression::Gzip], |c| c);
    write_layout(&dir, &[(Some("base"), &image)]);
    t.import_source(&dir, None).unwrap();
    t
}

/// A fresh layout directory holding `image` as `bad`.
fn layout(t: &TempStore, name: &str, image: &Image) -> PathBuf {
    let dir = t.dir.path().join(name);
    write_layout(&dir, &[(Some("bad"), image)]);
    dir
}

fn two_layers(upper: Vec<u8>) -> Image {
    Image::from_tars(
        &[lower_tar(), upper],
        &[Compression::Gzip, Compression::Plain],
        |c| c,
    )
}

/// Importing `src` must fail naming every needle, and change nothing.
fn refused(t: &TempStore, src: &Path, needles: &[&str]) -> tessera::Error {
    let before = store_state(t);
    let err = t
        .import_source(src, None)
        .expect_err("the import must fail");
    let message = err.to_string();
    eprintln!("refused: {message}");
    assert_clear_error(&message, needles);
    assert_eq!(
        store_state(t),
        before,
        "a failed import changed the store: {message}"
    );
    assert_eq!(
        t.open_image("bad").map(drop).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    err
}

#[test]
fn damaged_blobs_are_refused_naming_the_blob() {
    let t = store();

    // A truncated layer (its digest is that of the truncated bytes).
    let mut upper = good_upper();
    upper.truncate(150_000);
    let image = two_layers(upper);
    let dir = layout(&t, "truncated", &image);
    let layer = digest(&image.layers[1]);
    let err = refused(&t, &dir, &["layer 2 of 2", &layer, "payload.bin"]);
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    // A layer cut at an entry boundary (before its end-of-archive blocks).
    let mut upper = good_upper();
    upper.truncate(512 + 300_032);
    let image = two_layers(upper);
    let dir = layout(&t, "truncated-at-entry", &image);
    refused(&t, &dir, &["layer 2 of 2", "truncated archive"]);

    // A truncated gzip layer.
    let mut image = two_layers(good_upper());
    image.layers[1] = Compression::Gzip.apply(&image.layers[1]);
    let half = image.layers[1].len() / 2;
    image.layers[1].truncate(half);
    image.media_types[1] = Compression::Gzip.media_type();
    image.remanifest();
    let dir = layout(&t, "truncated-gz", &image);
    refused(&t, &dir, &["layer 2 of 2", &digest(&image.layers[1])]);

    // A blob whose bytes are not what its digest says.
    let image = two_layers(good_upper());
    let dir = layout(&t, "wrong-digest", &image);
    let layer = digest(&image.layers[1]);
    let path = blob_path(&dir, &layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    refused(&t, &dir, &[&layer, "does not match its digest"]);

    // A changed config or manifest.
    for (what, blob) in [
        ("config", digest(&image.config)),
        ("manifest", digest(&image.manifest)),
    ] {
        let dir = layout(&t, &format!("wrong-{what}"), &image);
        let path = blob_path(&dir, &blob);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.push(b' ');
        std::fs::write(&path, bytes).unwrap();
        refused(&t, &dir, &[&blob, what, "does not match its digest"]);
    }

    // Missing blobs: a layer, the config, the manifest.
    for (what, blob) in [
        ("layer 2", digest(&image.layers[1])),
        ("config", digest(&image.config)),
        ("manifest", digest(&image.manifest)),
    ] {
        let dir = layout(&t, &format!("missing-{}", what.replace(' ', "")), &image);
        std::fs::remove_file(blob_path(&dir, &blob)).unwrap();
        let err = refused(&t, &dir, &[&blob, what, "not found"]);
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    // A diff id that does not match the uncompressed layer.
    let image = Image::from_tars(
        &[lower_tar(), good_upper()],
        &[Compression::Gzip, Compression::Zstd],
        |mut c| {
            c["rootfs"]["diff_ids"][1] = digest(b"something else").into();
            c
        },
    );
    let dir = layout(&t, "wrong-diff-id", &image);
    refused(
        &t,
        &dir,
        &[
            "layer 2 of 2",
            "rootfs.diff_ids[1]",
            &digest(b"something else"),
        ],
    );

    // A descriptor of the wrong size, a malformed digest.
    let mut sized = two_layers(good_upper());
    let mut manifest: serde_json::Value = serde_json::from_slice(&sized.manifest).unwrap();
    manifest["layers"][1]["size"] = 12.into();
    sized.manifest = serde_json::to_vec(&manifest).unwrap();
    let dir = layout(&t, "wrong-size", &sized);
    refused(&t, &dir, &["bytes, but its descriptor says 12"]);
    let mut evil = two_layers(good_upper());
    let mut manifest: serde_json::Value = serde_json::from_slice(&evil.manifest).unwrap();
    manifest["layers"][1]["digest"] = "sha256:../../../../etc/passwd".into();
    evil.manifest = serde_json::to_vec(&manifest).unwrap();
    let dir = layout(&t, "evil-digest", &evil);
    refused(
        &t,
        &dir,
        &[
            "sha256:../../../../etc/passwd",
            "not 64 lowercase hex digits",
        ],
    );
}

#[test]
fn bad_entries_are_refused_naming_the_entry() {
    let t = store();
    let traversal = upper_tar(|m| {
        raw_entry(m, "../../etc/passwd", EntryType::Regular, None);
    });
    let dir = layout(&t, "traversal", &two_layers(traversal));
    refused(&t, &dir, &["layer 2 of 2", "\"../../etc/passwd\"", "'..'"]);

    let under_symlink = upper_tar(|m| {
        m.symlink("a", "/etc");
        m.file("a/passwd", b"evil\n");
    });
    let dir = layout(&t, "under-symlink", &two_layers(under_symlink));
    refused(&t, &dir, &["\"a/passwd\"", "placed under symlink \"a\""]);

    // The symlink in one layer, the entry in the next.
    let mut first = TarMaker::new();
    first.file("f", &bytes(3, 100_000)).symlink("a", "/etc");
    let second = upper_tar(|m| {
        m.file("a/passwd", b"evil\n");
    });
    let image = Image::from_tars(&[first.finish(), second], &[Compression::Zstd], |c| c);
    let dir = layout(&t, "across-layers", &image);
    refused(
        &t,
        &dir,
        &["layer 2 of 2", "\"a/passwd\"", "placed under symlink \"a\""],
    );
}

#[test]
fn bad_archives_and_references_are_refused() {
    let t = store();
    let image = two_layers(good_upper());
    let dir = layout(&t, "fine", &image);
    let err = refused(
        &t,
        Path::new(&format!("{}:nope", dir.display())),
        &["\"nope\"", "bad"],
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // A docker archive whose config does not match its name, one missing a layer.
    let mut archive = docker_archive(&[(&["bad:1"], &image)], false);
    let config = hex_of(&digest(&image.config)).to_string();
    let needle = b"APP=1";
    let pos = archive
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the config is in the archive");
    archive[pos + 4] = b'2';
    let file = t.dir.path().join("bad-config.tar");
    std::fs::write(&file, &archive).unwrap();
    refused(&t, &file, &[&config, "config", "does not match its digest"]);

    let good = docker_archive(&[(&["bad:1"], &image)], false);
    let mut m = TarMaker::new();
    let mut source = tar::Archive::new(&good[..]);
    for entry in source.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8(entry.path_bytes().to_vec()).unwrap();
        if path.ends_with("layer.tar") && !m_has_layer(&path, &good) {
            continue;
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        match entry.header().entry_type() {
            EntryType::Directory => m.dir(&path),
            _ => m.file(&path, &data),
        };
    }
    let file = t.dir.path().join("missing-layer.tar");
    std::fs::write(&file, m.finish()).unwrap();
    refused(&t, &file, &["layer.tar", "layer", "not found"]);

    // docker save | gzip: refused with advice rather than imported as one layer.
    let file = t.dir.path().join("docker.tar.gz");
    std::fs::write(&file, Compression::Gzip.apply(&good)).unwrap();
    let err = refused(&t, &file, &["compressed image archive", "decompress"]);
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

/// Keeps the first layer of the archive `good`, drops the others.
fn m_has_layer(path: &str, good: &[u8]) -> bool {
    let mut archive = tar::Archive::new(good);
    let first = archive
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().to_vec()).unwrap())
        .find(|p| p.ends_with("layer.tar"))
        .unwrap();
    first == path
}
