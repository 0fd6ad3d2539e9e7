//! `tessera demo`: the README's main job — a complete tour on generated data in a temporary
//! directory: import an image holding a large file and a small tree, create two containers and
//! mount both, change one byte of the large file in each through the mounts, show that each
//! sees only its own change and the image none, commit one, mount a container made from the
//! commit, print what was stored, unmount and clean up.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use std::os::unix::fs::FileExt;

use tessera::{Store, Volume};
use tessera_fusefs::{Mount, MountConfig};

use crate::output::size;
use tessera_daemon::service::store_options;

/// Run the guided tour on generated data (in a temporary directory, cleaned up after).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  tessera demo --large-file-mib 512")]
pub struct Args {
    /// Size of the generated large file, in MiB.
    #[arg(long, default_value_t = 256)]
    large_file_mib: u64,
    /// Keep the temporary directory (its path is printed).
    #[arg(long)]
    keep: bool,
    /// Use the engine API instead of FUSE mounts even where mounting works.
    #[arg(long)]
    no_mount: bool,
}

const LARGE: &str = "data/model.bin";

/// Fast deterministic filler (xorshift), so the large file is not compressible or zero.
fn fill(buf: &mut [u8], seed: u64) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in buf.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

fn generate_image(root: &Path, large_mib: u64) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(root.join("data"))?;
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::create_dir_all(root.join("usr/share/doc"))?;
    std::fs::write(root.join("etc/hostname"), "tessera-demo\n")?;
    std::fs::write(
        root.join("etc/motd"),
        "Every file is a mosaic of shared blocks.\n",
    )?;
    for i in 0..20 {
        let text = format!("document {i}\n").repeat(200 + i * 10);
        std::fs::write(root.join(format!("usr/share/doc/readme-{i}.txt")), text)?;
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(root.join(LARGE))?);
    let mut chunk = vec![0u8; 1 << 20];
    for i in 0..large_mib {
        fill(&mut chunk, 0x5eed ^ i);
        file.write_all(&chunk)?;
    }
    file.flush()?;
    Ok(())
}

/// A container's view, mounted through FUSE when this machine can, else used through the
/// engine's API directly. Either way the demo reads and writes the same bytes.
struct View {
    volume: Volume,
    mount: Option<(Mount, tempfile::TempDir)>,
}

impl View {
    fn open(volume: Volume, mount: bool) -> Result<View> {
        let mount = if mount {
            let dir = tempfile::Builder::new().prefix("tessera-mnt-").tempdir()?;
            let name = volume.container().unwrap_or_default();
            let config = MountConfig {
                fsname: format!("tessera:{name}"),
                ..MountConfig::default()
            };
            let mount = Mount::new(volume.clone(), dir.path(), config)
                .with_context(|| format!("mounting {name}"))?;
            Some((mount, dir))
        } else {
            None
        };
        Ok(View { volume, mount })
    }

    fn path(&self, rel: &str) -> Option<std::path::PathBuf> {
        self.mount.as_ref().map(|(_, dir)| dir.path().join(rel))
    }

    fn read_byte(&self, offset: u64) -> Result<u8> {
        let mut byte = [0u8; 1];
        match self.path(LARGE) {
            Some(path) => std::fs::File::open(&path)?.read_exact_at(&mut byte, offset)?,
            None => {
                let attr = self.volume.resolve(LARGE.as_bytes())?;
                byte[0] = self.volume.read(attr.node, offset, 1)?[0];
            }
        }
        Ok(byte[0])
    }

    fn write_byte(&self, offset: u64, byte: u8) -> Result<()> {
        match self.path(LARGE) {
            Some(path) => {
                let file = std::fs::OpenOptions::new().write(true).open(&path)?;
                file.write_all_at(&[byte], offset)?;
                file.sync_data()?;
            }
            None => {
                let attr = self.volume.resolve(LARGE.as_bytes())?;
                self.volume.write(attr.node, offset, &[byte])?;
                self.volume.fsync(attr.node)?;
            }
        }
        Ok(())
    }

    fn unmount(self) -> Result<()> {
        if let Some((mount, _dir)) = self.mount {
            mount.unmount()?;
        }
        Ok(())
    }
}

