//! Seeded data generators shared by every bench: random (unique) bytes, duplicated trees and
//! the data extents of sparse files. The same seed gives the same bytes on every machine and
//! with every version of every dependency (the generator is SplitMix64, written out here), so
//! two runs of a bench store exactly the same blocks. Nothing here touches a store, and nothing
//! here is ever called inside a measured loop.

use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;

/// Seeds of the data sets, one per use, so benches never share blocks by accident.
pub mod seed {
    /// Data blocks of the sparse lower file of the copy-up bench.
    pub const LOWER: u64 = 0x10;
    /// The unique-data import source.
    pub const UNIQUE: u64 = 0x20;
    /// The duplicated-data import source.
    pub const DUPLICATED: u64 = 0x30;
    /// The 1 GiB file of the read bench.
    pub const READ: u64 = 0x40;
}

/// A SplitMix64 stream: fast (several GB/s), seeded, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
    }
}

/// `len` random bytes of the stream `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    Rng::new(seed).fill(&mut buf);
    buf
}

/// The bytes of chunk `index` of a long random stream, generated independently of the other
/// chunks (so a 1 GiB file can be produced chunk by chunk, in any order, without holding it).
pub fn random_chunk(seed: u64, index: u64, len: usize) -> Vec<u8> {
    random_bytes(seed.wrapping_mul(0x1_0000_0001).wrapping_add(index), len)
}

/// Writes `len` random bytes of stream `seed` to `path` in 1 MiB chunks and makes them durable
/// (so later measurements do not pay for this file's writeback).
pub fn write_random_file(path: &Path, seed: u64, len: u64) -> io::Result<()> {
    let mut file = File::create(path)?;
    let mut done = 0;
    let mut index = 0;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        file.write_all(&random_chunk(seed, index, n))?;
        done += n as u64;
        index += 1;
    }
    file.sync_all()
}

/// Chunk size of generated files: 1 MiB.
pub const CHUNK: usize = 1 << 20;

/// A source tree for import benches: what it holds, in bytes of file content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    pub files: usize,
    pub file_len: u64,
}

impl Tree {
    pub fn bytes(&self) -> u64 {
        self.files as u64 * self.file_len
    }
}

/// `tree.files` files of unique random data under `root` (`file-000.bin`, ...): no block of
/// one equals a block of another, so an import stores every byte.
pub fn write_unique_tree(root: &Path, seed: u64, tree: Tree) -> io::Result<()> {
    fs::create_dir_all(root)?;
    for i in 0..tree.files {
        let path = root.join(format!("file-{i:03}.bin"));
        write_random_file(&path, seed.wrapping_add(1 + i as u64), tree.file_len)?;
    }
    fs::File::open(root)?.sync_all()
}

/// `tree.files` files under `root` that are all the same random bytes: after the first, an
/// import stores nothing new; once the store holds them, nothing at all.
pub fn write_duplicated_tree(root: &Path, seed: u64, tree: Tree) -> io::Result<()> {
    fs::create_dir_all(root)?;
    let first = root.join("file-000.bin");
    write_random_file(&first, seed, tree.file_len)?;
    for i in 1..tree.files {
        let path = root.join(format!("file-{i:03}.bin"));
        fs::copy(&first, &path)?;
        File::open(&path)?.sync_all()?;
    }
    fs::File::open(root)?.sync_all()
}

/// Reads every file under `root` once (puts the source in the page cache, like a source that
/// was just written or built). Returns the bytes read.
pub fn warm_tree(root: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(root)? {
        let path = entry?.path();
        if path.is_dir() {
            total += warm_tree(&path)?;
        } else {
            total += io::copy(&mut File::open(&path)?, &mut io::sink())?;
        }
    }
    Ok(total)
}

/// The byte ranges of a sparse file of `size` bytes that hold data (the rest is a hole): the
/// first and the last MiB, and `2 * around` blocks centred on the middle, so the block at
/// `size / 2` is a real stored block, not a hole. Ranges are block aligned, sorted, disjoint.
pub fn sparse_extents(size: u64, block_size: u64, around: u64) -> Vec<Range<u64>> {
    let mib = (1u64 << 20).min(size);
    let mid = size / 2 / block_size * block_size;
    let wanted = [
        0..mib,
        mid.saturating_sub(around * block_size)..(mid + around * block_size).min(size),
        size - mib..size,
    ];
    let mut out: Vec<Range<u64>> = Vec::new();
    for range in wanted {
        match out.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => out.push(range),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_seeded_and_distinct() {
        assert_eq!(random_bytes(7, 100), random_bytes(7, 100));
        assert_ne!(random_bytes(7, 100), random_bytes(8, 100));
        assert_ne!(random_chunk(7, 0, 64), random_chunk(7, 1, 64));
        // The tail of an odd length is filled too.
        assert!(random_bytes(1, 13)[8..].iter().any(|b| *b != 0));
    }

    #[test]
    fn extents_cover_the_middle_block() {
        let bs = 64 << 10;
        for size in [64u64 << 20, 1 << 30, 16 << 30] {
            let extents = sparse_extents(size, bs, 4);
            assert_eq!(extents.len(), 3);
            assert!(extents[1].contains(&(size / 2)));
            assert_eq!(extents[2].end, size);
            assert!(extents.windows(2).all(|w| w[0].end < w[1].start));
        }
        // Small files collapse into one extent.
        assert_eq!(sparse_extents(1 << 20, bs, 4), vec![0..1 << 20]);
    }

    #[test]
    fn trees_hold_what_they_say() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree {
            files: 3,
            file_len: 10_000,
        };
        write_unique_tree(&dir.path().join("u"), 1, tree).unwrap();
        write_duplicated_tree(&dir.path().join("d"), 1, tree).unwrap();
        assert_eq!(warm_tree(&dir.path().join("u")).unwrap(), tree.bytes());
        let a = fs::read(dir.path().join("d/file-000.bin")).unwrap();
        let b = fs::read(dir.path().join("d/file-002.bin")).unwrap();
        assert_eq!(a, b);
        let c = fs::read(dir.path().join("u/file-000.bin")).unwrap();
        let d = fs::read(dir.path().join("u/file-001.bin")).unwrap();
        assert_ne!(c, d);
    }
}
