//! Sending blocks the remote lacks: packs of them are built in memory, each pack uploaded
//! before its index (an index on the remote always names a whole pack), then the index is kept
//! locally and attached. Blocks the attached indexes name are never sent again.

use std::collections::HashSet;

use super::RemotePacks;
use super::bucket;
use crate::error::{Error, Result};
use crate::ids::BlockId;
use crate::store::BlockStore;

/// What an upload sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadReport {
    pub blocks: u64,
    /// Bytes of block data sent (unpadded).
    pub block_bytes: u64,
    pub packs: u64,
    /// Bytes of objects written (packs, indexes, the format object).
    pub bytes_sent: u64,
}

impl RemotePacks {
    /// Checks the remote's format object (writing it on first use): the same layout version
    /// and block size as this store, or an error.
    pub fn check_format(&self) -> Result<u64> {
        let key = bucket::format_key();
        match self.remote.get(&key) {
            Ok(bytes) => {
                let block_size = bucket::parse_format_object(&bytes)?;
                if block_size != self.block_size {
                    return Err(Error::InvalidInput(format!(
                        "remote {} holds blocks of {block_size} bytes, this store {}",
                        self.remote.url(),
                        self.block_size
                    )));
                }
                Ok(0)
            }
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {
                let bytes = bucket::format_object(self.block_size);
                let len = bytes.len() as u64;
                self.remote.put(&key, bytes)?;
                Ok(len)
            }
            Err(e) => Err(e),
        }
    }

    /// Uploads the listed blocks the remote lacks (zero blocks and blocks the attached indexes
    /// name are skipped), read from `source`, which must hold the rest. Call `refresh` first
    /// to dedup against packs other hosts uploaded.
    pub fn upload(&self, ids: &[BlockId], source: &dyn BlockStore) -> Result<UploadReport> {
        self.upload_with(ids, source, &mut || Ok(()))
    }

    /// `upload`, calling `between_packs` before each pack is sent (a push renews its lease
    /// there, or stops).
    pub fn upload_with(
        &self,
        ids: &[BlockId],
        source: &dyn BlockStore,
        between_packs: &mut dyn FnMut() -> Result<()>,
    ) -> Result<UploadReport> {
        let mut seen = HashSet::new();
        let missing: Vec<BlockId> = ids
            .iter()
            .filter(|id| !id.is_zero() && !self.holds(id) && seen.insert(**id))
            .copied()
            .collect();
        let mut report = UploadReport::default();
        if missing.is_empty() {
            return Ok(report);
        }
        report.bytes_sent += self.check_format()?;
        let mut batch: Vec<(BlockId, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0u64;
        let mut scratch = vec![0u8; self.block_size as usize];
        for id in missing {
            let n = source.get(&id, &mut scratch)?;
            batch_bytes += n as u64;
            batch.push((id, scratch[..n].to_vec()));
            if batch_bytes >= self.pack_target {
                between_packs()?;
                self.upload_pack(&batch, &mut report)?;
                batch.clear();
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            between_packs()?;
            self.upload_pack(&batch, &mut report)?;
        }
        Ok(report)
    }

    fn upload_pack(&self, batch: &[(BlockId, Vec<u8>)], report: &mut UploadReport) -> Result<()> {
        let blocks: Vec<(BlockId, &[u8])> = batch.iter().map(|(id, d)| (*id, &d[..])).collect();
        let object = bucket::encode_pack(self.block_size, &blocks);
        let (pack_len, index_len) = (object.bytes.len() as u64, object.index.len() as u64);
        self.remote
            .put(&bucket::pack_key(&object.name), object.bytes)?;
        self.remote
            .put(&bucket::index_key(&object.name), object.index.clone())?;
        let entries = bucket::decode_index(&object.name, &object.index)?;
        self.keep_index(&object.name, &object.index)?;
        self.add_index(object.name.clone(), entries);
        tracing::debug!(pack = %object.name.0, blocks = batch.len(), "uploaded pack");
        report.blocks += batch.len() as u64;
        report.block_bytes += batch.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
        report.packs += 1;
        report.bytes_sent += pack_len + index_len;
        Ok(())
    }
}
