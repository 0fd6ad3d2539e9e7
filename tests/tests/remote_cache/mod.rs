//! A size limit on what a lazily pulled store keeps of the remote's blocks (run by
//! `remote.rs`'s one test, against the real S3 server): past the limit, gc drops the least
//! recently used of them — never what a container's writable layer uses — and what was
//! dropped is fetched again, verified, when read. The limit holds across a reopen.

use tessera::maintenance::GcOptions;
use tessera::store::Remote;
use tessera::{Caller, Store, StoreOptions};
use tessera_tests::s3_server::S3Server;
use tessera_tests::{bytes, read_file, write_file};

use crate::cli::Cli;
use crate::{u, with_remote};

const LIMIT: u64 = 512 * 1024;

pub fn a_cache_limit_drops_the_least_recently_used(server: &S3Server, url: &str) {
    let f = with_remote(Cli::bare(), server);
    f.fails(
        &["pull", url, "img2", "--lazy", "--cache-size", "lots"],
        "--cache-size \"lots\" is not a size",
    );
    f.ok(&["pull", url, "img2", "--lazy", "--cache-size", "512K"]);
    f.ok(&["create", "keep", "--from", "img2"]);

    let remote = Remote::connect_with(&url.parse().unwrap(), server.vars.clone()).unwrap();
    let store = Store::open(&f.store, StoreOptions::default().remote(remote.clone())).unwrap();
    // The container writes new.bin's bytes (the remote's blocks: not stored again) and reads
    // them back, so they are local and its writable layer uses them.
    let c = store.container_view("keep").unwrap();
    write_file(&c, "copy.bin", &bytes(2, 300_000));
    c.sync().unwrap();
    assert_eq!(read_file(&c, "copy.bin"), bytes(2, 300_000));
    let image = store.open_image("img2").unwrap();
    assert_eq!(read_file(&image, "big.bin"), bytes(1, 1 << 20));
    // Used last: the hostname, then big.bin's last block.
    assert_eq!(read_file(&image, "etc/hostname"), b"changed on host B\n");
    let tail = image.resolve(b"big.bin").unwrap().node;
    image.read(tail, (1 << 20) - 4096, 4096).unwrap();

    let report = store.gc(&GcOptions::default()).unwrap();
    let evicted = report.evicted.expect("the store has a cache limit");
    eprintln!("{evicted:?}");
    assert_eq!(evicted.limit, LIMIT);
    assert!(evicted.cached_bytes > (1 << 20) + 300_000, "{evicted:?}");
    assert!(evicted.blocks_dropped >= 10, "{evicted:?}");
    let again = store.evict_cache().unwrap().unwrap();
    assert!(again.cached_bytes <= LIMIT, "{again:?}");
    assert_eq!(again.blocks_dropped, 0, "{again:?}");

    // Kept: the container's blocks and the most recently used; dropped: big.bin's first.
    let before = remote.figures().requests;
    assert_eq!(read_file(&c, "copy.bin"), bytes(2, 300_000));
    assert_eq!(read_file(&image, "etc/hostname"), b"changed on host B\n");
    image.read(tail, (1 << 20) - 4096, 4096).unwrap();
    assert_eq!(
        remote.figures().requests,
        before,
        "kept blocks read locally"
    );
    assert_eq!(read_file(&image, "big.bin"), bytes(1, 1 << 20));
    assert!(
        remote.figures().requests > before,
        "dropped blocks fetched again"
    );
    let node = c.resolve(b"copy.bin").unwrap().node;
    c.write(node, 0, b"still writable").unwrap();
    c.create(c.root(), b"new.txt", 0o644, Caller::ROOT).unwrap();
    c.sync().unwrap();
    drop((c, image));
    store.sync().unwrap();
    drop(store);

    // The limit is the store's: a new process keeps it, and gc through the CLI applies it
    // (big.bin, read whole again above, is over it once more).
    let gc = f.json(&["gc", "--json"]);
    assert_eq!(u(&gc, "/evicted/limit"), LIMIT, "{gc}");
    assert!(u(&gc, "/evicted/blocks_dropped") > 0, "{gc}");
    let gc = f.json(&["gc", "--json"]);
    assert!(u(&gc, "/evicted/cached_bytes") <= LIMIT, "{gc}");
    assert_eq!(u(&gc, "/evicted/blocks_dropped"), 0, "{gc}");
    assert!(f.ok(&["gc"]).contains("limit 512.0 KiB"));
    let stats = f.json(&["stats", "--json"]);
    assert_eq!(u(&stats, "/remote/cache_limit"), LIMIT, "{stats}");
    f.ok(&["fsck", "--verify-data"]);
}
