//! Block-map pages read from the metadata through the shared page cache, verified against
//! their ids.

use std::sync::Arc;

use super::block_map::PageSource;
use crate::error::{Error, Result};
use crate::ids::PageId;
use crate::meta::MetaRead;
use crate::meta::records::Records;
use crate::store::BlockCache;

pub struct MetaPages<'a> {
    pub meta: &'a dyn MetaRead,
    pub cache: &'a BlockCache<PageId>,
}

impl PageSource for MetaPages<'_> {
    fn load(&self, id: &PageId) -> Result<Arc<[u8]>> {
        if let Some(page) = self.cache.get(id) {
            return Ok(page);
        }
        let bytes = self.meta.page_bytes(id)?;
        if PageId::of(&bytes) != *id {
            return Err(Error::Corrupt(format!(
                "block-map page {id} does not match its hash"
            )));
        }
        let page: Arc<[u8]> = Arc::from(bytes);
        self.cache.insert(*id, page.clone());
        Ok(page)
    }
}
