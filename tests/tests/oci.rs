//! Real container images in and out: OCI image layouts and `docker save` archives (both
//! layouts docker writes) import one Tessera layer per image layer, with OCI whiteouts and
//! opaque directories, the config and the diff ids kept, and a second image that shares most
//! of the first adds only its new blocks. Export: an OCI layout of an image or a container
//! re-imports to the same trees and the same block ids; `--layer` writes a layer diff with
//! whiteouts, opaque markers and hard links to lower paths; umoci unpacks what we export and
//! we import what umoci builds. `analyze` figures. Bad input is in `oci_bad_input.rs`.

mod oci_support;

use std::path::{Path, PathBuf};

use oci_support::*;
use tessera::import::SourceKind;
use tessera::volume::Volume;
use tessera::{Caller, RenameFlags, SetAttr, XattrMode};
use tessera_tests::*;

const BS: u32 = 16 * 1024;

fn file(data: &[u8]) -> Spec {
    Spec::File(data.to_vec())
}

fn base_layer() -> Layer {
    vec![
        ("etc".into(), Spec::Dir),
        ("etc/passwd".into(), file(b"root:x:0:0::/root:/bin/sh\n")),
        ("etc/hostname".into(), file(b"base\n")),
        ("usr".into(), Spec::Dir),
        ("usr/bin".into(), Spec::Dir),
        ("usr/bin/tool".into(), Spec::File(bytes(1, 200_000))),
        ("usr/bin/t".into(), Spec::Symlink("tool".into())),
        (
            "usr/bin/tool2".into(),
            Spec::HardLink("usr/bin/tool".into()),
        ),
        ("usr/lib".into(), Spec::Dir),
        ("usr/lib/libbig.so".into(), Spec::File(bytes(2, 400_000))),
        ("opt".into(), Spec::Dir),
        ("opt/app".into(), Spec::Dir),
        ("opt/app/data.bin".into(), Spec::File(bytes(3, 150_000))),
        ("opt/app/conf".into(), file(b"debug=0\n")),
        ("opt/app/sub".into(), Spec::Dir),
        ("opt/app/sub/x".into(), file(b"x")),
        ("var".into(), Spec::Dir),
        ("var/cache".into(), Spec::Dir),
        ("var/cache/zero.bin".into(), Spec::File(vec![0; 131_072])),
    ]
}

fn second_layer() -> Layer {
    let mut lib = bytes(2, 400_000);
    lib[..16_384].copy_from_slice(&bytes(5, 16_384));
    vec![
        ("etc/motd".into(), file(b"welcome\n")),
        ("usr/lib/libbig.so".into(), Spec::File(lib)),
        ("opt/app/extra".into(), Spec::File(bytes(6, 5_000))),
    ]
}

const INDEX_HTML: &[u8] = b"<h1>hi</h1>\n";

/// Deletes a file, replaces a directory (opaque) and adds new data.
fn app_layer() -> Layer {
    vec![
        ("etc/.wh.hostname".into(), file(b"")),
        ("opt/app".into(), Spec::Dir),
        ("opt/app/.wh..wh..opq".into(), file(b"")),
        ("opt/app/new.bin".into(), Spec::File(bytes(4, 100_000))),
        ("srv".into(), Spec::Dir),
        ("srv/www".into(), Spec::Dir),
        ("srv/www/index.html".into(), file(INDEX_HTML)),
    ]
}

struct Fixture {
    base: Image,
    app: Image,
    layers: [Layer; 3],
}

fn fixture() -> Fixture {
    use Compression::*;
    let layers = [base_layer(), second_layer(), app_layer()];
    Fixture {
        base: Image::new(&[&layers[0], &layers[1]], &[Gzip, Zstd]),
        app: Image::new(&[&layers[0], &layers[1], &layers[2]], &[Gzip, Zstd, Plain]),
        layers,
    }
}

fn spec(path: &Path, reference: &str) -> PathBuf {
    PathBuf::from(format!("{}:{reference}", path.display()))
}

fn check_model(t: &TempStore, image: &str, layers: &[&Layer]) -> Tree {
    let tree = snapshot(&t.open_image(image).unwrap());
    assert_same_model(&model_of(layers), &model_of_tree(&tree), image);
    tree
}

