//! Open files and directories of a view. Open handles keep unlinked nodes alive (orphans);
//! a directory handle holds a snapshot of the merged listing taken at open, so offsets stay
//! valid while entries are removed (`rm -rf` of a large image directory sees every entry).

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
            let data = fd
                .dirty
                .values()
                .filter(|b| matches!(b, super::file_data::DirtyBlock::Data(_)))
                .count() as u64;
            fd.dirty.clear();
            fd.mtime = None;
            fd.size = fd.base_size;
            fd.min_size = fd.base_size;
            self.shared
                .store
                .inner
                .dirty
                .release(data * self.block_size() as u64);
        }
    }

    /// Whether the node has open handles in this view.
    pub(crate) fn is_open(&self, node: NodeId) -> bool {
        self.existing_state(node).is_some_and(|s| s.is_open())
    }

    /// Opens a directory: its merged listing is taken now.
    pub fn opendir(&self, node: NodeId) -> Result<DirHandle> {
        let stack = self.stack();
        let record = self.record(&stack, node)?;
        if record.kind != crate::tree::node::FileKind::Dir {
            return Err(Error::NotDir(format!("node {node}")));
        }
        let r = self.shared.store.meta().read();
        let entries: Vec<DirEntry> = readdir::list(&r, &stack.layers, node)?
            .into_iter()
            .enumerate()
            .map(|(i, e)| DirEntry {
                name: e.name,
                node: e.node,
                kind: e.kind,
                offset: i as u64 + 1,
            })
            .collect();
        drop(r);
        let state = self.state(&stack, node)?;
        state.open.fetch_add(1, Ordering::SeqCst);
        let mut handles = self.shared.handles.lock().unwrap();
        let dh = handles.allocate();
        handles.dirs.insert(dh, (node, Arc::new(entries)));
        Ok(DirHandle(dh))
    }

    /// The entries of an open directory from `offset` on (0: the start).
    pub fn readdir(&self, dh: DirHandle, offset: u64) -> Result<Vec<DirEntry>> {
        let handles = self.shared.handles.lock().unwrap();
        let (_, entries) = handles
            .dirs
            .get(&dh.0)
            .ok_or_else(|| Error::InvalidInput(format!("directory handle {} is not open", dh.0)))?;
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
