//! Block maps: the ordered block ids of one regular file, kept as a content-addressed tree of
//! pages with a fixed fanout whose shape depends only on the file's block count. So the same
//! content always gives the same root, a change rewrites one leaf and its path to the root
//! (O(log size) metadata), and layers share every page they did not change.
//!
//! Shape: a file of n blocks has height 0 when n <= 1 (the root is the block id itself), else
//! the least h with FANOUT^h >= n. A page at height h covering blocks [s, s + c) lists the roots
//! of its ceil(c / FANOUT^(h-1)) children, 32 bytes each. A subtree holding only zero blocks
//! is `ZERO` and has no page. Pages are stored by `PageId` and never modified.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ids::{BlockId, MapRoot, PageId};

/// Children per page: 128 ids of 32 bytes make a 4 KiB page.
pub const FANOUT: u64 = 128;
const ID_LEN: usize = 32;

/// Where pages come from (the metadata, through a cache).
pub trait PageSource {
    /// The verified bytes of a stored page.
    fn load(&self, id: &PageId) -> Result<Arc<[u8]>>;
}

/// Blocks in a file of `size` bytes.
pub fn block_count(size: u64, block_size: u64) -> u64 {
    size.div_ceil(block_size)
}

/// The height of the tree of a file with `n` blocks.
pub fn height(n: u64) -> u32 {
    let mut h = 0;
    let mut cap = 1u64;
    while cap < n {
        cap = cap.saturating_mul(FANOUT);
        h += 1;
    }
    h
}

/// Blocks a subtree of height `h` covers when full.
fn span(h: u32) -> u64 {
    FANOUT.saturating_pow(h)
}

/// Loads the page `id` at height `h` starting at block `start` of a file of `n` blocks, and
/// checks it has exactly the children that shape calls for.
fn children(
    src: &dyn PageSource,
    id: &[u8; 32],
    h: u32,
    start: u64,
    n: u64,
) -> Result<Vec<[u8; 32]>> {
    let count = (n - start).min(span(h)).div_ceil(span(h - 1)) as usize;
    if *id == [0; 32] {
        return Ok(vec![[0; 32]; count]);
    }
    let page = src.load(&PageId(*id))?;
    if page.len() != count * ID_LEN {
        return Err(Error::Corrupt(format!(
            "block-map page {} has {} bytes, expected {} children",
            PageId(*id),
            page.len(),
            count
        )));
    }
    Ok(page
        .chunks_exact(ID_LEN)
        .map(|c| c.try_into().expect("32-byte chunk"))
        .collect())
}