#[test]
fn oci_layout_images_import_layer_by_layer_and_share_blocks() {
    let f = fixture();
    let t = TempStore::new(BS);
    let dir = t.dir.path().join("layout");
    write_layout(&dir, &[(Some("base"), &f.base), (Some("app:1.0"), &f.app)]);

    let err = t.import_source(&dir, None).unwrap_err().to_string();
    assert!(
        err.contains("base") && err.contains("app:1.0") && err.contains("DIR:REF"),
        "{err}"
    );

    let r = t.import_source(&spec(&dir, "base"), None).unwrap();
    assert_eq!((r.image.as_str(), r.layers), ("base", 2));
    assert_eq!(r.format, Some(SourceKind::OciLayout));
    let tree = check_model(&t, "base", &[&f.layers[0], &f.layers[1]]);
    let group: std::collections::BTreeSet<String> =
        ["usr/bin/tool".to_string(), "usr/bin/tool2".to_string()].into();
    assert!(tree.links.contains(&group), "hard links: {:?}", tree.links);

    // The config is kept whole, and every layer knows its diff id.
    let config: serde_json::Value = serde_json::from_slice(&f.base.config).unwrap();
    assert_eq!(t.image_record("base").unwrap().config, Some(config));
    let diff_ids: Vec<Option<String>> = t
        .layer_records("base")
        .unwrap()
        .into_iter()
        .map(|(_, l)| l.diff_id)
        .collect();
    let want: Vec<Option<String>> = f.base.diff_ids.iter().cloned().map(Some).collect();
    assert_eq!(diff_ids, want);

    // The second image shares two layers: only the third one's data is new.
    let r = t
        .import_source(&spec(&dir, "app:1.0"), Some("app"))
        .unwrap();
    assert_eq!(r.layers, 3);
    assert_eq!(r.added_bytes, 100_000 + INDEX_HTML.len() as u64);
    check_model(&t, "app", &[&f.layers[0], &f.layers[1], &f.layers[2]]);
    let roots = |image| t.file_roots(image).unwrap();
    let lib = |roots: Vec<(Vec<u8>, u64, tessera::MapRoot)>| {
        roots
            .into_iter()
            .find(|(p, _, _)| p == b"usr/lib/libbig.so")
            .unwrap()
            .2
    };
    assert_eq!(lib(roots("base")), lib(roots("app")));

    // The same image again stores nothing.
    let r = t
        .import_source(&spec(&dir, "app:1.0"), Some("again"))
        .unwrap();
    assert_eq!(r.added_bytes, 0);

    // A layout of one image needs no REF; without a ref name it needs --name.
    let single = t.dir.path().join("single");
    write_layout(&single, &[(None, &f.base)]);
    let err = t.import_source(&single, None).unwrap_err().to_string();
    assert!(
        err.contains("carries no image tag") && err.contains("--name"),
        "{err}"
    );
    t.import_source(&single, Some("named")).unwrap();
    check_model(&t, "named", &[&f.layers[0], &f.layers[1]]);
}

#[test]
fn docker_save_archives_import_in_both_layouts() {
    use Compression::*;
    let f = fixture();
    let t = TempStore::new(BS);
    let legacy = Image::new(&[&f.layers[0], &f.layers[1]], &[Plain, Gzip]);
    let archive = t.dir.path().join("legacy.tar");
    std::fs::write(
        &archive,
        docker_archive(&[(&["registry.example:5000/team/base:1"], &legacy)], false),
    )
    .unwrap();
    let r = t.import_source(&archive, None).unwrap();
    assert_eq!(r.image, "base:1");
    assert_eq!(r.format, Some(SourceKind::DockerArchive));
    check_model(&t, "base:1", &[&f.layers[0], &f.layers[1]]);
    let config: serde_json::Value = serde_json::from_slice(&legacy.config).unwrap();
    assert_eq!(t.image_record("base:1").unwrap().config, Some(config));

    // The newer docker save: an OCI layout inside, two images, layers zstd and gzip.
    let newer = t.dir.path().join("newer.tar");
    let app = Image::new(&[&f.layers[0], &f.layers[1], &f.layers[2]], &[Zstd, Gzip]);
    std::fs::write(
        &newer,
        docker_archive(&[(&["app:2"], &app), (&["base:2"], &f.base)], true),
    )
    .unwrap();
    let err = t.import_source(&newer, None).unwrap_err().to_string();
    assert!(err.contains("app:2") && err.contains("base:2"), "{err}");
    let r = t.import_source(&spec(&newer, "app:2"), None).unwrap();
    assert_eq!((r.image.as_str(), r.layers), ("app:2", 3));
    assert_eq!(r.added_bytes, 100_000 + INDEX_HTML.len() as u64);
    check_model(&t, "app:2", &[&f.layers[0], &f.layers[1], &f.layers[2]]);
    let diff_ids: Vec<String> = t
        .layer_records("app:2")
        .unwrap()
        .into_iter()
        .map(|(_, l)| l.diff_id.unwrap())
        .collect();
    assert_eq!(diff_ids, app.diff_ids);
}

