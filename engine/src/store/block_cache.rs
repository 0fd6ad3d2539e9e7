//! A byte-bounded LRU of verified, content-addressed byte strings: blocks (`--share-memory` mode,
//! so N containers reading the same blocks hold them in memory once) and block-map pages. What
//! it holds is immutable and named by its content, so the cache never needs invalidating.

use std::sync::{Arc, Mutex};

use lru::LruCache;

use std::hash::Hash;

use crate::ids::BlockId;

pub struct BlockCache<K: Hash + Eq + Copy = BlockId> {
    inner: Mutex<Inner<K>>,
    capacity_bytes: usize,
}

struct Inner<K: Hash + Eq> {
    lru: LruCache<K, Arc<[u8]>>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl<K: Hash + Eq + Copy> BlockCache<K> {
    pub fn new(capacity_bytes: usize) -> BlockCache<K> {
        BlockCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                hits: 0,
                misses: 0,
            }),
            capacity_bytes,
        }
    }

    pub fn get(&self, id: &K) -> Option<Arc<[u8]>> {
        let mut inner = self.inner.lock().unwrap();
        let found = inner.lru.get(id).cloned();
        match found {
            Some(_) => inner.hits += 1,
            None => inner.misses += 1,
        }
        found
    }

    /// Like `get`, but a block not held is not counted as a miss: for reads that would not
    /// have kept it (the figures then say how well the cache serves the reads it is for).
    pub fn get_if_held(&self, id: &K) -> Option<Arc<[u8]>> {
        let mut inner = self.inner.lock().unwrap();
        let found = inner.lru.get(id).cloned();
        if found.is_some() {
            inner.hits += 1;
        }
        found
    }

    pub fn insert(&self, id: K, data: Arc<[u8]>) {
        if data.len() > self.capacity_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap();
        inner.bytes += data.len();
        if let Some(old) = inner.lru.put(id, data) {
            inner.bytes -= old.len();
        }
        while inner.bytes > self.capacity_bytes {
            match inner.lru.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.len(),
                None => break,
            }
        }
    }

    /// Forgets every entry (the counters stay).
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.lru.clear();
        inner.bytes = 0;
    }

    /// (bytes held, hits, misses)
    pub fn figures(&self) -> (usize, u64, u64) {
        let inner = self.inner.lock().unwrap();
        (inner.bytes, inner.hits, inner.misses)
    }

    pub fn capacity(&self) -> usize {
        self.capacity_bytes
    }
}

impl<K: Hash + Eq + Copy> std::fmt::Debug for BlockCache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockCache({} bytes)", self.capacity_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recent_beyond_capacity() {
        let cache: BlockCache = BlockCache::new(10);
        let a = BlockId::of(b"a");
        let b = BlockId::of(b"b");
        cache.insert(a, Arc::from(&[1u8; 6][..]));
        cache.insert(b, Arc::from(&[2u8; 6][..]));
        assert!(cache.get(&a).is_none());
        assert!(cache.get(&b).is_some());
        assert_eq!(cache.figures().0, 6);
    }
}
