//! Making changes durable through the intent log: the metadata changes made since the log
//! last took them (`meta::logged`) and, for an fsync, the file's dirty ranges, in one append
//! and one `fdatasync` — where a commit costs a pack sync and a database transaction.

use super::Store;
use super::intent_log::{Entry, MetaRecord, Record};
use crate::error::Result;

impl Store {
    /// Makes every metadata change made so far, and `data` (a file's record), durable with
    /// one append to the intent log. Returns the seq of `data`'s record (0 without one), or
    /// `None` when the log cannot serve (there is none, it is full, or changes name blocks a
    /// crash could still lose): nothing was done, and the caller commits instead.
    pub(crate) fn log_durable(&self, data: Option<Record>) -> Result<Option<u64>> {
        let Some(log) = self.intent_log() else {
            return Ok(None);
        };
        let turn = self.meta().log_turn();
        let changes = turn.take_unlogged();
        if changes.is_empty() && data.is_none() {
            return Ok(Some(0));
        }
        // Changes may name blocks (a flushed file's block map): only blocks the block store
        // holds durably, under a committed checkpoint, are still there after a crash. Taken
        // first, checked second: any put the changes depend on came before them.
        if !changes.is_empty() && (changes.touches_packs() || !self.blocks().is_settled()) {
            turn.restore(changes);
            return Ok(None);
        }
        let mut entries = Vec::with_capacity(2);
        if !changes.is_empty() {
            entries.push(Entry::Meta(MetaRecord {
                seq: 0,
                run: 0,
                changes: changes.encode(),
            }));
        }
        let has_data = data.is_some();
        entries.extend(data.map(Entry::Data));
        match log.append(&mut entries) {
            Ok(true) => {
                if !changes.is_empty() {
                    turn.logged(entries[0].seq());
                }
                Ok(Some(if has_data {
                    entries.last().map_or(0, Entry::seq)
                } else {
                    0
                }))
            }
            Ok(false) => {
                turn.restore(changes);
                Ok(None)
            }
            Err(e) => {
                // The record may have reached the disk all the same, and be read after a
                // crash: the next commit, which holds its changes, must cover it, or replay
                // would put them over newer committed ones.
                if !changes.is_empty() {
                    turn.logged(entries[0].seq());
                }
                turn.restore(changes);
                Err(e)
            }
        }
    }
}