/// Changes of every kind a layer diff must carry, made in container `c` of image `app`.
fn edit_container(v: &Volume) {
    let root = Caller::ROOT;
    write_file(v, "etc/passwd", b"root:x:0:0::/root:/bin/bash\n");
    v.setxattr(node_at(v, "etc/passwd"), b"user.test", b"1", XattrMode::Any)
        .unwrap();
    let chmod = SetAttr {
        mode: Some(0o750),
        ..Default::default()
    };
    v.setattr(node_at(v, "usr/bin/tool"), &chmod).unwrap();
    let usr = node_at(v, "usr");
    v.rename(usr, b"lib", usr, b"lib64", RenameFlags::default())
        .unwrap();
    v.unlink(node_at(v, "etc"), b"motd").unwrap();
    v.link(
        node_at(v, "opt/app/new.bin"),
        node_at(v, "opt"),
        b"new-link",
    )
    .unwrap();
    let var = node_at(v, "var");
    v.unlink(node_at(v, "var/cache"), b"zero.bin").unwrap();
    v.rmdir(var, b"cache").unwrap();
    v.mkdir(var, b"cache", 0o700, root).unwrap();
    write_file(v, "var/cache/fresh", &bytes(7, 40_000));
    v.symlink(node_at(v, "etc"), b"pw", b"passwd", root)
        .unwrap();
    v.mkdir(v.root(), b"run", 0o755, root).unwrap();
    v.mknod(node_at(v, "run"), b"fifo", libc::S_IFIFO | 0o644, 0, root)
        .unwrap();
}

fn import_app(t: &TempStore, f: &Fixture) {
    let dir = t.dir.path().join("layout");
    write_layout(&dir, &[(Some("app"), &f.app)]);
    t.import_source(&dir, None).unwrap();
}

#[test]
fn oci_export_round_trips_images_and_containers() {
    let f = fixture();
    let t = TempStore::new(BS);
    import_app(&t, &f);
    let out = t.dir.path().join("out");
    let report = t.export_oci("app", &out, None).unwrap();
    assert_eq!(report.layers.len(), 3);
    for blob in [&report.manifest, &report.config]
        .into_iter()
        .chain(report.layers.iter().map(|l| &l.digest))
    {
        let bytes = std::fs::read(blob_path(&out, blob)).unwrap();
        assert_eq!(&digest(&bytes), blob);
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "app"
    );

    let r = t.import_source(&spec(&out, "app"), Some("app2")).unwrap();
    assert_eq!(r.added_bytes, 0, "a round trip adds no block");
    assert_eq!(r.layers, 3);
    let original = snapshot(&t.open_image("app").unwrap());
    assert_eq!(original, snapshot(&t.open_image("app2").unwrap()));
    assert_eq!(t.file_roots("app").unwrap(), t.file_roots("app2").unwrap());
    let diff_ids: Vec<String> = t
        .layer_records("app2")
        .unwrap()
        .into_iter()
        .map(|(_, l)| l.diff_id.unwrap())
        .collect();
    let exported: Vec<String> = report.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(diff_ids, exported);
    let config = t.image_record("app2").unwrap().config.unwrap();
    let want: serde_json::Value = serde_json::from_slice(&f.app.config).unwrap();
    assert_eq!(config["config"], want["config"]);

    // A container: its image's layers plus its writable layer.
    t.create_container("c", "app").unwrap();
    let v = t.open_container("c").unwrap();
    edit_container(&v);
    let report = t.export_oci("c", &out, None).unwrap();
    assert_eq!(report.layers.len(), 4);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    t.import_source(&spec(&out, "c"), Some("c-img")).unwrap();
    let edited = snapshot(&v);
    assert_eq!(edited, snapshot(&t.open_image("c-img").unwrap()));
    assert_eq!(t.file_roots("c").unwrap(), t.file_roots("c-img").unwrap());
    assert!(edited.links.iter().any(|g| g.contains("opt/new-link")));
}

fn tar_entries(tar: &[u8]) -> Vec<(String, tar::EntryType, Option<String>)> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.to_vec()).unwrap());
            (path, e.header().entry_type(), link)
        })
        .collect()
}

