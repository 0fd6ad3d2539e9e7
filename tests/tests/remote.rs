//! Two hosts, one bucket (issue 10): stores A and B share a remote on a real S3 server (Ceph
//! RGW, scripts/s3-server.sh). A imports and pushes; B pulls, changes the image in a container,
//! commits and pushes; A pulls B's image and reads B's change byte for byte. Each push sends
//! only the blocks the remote lacks. Failures are one clear line and change nothing. Then
//! `gc --remote` (remote_gc/). One test: the server starts once for this binary.

#[allow(dead_code)]
mod cli;
mod remote_cache;
mod remote_gc;

use cli::*;
use serde_json::Value;
use tessera::store::Remote;
use tessera::{Store, StoreOptions};
use tessera_tests::mount::can_mount;
use tessera_tests::s3_server::S3Server;
use tessera_tests::tcp_gate::TcpGate;
use tessera_tests::{bytes, read_file, write_file};

fn with_remote(mut cli: Cli, server: &S3Server) -> Cli {
    cli.env = server.vars.clone();
    cli
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} in {v}"))
}

/// B's change: a new file and a rewritten one, in a container on the pulled image.
fn change_in_a_container(b: &Cli) {
    b.ok(&["create", "c", "--from", "base"]);
    let store = Store::open(&b.store, StoreOptions::default()).unwrap();
    let view = store.container_view("c").unwrap();
    write_file(&view, "etc/hostname", b"changed on host B\n");
    write_file(&view, "new.bin", &bytes(2, 300_000));
    view.sync().unwrap();
    drop(view);
    store.sync().unwrap();
    drop(store);
    b.ok(&["commit", "c", "--name", "img2"]);
}

