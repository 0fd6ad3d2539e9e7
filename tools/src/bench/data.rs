//! The lower data every system starts from, generated deterministically once per run and
//! shared by all systems: a directory per image holding one large file of pseudo-random bytes
//! (SplitMix64, so neither dedup nor compression helps anyone), a SQLite database, or a tree
//! of small files. Tessera imports the directory; overlayfs uses it as its lower layer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::guard;

/// SplitMix64: fast, seeded, and fixed here so the data never changes with a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The name of the large file in a big-file image.
pub const BIG: &str = "image.bin";
/// The database in a SQLite image.
pub const DB: &str = "app.db";
/// The root of the small-file tree in a tree image.
pub const TREE: &str = "tree";

/// Lower directories of this run, generated on first use.
pub struct Lowers {
    root: PathBuf,
}

impl Lowers {
    pub fn new(root: PathBuf) -> Lowers {
        Lowers { root }
    }

    /// A directory holding `image.bin` of `size` bytes.
    pub fn big_file(&self, size: u64) -> Result<PathBuf> {
        let dir = self.root.join(format!("big-{size}"));
        if !dir.join(BIG).exists() {
            std::fs::create_dir_all(&dir)?;
            write_random(&dir.join(BIG), size, 0x7e55e7a ^ size)?;
        }
        Ok(dir)
    }

    /// A directory holding `app.db`, a SQLite database of about `size` bytes: one table
    /// `t(id INTEGER PRIMARY KEY, v BLOB)` of 1000-byte rows; returns it and the row count.
    pub fn sqlite(&self, size: u64) -> Result<(PathBuf, u64)> {
        let dir = self.root.join(format!("sqlite-{size}"));
        // Four 1000-byte rows (with their headers) fill a 4 KiB page.
        let rows = (size / 1024).max(1);
        if !dir.join(DB).exists() {
            std::fs::create_dir_all(&dir)?;
            let script = format!(
                "PRAGMA page_size=4096; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;\n\
                 CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);\n\
                 WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})\n\
                 INSERT INTO t SELECT x, randomblob(1000) FROM c;\n"
            );
            sqlite(&dir.join(DB), &script).context("generating the SQLite image")?;
        }
        Ok((dir, rows))
    }

    /// A directory holding `tree/` with `files` small files (100 per directory, 100 bytes to
    /// 4 KiB each).
    pub fn tree(&self, files: u64) -> Result<PathBuf> {
        let dir = self.root.join(format!("tree-{files}"));
        let done = dir.join(".complete");
        if !done.exists() {
            let mut rng = Rng::new(0x7ee ^ files);
            let mut buf = vec![0u8; 4096];
            for i in 0..files {
                let sub = dir.join(TREE).join(format!("d{:04}", i / 100));
                if i.is_multiple_of(100) {
                    guard::check()?;
                    std::fs::create_dir_all(&sub)?;
                }
                let len = 100 + rng.below(4096 - 100) as usize;
                rng.fill(&mut buf[..len]);
                std::fs::write(sub.join(format!("f{i:06}")), &buf[..len])?;
            }
            std::fs::write(&done, b"")?;
        }
        Ok(dir)
    }
}

/// Runs a SQL script with the sqlite3 shell.
pub fn sqlite(db: &Path, script: &str) -> Result<()> {
    use std::process::Stdio;
    let mut child = Command::new("sqlite3")
        .arg("-batch")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting sqlite3 (is it installed?)")?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())?;
    let output = child.wait_with_output()?;
    guard::check()?;
    anyhow::ensure!(
        output.status.success(),
        "sqlite3 {} failed: {}",
        db.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

fn write_random(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        guard::check()?;
        let n = left.min(chunk.len() as u64) as usize;
        rng.fill(&mut chunk[..n]);
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let (mut x, mut y) = ([0u8; 37], [0u8; 37]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        assert_ne!(x, [0u8; 37]);
        let dir = tempfile::tempdir().unwrap();
        let lowers = Lowers::new(dir.path().to_path_buf());
        let big = lowers.big_file(3 << 20 | 5).unwrap();
        assert_eq!(std::fs::metadata(big.join(BIG)).unwrap().len(), 3 << 20 | 5);
        let tree = lowers.tree(150).unwrap();
        assert_eq!(std::fs::read_dir(tree.join(TREE)).unwrap().count(), 2);
    }
}