#[test]
fn layer_export_writes_whiteouts_opaque_dirs_and_links() {
    use tar::EntryType::*;
    let f = fixture();
    let t = TempStore::new(BS);
    import_app(&t, &f);
    t.create_container("c", "app").unwrap();
    let v = t.open_container("c").unwrap();
    edit_container(&v);
    let mut diff = Vec::new();
    let report = t.export_layer("c", &mut diff).unwrap();
    assert_eq!(report.diff_id, digest(&diff));
    let entries = tar_entries(&diff);
    let find = |path: &str| {
        entries
            .iter()
            .position(|(p, _, _)| p == path)
            .unwrap_or_else(|| panic!("no entry {path} in {entries:#?}"))
    };
    let kind = |path: &str| entries[find(path)].1;
    for whiteout in ["etc/.wh.motd", "usr/.wh.lib", "var/cache/.wh..wh..opq"] {
        assert_eq!(kind(whiteout), Regular);
    }
    assert!(find("var/cache/") < find("var/cache/.wh..wh..opq"));
    assert!(find("var/cache/.wh..wh..opq") < find("var/cache/fresh"));
    assert_eq!(kind("usr/lib64/libbig.so"), Regular);
    assert_eq!(kind("etc/passwd"), Regular);
    assert_eq!(kind("usr/bin/tool"), Regular);
    assert_eq!(
        entries[find("usr/bin/tool2")].2.as_deref(),
        Some("usr/bin/tool")
    );
    assert_eq!(kind("opt/new-link"), Link);
    assert_eq!(
        entries[find("opt/new-link")].2.as_deref(),
        Some("opt/app/new.bin")
    );
    assert_eq!(kind("run/fifo"), Fifo);
    for untouched in ["usr/bin/t", "opt/app/new.bin", "srv/www/index.html"] {
        assert!(
            !entries.iter().any(|(p, _, _)| p == untouched),
            "{untouched} did not change"
        );
    }

    // The diff applies to the image flattened into one layer (other node ids, same paths).
    let mut flat = Vec::new();
    t.open_image("app").unwrap().export_tar(&mut flat).unwrap();
    t.import_tar_layers(vec![&flat[..], &diff[..]], "applied")
        .unwrap();
    assert_eq!(snapshot(&v), snapshot(&t.open_image("applied").unwrap()));
}

#[test]
fn umoci_unpacks_what_we_export() {
    if !have_program("/usr/bin/umoci") {
        return;
    }
    let f = fixture();
    let t = TempStore::new(BS);
    import_app(&t, &f);
    t.create_container("c", "app").unwrap();
    let v = t.open_container("c").unwrap();
    edit_container(&v);
    let out = t.dir.path().join("out");
    t.export_oci("app", &out, None).unwrap();
    t.export_oci("c", &out, Some("c:edited")).unwrap();
    for (reference, view) in [("app", t.open_image("app").unwrap()), ("c:edited", v)] {
        let bundle = t
            .dir
            .path()
            .join(format!("bundle-{}", reference.replace(':', "-")));
        let image = format!("{}:{reference}", out.display());
        umoci(&["unpack", "--image", &image, bundle.to_str().unwrap()]);
        let rootfs = bundle.join("rootfs");
        let expected = model_of_tree(&snapshot(&view));
        assert_same_model(&expected, &model_of_dir(&rootfs), reference);
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &str| std::fs::metadata(rootfs.join(p)).unwrap().ino();
        assert_eq!(ino("usr/bin/tool"), ino("usr/bin/tool2"));
    }
}