#[test]
fn two_hosts_share_one_bucket() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let url = server.fresh_url("two-hosts");
    let a = with_remote(Cli::new(&[]), &server);
    let b = with_remote(Cli::bare(), &server);

    // A: the whole image goes up (1 MiB file + hostname: 17 blocks).
    let first = a.json(&["push", "base", &url, "--json"]);
    assert_eq!(u(&first, "/blocks"), 17, "{first}");
    assert_eq!(u(&first, "/uploaded/blocks"), 17, "{first}");
    assert_eq!(u(&first, "/uploaded/block_bytes"), (1 << 20) + 5);
    let listed = a.json(&["images", "--remote", &url, "--json"]);
    assert_eq!(listed[0]["name"], "base", "{listed}");

    // B: pulls (every block crosses the network once), changes, commits, pushes.
    let pulled = b.json(&["pull", &url, "base", "--json"]);
    assert_eq!(u(&pulled, "/fetched_blocks"), 17, "{pulled}");
    change_in_a_container(&b);
    let second = b.json(&["push", "img2", &url, "--json"]);
    // Only the new blocks: hostname (1) and new.bin (5: four whole, one partial).
    assert_eq!(u(&second, "/uploaded/blocks"), 6, "{second}");
    let new_bytes = 300_000 + "changed on host B\n".len() as u64;
    assert_eq!(u(&second, "/uploaded/block_bytes"), new_bytes, "{second}");
    let overhead = u(&second, "/bytes_sent") - new_bytes;
    // Padding to 4 KiB per block, a pack header page, a segment header, the index, the
    // manifest: nothing of the 17 blocks the remote had.
    assert!(overhead < 6 * 4096 + 3 * 4096 + 8192, "{second}");
    assert!(
        u(&second, "/bytes_sent") < u(&first, "/bytes_sent") / 2,
        "{second}"
    );
    eprintln!(
        "first push sent {} bytes, second push {} bytes",
        u(&first, "/bytes_sent"),
        u(&second, "/bytes_sent")
    );

    // A: pulls B's image, fetching only the new blocks, and reads B's change.
    let pulled = a.json(&["pull", &url, "img2", "--name", "from-b", "--json"]);
    assert_eq!(u(&pulled, "/fetched_blocks"), 6, "{pulled}");
    let files = a.export("from-b");
    assert_eq!(files["etc/hostname"], b"changed on host B\n");
    assert_eq!(files["new.bin"], bytes(2, 300_000));
    assert_eq!(files["big.bin"], bytes(1, 1 << 20));
    let names: Vec<String> = a
        .json(&["images", "--remote", &url, "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["base", "img2"]);

    failures_are_one_line_and_change_nothing(&a, &url);
    a_lazy_pull_fetches_blocks_on_first_read(&server, &url);
    a_lazy_read_with_the_remote_away_is_eio_until_it_is_back(&server, &url);
    a_lazy_pull_prefetches_the_paths_it_names(&server, &url);
    remote_cache::a_cache_limit_drops_the_least_recently_used(&server, &url);
    remote_gc::gc_deletes_exactly_the_unreferenced_packs(&server);
    remote_gc::a_lazy_stores_hold_keeps_its_packs(&server);
}

/// Host C pulls B's image lazily: metadata only; each block crosses the network on its first
/// read (one ranged GET), verified, and is served locally after that. A later process opens
/// the store over the remote by itself.
fn a_lazy_pull_fetches_blocks_on_first_read(server: &S3Server, url: &str) {
    let c = with_remote(Cli::bare(), server);
    let pulled = c.json(&["pull", url, "img2", "--lazy", "--json"]);
    assert_eq!(u(&pulled, "/fetched_blocks"), 0, "{pulled}");
    // The manifest and the indexes of the image's packs: no block.
    assert!(u(&pulled, "/bytes_fetched") < 32 * 1024, "{pulled}");
    eprintln!("lazy pull fetched {} bytes", u(&pulled, "/bytes_fetched"));

    let remote = Remote::connect_with(&url.parse().unwrap(), server.vars.clone()).unwrap();
    let store = Store::open(&c.store, StoreOptions::default().remote(remote.clone())).unwrap();
    assert_eq!(
        remote.figures(),
        Default::default(),
        "opening made no request"
    );
    let view = store.open_image("img2").unwrap();
    // The hostname is a short block: one ranged GET, which also brings what follows it in
    // its pack (new.bin's blocks, when the upload put them after it).
    assert_eq!(read_file(&view, "etc/hostname"), b"changed on host B\n");
    assert_eq!(remote.figures().requests, 1, "one ranged GET");
    assert!(remote.figures().bytes_fetched >= 18);
    // One read of new.bin's five blocks: at most one more coalesced GET.
    assert_eq!(read_file(&view, "new.bin"), bytes(2, 300_000));
    assert!(
        remote.figures().requests <= 2,
        "one GET for new.bin's blocks"
    );
    assert_eq!(remote.figures().blocks_fetched, 6, "each block once");
    let requests = remote.figures().requests;
    assert_eq!(read_file(&view, "etc/hostname"), b"changed on host B\n");
    assert_eq!(read_file(&view, "new.bin"), bytes(2, 300_000));
    assert_eq!(
        remote.figures().requests,
        requests,
        "read again: served locally"
    );
    drop(view);
    store.sync().unwrap();
    drop(store);

    // A container on the image mounts at once; the daemon opens the store over the remote by
    // itself and fetches big.bin on its first read through FUSE.
    if can_mount() {
        c.ok(&["create", "lazy", "--from", "img2"]);
        // stats says what is still only on the remote: big.bin's 16 blocks among them.
        let before = c.json(&["stats", "--json"]);
        let only_before = u(&before, "/remote/remote_only_blocks");
        assert!(only_before >= 16, "{before}");
        let mountpoint = c.mountpoint("m");
        c.mount("lazy", &mountpoint);
        let status = c.json(&["daemon", "status", "--json"]);
        let requests_before = u(&status, "/remote/requests");
        assert_eq!(
            std::fs::read(mountpoint.join("big.bin")).unwrap(),
            bytes(1, 1 << 20)
        );
        // The kernel reads big.bin in order: read-ahead along the pack, in a growing
        // window, rather than one GET per block.
        let status = c.json(&["daemon", "status", "--json"]);
        let requests = u(&status, "/remote/requests") - requests_before;
        eprintln!("reading big.bin (16 blocks) through the mount took {requests} GETs");
        assert!(requests <= 6, "{requests} GETs for 16 blocks read in order");
        std::fs::write(mountpoint.join("written.txt"), "on host C\n").unwrap();
        // daemon status reports what the first read fetched.
        let status = c.json(&["daemon", "status", "--json"]);
        assert!(u(&status, "/remote/bytes_fetched") >= 1 << 20, "{status}");
        assert!(
            u(&status, "/remote/local_pack_bytes") >= 1 << 20,
            "{status}"
        );
        assert!(c.ok(&["daemon", "status"]).contains("fetched"));
        assert!(u(&status, "/remote/blocks_fetched") >= 16, "{status}");
        let after = c.json(&["stats", "--json"]);
        assert!(u(&after, "/remote/blocks_fetched") >= 16, "{after}");
        assert!(
            u(&after, "/remote/remote_only_blocks") <= only_before - 16,
            "{before} -> {after}"
        );
        assert!(c.ok(&["stats"]).contains("held only there"));
        c.ok(&["umount", s(&mountpoint)]);
        c.ok(&["commit", "lazy", "--name", "img3"]);
        assert_eq!(c.export("img3")["written.txt"], b"on host C\n");
    }

    // A new process (the CLI) opens the store over its remote and reads the rest.
    let files = c.export("img2");
    assert_eq!(files["big.bin"], bytes(1, 1 << 20));
    assert_eq!(files["new.bin"], bytes(2, 300_000));
    c.ok(&["fsck"]);
}

/// Host D mounts a container on a lazily pulled image, then the remote goes away (a gate in
/// front of the real server cuts its connections): a read of a block not held locally fails
/// with EIO after the bounded retry, with a log line naming the remote; the mount stays up and
/// serves what is local; once the remote is back the same read returns the right bytes.
fn a_lazy_read_with_the_remote_away_is_eio_until_it_is_back(server: &S3Server, url: &str) {
    if !can_mount() {
        return;
    }
    let endpoint = server
        .vars
        .iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .map(|(_, v)| v.trim_start_matches("http://").to_string())
        .expect("the server's endpoint");
    let gate = TcpGate::start(endpoint.parse().expect("host:port"));
    let mut d = with_remote(Cli::bare(), server);
    for (k, v) in &mut d.env {
        if k == "AWS_ENDPOINT_URL" {
            *v = gate.url();
        }
    }
    d.ok(&["pull", url, "img2", "--lazy"]);
    d.ok(&["create", "away", "--from", "img2"]);
    let mountpoint = d.mountpoint("away");
    d.mount("away", &mountpoint);
    // Fetched while the remote is there: served locally later.
    assert_eq!(
        std::fs::read(mountpoint.join("etc/hostname")).unwrap(),
        b"changed on host B\n"
    );

    // big.bin lies in the base image's pack, which nothing read yet: no block of it is local.
    gate.close();
    let started = std::time::Instant::now();
    let err = std::fs::read(mountpoint.join("big.bin")).expect_err("the remote is away");
    let waited = started.elapsed();
    eprintln!("a read with the remote away failed after {waited:?}: {err}");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(waited < std::time::Duration::from_secs(60), "{waited:?}");
    // The mount is up: local files read, a new file is written and read back.
    assert_eq!(
        std::fs::read(mountpoint.join("etc/hostname")).unwrap(),
        b"changed on host B\n"
    );
    std::fs::write(mountpoint.join("local.txt"), "written while away\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("local.txt")).unwrap(),
        "written while away\n"
    );
    let log = std::fs::read_to_string(d.daemon_log().unwrap()).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("I/O error reported to the kernel") && l.contains("remote")),
        "no log line names the remote: {log}"
    );

    gate.open();
    assert_eq!(
        std::fs::read(mountpoint.join("big.bin")).unwrap(),
        bytes(1, 1 << 20),
        "the read works once the remote is back"
    );
    d.ok(&["umount", s(&mountpoint)]);
    d.ok(&["fsck"]);
}

