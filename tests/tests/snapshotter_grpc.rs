//! `tessera snapshotter` spoken to directly over gRPC (no containerd in between, so every
//! answer is the snapshotter's own): bad requests get containerd's codes (NotFound,
//! AlreadyExists, FailedPrecondition) and leave the store as it was; labels are kept and
//! updated; Usage and Walk answer, Walk with containerd's filters; a restart of the
//! snapshotter loses nothing; Cleanup removes what a crash left unnamed; requests running at
//! once leave the database and the store agreeing.

#[allow(dead_code)]
mod cli;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cli::{Cli, tessera_bin};
use containerd_snapshots::api::snapshots::v1::snapshots_client::SnapshotsClient;
use containerd_snapshots::api::snapshots::v1::*;
use containerd_snapshots::tonic::transport::{Channel, Endpoint};
use containerd_snapshots::tonic::{Code, Request};
use tessera_tests::bytes;
use tessera_tests::mount::can_mount;

const SN: &str = "tessera";

/// A running `tessera snapshotter`, stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Option<Child>,
}

impl Server {
    fn start(cli: &Cli, socket: &Path) -> Server {
        let _ = std::fs::remove_file(socket);
        let child = Command::new(tessera_bin())
            .arg("--store")
            .arg(&cli.store)
            .arg("snapshotter")
            .arg("--address")
            .arg(socket)
            .env_remove("TESSERA_STORE")
            .stdout(std::fs::File::create(cli.path("snapshotter.log")).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !socket.exists() {
            assert!(started.elapsed() < Duration::from_secs(30), "no socket");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child: Some(child) }
    }

    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            cli::terminate(child);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn connect(socket: PathBuf) -> SnapshotsClient<Channel> {
    let channel = Endpoint::try_from("http://[::1]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            tokio::net::UnixStream::connect(socket.clone())
        }))
        .await
        .unwrap();
    SnapshotsClient::new(channel)
}

/// Runs `body` with a client of the snapshotter at `socket`, on a runtime of its own: dropping
/// the runtime closes the connection (else the snapshotter's stop would wait for it).
fn session(socket: &Path, body: impl AsyncFnOnce(&mut SnapshotsClient<Channel>)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = connect(socket.to_path_buf()).await;
        body(&mut c).await;
    });
}

fn code<T: std::fmt::Debug>(r: Result<T, containerd_snapshots::tonic::Status>) -> Code {
    r.expect_err("an error").code()
}

fn prepare(key: &str, parent: &str) -> Request<PrepareSnapshotRequest> {
    Request::new(PrepareSnapshotRequest {
        snapshotter: SN.into(),
        key: key.into(),
        parent: parent.into(),
        labels: HashMap::from([("k".to_string(), key.to_string())]),
    })
}

fn commit(name: &str, key: &str) -> Request<CommitSnapshotRequest> {
    Request::new(CommitSnapshotRequest {
        snapshotter: SN.into(),
        name: name.into(),
        key: key.into(),
        labels: HashMap::from([("committed".to_string(), name.to_string())]),
    })
}

fn remove(key: &str) -> Request<RemoveSnapshotRequest> {
    Request::new(RemoveSnapshotRequest {
        snapshotter: SN.into(),
        key: key.into(),
    })
}

fn stat(key: &str) -> Request<StatSnapshotRequest> {
    Request::new(StatSnapshotRequest {
        snapshotter: SN.into(),
        key: key.into(),
    })
}

