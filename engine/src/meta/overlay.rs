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

impl Changes {
    /// The changes as bytes (for the intent log): per change, the table, the key, and the
    /// value or a deletion.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes);
        for (table, map) in self.tables.iter().enumerate() {
            for (key, value) in map {
                out.push(table as u8);
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
                match value {
                    Some(v) => {
                        out.push(1);
                        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                        out.extend_from_slice(v);
                    }
                    None => out.push(0),
                }
            }
        }
        out
    }

    /// The inverse of `encode`; `None` for bytes it did not make.
    pub fn decode(mut bytes: &[u8]) -> Option<Changes> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = bytes.split_at_checked(n)?;
            *bytes = rest;
            Some(head)
        }
        fn len(bytes: &mut &[u8]) -> Option<usize> {
            Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize)
        }
        let mut changes = Changes::default();
        while !bytes.is_empty() {
            let table = *Table::ALL.get(take(&mut bytes, 1)?[0] as usize)?;
            let n = len(&mut bytes)?;
            let key = take(&mut bytes, n)?.to_vec();
            let value = match take(&mut bytes, 1)?[0] {
                0 => None,
                1 => {
                    let n = len(&mut bytes)?;
                    Some(take(&mut bytes, n)?.to_vec())
                }
                _ => return None,
            };
            changes.put(table, key, value);
        }
        Some(changes)
    }
}
