//! A test bed: one system set up over one lower directory with N containers, each mounted at
//! its own merged view. Setting up is never measured. The bed answers the questions every
//! workload asks — where is container i's view, how much has been written to the writable
//! layers, how much disk is used in all, which files and processes can hold memory for a
//! path — and tears everything down on drop (mounts first, then the store or the loop
//! device, then its directory).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use tessera::Store;
use tessera_fusefs::{Mount, MountConfig};

use super::System;
use super::guard::{self, FuseOverlayfs, KernelMount, LoopDevice, Scratch};
use super::memory::Attribution;

/// How a bed is built.
#[derive(Debug, Clone, Copy)]
pub struct BedOptions {
    pub containers: usize,
    /// Block cache of the Tessera store: read-around for reads of part of a block, and every
    /// block share-memory mode reads.
    pub block_cache_bytes: usize,
    /// Tessera's FUSE request threads (None: `MountConfig`'s default).
    pub threads: Option<usize>,
    /// Block size of the Tessera store (None: the store default).
    pub block_size: Option<u32>,
    /// Compression of the Tessera store (None: the store default).
    pub compression: Option<tessera::store::Compression>,
}

/// Space figures after the changes are durable, in bytes. Only differences of `written`
/// mean anything: it is a counter that grows by what the workload added to writable layers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Tessera: allocated bytes of the store; overlayfs: allocated bytes of the upper dirs;
    /// overlayfs on xfs: bytes used on the xfs filesystem (shared extents once).
    pub written: u64,
    /// Tessera only: bytes of block data in the store.
    pub blocks: Option<u64>,
    /// Everything the image and its containers occupy on disk.
    pub total: u64,
}

impl Usage {
    pub fn added_since(&self, before: &Usage) -> Usage {
        Usage {
            written: self.written.saturating_sub(before.written),
            blocks: self
                .blocks
                .zip(before.blocks)
                .map(|(a, b)| a.saturating_sub(b)),
            total: self.total,
        }
    }
}

struct TesseraBed {
    _mounts: Vec<Mount>,
    store: Store,
}

enum Kind {
    Tessera(TesseraBed),
    Overlay {
        _mounts: Vec<KernelMount>,
    },
    Reflink {
        _mounts: Vec<KernelMount>,
        _xfs: KernelMount,
        _device: LoopDevice,
        root: PathBuf,
        baseline: u64,
    },
    Fuse {
        daemons: Vec<FuseOverlayfs>,
    },
}

pub struct Bed {
    pub system: System,
    kind: Option<Kind>,
    views: Vec<PathBuf>,
    uppers: Vec<PathBuf>,
    /// The lower directory as the system sees it.
    lower: PathBuf,
    dir: PathBuf,
}

impl Bed {
    pub fn new(system: System, lower: &Path, scratch: &Scratch, opts: BedOptions) -> Result<Bed> {
        let dir = scratch.subdir(&format!("bed-{}", system.name()))?;
        let mut bed = Bed {
            system,
            kind: None,
            views: (0..opts.containers)
                .map(|i| dir.join(format!("m{i}")))
                .collect(),
            uppers: Vec::new(),
            lower: lower.to_path_buf(),
            dir,
        };
        for view in &bed.views {
            std::fs::create_dir_all(view)?;
        }
        bed.kind = Some(match system {
            System::Tessera | System::TesseraWriteThrough | System::TesseraShared => {
                Kind::Tessera(bed.tessera(opts)?)
            }
            System::Overlayfs => {
                let base = bed.dir.clone();
                Kind::Overlay {
                    _mounts: bed.overlays(lower, &base)?,
                }
            }
            System::OverlayfsReflink => bed.reflink(lower)?,
            System::FuseOverlayfs => bed.fuse_overlayfs(lower)?,
        });
        Ok(bed)
    }

