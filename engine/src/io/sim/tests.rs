//! `SimIo` against its contract: a crash keeps what was synced and loses what was not (names
//! too), a random crash keeps a random subset of sectors and replays from its seed, every
//! mutating call is counted and can fail, and a disk told to ignore syncs really loses them.

use super::*;

fn read(io: &SimIo, path: &Path) -> Option<Vec<u8>> {
    let f = io.open(path, OpenMode::ReadOnly).ok()?;
    let mut buf = vec![0u8; f.len().unwrap() as usize];
    f.read_exact_at(&mut buf, 0).unwrap();
    Some(buf)
}

/// A disk with `/s/f` holding `durable` synced (data and name).
fn disk_with_synced_file() -> (Arc<SimIo>, Arc<dyn IoFile>) {
    let io = SimIo::new(SimOptions::default());
    io.create_dir_all(Path::new("/s")).unwrap();
    let f = io.open(Path::new("/s/f"), OpenMode::Create).unwrap();
    f.write_all_at(b"durable", 0).unwrap();
    f.sync_data().unwrap();
    io.sync_dir(Path::new("/s")).unwrap();
    (io, f)
}

#[test]
fn crash_keeps_synced_bytes_and_names() {
    let (io, f) = disk_with_synced_file();
    let dir = Path::new("/s");
    f.write_all_at(b"lost?", 100).unwrap();
    let unsynced = io.open(&dir.join("g"), OpenMode::Create).unwrap();
    unsynced.write_all_at(b"x", 0).unwrap();

    let after = io.crash(7);
    assert!(f.write_all_at(b"z", 0).is_err(), "old disk must be dead");
    assert!(!after.exists(&dir.join("g")), "unsynced name must vanish");
    assert_eq!(read(&after, &dir.join("f")).unwrap()[..7], *b"durable");
}

/// The worst-case crash loses every unsynced write, truncate, create, rename and remove, and
/// nothing synced.
#[test]
fn a_crash_loses_what_was_not_synced() {
    let (io, f) = disk_with_synced_file();
    let s = |name: &str| Path::new("/s").join(name);
    let h = io.open(&s("h"), OpenMode::Create).unwrap();
    h.write_all_at(b"x", 0).unwrap();
    h.sync_data().unwrap();
    io.sync_dir(Path::new("/s")).unwrap();
    let g = io.open(&s("g"), OpenMode::Create).unwrap();
    g.write_all_at(b"synced data, unsynced name", 0).unwrap();
    g.sync_data().unwrap();
    f.write_all_at(b"DURABLE", 0).unwrap(); // over synced bytes
    f.write_all_at(b" and more", 7).unwrap(); // past them
    h.set_len(0).unwrap(); // unsynced truncate
    io.rename(&s("h"), &s("h2")).unwrap(); // unsynced rename
    io.remove_file(&s("f")).unwrap(); // unsynced remove

    let after = io.crash_losing_unsynced();
    assert_eq!(read(&after, &s("f")).as_deref(), Some(&b"durable"[..]));
    assert_eq!(read(&after, &s("g")), None, "a name never synced");
    assert_eq!(read(&after, &s("h")).as_deref(), Some(&b"x"[..]));
    assert_eq!(read(&after, &s("h2")), None, "an unsynced rename");
}

/// A random crash keeps some unsynced sectors and drops others, never touches synced bytes,
/// and the same seed on the same (dead) disk gives the same result.
#[test]
fn a_random_crash_keeps_a_subset_of_unsynced_sectors() {
    const SECTORS: usize = 64;
    let (io, f) = disk_with_synced_file();
    let unsynced: Vec<u8> = (0..SECTORS * SECTOR)
        .map(|i| (i / SECTOR) as u8 + 1)
        .collect();
    f.write_all_at(&unsynced, SECTOR as u64).unwrap();
    let path = Path::new("/s/f");
    for seed in 0..8 {
        let after = read(&io.crash(seed), path).unwrap();
        assert_eq!(after[..7], *b"durable", "seed {seed}");
        let kept = (0..SECTORS)
            .filter(|i| {
                let at = (i + 1) * SECTOR;
                after.get(at..at + SECTOR) == Some(&unsynced[i * SECTOR..(i + 1) * SECTOR])
            })
            .count();
        assert!(0 < kept && kept < SECTORS, "seed {seed}: kept {kept}");
        assert_eq!(read(&io.crash(seed), path).unwrap(), after, "seed {seed}");
    }
}

