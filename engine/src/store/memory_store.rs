//! An in-memory block store for tests and tools: same contract, nothing durable across
//! processes (`sync` returns an empty checkpoint).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use super::{BlockLocation, BlockStore, BlockStoreStats, Checkpoint, ReclaimPlan, Staging};
use crate::error::{Error, Result};
use crate::ids::{BlockId, PackId};

pub struct MemoryStore {
    block_size: usize,
    blocks: RwLock<HashMap<BlockId, Arc<[u8]>>>,
}

/// An import's blocks, held aside until adopted.
struct MemoryStaging<'a> {
    store: &'a MemoryStore,
    blocks: HashMap<BlockId, Arc<[u8]>>,
}

impl Staging for MemoryStaging<'_> {
    fn put(&mut self, blocks: &[(BlockId, &[u8])]) -> Result<u64> {
        let mut added = 0;
        for (id, data) in blocks {
            self.store.check_len(id, data)?;
            if id.is_zero() || self.blocks.contains_key(id) || self.store.contains(id)? {
                continue;
            }
            self.blocks.insert(*id, Arc::from(*data));
            added += data.len() as u64;
        }
        Ok(added)
    }

    fn holds(&self, id: &BlockId) -> bool {
        self.blocks.contains_key(id)
    }

    fn adopt(self: Box<Self>) -> Result<()> {
        self.store.blocks.write().unwrap().extend(self.blocks);
        Ok(())
    }
}

impl MemoryStore {
    pub fn new(block_size: usize) -> MemoryStore {
        MemoryStore {
            block_size,
            blocks: RwLock::new(HashMap::new()),
        }
    }

    /// Replaces a stored block's bytes, to test that corruption is caught.
    pub fn corrupt_for_test(&self, id: &BlockId) {
        let mut blocks = self.blocks.write().unwrap();
        if let Some(data) = blocks.get_mut(id) {
            let mut bytes = data.to_vec();
            bytes[0] ^= 0xff;
            *data = Arc::from(bytes);
        }
    }

    fn check_len(&self, id: &BlockId, data: &[u8]) -> Result<()> {
        if data.len() > self.block_size {
            return Err(Error::InvalidInput(format!(
                "block {id} is larger than the block size"
            )));
        }
        Ok(())
    }
}

impl BlockStore for MemoryStore {
    fn block_size(&self) -> usize {
        self.block_size
    }

    fn contains(&self, id: &BlockId) -> Result<bool> {
        Ok(id.is_zero() || self.blocks.read().unwrap().contains_key(id))
    }

    fn put(&self, blocks: &[(BlockId, &[u8])]) -> Result<u64> {
        let mut held = self.blocks.write().unwrap();
        let mut added = 0;
        for (id, data) in blocks {
            self.check_len(id, data)?;
            if id.is_zero() || held.contains_key(id) {
                continue;
            }
            held.insert(*id, Arc::from(*data));
            added += data.len() as u64;
        }
        Ok(added)
    }

    fn get(&self, id: &BlockId, out: &mut [u8]) -> Result<usize> {
        let data = self
            .blocks
            .read()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::Corrupt(format!("block {id} is referenced but not stored")))?;
        if BlockId(*blake3::hash(&data).as_bytes()) != *id {
            return Err(Error::Corrupt(format!(
                "block {id} in memory does not match its hash"
            )));
        }
        out[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    fn stage(&self) -> Result<Box<dyn Staging + '_>> {
        Ok(Box::new(MemoryStaging {
            store: self,
            blocks: HashMap::new(),
        }))
    }

    fn sync(&self) -> Result<Checkpoint> {
        Ok(Checkpoint::default())
    }

    fn acknowledge(&self, _checkpoint: &Checkpoint) {}

    /// Nothing here outlives the process, so nothing waits to become durable.
    fn is_settled(&self) -> bool {
        true
    }

    fn stats(&self) -> BlockStoreStats {
        let blocks = self.blocks.read().unwrap();
        let bytes: u64 = blocks.values().map(|d| d.len() as u64).sum();
        BlockStoreStats {
            blocks: blocks.len() as u64,
            block_bytes: bytes,
            pack_bytes: bytes,
            packs: 0,
        }
    }

    fn locations(&self) -> Result<Vec<(BlockId, BlockLocation)>> {
        Ok(self
            .blocks
            .read()
            .unwrap()
            .iter()
            .map(|(id, d)| {
                (
                    *id,
                    BlockLocation {
                        pack: PackId(0),
                        offset: 0,
                        len: d.len() as u32,
                    },
                )
            })
            .collect())
    }

    /// All blocks form one unit: reclaiming it drops every block that is not live.
    fn plan_reclaim(&self, live: &dyn Fn(&BlockId) -> bool) -> Result<ReclaimPlan> {
        let mut plan = ReclaimPlan::from_locations(self.locations()?, live, &|_| 0);
        for unit in &mut plan.units {
            unit.bytes = unit.dead_bytes;
        }
        Ok(plan)
    }

    fn reclaim(&self, plan: &ReclaimPlan) -> Result<()> {
        // One unit holds every block: without it in the plan, nothing is reclaimed.
        if plan.units.is_empty() {
            return Ok(());
        }
        let keep: BTreeSet<&BlockId> = plan.units.iter().flat_map(|u| &u.live).collect();
        self.blocks
            .write()
            .unwrap()
            .retain(|id, _| keep.contains(id));
        Ok(())
    }

    fn delete_retired(&self) -> Result<u64> {
        Ok(0)
    }
}