    fn tessera(&self, opts: BedOptions) -> Result<TesseraBed> {
        let shared = self.system == System::TesseraShared;
        let mut options =
            tessera_daemon::service::store_options().block_cache_bytes(opts.block_cache_bytes);
        if let Some(bytes) = opts.block_size {
            options = options.block_size(bytes);
        }
        if let Some(compression) = opts.compression {
            options = options.compression(compression);
        }
        let store = Store::init(self.dir.join("store"), options).context("creating the store")?;
        store
            .import_path(&self.lower, "bench:lower")
            .context("importing the lower directory")?;
        guard::check()?;
        let mut mounts = Vec::new();
        for (i, view) in self.views.iter().enumerate() {
            let name = format!("c{i}");
            store.create_container(&name, "bench:lower")?;
            let config = MountConfig {
                share_memory: shared,
                writeback_cache: self.system != System::TesseraWriteThrough,
                // As the daemon mounts: its keeper holds each mount (one descriptor), and
                // one pool of workers serves every mount.
                kept: true,
                pooled: false,
                fsname: format!("tessera:bench-{name}"),
                ..MountConfig::default()
            };
            let config = MountConfig {
                threads: opts.threads.unwrap_or(config.threads),
                ..config
            };
            let volume = store.open_container(&name)?;
            mounts.push(
                Mount::new(volume, view, config)
                    .with_context(|| format!("mounting {}", view.display()))?,
            );
        }
        Ok(TesseraBed {
            _mounts: mounts,
            store,
        })
    }

