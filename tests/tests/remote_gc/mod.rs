//! `tessera gc --remote` against the real S3 server (run by `remote.rs`'s one test): exactly
//! the packs no image references go, index and pack, and only once older than the grace; the
//! images left pull whole; a dry run and a gc that finds a push under way delete nothing; a
//! push waits for a gc under way; a host that had attached a deleted pack uploads its blocks
//! again instead of relying on it; a store backed by the remote holds the packs it reads.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera::store::Remote;
use tessera::store::remote::bucket;
use tessera::transfer::read_manifest;
use tessera_tests::bytes;
use tessera_tests::s3_server::S3Server;

use crate::cli::Cli;
use crate::{u, with_remote};

/// The objects under `packs/`.
fn pack_objects(remote: &Remote) -> BTreeSet<String> {
    remote
        .list(&bucket::packs_dir())
        .unwrap()
        .into_iter()
        .collect()
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// Host A with images `base` and `extra` (blocks of its own), both pushed.
fn host_with_two_pushed_images(server: &S3Server, url: &str) -> Cli {
    let a = with_remote(Cli::new(&[]), server);
    let src = a.path("extra-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("own.bin"), bytes(7, 400_000)).unwrap();
    a.ok(&["import", src.to_str().unwrap(), "--name", "extra"]);
    for image in ["base", "extra"] {
        a.ok(&["push", image, url]);
    }
    a
}

pub fn gc_deletes_exactly_the_unreferenced_packs(server: &S3Server) {
    let url = server.fresh_url("gc");
    let remote = Remote::connect_with(&url.parse().unwrap(), server.vars.clone()).unwrap();
    let a = host_with_two_pushed_images(server, &url);
    let base_packs: BTreeSet<String> = read_manifest(&remote, "base")
        .unwrap()
        .packs
        .into_iter()
        .collect();
    let extra_packs: BTreeSet<String> = read_manifest(&remote, "extra")
        .unwrap()
        .packs
        .into_iter()
        .collect();
    assert!(!extra_packs.is_empty() && base_packs.is_disjoint(&extra_packs));
    let all = pack_objects(&remote);
    assert_eq!(all.len(), 2 * (base_packs.len() + extra_packs.len()));

    // Nothing unreferenced: nothing goes, even with no grace.
    let r = a.json(&["gc", "--remote", &url, "--grace", "0", "--json"]);
    assert_eq!(u(&r, "/deleted_packs"), 0, "{r}");
    assert_eq!(u(&r, "/referenced_packs"), all.len() as u64 / 2, "{r}");

    a.ok(&["rmi", "--remote", &url, "extra"]);
    a.fails(&["rmi", "--remote", &url, "extra"], "not found");
    // The default grace keeps the young unreferenced packs.
    let r = a.json(&["gc", "--remote", &url, "--json"]);
    assert_eq!(u(&r, "/deleted_packs"), 0, "{r}");
    assert_eq!(u(&r, "/young_packs"), extra_packs.len() as u64, "{r}");
    assert!(
        a.ok(&["gc", "--remote", &url])
            .contains("deleted 0 unreferenced")
    );
    assert_eq!(pack_objects(&remote), all);
    // A dry run names them and deletes nothing.
    let r = a.json(&[
        "gc",
        "--remote",
        &url,
        "--grace",
        "0",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(names(&r["deleted"]), extra_packs, "{r}");
    assert!(u(&r, "/deleted_bytes") > 400_000, "{r}");
    assert_eq!(pack_objects(&remote), all, "a dry run deletes nothing");

    // A push under way (its lease): gc deletes nothing.
    let push_lease = bucket::lease_key("push-test");
    remote.put(&push_lease, b"test".to_vec()).unwrap();
    a.fails(&["gc", "--remote", &url, "--grace", "0"], "under way");
    assert_eq!(pack_objects(&remote), all);
    remote.delete(&push_lease).unwrap();

    let r = a.json(&["gc", "--remote", &url, "--grace", "0", "--json"]);
    assert_eq!(names(&r["deleted"]), extra_packs, "{r}");
    let expected: BTreeSet<String> = base_packs
        .iter()
        .flat_map(|p| [format!("{p}.pack"), format!("{p}.idx")])
        .collect();
    assert_eq!(
        pack_objects(&remote),
        expected,
        "index and pack, nothing else"
    );
    assert!(remote.list(&bucket::leases_dir()).unwrap().is_empty());

    // The image left pulls whole on another host.
    let b = with_remote(Cli::bare(), server);
    b.ok(&["pull", &url, "base"]);
    let files = b.export("base");
    assert_eq!(files["big.bin"], bytes(1, 1 << 20));
    assert_eq!(files["etc/hostname"], b"base\n");

    // A attached extra's packs when it uploaded them: pushing extra again sends its blocks
    // again (the deleted packs are detached), and B pulls it whole.
    let again = a.json(&["push", "extra", &url, "--json"]);
    assert!(u(&again, "/uploaded/blocks") > 0, "{again}");
    b.ok(&["pull", &url, "extra"]);
    assert_eq!(b.export("extra")["own.bin"], bytes(7, 400_000));

    a_push_waits_for_a_gc_under_way(&a, &remote, &url);
}

/// A gc's lease (as one under way leaves it): a push waits, then publishes once it is gone.
fn a_push_waits_for_a_gc_under_way(a: &Cli, remote: &Remote, url: &str) {
    let gc_lease = bucket::lease_key("gc-test");
    remote.put(&gc_lease, b"test".to_vec()).unwrap();
    a.ok(&[
        "import",
        a.path("extra-src").to_str().unwrap(),
        "--name",
        "late",
    ]);
    std::thread::scope(|scope| {
        let push = scope.spawn(|| a.ok(&["push", "late", url]));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            assert!(!push.is_finished(), "the push waits for the gc");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!remote.exists(&bucket::image_key("late")).unwrap());
        remote.delete(&gc_lease).unwrap();
        push.join().unwrap();
    });
    assert!(remote.exists(&bucket::image_key("late")).unwrap());
}

/// A store backed by the remote (a lazy pull) holds the packs it reads: a gc after the images
/// were removed from the remote keeps them and lists the hold, and the store still reads
/// every byte. The hold names what the store references, no more: once the store removed one
/// image, its next gc shrinks the hold and a remote gc deletes that image's packs — and only
/// those. Once the hold is released, a gc deletes the rest.
pub fn a_lazy_stores_hold_keeps_its_packs(server: &S3Server) {
    let url = server.fresh_url("hold");
    let remote = Remote::connect_with(&url.parse().unwrap(), server.vars.clone()).unwrap();
    let a = with_remote(Cli::bare(), server);
    let manifest_packs = |image: &str| -> BTreeSet<String> {
        read_manifest(&remote, image)
            .unwrap()
            .packs
            .into_iter()
            .collect()
    };
    for (image, seed) in [("held", 9), ("other", 10)] {
        let src = a.path(&format!("{image}-src"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("data.bin"), bytes(seed, 300_000)).unwrap();
        a.ok(&["import", src.to_str().unwrap(), "--name", image]);
        a.ok(&["push", image, &url]);
    }
    let (packs, other_packs) = (manifest_packs("held"), manifest_packs("other"));
    assert!(packs.is_disjoint(&other_packs), "{packs:?} {other_packs:?}");

    let h = with_remote(Cli::bare(), server);
    let pulled = h.json(&["pull", &url, "held", "--lazy", "--json"]);
    let id = pulled["hold"].as_str().expect("a hold id").to_string();
    assert!(remote.exists(&bucket::hold_key(&id)).unwrap());
    assert!(remote.list(&bucket::leases_dir()).unwrap().is_empty());
    h.ok(&["pull", &url, "other", "--lazy"]);

    // The images go from the remote; their packs stay, held, and the store reads them.
    a.ok(&["rmi", "--remote", &url, "held"]);
    a.ok(&["rmi", "--remote", &url, "other"]);
    let r = a.json(&["gc", "--remote", &url, "--grace", "0", "--json"]);
    assert_eq!(u(&r, "/deleted_packs"), 0, "{r}");
    let all = packs.len() + other_packs.len();
    assert_eq!(u(&r, "/held_packs"), all as u64, "{r}");
    assert_eq!(r["holds"][0]["store"], id.as_str(), "{r}");
    assert!(a.ok(&["gc", "--remote", &url]).contains(&id));
    assert_eq!(h.export("held")["data.bin"], bytes(9, 300_000));

    // The store lets one image go: its gc shrinks the hold, and exactly those packs go.
    h.ok(&["rmi", "other"]);
    let g = h.json(&["gc", "--json"]);
    assert_eq!(u(&g, "/held_packs"), packs.len() as u64, "{g}");
    let r = a.json(&["gc", "--remote", &url, "--grace", "0", "--json"]);
    assert_eq!(names(&r["deleted"]), other_packs, "{r}");
    assert_eq!(u(&r, "/held_packs"), packs.len() as u64, "{r}");
    assert_eq!(h.export("held")["data.bin"], bytes(9, 300_000));

    // Bad ids are refused and change nothing.
    a.fails(
        &["gc", "--remote", &url, "--release-hold", "../x"],
        "not a hold id",
    );
    a.fails(
        &["gc", "--remote", &url, "--release-hold", "0123456789abcdef"],
        "not found",
    );
    // Released (the store is gone for good): the packs go.
    let r = a.json(&[
        "gc",
        "--remote",
        &url,
        "--grace",
        "0",
        "--release-hold",
        &id,
        "--json",
    ]);
    assert_eq!(names(&r["released_holds"]), BTreeSet::from([id.clone()]));
    assert_eq!(names(&r["deleted"]), packs, "{r}");
    assert!(!remote.exists(&bucket::hold_key(&id)).unwrap());
}