#[test]
fn injected_failures_start_after_the_countdown() {
    let io = SimIo::new(SimOptions::default());
    io.create_dir_all(Path::new("/s")).unwrap();
    let f = io.open(Path::new("/s/f"), OpenMode::Create).unwrap();
    io.fail_after(1);
    f.write_all_at(b"a", 0).unwrap();
    let err = f.write_all_at(b"b", 1).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert!(
        f.sync_data().is_err(),
        "every call after the first failure fails"
    );
    // mkdir, create, two writes and a sync; the last two failed.
    assert_eq!((io.mutating_calls(), io.injected_failures()), (5, 2));
}

/// Each kind of mutating call is counted and fails when the budget is spent; reads are not.
#[test]
fn every_mutating_call_can_fail() {
    type Call = fn(&SimIo, &dyn IoFile) -> io::Result<()>;
    let calls: [(&str, Call); 8] = [
        ("write", |_, f| f.write_all_at(b"w", 0)),
        ("truncate", |_, f| f.set_len(0)),
        ("sync_data", |_, f| f.sync_data()),
        ("create", |io, _| {
            io.open(Path::new("/s/new"), OpenMode::Create).map(drop)
        }),
        ("rename", |io, _| {
            io.rename(Path::new("/s/f"), Path::new("/s/g"))
        }),
        ("remove_file", |io, _| io.remove_file(Path::new("/s/f"))),
        ("sync_dir", |io, _| io.sync_dir(Path::new("/s"))),
        ("create_dir_all", |io, _| {
            io.create_dir_all(Path::new("/s/d"))
        }),
    ];
    for (name, call) in calls {
        let (io, f) = disk_with_synced_file();
        let before = io.mutating_calls();
        read(&io, Path::new("/s/f")).unwrap();
        assert!(io.exists(Path::new("/s/f")) && f.len().unwrap() == 7);
        assert_eq!(io.mutating_calls(), before, "{name}: reads are not counted");
        io.fail_after(0);
        let err = call(&io, &*f).expect_err(name);
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{name}");
        assert_eq!(io.mutating_calls(), before + 1, "{name}");
        assert_eq!(io.injected_failures(), 1, "{name}");
        io.heal();
        call(&io, &*f).unwrap_or_else(|e| panic!("{name} after heal: {e}"));
    }
}

/// A disk told to ignore syncs of some files loses their synced writes, and only theirs.
#[test]
fn a_disk_that_ignores_syncs_loses_them() {
    let io = SimIo::new(SimOptions::default());
    io.create_dir_all(Path::new("/s")).unwrap();
    io.ignore_syncs_of(Some(".log"));
    for name in ["a.log", "b.pack"] {
        let f = io
            .open(&Path::new("/s").join(name), OpenMode::Create)
            .unwrap();
        f.write_all_at(name.as_bytes(), 0).unwrap();
        f.sync_data().unwrap();
    }
    io.sync_dir(Path::new("/s")).unwrap();
    let after = io.crash_losing_unsynced();
    assert_eq!(
        read(&after, Path::new("/s/a.log")).as_deref(),
        Some(&b""[..])
    );
    assert_eq!(
        read(&after, Path::new("/s/b.pack")).as_deref(),
        Some(&b"b.pack"[..])
    );
    // It stays broken after the crash, until mended.
    let f = after
        .open(Path::new("/s/a.log"), OpenMode::ReadWrite)
        .unwrap();
    f.write_all_at(b"again", 0).unwrap();
    f.sync_data().unwrap();
    after.ignore_syncs_of(None);
    let g = after
        .open(Path::new("/s/b.pack"), OpenMode::ReadWrite)
        .unwrap();
    g.write_all_at(b"B", 0).unwrap();
    g.sync_data().unwrap();
    let again = after.crash_losing_unsynced();
    assert_eq!(
        read(&again, Path::new("/s/a.log")).as_deref(),
        Some(&b""[..])
    );
    assert_eq!(read(&again, Path::new("/s/b.pack")).unwrap()[..1], *b"B");
}
