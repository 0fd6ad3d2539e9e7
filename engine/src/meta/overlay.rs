//! The in-memory layer of metadata changes not yet committed to redb (a memtable). Each table
//! maps key → `Some(value)` (written) or `None` (deleted). Reads consult the newest layer first.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::Table;

pub(super) type TableMap = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Default, Clone)]
pub(super) struct Changes {
    pub tables: [TableMap; Table::COUNT],
    /// Approximate bytes held, to decide when to commit.
    pub bytes: usize,
}

impl Changes {
    pub fn get(&self, table: Table, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.tables[table as usize].get(key)
    }

    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.bytes += key.len() + value.as_ref().map_or(0, Vec::len) + 48;
        self.tables[table as usize].insert(key, value);
    }

    /// Moves every change of `newer` over this one.
    pub fn absorb(&mut self, newer: Changes) {
        self.bytes += newer.bytes;
        for (mine, theirs) in self.tables.iter_mut().zip(newer.tables) {
            if mine.is_empty() {
                *mine = theirs;
            } else {
                mine.extend(theirs);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(BTreeMap::is_empty)
    }

    /// Applies this layer's changes within `prefix` to `merged` (older values already there).
    pub fn apply_range(
        &self,
        table: Table,
        prefix: &[u8],
        merged: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    ) {
        let map = &self.tables[table as usize];
        for (key, value) in map.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
    }
}
