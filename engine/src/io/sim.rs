//! A simulated disk for crash and fault tests. Every write is kept apart from the file's durable
//! bytes until `sync_data`; `crash` returns a new `SimIo` holding what a power cut could have
//! left: the durable bytes plus a random subset of the unsynced writes, cut into 4 KiB sectors,
//! and only the names that `sync_dir` made durable. The old `SimIo` goes dead: every call on it
//! fails, so a store still holding it can write nothing more, and its state stays as it was (a
//! second `crash` with the same seed gives the same disk).
//!
//! Faults: every mutating call — a write, truncate or `sync_data` of a file, and a file
//! created, renamed or removed, a directory created or synced — is counted and charged against
//! one budget (`fail_after`), so an injected failure can land on any of them; crash tests count
//! an operation's calls in a dry run and cut it anywhere in that range.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{AlignedBuf, IoFile, Mapped, OpenMode, StorageIo};

const SECTOR: usize = 4096;

/// Fault settings of a simulated disk.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Fail every mutating call after this many have succeeded.
    pub fail_after: Option<i64>,
    /// The errno of injected failures (default ENOSPC).
    pub errno: Option<i32>,
    /// Bytes the disk holds in all; writes beyond it fail with ENOSPC.
    pub capacity: Option<u64>,
}

#[derive(Debug)]
pub struct SimIo {
    state: Mutex<Namespace>,
    alive: Arc<AtomicBool>,
    faults: Arc<Faults>,
    options: SimOptions,
}

/// The fault budget and counters, shared by a disk and the files opened on it.
#[derive(Debug)]
struct Faults {
    /// Mutating calls that may still succeed.
    budget: AtomicI64,
    /// Mutating calls made, and how many of them failed by injection.
    calls: AtomicU64,
    failed: AtomicU64,
    errno: i32,
    /// See [`SimIo::ignore_syncs_of`].
    lying: Mutex<Option<String>>,
}

impl Faults {
    fn new(budget: i64, errno: i32, lying: Option<String>) -> Arc<Faults> {
        Arc::new(Faults {
            budget: AtomicI64::new(budget),
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            errno,
            lying: Mutex::new(lying),
        })
    }

    /// Counts one mutating call and charges it against the budget.
    fn charge(&self) -> io::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(self.errno));
        }
        Ok(())
    }

    /// Whether a sync of `name` is to be skipped (see [`SimIo::ignore_syncs_of`]).
    fn lies_about(&self, name: &Path) -> bool {
        let lying = self.lying.lock().unwrap();
        lying
            .as_deref()
            .is_some_and(|suffix| name.to_string_lossy().ends_with(suffix))
    }
}

#[derive(Debug, Default, Clone)]
struct Namespace {
    files: HashMap<PathBuf, Arc<SimFile>>,
    /// The names as the last `sync_dir` of each directory left them.
    durable: HashMap<PathBuf, Arc<SimFile>>,
    dirs: HashSet<PathBuf>,
}

#[derive(Debug, Default)]
struct SimFile {
    state: Mutex<FileState>,
}

#[derive(Debug, Default, Clone)]
struct FileState {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug, Clone)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

/// A small deterministic generator so crash points replay from a seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// Which unsynced writes and truncates a power cut lets through.
enum Luck<'r> {
    /// A random subset, each sector and truncate by a coin.
    Random(&'r mut SplitMix),
    /// None of them: the worst case.
    Nothing,
}

impl Luck<'_> {
    fn kept(&mut self) -> bool {
        match self {
            Luck::Random(rng) => rng.coin(),
            Luck::Nothing => false,
        }
    }
}

impl SimIo {
    pub fn new(options: SimOptions) -> Arc<SimIo> {
        let budget = options.fail_after.unwrap_or(i64::MAX);
        let errno = options.errno.unwrap_or(libc::ENOSPC);
        Arc::new(SimIo {
            state: Mutex::new(Namespace::default()),
            alive: Arc::new(AtomicBool::new(true)),
            faults: Faults::new(budget, errno, None),
            options,
        })
    }

    /// Simulates a power cut: returns the disk as it comes back, and kills this one. Which
    /// unsynced writes reached the disk is drawn from `seed`.
    pub fn crash(&self, seed: u64) -> Arc<SimIo> {
        self.crash_with(Luck::Random(&mut SplitMix(seed)))
    }

