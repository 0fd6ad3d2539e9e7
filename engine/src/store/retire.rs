//! Taking packs out of service for gc: sealing the open pack early, retiring a sealed pack
//! (no lookup finds it; its record leaves the next checkpoint), and deleting the files of
//! retired packs once the metadata no longer records them.

use super::pack_store::PackStore;
use crate::error::{Error, IoContext, Result};
use crate::ids::PackId;

impl PackStore {
    /// Takes a sealed pack out of service (gc): no lookup finds it any more and its record
    /// leaves the next checkpoint. Its files stay until [`PackStore::delete_retired`], after the
    /// metadata no longer records it; readers holding its file keep reading (Linux keeps an
    /// unlinked file's data while it is open).
    pub fn retire(&self, id: PackId) -> Result<()> {
        let removed = self.sealed.write().unwrap().remove(&id);
        if removed.is_none() {
            return Err(Error::InvalidInput(format!(
                "pack {id} is not a sealed pack"
            )));
        }
        let mut state = self.writer.lock().unwrap();
        state.pending.remove(&id);
        state.retired.push(id);
        Ok(())
    }

    /// Deletes the files of retired packs (once the metadata no longer records them).
    pub fn delete_retired(&self) -> Result<Vec<PackId>> {
        let retired = std::mem::take(&mut self.writer.lock().unwrap().retired);
        for id in &retired {
            for path in [self.layout.pack(*id), self.layout.index(*id)] {
                if self.io.exists(&path) {
                    self.io
                        .remove_file(&path)
                        .ctx(|| format!("removing {}", path.display()))?;
                }
            }
        }
        self.io
            .sync_dir(&self.layout.packs_dir())
            .ctx(|| "syncing the packs directory".to_string())?;
        Ok(retired)
    }

    /// Seals the open pack now (gc, to be able to rewrite it).
    pub fn seal_open(&self) -> Result<()> {
        let mut state = self.writer.lock().unwrap();
        self.seal(&mut state)
    }

    /// Bytes a pack occupies (sealed packs and the open one).
    pub fn pack_len(&self, id: PackId) -> Option<u64> {
        if let Some(sp) = self.sealed.read().unwrap().get(&id) {
            return Some(sp.view().pack_len);
        }
        let state = self.writer.lock().unwrap();
        state.writer.as_ref().filter(|w| w.id == id).map(|w| w.len)
    }

    /// The open pack's id, if one is open.
    pub fn open_pack(&self) -> Option<PackId> {
        self.open.read().unwrap().id
    }
}