/// The ids of blocks `[first, first + count)` of a file of `n` blocks (clipped to `n`).
pub fn block_ids(
    src: &dyn PageSource,
    root: MapRoot,
    n: u64,
    first: u64,
    count: u64,
) -> Result<Vec<BlockId>> {
    let end = first.saturating_add(count).min(n);
    let mut out = Vec::with_capacity(end.saturating_sub(first) as usize);
    if first < end {
        collect(src, &root.0, height(n), 0, n, first, end, &mut out)?;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn collect(
    src: &dyn PageSource,
    id: &[u8; 32],
    h: u32,
    start: u64,
    n: u64,
    first: u64,
    end: u64,
    out: &mut Vec<BlockId>,
) -> Result<()> {
    let cover_end = (start + span(h)).min(n);
    let (a, b) = (first.max(start), end.min(cover_end));
    if *id == [0; 32] {
        out.extend(std::iter::repeat_n(BlockId::ZERO, (b - a) as usize));
        return Ok(());
    }
    if h == 0 {
        out.push(BlockId(*id));
        return Ok(());
    }
    let child_span = span(h - 1);
    let kids = children(src, id, h, start, n)?;
    let first_child = ((a - start) / child_span) as usize;
    let last_child = ((b - 1 - start) / child_span) as usize;
    for (c, kid) in kids
        .iter()
        .enumerate()
        .take(last_child + 1)
        .skip(first_child)
    {
        collect(src, kid, h - 1, start + c as u64 * child_span, n, a, b, out)?;
    }
    Ok(())
}

/// Walks a block map: `on_page` sees every stored page (returning `false` skips the subtree
/// below it), `on_block` every non-zero block with its index.
pub fn visit(
    src: &dyn PageSource,
    root: MapRoot,
    n: u64,
    on_page: &mut dyn FnMut(PageId) -> bool,
    on_block: &mut dyn FnMut(u64, BlockId),
) -> Result<()> {
    #[allow(clippy::too_many_arguments)]
    fn walk(
        src: &dyn PageSource,
        id: &[u8; 32],
        h: u32,
        start: u64,
        n: u64,
        on_page: &mut dyn FnMut(PageId) -> bool,
        on_block: &mut dyn FnMut(u64, BlockId),
    ) -> Result<()> {
        if *id == [0; 32] {
            return Ok(());
        }
        if h == 0 {
            on_block(start, BlockId(*id));
            return Ok(());
        }
        if !on_page(PageId(*id)) {
            return Ok(());
        }
        let child_span = span(h - 1);
        for (c, kid) in children(src, id, h, start, n)?.iter().enumerate() {
            walk(
                src,
                kid,
                h - 1,
                start + c as u64 * child_span,
                n,
                on_page,
                on_block,
            )?;
        }
        Ok(())
    }
    if n == 0 {
        return Ok(());
    }
    walk(src, &root.0, height(n), 0, n, on_page, on_block)
}

/// The result of [`update`].
pub struct Update {
    pub root: MapRoot,
    /// Pages created, to be stored by the caller (some may already exist: pages are shared).
    pub pages: Vec<(PageId, Vec<u8>)>,
    /// Change in the number of non-zero blocks the file references.
    pub stored_delta: i64,
}

/// The tree's node at the position being built, as the old tree had it.
#[derive(Clone, Copy)]
enum Old {
    /// The old tree had nothing there (the file grew).
    Absent,
    /// The old tree's node at this height and position.
    At([u8; 32]),
    /// The old root, which sits lower than this node, at block 0 (the tree grew taller).
    Below([u8; 32], u32),
}

struct Builder<'a> {
    src: &'a dyn PageSource,
    changes: &'a BTreeMap<u64, BlockId>,
    old_n: u64,
    new_n: u64,
    pages: Vec<(PageId, Vec<u8>)>,
    stored_delta: i64,
}

/// Resizes a block map from `old_n` to `new_n` blocks and sets the blocks in `changes` (whose
/// keys are all below `new_n`). Blocks past `old_n` not in `changes` are zero blocks.
pub fn update(
    src: &dyn PageSource,
    root: MapRoot,
    old_n: u64,
    new_n: u64,
    changes: &BTreeMap<u64, BlockId>,
) -> Result<Update> {
    debug_assert!(changes.keys().all(|i| *i < new_n));
    let mut builder = Builder {
        src,
        changes,
        old_n,
        new_n,
        pages: Vec::new(),
        stored_delta: 0,
    };
    if new_n < old_n {
        builder.stored_delta -= count_nonzero(src, root, old_n, new_n, old_n)? as i64;
    }
    if new_n == 0 {
        return Ok(Update {
            root: MapRoot::ZERO,
            pages: Vec::new(),
            stored_delta: builder.stored_delta,
        });
    }
    let (h_old, h_new) = (height(old_n), height(new_n));
    let old = if old_n == 0 {
        Old::Absent
    } else if h_old < h_new {
        Old::Below(root.0, h_old)
    } else {
        let mut id = root.0;
        for h in (h_new + 1..=h_old).rev() {
            id = children(src, &id, h, 0, old_n)?[0];
        }
        Old::At(id)
    };
    let new_root = builder.build(h_new, 0, old)?;
    Ok(Update {
        root: MapRoot(new_root),
        pages: builder.pages,
        stored_delta: builder.stored_delta,
    })
}

impl Builder<'_> {
    fn build(&mut self, h: u32, start: u64, old: Old) -> Result<[u8; 32]> {
        let old = match old {
            Old::Below(id, h_old) if h_old == h => Old::At(id),
            other => other,
        };
        let new_cover = (self.new_n - start).min(span(h));
        let old_cover = self.old_n.saturating_sub(start).min(span(h));
        let changed = self
            .changes
            .range(start..start + new_cover)
            .next()
            .is_some();
        if !changed {
            match old {
                Old::At(id) if old_cover == new_cover => return Ok(id),
                Old::At(id) if id == [0; 32] => return Ok(id),
                Old::Absent => return Ok([0; 32]),
                _ => {}
            }
        }
        if h == 0 {
            let old_id = match old {
                Old::At(id) => BlockId(id),
                _ => BlockId::ZERO,
            };
            let new_id = self.changes.get(&start).copied().unwrap_or(old_id);
            self.stored_delta += !new_id.is_zero() as i64 - !old_id.is_zero() as i64;
            return Ok(new_id.0);
        }
        let child_span = span(h - 1);
        let old_kids = match old {
            Old::At(id) => children(self.src, &id, h, start, self.old_n)?,
            _ => Vec::new(),
        };
        let count = new_cover.div_ceil(child_span);
        let mut page = Vec::with_capacity(count as usize * ID_LEN);
        for c in 0..count {
            let child_old = match old {
                Old::At(_) => old_kids
                    .get(c as usize)
                    .map_or(Old::Absent, |id| Old::At(*id)),
                Old::Below(id, h_old) if c == 0 => Old::Below(id, h_old),
                _ => Old::Absent,
            };
            let id = self.build(h - 1, start + c * child_span, child_old)?;
            page.extend_from_slice(&id);
        }
        let id = PageId::of(&page);
        if !id.is_zero() {
            self.pages.push((id, page));
        }
        Ok(id.0)
    }
}