#[test]
fn images_umoci_builds_import() {
    if !have_program("/usr/bin/umoci") {
        return;
    }
    let t = TempStore::new(BS);
    let work = t.dir.path();
    let layout = work.join("L");
    let at = |r: &str| format!("{}:{r}", layout.display());
    let path = |p: &str| work.join(p).to_str().unwrap().to_string();
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &at("v1")]);
    umoci(&["unpack", "--image", &at("v1"), &path("b1")]);
    let root1 = work.join("b1/rootfs");
    std::fs::create_dir_all(root1.join("opt/app/sub")).unwrap();
    std::fs::create_dir_all(root1.join("etc")).unwrap();
    std::fs::write(root1.join("etc/hostname"), b"umoci\n").unwrap();
    std::fs::write(root1.join("opt/app/data"), bytes(8, 70_000)).unwrap();
    std::fs::write(root1.join("opt/app/sub/x"), b"x").unwrap();
    std::os::unix::fs::symlink("../etc/hostname", root1.join("opt/h")).unwrap();
    umoci(&["repack", "--image", &at("v1"), &path("b1")]);
    umoci(&["unpack", "--image", &at("v1"), &path("b2")]);
    let root2 = work.join("b2/rootfs");
    std::fs::remove_file(root2.join("etc/hostname")).unwrap();
    std::fs::remove_dir_all(root2.join("opt/app")).unwrap();
    std::fs::create_dir_all(root2.join("opt/app")).unwrap();
    std::fs::write(root2.join("opt/app/new"), bytes(9, 50_000)).unwrap();
    umoci(&["repack", "--image", &at("v2"), &path("b2")]);

    for (reference, root) in [("v1", &root1), ("v2", &root2)] {
        let r = t.import_source(Path::new(&at(reference)), None).unwrap();
        assert_eq!(r.image, reference);
        let tree = snapshot(&t.open_image(reference).unwrap());
        assert_same_model(&model_of_dir(root), &model_of_tree(&tree), reference);
    }
    let layers = t.layer_records("v2").unwrap();
    assert_eq!(layers.len(), 2);
    assert!(layers.iter().all(|(_, l)| l.diff_id.is_some()));
}

#[test]
fn analyze_reports_each_block_size_without_a_store() {
    let f = fixture();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    write_layout(&layout, &[(Some("base"), &f.base), (Some("app"), &f.app)]);
    let tree = work.path().join("tree");
    small_tree(&tree);
    let sizes = [4096, 16384, 65536];
    let one = tessera::import::analyze(&[spec(&layout, "base")], &sizes).unwrap();
    let file_bytes = 26 + 5 + 200_000 + 400_000 + 150_000 + 8 + 1 + 131_072 + 8 + 400_000 + 5_000;
    assert_eq!(one.logical_bytes, file_bytes);
    assert_eq!(one.block_sizes.len(), 3);
    for figures in &one.block_sizes {
        assert_eq!(figures.logical_bytes, file_bytes);
        assert_eq!(figures.zero_bytes, 131_072);
        assert!(figures.unique_bytes < file_bytes - 131_072, "{figures:?}");
        assert!(figures.dedup_ratio > 1.0, "{figures:?}");
        assert!(figures.estimated_index_bytes >= 44 * figures.unique_blocks);
        // Compressed as a default store would keep them: never more than the blocks.
        assert!(figures.compressed_bytes > 0, "{figures:?}");
        assert!(
            figures.compressed_bytes <= figures.unique_bytes,
            "{figures:?}"
        );
        assert!(figures.compression_ratio >= 1.0, "{figures:?}");
    }
    // Smaller blocks find more of the changed library shared (its first 16 KiB changed).
    let unique = |i: usize| one.block_sizes[i].unique_bytes;
    assert!(unique(0) <= unique(1) && unique(1) < unique(2), "{one:?}");
    let bytes_16k = 26 + 5 + 200_000 + 400_000 + 150_000 + 8 + 1 + 8 + 16_384 + 5_000;
    assert_eq!(unique(1), bytes_16k);

    // The same image twice: twice the logical bytes, the same unique bytes.
    let archive = work.path().join("base.tar");
    std::fs::write(&archive, docker_archive(&[(&["base:1"], &f.base)], false)).unwrap();
    let two = tessera::import::analyze(&[spec(&layout, "base"), archive.clone()], &sizes).unwrap();
    assert_eq!(two.logical_bytes, 2 * file_bytes);
    for (a, b) in one.block_sizes.iter().zip(&two.block_sizes) {
        assert_eq!(a.unique_bytes, b.unique_bytes);
        assert_eq!(a.compressed_bytes, b.compressed_bytes);
        assert!((b.dedup_ratio - 2.0 * a.dedup_ratio).abs() < 1e-9);
    }
    let kinds: Vec<SourceKind> = two.sources.iter().map(|s| s.format).collect();
    assert_eq!(kinds, [SourceKind::OciLayout, SourceKind::DockerArchive]);

    let mixed = tessera::import::analyze(std::slice::from_ref(&tree), &[4096]).unwrap();
    assert_eq!(mixed.sources[0].format, SourceKind::Directory);
    assert_eq!(mixed.logical_bytes, 8 + 300_000);
    let err = tessera::import::analyze(&[tree], &[3000]).unwrap_err();
    assert!(err.to_string().contains("block size 3000"), "{err}");
}