    /// Upper and work directories under `base`, one overlay mount per view.
    fn overlays(&mut self, lower: &Path, base: &Path) -> Result<Vec<KernelMount>> {
        let mut mounts = Vec::new();
        for (i, view) in self.views.iter().enumerate() {
            let (upper, work) = (base.join(format!("u{i}")), base.join(format!("w{i}")));
            std::fs::create_dir_all(&upper)?;
            std::fs::create_dir_all(&work)?;
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            );
            mounts.push(KernelMount::new("overlay", "overlay", &options, view)?);
            self.uppers.push(upper);
        }
        Ok(mounts)
    }

    fn reflink(&mut self, lower: &Path) -> Result<Kind> {
        if which("mkfs.xfs").is_none() {
            bail!("mkfs.xfs is not installed");
        }
        let lower_bytes = du(lower);
        let image = self.dir.join("xfs.img");
        let file = std::fs::File::create(&image)?;
        // Sparse: room for the lower data plus a whole copy per container in case reflink
        // does not happen, and slack for the log.
        file.set_len((lower_bytes * (self.views.len() as u64 + 2)).max(1 << 30) + (1 << 30))?;
        drop(file);
        guard::run(
            Command::new("mkfs.xfs")
                .args(["-q", "-f", "-m", "reflink=1"])
                .arg(&image),
        )?;
        let device = LoopDevice::attach(&image)?;
        let root = self.dir.join("xfs");
        std::fs::create_dir_all(&root)?;
        let xfs = KernelMount::new("xfs", device.device(), "", &root)?;
        let baseline = used_bytes(&root)?;
        let copy = root.join("lower");
        guard::run(
            Command::new("cp")
                .args(["-a", "--reflink=never"])
                .arg(lower)
                .arg(&copy),
        )?;
        self.lower = copy.clone();
        let mounts = self.overlays(&copy, &root)?;
        Ok(Kind::Reflink {
            _mounts: mounts,
            _xfs: xfs,
            _device: device,
            root,
            baseline,
        })
    }

    fn fuse_overlayfs(&mut self, lower: &Path) -> Result<Kind> {
        if which("fuse-overlayfs").is_none() {
            bail!("fuse-overlayfs is not installed");
        }
        let mut daemons = Vec::new();
        for (i, view) in self.views.iter().enumerate() {
            let (upper, work) = (
                self.dir.join(format!("u{i}")),
                self.dir.join(format!("w{i}")),
            );
            std::fs::create_dir_all(&upper)?;
            std::fs::create_dir_all(&work)?;
            daemons.push(FuseOverlayfs::mount(lower, &upper, &work, view)?);
            self.uppers.push(upper);
        }
        Ok(Kind::Fuse { daemons })
    }

    /// Container `i`'s merged view.
    pub fn view(&self, i: usize) -> &Path {
        &self.views[i]
    }

    pub fn containers(&self) -> usize {
        self.views.len()
    }

    pub fn store(&self) -> Option<&Store> {
        match &self.kind {
            Some(Kind::Tessera(t)) => Some(&t.store),
            _ => None,
        }
    }

    /// Writes back dirty data and drops the kernel's caches and the Tessera store's block
    /// cache, so the next read is cold on every system.
    pub fn drop_caches(&self) -> Result<()> {
        if let Some(Kind::Tessera(t)) = &self.kind {
            t.store.sync().context("syncing the store")?;
            t.store.drop_block_cache();
        }
        super::memory::drop_caches()
    }

    /// Makes every change durable (not part of any measured time).
    pub fn sync(&self) -> Result<()> {
        match self.kind.as_ref().expect("bed is set up") {
            Kind::Tessera(t) => t.store.sync().context("syncing the store"),
            Kind::Reflink { root, .. } => syncfs(root),
            Kind::Overlay { .. } | Kind::Fuse { .. } => syncfs(&self.dir),
        }
    }

    /// Space figures, after making every change durable.
    pub fn usage(&self) -> Result<Usage> {
        self.sync()?;
        let uppers: u64 = self.uppers.iter().map(|u| du(u)).sum();
        Ok(match self.kind.as_ref().expect("bed is set up") {
            Kind::Tessera(t) => {
                let disk = t.store.disk_usage()?;
                Usage {
                    written: disk,
                    blocks: Some(t.store.block_store_stats().block_bytes),
                    total: disk,
                }
            }
            Kind::Reflink { root, baseline, .. } => {
                let used = used_bytes(root)?;
                Usage {
                    written: used,
                    blocks: None,
                    total: used.saturating_sub(*baseline),
                }
            }
            Kind::Overlay { .. } | Kind::Fuse { .. } => Usage {
                written: uppers,
                blocks: None,
                total: du(&self.lower) + uppers,
            },
        })
    }

    /// The files whose page cache can hold `rel` (a path inside the image) and the processes
    /// serving the mounts, for the attributed memory figure.
    pub fn attribution(&self, rel: &str) -> Attribution {
        let mut files = Vec::new();
        let mut pids = Vec::new();
        match self.kind.as_ref().expect("bed is set up") {
            Kind::Tessera(t) => {
                files.extend(self.views.iter().map(|v| v.join(rel)));
                let packs = t.store.path().join("packs");
                if let Ok(entries) = std::fs::read_dir(packs) {
                    files.extend(entries.flatten().map(|e| e.path()));
                }
                pids.push(std::process::id());
            }
            Kind::Fuse { daemons } => {
                files.extend(self.views.iter().map(|v| v.join(rel)));
                pids.extend(daemons.iter().map(|d| d.pid()));
            }
            Kind::Overlay { .. } | Kind::Reflink { .. } => {}
        }
        if !self.system.is_tessera() {
            files.push(self.lower.join(rel));
            files.extend(
                self.uppers
                    .iter()
                    .map(|u| u.join(rel))
                    .filter(|p| p.exists()),
            );
        }
        Attribution { files, pids }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // Mounts, then the store / loop device (field order), then the files.
        drop(self.kind.take());
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("removing {}: {e}", self.dir.display());
        }
    }
}

fn syncfs(path: &Path) -> Result<()> {
    let dir = std::fs::File::open(path)?;
    rustix::fs::syncfs(&dir).with_context(|| format!("syncfs {}", path.display()))
}

/// Bytes used on the filesystem holding `path`.
fn used_bytes(path: &Path) -> Result<u64> {
    let s = rustix::fs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok((s.f_blocks - s.f_bfree) * s.f_frsize)
}

/// Allocated bytes of a tree (`du`): st_blocks × 512, each inode once, not crossing mounts.
pub fn du(root: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return 0;
    };
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != top.dev() || !seen.insert(meta.ino()) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    total
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}