    /// A power cut in which no unsynced write or truncate reached the disk (the worst case,
    /// for tests that must lose everything unsynced).
    pub fn crash_losing_unsynced(&self) -> Arc<SimIo> {
        self.crash_with(Luck::Nothing)
    }

    fn crash_with(&self, mut luck: Luck<'_>) -> Arc<SimIo> {
        self.alive.store(false, Ordering::SeqCst);
        let ns = self.state.lock().unwrap();
        let mut names: Vec<_> = ns.durable.iter().collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        let mut revived: HashMap<*const SimFile, Arc<SimFile>> = HashMap::new();
        let mut files = HashMap::new();
        for (path, file) in names {
            let copy = revived
                .entry(Arc::as_ptr(file))
                .or_insert_with(|| Arc::new(file.after_crash(&mut luck)))
                .clone();
            files.insert(path.clone(), copy);
        }
        Arc::new(SimIo {
            state: Mutex::new(Namespace {
                durable: files.clone(),
                files,
                dirs: ns.dirs.clone(),
            }),
            alive: Arc::new(AtomicBool::new(true)),
            // A broken disk stays broken; injected failures and the counts start over.
            faults: Faults::new(
                i64::MAX,
                libc::ENOSPC,
                self.faults.lying.lock().unwrap().clone(),
            ),
            options: SimOptions::default(),
        })
    }

    /// Stops injecting failures (the disk "recovers").
    pub fn heal(&self) {
        self.faults.budget.store(i64::MAX, Ordering::SeqCst);
    }

    /// Injects failures after `n` more mutating calls succeeded: `fail_after(0)` fails the
    /// next one, and every call after the first failure fails too.
    pub fn fail_after(&self, n: i64) {
        self.faults.budget.store(n, Ordering::SeqCst);
    }

    /// Mutating calls made on this disk so far (failed ones included).
    pub fn mutating_calls(&self) -> u64 {
        self.faults.calls.load(Ordering::SeqCst)
    }

    /// Mutating calls that failed by injection so far.
    pub fn injected_failures(&self) -> u64 {
        self.faults.failed.load(Ordering::SeqCst)
    }

    /// Makes this a deliberately broken disk, for the crash harness's own tests only: from now
    /// on `sync_data` of a file whose path (as opened) ends with `suffix` succeeds and makes
    /// nothing durable — a store that forgot that sync, or a disk that lies about it. It stays
    /// broken across `crash`. `None` mends it. A checker that cannot tell such a disk from a
    /// sound one proves nothing.
    pub fn ignore_syncs_of(&self, suffix: Option<&str>) {
        *self.faults.lying.lock().unwrap() = suffix.map(str::to_string);
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.alive.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(io::Error::other("simulated disk is gone (crashed)"))
        }
    }

    fn used_bytes(&self) -> u64 {
        let ns = self.state.lock().unwrap();
        ns.files
            .values()
            .map(|f| f.state.lock().unwrap().current.len() as u64)
            .sum()
    }
}

impl SimFile {
    fn after_crash(&self, luck: &mut Luck<'_>) -> SimFile {
        let state = self.state.lock().unwrap();
        let mut bytes = state.durable.clone();
        for op in &state.pending {
            match op {
                Pending::SetLen(len) => {
                    if luck.kept() {
                        bytes.resize(*len as usize, 0);
                    }
                }
                Pending::Write(offset, data) => {
                    for (i, sector) in data.chunks(SECTOR).enumerate() {
                        if luck.kept() {
                            write_into(&mut bytes, *offset as usize + i * SECTOR, sector);
                        }
                    }
                }
            }
        }
        SimFile {
            state: Mutex::new(FileState {
                durable: bytes.clone(),
                current: bytes,
                pending: Vec::new(),
            }),
        }
    }
}

fn write_into(bytes: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if bytes.len() < offset + data.len() {
        bytes.resize(offset + data.len(), 0);
    }
    bytes[offset..offset + data.len()].copy_from_slice(data);
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}", path.display()))
}

