//! Real programs on a real mount: a statically linked busybox run in a chroot of a container
//! (creating, editing, moving and deleting files; executing a binary written through the
//! mount), and the host's sqlite3 running transactions on a database that lives in an image.
//! Results are checked from outside the mount, in the committed image's view, and — for
//! SQLite — in the store's block accounting: the writable layer must grow by the blocks the
//! transactions touched, not by the size of the database.

use std::path::Path;
use std::process::Command;

use tessera::maintenance::GcOptions;
use tessera::stats::{StatsOptions, StoreFigures};
use tessera_fusefs::MountConfig;
use tessera_tests::mount::{MountGuard, can_mount};
use tessera_tests::*;

/// Runs a command, panicking with its output when it fails; returns its stdout.
fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Pushes the kernel's cached state of a mount to the volume (what `tessera commit` does).
fn syncfs(dir: &Path) {
    let fd = std::fs::File::open(dir).unwrap();
    rustix::fs::syncfs(&fd).unwrap();
}

/// A minimal root file system: busybox with the applets the script uses, /etc with files to
/// edit, rename and delete, and a directory of many files to remove recursively.
fn busybox_tree(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "sed", "mv", "rm", "mkdir", "ls", "cp", "seq", "wc", "chmod", "touch",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    for dir in ["etc", "tmp", "var/lib/old"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("etc/config"), "name=original\nmode=fast\n").unwrap();
    std::fs::write(root.join("etc/motd"), "welcome\n").unwrap();
    std::fs::write(root.join("etc/remove-me"), "bye\n").unwrap();
    std::fs::write(root.join("etc/rename-me"), bytes(7, 100_000)).unwrap();
    for i in 0..300 {
        std::fs::write(root.join(format!("var/lib/old/f{i:03}")), format!("{i}\n")).unwrap();
    }
}

/// chroot(8) (coreutils), by path: the child runs with only PATH=/bin.
const CHROOT: &str = "/usr/sbin/chroot";

/// Files that the second script edits, moves or deletes once they are flushed to packs.
const FIRST: &str = r#"set -e
cd /
echo hello > /tmp/a.txt
echo more >> /tmp/a.txt
mkdir -p /work/d1/d2
mv /tmp/a.txt /work/d1/d2/b.txt
seq 1 5000 > /work/numbers
seq 1 200000 > /tmp/scratch
"#;

const SECOND: &str = r#"set -e
cd /
sed -i 's/hello/HELLO/' /work/d1/d2/b.txt
sed -i 's/^name=.*/name=changed/' /etc/config
echo appended >> /etc/motd
rm /etc/remove-me
mv /etc/rename-me /etc/renamed
seq 1 1000 > /work/numbers
rm -r /var/lib/old
rm /tmp/scratch
cp /bin/busybox /tmp/busybox
chmod 755 /tmp/busybox
/tmp/busybox echo copied-binary-runs
cat /work/d1/d2/b.txt
wc -l < /work/numbers
ls /etc
"#;

fn busybox_sh(root: &Path, script: &str) -> String {
    run(Command::new(CHROOT)
        .arg(root)
        .args(["/bin/busybox", "sh", "-c", script])
        .env_clear()
        .env("PATH", "/bin"))
}

/// Drops the kernel's cached pages of a file on the mount, so the next read asks the store.
fn drop_cached_pages(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
}

#[test]
fn busybox_in_a_chroot_edits_the_container() {
    if !can_mount() || !have_program("/bin/busybox") {
        return;
    }
    let t = TempStore::new(4096);
    let src = t.dir.path().join("src");
    busybox_tree(&src);
    t.import_path(&src, "bb").unwrap();
    t.create_container("c1", "bb").unwrap();
    let m = MountGuard::new(t.open_container("c1").unwrap(), MountConfig::default());

    assert_eq!(busybox_sh(m.path(), FIRST), "");
    t.sync().unwrap();
    let out = busybox_sh(m.path(), SECOND);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "copied-binary-runs",
            "HELLO",
            "more",
            "1000",
            "config",
            "motd",
            "renamed"
        ],
        "script output: {out}"
    );

    // gc while mounted, rewriting every pack with garbage (what the second script replaced
    // or deleted): the live blocks move, and the mount reads them at their new places.
    syncfs(m.path());
    let report = t
        .gc(&GcOptions {
            dry_run: false,
            repack_below: 1.0,
        })
        .unwrap();
    eprintln!("gc while mounted: {report:?}");
    assert!(report.garbage_blocks > 0, "{report:?}");
    assert!(
        report.packs_rewritten + report.packs_deleted > 0,
        "{report:?}"
    );
    for file in [
        "work/d1/d2/b.txt",
        "work/numbers",
        "tmp/busybox",
        "etc/motd",
    ] {
        drop_cached_pages(&m.join(file));
    }

    // Seen from outside, through the same mount.
    let read = |p: &str| std::fs::read(m.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("work/d1/d2/b.txt"), b"HELLO\nmore\n");
    assert_eq!(read("etc/config"), b"name=changed\nmode=fast\n");
    assert_eq!(read("etc/motd"), b"welcome\nappended\n");
    assert_eq!(read("etc/renamed"), bytes(7, 100_000));
    assert_eq!(read("tmp/busybox"), std::fs::read("/bin/busybox").unwrap());
    let numbers: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    assert_eq!(read("work/numbers"), numbers.as_bytes());
    for gone in ["tmp/a.txt", "etc/remove-me", "etc/rename-me", "var/lib/old"] {
        assert!(!m.join(gone).exists(), "{gone} still exists");
    }
    assert!(m.join("var/lib").is_dir());

    // Committed while mounted: the image view holds the same results; the base is untouched.
    syncfs(m.path());
    t.commit_container("c1", "bb2").unwrap();
    let img = t.open_image("bb2").unwrap();
    assert_eq!(read_file(&img, "work/d1/d2/b.txt"), b"HELLO\nmore\n");
    assert_eq!(read_file(&img, "etc/config"), b"name=changed\nmode=fast\n");
    assert_eq!(read_file(&img, "etc/motd"), b"welcome\nappended\n");
    assert_eq!(read_file(&img, "etc/renamed"), bytes(7, 100_000));
    assert_eq!(read_file(&img, "work/numbers"), numbers.as_bytes());
    let bb = img.resolve(b"tmp/busybox").unwrap();
    assert_eq!(bb.perm & 0o777, 0o755);
    for gone in ["tmp/a.txt", "etc/remove-me", "etc/rename-me", "var/lib/old"] {
        assert!(img.resolve(gone.as_bytes()).is_err(), "{gone} in the image");
    }
    let base = t.open_image("bb").unwrap();
    assert_eq!(
        read_file(&base, "etc/config"),
        b"name=original\nmode=fast\n"
    );
    assert_eq!(read_file(&base, "var/lib/old/f299"), b"299\n");

    // The container goes on after the commit: the shell still runs and sees its files.
    let out = run(Command::new(CHROOT).arg(m.path()).args([
        "/bin/busybox",
        "sh",
        "-c",
        "echo after >> /etc/motd && cat /etc/motd",
    ]));
    assert_eq!(out, "welcome\nappended\nafter\n");
    m.unmount();
}

