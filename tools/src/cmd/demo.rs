//! `tessera demo`: the README's main job — a complete tour on generated data in a temporary
//! directory: import an image holding a large file and a small tree, create two containers,
//! change one byte of the large file in each, show that each sees only its own change and the
//! image none, commit one, start a container from the commit, and print what was stored.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use tessera::{Store, Volume};

use crate::output::size;
use crate::service::store_options;

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

fn read_path(volume: &Volume, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
    let attr = volume.resolve(path.as_bytes())?;
    Ok(volume.read(attr.node, offset, len)?)
}

fn write_byte(volume: &Volume, offset: u64, byte: u8) -> Result<()> {
    let attr = volume.resolve(LARGE.as_bytes())?;
    volume.write(attr.node, offset, &[byte])?;
    volume.fsync(attr.node)?;
    Ok(())
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

    store.create_container("c1", "demo:base")?;
    store.create_container("c2", "demo:base")?;
    let middle = large / 2;
    let before = store.block_store_stats();
    let disk_before = store.disk_usage()?;
    let (c1, c2) = (store.open_container("c1")?, store.open_container("c2")?);
    let t = Instant::now();
    write_byte(&c1, middle, b'1')?;
    let first_write = t.elapsed();
    write_byte(&c2, middle, b'2')?;
    let after = store.block_store_stats();
    let disk_after = store.disk_usage()?;
    println!(
        "3. containers c1 and c2 each changed one byte in the middle of {LARGE} \
         (first write + fsync: {:.2} ms)",
        first_write.as_secs_f64() * 1e3
    );

    let image = store.open_image("demo:base")?;
    let seen = |v: &Volume| read_path(v, LARGE, middle, 1).map(|b| b[0]);
    let (in_c1, in_c2, in_image) = (seen(&c1)?, seen(&c2)?, seen(&image)?);
    println!(
        "4. byte at offset {middle}: c1 sees {:?}, c2 sees {:?}, the image still has {:#04x}",
        in_c1 as char, in_c2 as char, in_image
    );
    ensure!(
        in_c1 == b'1' && in_c2 == b'2',
        "containers do not see their own writes"
    );
    ensure!(in_image != b'1' && in_image != b'2', "the image changed");
    drop((c1, c2));

    store.commit_container("c1", "demo:edited")?;
    store.create_container("c3", "demo:edited")?;
    let c3 = store.open_container("c3")?;
    ensure!(seen(&c3)? == b'1', "c3 does not see the committed change");
    println!("5. committed c1 as demo:edited (metadata only); c3 from it sees c1's byte");
    drop((c3, image));

    let written = after.block_bytes - before.block_bytes;
    println!("6. what two one-byte edits cost:");
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