impl StorageIo for SimIo {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn IoFile>> {
        self.check_alive()?;
        let mut ns = self.state.lock().unwrap();
        let file = match ns.files.get(path) {
            Some(file) => file.clone(),
            None if mode == OpenMode::Create => {
                let parent = path.parent().unwrap_or(Path::new("/"));
                if !ns.dirs.contains(parent) {
                    return Err(not_found(parent));
                }
                self.faults.charge()?;
                let file = Arc::new(SimFile::default());
                ns.files.insert(path.to_path_buf(), file.clone());
                file
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimHandle {
            file,
            name: path.to_path_buf(),
            alive: self.alive.clone(),
            faults: self.faults.clone(),
            capacity: self.options.capacity,
            read_only: mode == OpenMode::ReadOnly,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check_alive()?;
        let mut ns = self.state.lock().unwrap();
        if ns.dirs.contains(path) {
            return Ok(());
        }
        self.faults.charge()?;
        for dir in path.ancestors() {
            ns.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let ns = self.state.lock().unwrap();
        ns.files.contains_key(path) || ns.dirs.contains(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check_alive()?;
        let mut ns = self.state.lock().unwrap();
        if !ns.files.contains_key(path) {
            return Err(not_found(path));
        }
        self.faults.charge()?;
        ns.files.remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check_alive()?;
        let mut ns = self.state.lock().unwrap();
        if !ns.files.contains_key(from) {
            return Err(not_found(from));
        }
        self.faults.charge()?;
        let file = ns.files.remove(from).expect("checked above");
        ns.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check_alive()?;
        self.faults.charge()?;
        let mut ns = self.state.lock().unwrap();
        let Namespace { files, durable, .. } = &mut *ns;
        durable.retain(|name, _| name.parent() != Some(path));
        for (name, file) in files.iter() {
            if name.parent() == Some(path) {
                durable.insert(name.clone(), file.clone());
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        self.check_alive()?;
        let ns = self.state.lock().unwrap();
        if !ns.dirs.contains(path) {
            return Err(not_found(path));
        }
        Ok(ns
            .files
            .keys()
            .filter(|name| name.parent() == Some(path))
            .filter_map(|name| name.file_name().map(|n| n.to_os_string()))
            .collect())
    }

    fn available_space(&self, _path: &Path) -> io::Result<u64> {
        let capacity = self.options.capacity.unwrap_or(u64::MAX / 2);
        Ok(capacity.saturating_sub(self.used_bytes()))
    }

    fn allocated_bytes(&self, path: &Path) -> io::Result<u64> {
        let ns = self.state.lock().unwrap();
        let file = ns.files.get(path).ok_or_else(|| not_found(path))?;
        let len = file.state.lock().unwrap().current.len();
        Ok(len.next_multiple_of(SECTOR) as u64)
    }
}

#[derive(Debug)]
struct SimHandle {
    file: Arc<SimFile>,
    /// The path it was opened by (what `ignore_syncs_of` matches).
    name: PathBuf,
    alive: Arc<AtomicBool>,
    faults: Arc<Faults>,
    capacity: Option<u64>,
    read_only: bool,
}

impl SimHandle {
    /// Checks that the disk lives and charges one mutating operation against the fault budget.
    fn charge(&self) -> io::Result<()> {
        if !self.alive.load(Ordering::SeqCst) {
            return Err(io::Error::other("simulated disk is gone (crashed)"));
        }
        if self.read_only {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        self.faults.charge()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if !self.alive.load(Ordering::SeqCst) {
            return Err(io::Error::other("simulated disk is gone (crashed)"));
        }
        let state = self.file.state.lock().unwrap();
        let start = offset as usize;
        let end = start + buf.len();
        if end > state.current.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        buf.copy_from_slice(&state.current[start..end]);
        Ok(())
    }
}

impl IoFile for SimHandle {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.state.lock().unwrap().current.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_at(buf, offset)
    }

    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.charge()?;
        let mut state = self.file.state.lock().unwrap();
        if let Some(capacity) = self.capacity {
            let end = offset + data.len() as u64;
            if end > state.current.len() as u64 && end > capacity {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        write_into(&mut state.current, offset as usize, data);
        state.pending.push(Pending::Write(offset, data.to_vec()));
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.charge()?;
        let mut state = self.file.state.lock().unwrap();
        state.current.resize(len as usize, 0);
        state.pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.charge()?;
        if self.faults.lies_about(&self.name) {
            return Ok(());
        }
        let mut state = self.file.state.lock().unwrap();
        state.durable = state.current.clone();
        state.pending.clear();
        Ok(())
    }

    fn read_direct(&self, buf: &mut AlignedBuf, offset: u64) -> io::Result<()> {
        self.read_at(buf, offset)
    }

    fn map(&self) -> io::Result<Mapped> {
        Ok(Mapped::Owned(
            self.file.state.lock().unwrap().current.clone(),
        ))
    }
}

/// The simulator's own tests: a crash test is only as good as the crash it simulates.
#[cfg(test)]
mod tests;