fn can_mount() -> bool {
    rustix::process::geteuid().is_root() && Path::new("/dev/fuse").exists()
}

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let temp = tempfile::Builder::new().prefix("tessera-demo-").tempdir()?;
    let root = temp.path();
    let large = args.large_file_mib << 20;
    println!("== Tessera demo in {}", root.display());

    generate_image(&root.join("image"), args.large_file_mib).context("generating the image")?;
    let store = Store::init(root.join("store"), store_options()).context("creating the store")?;
    println!(
        "1. created a store (block size {}); generated an image with a {} file and 20 small ones",
        size(store.block_size() as u64),
        size(large)
    );

    let report = store.import_path(&root.join("image"), "demo:base")?;
    println!(
        "2. imported demo:base: {} in {:.2} s, {} of new blocks stored",
        size(report.logical_bytes),
        report.seconds,
        size(report.added_bytes)
    );

    let mount = can_mount() && !args.no_mount;
    let how = if mount {
        "through FUSE mounts"
    } else {
        "through the engine API (no FUSE here)"
    };
    store.create_container("c1", "demo:base")?;
    store.create_container("c2", "demo:base")?;
    let c1 = View::open(store.open_container("c1")?, mount)?;
    let c2 = View::open(store.open_container("c2")?, mount)?;
    if let (Some(p1), Some(p2)) = (c1.path(""), c2.path("")) {
        println!(
            "3. created containers c1 and c2, mounted at {} and {}",
            p1.display(),
            p2.display()
        );
    } else {
        println!("3. created containers c1 and c2");
    }
    let middle = large / 2;
    let before = store.block_store_stats();
    let disk_before = store.disk_usage()?;
    let t = Instant::now();
    c1.write_byte(middle, b'1')?;
    let first_write = t.elapsed();
    c2.write_byte(middle, b'2')?;
    // fsync put the edits in the intent log; a flush stores their blocks in the packs, where
    // the figures below count them.
    store.push_kernel_caches(None)?;
    store.sync()?;
    let after = store.block_store_stats();
    let disk_after = store.disk_usage()?;
    println!(
        "4. changed one byte in the middle of {LARGE} in each, {how} \
         (c1's open + write + fsync: {:.2} ms)",
        first_write.as_secs_f64() * 1e3
    );

    let image = store.open_image("demo:base")?;
    let in_image = image.read(image.resolve(LARGE.as_bytes())?.node, middle, 1)?[0];
    let (in_c1, in_c2) = (c1.read_byte(middle)?, c2.read_byte(middle)?);
    println!(
        "5. byte at offset {middle}: c1 reads {:?}, c2 reads {:?}, the image still has {:#04x}",
        in_c1 as char, in_c2 as char, in_image
    );
    ensure!(
        in_c1 == b'1' && in_c2 == b'2',
        "containers do not see their own writes"
    );
    ensure!(in_image != b'1' && in_image != b'2', "the image changed");

    store.commit_container("c1", "demo:edited")?;
    store.create_container("c3", "demo:edited")?;
    let c3 = View::open(store.open_container("c3")?, mount)?;
    ensure!(
        c3.read_byte(middle)? == b'1',
        "c3 does not see the committed change"
    );
    println!("6. committed c1 (still mounted) as demo:edited: metadata only, no data copied;");
    println!("   c3, created from demo:edited, reads c1's byte");
    for view in [c1, c2, c3] {
        view.unmount()?;
    }
    drop(image);

    let written = after.block_bytes - before.block_bytes;
    println!("7. what two one-byte edits cost:");
    println!(
        "   block data added by Tessera's copy-up: {} (2 blocks of {})",
        size(written),
        size(store.block_size() as u64)
    );
    println!(
        "   store growth on disk (packs + metadata):  {}",
        size(disk_after.saturating_sub(disk_before))
    );
    println!(
        "   whole-file copy-up (overlayfs) would write: {} ({} per container)",
        size(2 * large),
        size(large)
    );
    let stats = store.block_store_stats();
    println!(
        "   store: {} unique blocks, {} of block data for {} of files in 3 images/containers",
        stats.blocks,
        size(stats.block_bytes),
        size(report.logical_bytes * 3)
    );
    drop(store);
    if args.keep {
        println!("kept {}", temp.keep().display());
    }
    println!("== done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