/// `pull --lazy --prefetch PATH`: the named files' blocks (a directory's files too) are
/// fetched by the pull, and later reads of them make no request; other files stay remote. A
/// path the image lacks fails the pull before anything is fetched, and leaves no image.
fn a_lazy_pull_prefetches_the_paths_it_names(server: &S3Server, url: &str) {
    let e = with_remote(Cli::bare(), server);
    let err = e.fails(
        &["pull", url, "img2", "--lazy", "--prefetch", "/nosuch"],
        "prefetch: no /nosuch in image img2",
    );
    assert!(!e.ok(&["images"]).contains("img2"), "{err}");
    let pulled = e.json(&[
        "pull",
        url,
        "img2",
        "--lazy",
        "--prefetch",
        "/new.bin",
        "--prefetch",
        "etc",
        "--json",
    ]);
    let hostname = "changed on host B\n".len() as u64;
    assert_eq!(u(&pulled, "/prefetched/files"), 2, "{pulled}");
    assert_eq!(
        u(&pulled, "/prefetched/bytes"),
        300_000 + hostname,
        "{pulled}"
    );
    assert_eq!(u(&pulled, "/prefetched/fetched_blocks"), 6, "{pulled}");
    assert!(
        e.ok(&[
            "pull",
            url,
            "img2",
            "--lazy",
            "--name",
            "again",
            "--prefetch",
            "etc"
        ])
        .contains("prefetched 1 file(s)")
    );

    let remote = Remote::connect_with(&url.parse().unwrap(), server.vars.clone()).unwrap();
    let store = Store::open(&e.store, StoreOptions::default().remote(remote.clone())).unwrap();
    let view = store.open_image("img2").unwrap();
    assert_eq!(read_file(&view, "new.bin"), bytes(2, 300_000));
    assert_eq!(read_file(&view, "etc/hostname"), b"changed on host B\n");
    assert_eq!(remote.figures().requests, 0, "prefetched: read locally");
    assert_eq!(read_file(&view, "big.bin"), bytes(1, 1 << 20));
    assert!(
        remote.figures().blocks_fetched >= 16,
        "big.bin was not prefetched"
    );
}

fn failures_are_one_line_and_change_nothing(a: &Cli, url: &str) {
    let images = a.ok(&["images", "--json"]);
    a.fails(&["pull", url, "nosuch"], "image nosuch on");
    a.fails(&["pull", "http://bucket/x", "base"], "s3://BUCKET/PREFIX");
    a.fails(&["push", "nosuch", url], "image nosuch not found");
    a.fails(&["pull", url, "base", "--name", "from-b"], "already exists");
    // The same store, the server unreachable.
    let mut env = a.env.clone();
    env.push(("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:1".into()));
    let down = Cli {
        dir: tempfile::tempdir().unwrap(),
        store: a.store.clone(),
        pids: Default::default(),
        env,
    };
    down.fails(&["pull", url, "base", "--name", "other"], "remote:");
    down.fails(&["push", "base", url], "remote:");
    assert_eq!(
        a.ok(&["images", "--json"]),
        images,
        "the store is unchanged"
    );
}
