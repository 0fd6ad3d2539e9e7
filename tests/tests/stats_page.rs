//! `tessera stats --html FILE`, opened in headless Chromium: the DOM Chromium builds from the
//! page holds the three charts and every figure `tessera stats --json` reports for the store,
//! and the screenshot shows the charts' bars (their colours' pixels).

#[allow(dead_code)]
mod cli;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cli::{output_within, tessera_bin};
use tessera_tests::{TempStore, bytes, have_program, write_file};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A store with sharing across two images and a container that changed one block of a big
/// image file (copy-up of one block, whole-file copy-up of 2 MiB).
fn store() -> TempStore {
    let t = TempStore::new(64 * 1024);
    for (name, extra) in [("app:1", "one"), ("app:2", "two")] {
        let src = t.dir.path().join(name);
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("big.bin"), bytes(7, 2 << 20)).unwrap();
        std::fs::write(src.join("own.txt"), extra.repeat(30_000)).unwrap();
        t.import_path(&src, name).unwrap();
    }
    t.create_container("web1", "app:1").unwrap();
    let v = t.open_container("web1").unwrap();
    let node = v.resolve(b"big.bin").unwrap().node;
    v.write(node, 100_000, b"changed").unwrap();
    write_file(&v, "new.txt", &bytes(8, 10_000));
    v.sync().unwrap();
    t
}

fn chromium(args: &[&str], page: &Path) -> Vec<u8> {
    let mut command = Command::new(CHROMIUM);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()));
    let out = output_within(&mut command, Duration::from_secs(120));
    assert!(out.status.success(), "chromium {args:?}: {out:?}");
    out.stdout
}

#[test]
fn the_html_page_renders_every_figure_the_json_reports() {
    if !have_program(CHROMIUM) {
        return;
    }
    let mut t = store();
    t.close();
    let store_path = t.path();
    let run = |args: &[&str]| {
        let mut command = Command::new(tessera_bin());
        command.arg("--store").arg(&store_path).args(args);
        let out = output_within(&mut command, Duration::from_secs(60));
        assert!(out.status.success(), "tessera {args:?}: {out:?}");
        out.stdout
    };
    let json: serde_json::Value = serde_json::from_slice(&run(&["stats", "--json"])).unwrap();
    let page = t.dir.path().join("stats.html");
    run(&["stats", "--html", page.to_str().unwrap()]);

    let dom = String::from_utf8(chromium(&["--dump-dom"], &page)).unwrap();
    for id in ["chart-sharing", "chart-owners", "chart-copy-up"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no {id} in the DOM");
    }
    let has = |bytes: &serde_json::Value| dom.contains(&format!("data-bytes=\"{bytes}\""));
    let store = &json["store"];
    for key in ["logical_bytes", "referenced_bytes", "stored_block_bytes"] {
        assert!(has(&store[key]), "store {key} = {}", store[key]);
    }
    assert!(dom.contains(&format!("{:.2}×", store["dedup_ratio"].as_f64().unwrap())));
    let owners = json["owners"].as_array().unwrap();
    assert_eq!(owners.len(), 3, "{json}");
    for owner in owners {
        let name = owner["name"].as_str().unwrap();
        assert!(dom.contains(name), "{name}");
        for key in [
            "logical_bytes",
            "referenced_bytes",
            "exclusive_bytes",
            "shared_bytes",
        ] {
            assert!(has(&owner[key]), "{name} {key} = {}", owner[key]);
        }
        if owner["kind"] == "container" {
            let copied = owner["copied_up_bytes"].as_u64().unwrap();
            assert!(copied > 0 && copied < 1 << 20, "{owner}");
            assert!(has(&owner["copied_up_bytes"]));
            assert!(has(&owner["whole_file_copy_up_bytes"]));
        }
    }
    let sharing = json["sharing"].as_array().unwrap();
    assert!(
        sharing.iter().any(|b| b["layers"].as_u64() >= Some(2)),
        "{json}"
    );
    for bucket in sharing {
        assert!(has(&bucket["bytes"]), "{bucket}");
    }
    for file in json["top_copied_up_files"].as_array().unwrap() {
        assert!(dom.contains(file["path"].as_str().unwrap()), "{file}");
    }

    // Rendered: the bars' colours are on the screenshot (blue logical/sharing bars, orange
    // referenced and whole-file, green exclusive and Tessera copy-up).
    let shot = t.dir.path().join("stats.png");
    let arg = format!("--screenshot={}", shot.display());
    chromium(&[&arg, "--window-size=1200,2400"], &page);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let count = |rgb: [u8; 3]| {
        pixels[..info.buffer_size()]
            .chunks(channels)
            .filter(|p| p[..3] == rgb)
            .count()
    };
    for rgb in [[0x4e, 0x79, 0xa7], [0xf2, 0x8e, 0x2b], [0x59, 0xa1, 0x4f]] {
        assert!(
            count(rgb) > 50,
            "no bar of colour {rgb:02x?} on the screenshot"
        );
    }
}
