//! Metadata changes through the intent log (see `store_dir::intent_log`): what makes an fsync
//! of a file just created, or an fsyncdir, cost one disk sync instead of a commit.
//!
//! Once tracking is on, every change also lands in `Overlay::unlogged`. The intent log takes
//! those changes (`take_unlogged`), appends them as one record and syncs it; a commit makes
//! everything before it durable, so it empties `unlogged` as well, and records in the same
//! transaction the seq of the newest record that held changes (`covered`). At open, the
//! records above that seq are applied in order (`apply_logged`): each holds the changes made
//! since the one before, so a key's newest value always lands last, and a change already
//! committed is written again with the value it has.
//!
//! The commit lock is held from taking the changes to the end of the append (`LogTurn`): no
//! commit runs meanwhile, so "taken and not yet logged" and "being committed" never overlap,
//! and an empty `unlogged` under it means every change made so far is durable.

use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

use super::overlay::Changes;
use super::{Meta, MetaRead, Table};
use crate::error::Result;

/// The counters key of the newest intent-log seq whose changes a commit holds.
const COVERED: &[u8] = b"intent-log-meta";

/// Changes taken for the intent log.
pub struct Unlogged(Changes);

impl Unlogged {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the changes include pack records: those come only with a commit (they describe
    /// what the block store synced for it), never through the log.
    pub fn touches_packs(&self) -> bool {
        !self.0.tables[Table::Packs as usize].is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        self.0.encode()
    }
}

/// A turn at the intent log: no commit runs until it ends.
pub struct LogTurn<'a> {
    meta: &'a Meta,
    _commits: MutexGuard<'a, ()>,
}

impl Meta {
    /// Starts tracking changes for the intent log (from now on, nothing before is logged).
    pub fn track_unlogged(&self) {
        self.tracks_unlogged.store(true, Ordering::Relaxed);
    }

    pub(super) fn logged_seq(&self) -> u64 {
        self.logged_seq.load(Ordering::Relaxed)
    }

    /// Waits for a running commit to end, and keeps the next from starting until the turn
    /// ends.
    pub fn log_turn(&self) -> LogTurn<'_> {
        LogTurn {
            meta: self,
            _commits: self.commit_lock.lock().unwrap(),
        }
    }

    /// Applies the changes of intent-log record `seq` (at open, before anything else runs);
    /// the next commit records them as covered, so they are never applied twice.
    pub fn apply_logged(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        let changes = Changes::decode(bytes).ok_or_else(|| {
            crate::error::Error::Corrupt("an intent-log record of metadata changes".into())
        })?;
        self.write(|w| {
            w.batch.absorb(changes);
            Ok(())
        })?;
        self.logged_seq.fetch_max(seq, Ordering::Relaxed);
        Ok(())
    }

    /// The newest intent-log seq whose changes are committed (0: none).
    pub fn covered(r: &impl MetaRead) -> Result<u64> {
        Ok(r.get(Table::Counters, COVERED)?
            .and_then(|v| v.try_into().ok())
            .map_or(0, u64::from_le_bytes))
    }
}

impl LogTurn<'_> {
    /// Takes the changes made since the last turn (empty: every change is durable).
    pub fn take_unlogged(&self) -> Unlogged {
        let mut overlay = self.meta.overlay.write().unwrap();
        Unlogged(std::mem::take(&mut overlay.unlogged))
    }

    /// The changes were logged as record `seq`.
    pub fn logged(&self, seq: u64) {
        self.meta.logged_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// The changes could not be logged: they go back under those made since.
    pub fn restore(&self, taken: Unlogged) {
        let mut overlay = self.meta.overlay.write().unwrap();
        let newer = std::mem::take(&mut overlay.unlogged);
        let mut restored = taken.0;
        restored.absorb(newer);
        overlay.unlogged = restored;
    }
}

/// Records, in a commit's transaction, the newest seq whose changes it holds.
pub(super) fn record_covered(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    seq: u64,
) -> Result<()> {
    if seq > 0 {
        table.insert(COVERED, &seq.to_le_bytes()[..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn meta() -> Meta {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let meta = Meta::new(db).unwrap();
        meta.track_unlogged();
        meta
    }

    fn put(meta: &Meta, key: &[u8], value: &[u8]) {
        meta.write(|w| {
            w.put(Table::Nodes, key, value);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn changes_are_taken_once_and_a_commit_makes_them_durable() {
        let meta = meta();
        put(&meta, b"a", b"1");
        {
            let turn = meta.log_turn();
            let taken = turn.take_unlogged();
            assert!(!taken.is_empty());
            let copy = Meta::new(
                redb::Database::builder()
                    .create_with_backend(redb::backends::InMemoryBackend::new())
                    .unwrap(),
            )
            .unwrap();
            copy.apply_logged(7, &taken.encode()).unwrap();
            assert_eq!(
                copy.read().get(Table::Nodes, b"a").unwrap(),
                Some(b"1".to_vec())
            );
            turn.logged(7);
            assert!(turn.take_unlogged().is_empty());
        }
        put(&meta, b"b", b"2");
        meta.commit(&BTreeMap::new()).unwrap();
        assert_eq!(Meta::covered(&meta.read()).unwrap(), 7);
        assert!(meta.log_turn().take_unlogged().is_empty());
    }

    #[test]
    fn changes_not_logged_go_back_under_newer_ones() {
        let meta = meta();
        put(&meta, b"a", b"1");
        let turn = meta.log_turn();
        let taken = turn.take_unlogged();
        put(&meta, b"a", b"2");
        put(&meta, b"b", b"3");
        turn.restore(taken);
        let all = Changes::decode(&turn.take_unlogged().encode()).unwrap();
        assert_eq!(all.get(Table::Nodes, b"a"), Some(&Some(b"2".to_vec())));
        assert_eq!(all.get(Table::Nodes, b"b"), Some(&Some(b"3".to_vec())));
    }

    #[test]
    fn a_failed_commit_leaves_its_changes_to_be_logged() {
        use crate::io::{IoBackend, OpenMode, SimIo, SimOptions, StorageIo};
        let path = std::path::Path::new("/m/meta.redb");
        let sim = SimIo::new(SimOptions::default());
        sim.create_dir_all(path.parent().unwrap()).unwrap();
        let file = sim.open(path, OpenMode::Create).unwrap();
        let db = redb::Database::builder()
            .create_with_backend(IoBackend(file))
            .unwrap();
        let meta = Meta::new(db).unwrap();
        meta.track_unlogged();
        put(&meta, b"a", b"1");
        sim.fail_after(0);
        assert!(meta.commit(&BTreeMap::new()).is_err());
        sim.heal();
        put(&meta, b"b", b"2");
        let all = Changes::decode(&meta.log_turn().take_unlogged().encode()).unwrap();
        assert_eq!(all.get(Table::Nodes, b"a"), Some(&Some(b"1".to_vec())));
        assert_eq!(all.get(Table::Nodes, b"b"), Some(&Some(b"2".to_vec())));
    }

    #[test]
    fn encoded_changes_decode_and_garbage_does_not() {
        let mut changes = Changes::default();
        changes.put(Table::Dirents, b"k".to_vec(), Some(vec![1, 2, 3]));
        changes.put(Table::Orphans, b"gone".to_vec(), None);
        let bytes = changes.encode();
        let back = Changes::decode(&bytes).unwrap();
        assert_eq!(back.encode(), bytes);
        assert!(Changes::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(Changes::decode(&[200, 0, 0, 0, 0]).is_none());
    }
}
