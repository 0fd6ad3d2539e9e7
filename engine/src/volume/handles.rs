//! Open files and directories of a view. Open handles keep unlinked nodes alive (orphans);
//! a directory handle holds a snapshot of the merged listing taken by each read from offset 0
//! (the first read, or one after rewinddir, which POSIX says shows the directory as it is
//! now), so offsets stay valid while entries are removed (`rm -rf` of a large image directory
//! sees every entry).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{DirEntry, DirHandle, FileHandle, Volume};
use crate::error::{Error, Result};
use crate::ids::NodeId;
use crate::layer::readdir;
use crate::meta::records::Records;

#[derive(Default)]
pub(super) struct Handles {
    next: u64,
    files: HashMap<u64, NodeId>,
    dirs: HashMap<u64, (NodeId, Arc<Vec<DirEntry>>)>,
}

impl Handles {
    fn allocate(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

impl Volume {
    /// Opens a node (any kind). With `truncate`, a regular file is cut to zero (O_TRUNC).
    pub fn open(&self, node: NodeId, truncate: bool) -> Result<FileHandle> {
        let stack = self.stack();
        let state = self.state(&stack, node)?;
        if truncate && state.is_file {
            self.truncate(&stack, node, 0)?;
        }
        state.open.fetch_add(1, Ordering::SeqCst);
        let mut handles = self.shared.handles.lock().unwrap();
        let fh = handles.allocate();
        handles.files.insert(fh, node);
        Ok(FileHandle(fh))
    }

    /// The nodes open files refer to.
    pub fn open_nodes(&self) -> Vec<NodeId> {
        let handles = self.shared.handles.lock().unwrap();
        let mut nodes: Vec<NodeId> = handles.files.values().copied().collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// The node an open handle refers to.
    pub fn handle_node(&self, fh: FileHandle) -> Result<NodeId> {
        self.shared
            .handles
            .lock()
            .unwrap()
            .files
            .get(&fh.0)
            .copied()
            .ok_or_else(|| Error::InvalidInput(format!("file handle {} is not open", fh.0)))
    }

    /// Closes a handle. The last close of an unlinked node frees it.
    pub fn release(&self, fh: FileHandle) -> Result<()> {
        let node = self
            .shared
            .handles
            .lock()
            .unwrap()
            .files
            .remove(&fh.0)
            .ok_or_else(|| Error::InvalidInput(format!("file handle {} is not open", fh.0)))?;
        self.close_node(node)
    }

    fn close_node(&self, node: NodeId) -> Result<()> {
        let Some(state) = self.existing_state(node) else {
            return Ok(());
        };
        if state.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.free_if_orphan(node)?;
        }
        Ok(())
    }

    /// Frees a node that has no names left and no open handles.
    fn free_if_orphan(&self, node: NodeId) -> Result<()> {
        let stack = self.stack();
        let Ok(upper) = stack.upper() else {
            return Ok(());
        };
        let store = &self.shared.store;
        let freed = store.meta().write(|w| {
            let orphan = w.orphans(upper)?.contains(&node);
            if orphan {
                w.delete_orphan(upper, node);
                w.delete_node(upper, node);
            }
            Ok(orphan)
        })?;
        if freed {
            self.forget_node(node);
        }
        Ok(())
    }

    /// Drops a node's state and its dirty data (the node is gone from the view).
    pub(crate) fn forget_node(&self, node: NodeId) {
        let state = self.shared.nodes.lock().unwrap().remove(&node);
        self.shared.evictions.fetch_add(1, Ordering::SeqCst);
        if let Some(state) = state {
            let mut fd = state.data.lock().unwrap();
            let bs = self.block_size() as u64;
            let data: u64 = fd.dirty.values().map(|b| b.charge(bs)).sum();
            fd.dirty.clear();
            fd.mtime = None;
            // What a flush in flight stores lands as usual (and releases its own budget).
            let size = fd.inflight.as_ref().map_or(fd.base_size, |f| f.size);
            fd.size = size;
            fd.min_size = size;
            fd.log_since.clear();
            fd.log_min_size = size;
            self.shared.store.inner.dirty.release(data);
        }
    }

    /// Whether the node has open handles in this view.
    pub(crate) fn is_open(&self, node: NodeId) -> bool {
        self.existing_state(node).is_some_and(|s| s.is_open())
    }

    /// Opens a directory. Its merged listing is taken by the first read (offset 0).
    pub fn opendir(&self, node: NodeId) -> Result<DirHandle> {
        let stack = self.stack();
        let record = self.record(&stack, node)?;
        if record.kind != crate::tree::node::FileKind::Dir {
            return Err(Error::NotDir(format!("node {node}")));
        }
        let state = self.state(&stack, node)?;
        state.open.fetch_add(1, Ordering::SeqCst);
        let mut handles = self.shared.handles.lock().unwrap();
        let dh = handles.allocate();
        handles.dirs.insert(dh, (node, Arc::new(Vec::new())));
        Ok(DirHandle(dh))
    }

    /// The merged listing of a directory now, numbered from offset 1.
    fn listing(&self, node: NodeId) -> Result<Vec<DirEntry>> {
        let stack = self.stack();
        let r = self.shared.store.meta().read();
        Ok(readdir::list(&r, &stack.layers, node)?
            .into_iter()
            .enumerate()
            .map(|(i, e)| DirEntry {
                name: e.name,
                node: e.node,
                kind: e.kind,
                offset: i as u64 + 1,
            })
            .collect())
    }

    /// The entries of an open directory from `offset` on. A read from offset 0 (the start, or
    /// after rewinddir) takes a new snapshot of the listing; later offsets index into it.
    pub fn readdir(&self, dh: DirHandle, offset: u64) -> Result<Vec<DirEntry>> {
        let not_open = || Error::InvalidInput(format!("directory handle {} is not open", dh.0));
        if offset == 0 {
            let node = self
                .shared
                .handles
                .lock()
                .unwrap()
                .dirs
                .get(&dh.0)
                .ok_or_else(not_open)?
                .0;
            let entries = self.listing(node)?;
            let mut handles = self.shared.handles.lock().unwrap();
            let (_, snapshot) = handles.dirs.get_mut(&dh.0).ok_or_else(not_open)?;
            *snapshot = Arc::new(entries.clone());
            return Ok(entries);
        }
        let handles = self.shared.handles.lock().unwrap();
        let (_, entries) = handles.dirs.get(&dh.0).ok_or_else(not_open)?;
        Ok(entries.iter().skip(offset as usize).cloned().collect())
    }

    pub fn releasedir(&self, dh: DirHandle) -> Result<()> {
        let (node, _) = self
            .shared
            .handles
            .lock()
            .unwrap()
            .dirs
            .remove(&dh.0)
            .ok_or_else(|| Error::InvalidInput(format!("directory handle {} is not open", dh.0)))?;
        self.close_node(node)
    }

    /// Lists a directory in one call (opendir + readdir + releasedir).
    pub fn list_dir(&self, node: NodeId) -> Result<Vec<DirEntry>> {
        let dh = self.opendir(node)?;
        let entries = self.readdir(dh, 0);
        self.releasedir(dh)?;
        entries
    }
}

#[cfg(test)]
mod tests {
    use crate::{Caller, Store, StoreOptions};

    #[test]
    fn a_read_from_offset_zero_lists_the_directory_anew() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::default()
            .block_size(4096)
            .flush_interval(None);
        let store = Store::init(dir.path().join("store"), options).unwrap();
        store.create_empty_image("empty").unwrap();
        store.create_container("c", "empty").unwrap();
        let v = store.open_container("c").unwrap();
        let root = v.root();
        for name in [&b"a"[..], b"b", b"c"] {
            v.create(root, name, 0o644, Caller::ROOT).unwrap();
        }
        let names = |entries: Vec<super::DirEntry>| -> Vec<Vec<u8>> {
            entries.into_iter().map(|e| e.name).collect()
        };
        let dh = v.opendir(root).unwrap();
        assert_eq!(names(v.readdir(dh, 0).unwrap()), [b"a", b"b", b"c"]);
        v.unlink(root, b"b").unwrap();
        v.create(root, b"d", 0o644, Caller::ROOT).unwrap();
        // Later offsets keep indexing the snapshot (entries removed meanwhile stay listed)...
        assert_eq!(names(v.readdir(dh, 1).unwrap()), [b"b", b"c"]);
        // ...and a read from the start (rewinddir) shows the directory as it is now.
        assert_eq!(names(v.readdir(dh, 0).unwrap()), [b"a", b"c", b"d"]);
        assert_eq!(names(v.readdir(dh, 2).unwrap()), [b"d"]);
        v.releasedir(dh).unwrap();
    }
}