/// Non-zero blocks among `[first, end)` of a file of `n` blocks.
pub fn count_nonzero(
    src: &dyn PageSource,
    root: MapRoot,
    n: u64,
    first: u64,
    end: u64,
) -> Result<u64> {
    fn walk(
        src: &dyn PageSource,
        id: &[u8; 32],
        h: u32,
        start: u64,
        n: u64,
        range: (u64, u64),
    ) -> Result<u64> {
        let cover_end = (start + span(h)).min(n);
        if *id == [0; 32] || range.1 <= start || cover_end <= range.0 {
            return Ok(0);
        }
        if h == 0 {
            return Ok(1);
        }
        let child_span = span(h - 1);
        let mut total = 0;
        for (c, kid) in children(src, id, h, start, n)?.iter().enumerate() {
            total += walk(src, kid, h - 1, start + c as u64 * child_span, n, range)?;
        }
        Ok(total)
    }
    if first >= end.min(n) {
        return Ok(0);
    }
    walk(src, &root.0, height(n), 0, n, (first, end.min(n)))
}

/// The first block index `>= from` whose id is (`want_zero`) or is not a zero block.
pub fn find_block(
    src: &dyn PageSource,
    root: MapRoot,
    n: u64,
    from: u64,
    want_zero: bool,
) -> Result<Option<u64>> {
    fn walk(
        src: &dyn PageSource,
        id: &[u8; 32],
        h: u32,
        start: u64,
        n: u64,
        from: u64,
        want_zero: bool,
    ) -> Result<Option<u64>> {
        let cover_end = (start + span(h)).min(n);
        if cover_end <= from {
            return Ok(None);
        }
        if *id == [0; 32] {
            return Ok(want_zero.then_some(from.max(start)));
        }
        if h == 0 {
            return Ok((!want_zero).then_some(start));
        }
        let child_span = span(h - 1);
        for (c, kid) in children(src, id, h, start, n)?.iter().enumerate() {
            let child_start = start + c as u64 * child_span;
            if let Some(found) = walk(src, kid, h - 1, child_start, n, from, want_zero)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
    if from >= n {
        return Ok(None);
    }
    walk(src, &root.0, height(n), 0, n, from, want_zero)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Pages(Mutex<HashMap<PageId, Arc<[u8]>>>);

    impl PageSource for Pages {
        fn load(&self, id: &PageId) -> Result<Arc<[u8]>> {
            self.0
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .ok_or_else(|| Error::Corrupt("missing".into()))
        }
    }

    impl Pages {
        fn apply(
            &self,
            root: MapRoot,
            old_n: u64,
            new_n: u64,
            changes: &BTreeMap<u64, BlockId>,
        ) -> (MapRoot, usize, i64) {
            let up = update(self, root, old_n, new_n, changes).unwrap();
            let written = up.pages.len();
            for (id, page) in up.pages {
                self.0.lock().unwrap().insert(id, Arc::from(page));
            }
            (up.root, written, up.stored_delta)
        }
    }

    fn id(i: u64) -> BlockId {
        BlockId::of(&i.to_le_bytes())
    }

    /// Builds a tree from scratch for a flat list of ids.
    fn from_list(pages: &Pages, ids: &[BlockId]) -> MapRoot {
        let changes = ids
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u64, *b))
            .collect();
        pages.apply(MapRoot::ZERO, 0, ids.len() as u64, &changes).0
    }

    #[test]
    fn heights_follow_the_fanout() {
        assert_eq!(height(0), 0);
        assert_eq!(height(1), 0);
        assert_eq!(height(2), 1);
        assert_eq!(height(FANOUT), 1);
        assert_eq!(height(FANOUT + 1), 2);
        assert_eq!(height(262_144), 3);
    }

    #[test]
    fn same_content_gives_the_same_root_whatever_the_history() {
        let pages = Pages::default();
        let n = FANOUT * FANOUT + 5;
        let mut list: Vec<BlockId> = (0..n).map(id).collect();
        list[7] = BlockId::ZERO;
        let direct = from_list(&pages, &list);

        // Grow from 3 blocks, change a few, shrink, grow again.
        let (mut root, _, _) =
            pages.apply(MapRoot::ZERO, 0, 3, &(0..3).map(|i| (i, id(i))).collect());
        root = pages
            .apply(root, 3, n + 100, &(3..n).map(|i| (i, id(i))).collect())
            .0;
        root = pages
            .apply(root, n + 100, n, &BTreeMap::from([(7, BlockId::ZERO)]))
            .0;
        assert_eq!(root, direct);
        let ids = block_ids(&pages, root, n, 0, n).unwrap();
        assert_eq!(ids, list);
    }

    #[test]
    fn one_change_writes_one_path() {
        let pages = Pages::default();
        let n = 262_144; // 16 GiB of 64 KiB blocks
        let (root, _, _) = pages.apply(MapRoot::ZERO, 0, n, &BTreeMap::new());
        assert_eq!(root, MapRoot::ZERO, "a sparse file has no pages");
        let (root, written, delta) = pages.apply(root, n, n, &BTreeMap::from([(n / 2, id(1))]));
        assert_eq!(written as u32, height(n));
        assert_eq!(delta, 1);
        let (_, written, delta) = pages.apply(root, n, n, &BTreeMap::from([(n / 2 + 1, id(2))]));
        assert_eq!(written as u32, height(n));
        assert_eq!(delta, 1);
        let ids = block_ids(&pages, root, n, n / 2 - 1, 3).unwrap();
        assert_eq!(ids, vec![BlockId::ZERO, id(1), BlockId::ZERO]);
    }

    #[test]
    fn shrinking_counts_dropped_blocks_and_seek_skips_holes() {
        let pages = Pages::default();
        let n = 1000;
        let changes = BTreeMap::from([(10, id(1)), (500, id(2)), (900, id(3))]);
        let (root, _, delta) = pages.apply(MapRoot::ZERO, 0, n, &changes);
        assert_eq!(delta, 3);
        assert_eq!(count_nonzero(&pages, root, n, 0, n).unwrap(), 3);
        assert_eq!(find_block(&pages, root, n, 11, false).unwrap(), Some(500));
        assert_eq!(find_block(&pages, root, n, 500, true).unwrap(), Some(501));
        assert_eq!(find_block(&pages, root, n, 901, false).unwrap(), None);
        let (_, _, delta) = pages.apply(root, n, 600, &BTreeMap::new());
        assert_eq!(delta, -1);
    }
}