/// The store's images and containers, by name.
fn store_names(cli: &Cli) -> Vec<String> {
    let mut names: Vec<String> = ["images", "containers"]
        .iter()
        .flat_map(|what| {
            cli.json(&[what, "--json"])
                .as_array()
                .unwrap()
                .iter()
                .map(|i| format!("{what}:{}", i["name"].as_str().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn bad_requests_get_containerds_codes_and_a_restart_loses_nothing() {
    if !can_mount() {
        return;
    }
    let cli = Cli::bare();
    let socket = cli.path("snapshotter.sock");
    let mut server = Server::start(&cli, &socket);
    session(&socket, async |c| {
        let mounts = c
            .prepare(prepare("a", ""))
            .await
            .unwrap()
            .into_inner()
            .mounts;
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].r#type, "bind");
        assert!(mounts[0].options.contains(&"rw".to_string()), "{mounts:?}");
        std::fs::write(Path::new(&mounts[0].source).join("file"), bytes(3, 200_000)).unwrap();
        let usage = c
            .usage(Request::new(UsageRequest {
                snapshotter: SN.into(),
                key: "a".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        // Exclusive bytes as stored (compressed: these are not very compressible).
        assert!(usage.size >= 100_000 && usage.inodes >= 1, "{usage:?}");
        c.commit(commit("a-done", "a")).await.unwrap();
        c.prepare(prepare("b", "a-done")).await.unwrap();
        let view = c
            .view(Request::new(ViewSnapshotRequest {
                snapshotter: SN.into(),
                key: "v".into(),
                parent: "a-done".into(),
                labels: HashMap::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .mounts;
        assert!(view[0].options.contains(&"ro".to_string()), "{view:?}");
        assert_eq!(
            std::fs::read(Path::new(&view[0].source).join("file")).unwrap(),
            bytes(3, 200_000)
        );

        let before = store_names(&cli);
        assert_eq!(code(c.stat(stat("nope")).await), Code::NotFound);
        assert_eq!(code(c.prepare(prepare("x", "nope")).await), Code::NotFound);
        assert_eq!(
            code(c.prepare(prepare("x", "b")).await),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(c.prepare(prepare("x", "v")).await),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(c.prepare(prepare("b", "a-done")).await),
            Code::AlreadyExists
        );
        assert_eq!(code(c.commit(commit("y", "nope")).await), Code::NotFound);
        assert_eq!(
            code(c.commit(commit("a-done", "b")).await),
            Code::AlreadyExists
        );
        assert_eq!(
            code(c.commit(commit("z", "a-done")).await),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(c.commit(commit("z", "v")).await),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(c.remove(remove("a-done")).await),
            Code::FailedPrecondition
        );
        assert_eq!(code(c.remove(remove("nope")).await), Code::NotFound);
        assert_eq!(
            code(
                c.mounts(Request::new(MountsRequest {
                    snapshotter: SN.into(),
                    key: "nope".into(),
                }))
                .await
            ),
            Code::NotFound
        );
        assert_eq!(store_names(&cli), before);

        let mut info = c
            .stat(stat("a-done"))
            .await
            .unwrap()
            .into_inner()
            .info
            .unwrap();
        assert_eq!(info.labels["committed"], "a-done");
        info.labels.insert("extra".into(), "1".into());
        c.update(Request::new(UpdateSnapshotRequest {
            snapshotter: SN.into(),
            info: Some(info),
            update_mask: Some(prost_types_mask(&["labels.extra"])),
        }))
        .await
        .unwrap();
    });
    // A restart: the same snapshots, kinds, parents and labels, and mounts that work.
    server.stop();
    let mut server = Server::start(&cli, &socket);
    session(&socket, async |c| {
        let info = c
            .stat(stat("a-done"))
            .await
            .unwrap()
            .into_inner()
            .info
            .unwrap();
        assert_eq!(info.labels["extra"], "1");
        assert_eq!(info.labels["committed"], "a-done");
        let b = c.stat(stat("b")).await.unwrap().into_inner().info.unwrap();
        assert_eq!(b.parent, "a-done");
        assert_eq!(b.labels["k"], "b");
        let mut walk = c
            .list(Request::new(ListSnapshotsRequest {
                snapshotter: SN.into(),
                filters: vec![],
            }))
            .await
            .unwrap()
            .into_inner();
        let mut keys = Vec::new();
        while let Some(page) = walk.message().await.unwrap() {
            keys.extend(page.info.into_iter().map(|i| i.name));
        }
        keys.sort();
        assert_eq!(keys, ["a-done", "b", "v"]);
        let mounts = c
            .mounts(Request::new(MountsRequest {
                snapshotter: SN.into(),
                key: "b".into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .mounts;
        assert_eq!(
            std::fs::read(Path::new(&mounts[0].source).join("file"))
                .unwrap()
                .len(),
            200_000
        );
        for key in ["b", "v", "a-done"] {
            c.remove(remove(key)).await.unwrap();
        }
    });
    // What a crash between a store step and the database step leaves: a container and an
    // image named like a snapshot's that no snapshot names. Cleanup removes those, and
    // nothing else.
    cli.ok(&["create", "ctd-999", "--from", "ctd-empty"]);
    cli.ok(&["commit", "ctd-999", "--name", "ctd-998"]);
    cli.ok(&["create", "mine", "--from", "ctd-empty"]);
    session(&socket, async |c| {
        c.cleanup(Request::new(CleanupRequest {
            snapshotter: SN.into(),
        }))
        .await
        .unwrap();
    });
    assert_eq!(store_names(&cli), ["containers:mine", "images:ctd-empty"]);
    cli.ok(&["rm", "mine"]);
    server.stop();
    assert_eq!(store_names(&cli), ["images:ctd-empty"]);
}

/// The sorted keys Walk answers for `filters`, or its error.
async fn walk(
    c: &mut SnapshotsClient<Channel>,
    filters: &[&str],
) -> Result<Vec<String>, containerd_snapshots::tonic::Status> {
    let mut stream = c
        .list(Request::new(ListSnapshotsRequest {
            snapshotter: SN.into(),
            filters: filters.iter().map(|f| f.to_string()).collect(),
        }))
        .await?
        .into_inner();
    let mut keys = Vec::new();
    while let Some(page) = stream.message().await? {
        keys.extend(page.info.into_iter().map(|i| i.name));
    }
    keys.sort();
    Ok(keys)
}

#[test]
fn walk_answers_containerds_filters() {
    if !can_mount() {
        return;
    }
    let cli = Cli::bare();
    let socket = cli.path("snapshotter.sock");
    let mut server = Server::start(&cli, &socket);
    session(&socket, async |c| {
        // Two committed layers (one a gc root), an active snapshot on one, a view on the other.
        for (key, name, root) in [("app", "app-base", true), ("box", "box-base", false)] {
            c.prepare(prepare(key, "")).await.unwrap();
            let mut labels = HashMap::from([("committed".to_string(), name.to_string())]);
            if root {
                labels.insert("containerd.io/gc.root".into(), "2026-12-07".into());
            }
            c.commit(Request::new(CommitSnapshotRequest {
                snapshotter: SN.into(),
                name: name.into(),
                key: key.into(),
                labels,
            }))
            .await
            .unwrap();
        }
        c.prepare(prepare("active", "app-base")).await.unwrap();
        c.view(Request::new(ViewSnapshotRequest {
            snapshotter: SN.into(),
            key: "view".into(),
            parent: "box-base".into(),
            labels: HashMap::new(),
        }))
        .await
        .unwrap();

        let all = ["active", "app-base", "box-base", "view"];
        assert_eq!(walk(c, &[]).await.unwrap(), all);
        assert_eq!(
            walk(c, &["kind==committed"]).await.unwrap(),
            ["app-base", "box-base"]
        );
        assert_eq!(
            walk(c, &[r#"labels."containerd.io/gc.root""#])
                .await
                .unwrap(),
            ["app-base"]
        );
        assert_eq!(
            walk(c, &["name~=^a"]).await.unwrap(),
            ["active", "app-base"]
        );
        assert_eq!(
            walk(c, &["kind==view", "parent==app-base"]).await.unwrap(),
            ["active", "view"]
        );
        assert_eq!(
            walk(c, &["kind!=committed,labels.k==active"])
                .await
                .unwrap(),
            ["active"]
        );
        let bad = walk(c, &["kind==view", "kind=committed"])
            .await
            .expect_err("a malformed filter");
        assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
        assert!(bad.message().contains(r#""kind=committed""#), "{bad:?}");
        assert!(!bad.message().contains('\n'), "{bad:?}");

        for key in ["active", "view", "app-base", "box-base"] {
            c.remove(remove(key)).await.unwrap();
        }
        assert!(walk(c, &[]).await.unwrap().is_empty());
    });
    server.stop();
}

fn prost_types_mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    }
}

/// Every snapshot the snapshotter lists, with the Tessera container or image it names; every
/// `ctd-N` of the store but the empty image is one of them.
async fn assert_consistent(c: &mut SnapshotsClient<Channel>, cli: &Cli) {
    let keys = walk(c, &[]).await.unwrap();
    let store: Vec<String> = store_names(cli)
        .into_iter()
        .filter(|n| !n.ends_with(":ctd-empty"))
        .collect();
    assert_eq!(
        keys.len(),
        store.len(),
        "snapshots {keys:?}, store {store:?}"
    );
}

#[test]
fn requests_run_at_once_and_leave_the_database_and_the_store_agreeing() {
    if !can_mount() {
        return;
    }
    let cli = Cli::bare();
    let socket = cli.path("snapshotter.sock");
    let mut server = Server::start(&cli, &socket);
    session(&socket, async |c| {
        let base = c.prepare(prepare("base", "")).await.unwrap().into_inner();
        std::fs::write(Path::new(&base.mounts[0].source).join("f"), b"base\n").unwrap();
        c.commit(commit("base-done", "base")).await.unwrap();

        // Eight containers prepared on one parent at once.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..8 {
            let mut c = c.clone();
            set.spawn(async move {
                let r = c.prepare(prepare(&format!("c{i}"), "base-done")).await;
                r.unwrap().into_inner().mounts
            });
        }
        while let Some(mounts) = set.join_next().await {
            let f = Path::new(&mounts.unwrap()[0].source).join("f");
            assert_eq!(std::fs::read(f).unwrap(), b"base\n");
        }
        let made: Vec<usize> = (0..8).collect();

        // A remove of a parent among prepares on it: it fails (they are its children, made
        // or being made) or comes first (then they fail), never between.
        c.prepare(prepare("p2", "")).await.unwrap();
        c.commit(commit("p2-done", "p2")).await.unwrap();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..4 {
            let mut c = c.clone();
            set.spawn(async move { (i, c.prepare(prepare(&format!("q{i}"), "p2-done")).await) });
        }
        let removed = c.clone().remove(remove("p2-done")).await;
        let mut on_p2 = 0;
        while let Some(joined) = set.join_next().await {
            match (&removed, joined.unwrap()) {
                (_, (_, Ok(_))) => on_p2 += 1,
                (Ok(_), (i, Err(e))) => assert_eq!(e.code(), Code::NotFound, "q{i}: {e}"),
                (Err(_), (i, Err(e))) => panic!("q{i} failed though its parent stayed: {e}"),
            }
        }
        match &removed {
            Err(e) => assert_eq!(e.code(), Code::FailedPrecondition, "{e}"),
            Ok(_) => assert_eq!(on_p2, 0, "made on a removed parent"),
        }
        assert_consistent(c, &cli).await;

        // The ones made are committed at once, each with a file of its own.
        let mut set = tokio::task::JoinSet::new();
        for i in made.clone() {
            let mut c = c.clone();
            set.spawn(async move {
                c.commit(commit(&format!("c{i}-done"), &format!("c{i}")))
                    .await
            });
        }
        while let Some(joined) = set.join_next().await {
            joined.unwrap().unwrap();
        }
        for i in &made {
            let info = c
                .stat(stat(&format!("c{i}-done")))
                .await
                .unwrap()
                .into_inner()
                .info
                .unwrap();
            assert_eq!(info.kind, Kind::Committed as i32);
        }
        assert_consistent(c, &cli).await;
    });
    server.stop();
}