/// The store's figures after a gc (so garbage of superseded blocks is gone).
fn figures_after_gc(t: &TempStore) -> StoreFigures {
    t.gc(&GcOptions::default()).unwrap();
    tessera::stats::stats(t, &StatsOptions::default())
        .unwrap()
        .store
}

fn sqlite(db: &Path, sql: &str) -> String {
    run(Command::new("/usr/bin/sqlite3")
        .arg("-batch")
        .arg(db)
        .arg(sql))
}

#[test]
fn sqlite_transactions_on_a_database_from_the_image() {
    if !can_mount() || !have_program("/usr/bin/sqlite3") {
        return;
    }
    let t = TempStore::new(16384);
    let src = t.dir.path().join("src");
    std::fs::create_dir_all(src.join("data")).unwrap();
    let host_db = src.join("data/app.db");
    // ~32 MiB: 8000 rows of a 4000-byte random blob, one page each.
    sqlite(
        &host_db,
        "PRAGMA page_size=4096;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL, data BLOB);
         CREATE TABLE log(id INTEGER PRIMARY KEY, note TEXT);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 8000)
         INSERT INTO t SELECT x, 0, randomblob(4000) FROM c;",
    );
    let db_size = std::fs::metadata(&host_db).unwrap().len();
    assert!(db_size > 20 << 20, "database of {db_size} bytes");
    t.import_path(&src, "db").unwrap();
    t.create_container("c1", "db").unwrap();
    let before = figures_after_gc(&t);

    let m = MountGuard::new(t.open_container("c1").unwrap(), MountConfig::default());
    let db = m.join("data/app.db");
    // 300 transactions, each a commit with journal and fsyncs: a hot range of rows updated
    // over and over, a scattered row each time, and a log row appended.
    let mut sql = String::new();
    for i in 0..300u64 {
        let hot = 4000 + (i * 7) % 60;
        let cold = 1 + (i * 2654435761) % 8000;
        sql.push_str(&format!(
            "BEGIN;
             UPDATE t SET v = v + 1 WHERE id BETWEEN {hot} AND {hot} + 2;
             UPDATE t SET v = v + 1 WHERE id = {cold};
             INSERT INTO log(note) VALUES ('transaction {i}');
             COMMIT;\n"
        ));
    }
    sqlite(&db, &sql);
    let check = |db: &Path| {
        assert_eq!(sqlite(db, "PRAGMA integrity_check;").trim(), "ok");
        let figures = sqlite(
            db,
            "SELECT sum(v), count(*) FROM t; SELECT count(*) FROM log;",
        );
        assert_eq!(
            figures.split_whitespace().collect::<Vec<_>>(),
            ["1200|8000", "300"]
        );
    };
    check(&db);
    let mode = sqlite(&db, "PRAGMA journal_mode;");
    assert_eq!(
        mode.trim(),
        "delete",
        "the rollback journal lived on the mount"
    );
    m.unmount();

    // Mounted again: the same state, from the store.
    let m = MountGuard::new(t.open_container("c1").unwrap(), MountConfig::default());
    check(&m.join("data/app.db"));
    m.unmount();

    let after = figures_after_gc(&t);
    let grew = |a: u64, b: u64| b.saturating_sub(a);
    let referenced = grew(before.referenced_bytes, after.referenced_bytes);
    let stored = grew(before.stored_block_bytes, after.stored_block_bytes);
    eprintln!(
        "database {db_size} bytes; referenced {} -> {} (+{referenced}); stored block bytes {} \
         -> {} (+{stored}); pack bytes {} -> {}",
        before.referenced_bytes,
        after.referenced_bytes,
        before.stored_block_bytes,
        after.stored_block_bytes,
        before.pack_bytes,
        after.pack_bytes,
    );
    assert!(referenced > 0, "the transactions wrote nothing?");
    assert!(
        referenced < db_size / 4 && stored < db_size / 4,
        "the store grew by {referenced} referenced / {stored} stored bytes for a {db_size}-byte \
         database: whole-file copy-up?"
    );
    let fsck = t
        .fsck(&tessera::maintenance::FsckOptions { verify_data: true })
        .unwrap();
    assert!(fsck.problems.is_empty(), "{:?}", fsck.problems);
}
