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
    /// Handles below this number were given out by an earlier process serving the same
    /// mount (a daemon that handed its mounts over, or was killed): the kernel may still
    /// name them. Zero when the view's first process serves it.
    base: u64,
    files: HashMap<u64, NodeId>,
    dirs: HashMap<u64, (NodeId, Arc<Vec<DirEntry>>)>,
}

/// The open handles of a view, as another process needs them to serve the same mount on:
/// (handle, node) of each open file and directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenHandles {
    pub files: Vec<(u64, NodeId)>,
    pub dirs: Vec<(u64, NodeId)>,
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

    /// Every open handle (to hand a mount over to another process).
    pub fn open_handles(&self) -> OpenHandles {
        let handles = self.shared.handles.lock().unwrap();
        let mut open = OpenHandles {
            files: handles.files.iter().map(|(&fh, &n)| (fh, n)).collect(),
            dirs: handles.dirs.iter().map(|(&dh, (n, _))| (dh, *n)).collect(),
        };
        open.files.sort_unstable();
        open.dirs.sort_unstable();
        open
    }

    /// Takes over the handles an earlier process serving this view's mount gave out: those
    /// in `open` are open here as they were there (an adopted directory lists itself anew),
    /// and new handles are numbered from `base` up, above every earlier one. A handle below
    /// `base` that is not in `open` (its process was killed and its table lost) is taken as
    /// open when it is used and closes quietly. Call before the view serves anything.
    pub fn adopt_handles(&self, base: u64, open: &OpenHandles) -> Result<()> {
        let stack = self.stack();
        for &(_, node) in open.files.iter().chain(&open.dirs) {
            self.state(&stack, node)?
                .open
                .fetch_add(1, Ordering::SeqCst);
        }
        let mut handles = self.shared.handles.lock().unwrap();
        handles.base = base;
        handles.next = handles.next.max(base);
        handles.files.extend(open.files.iter().copied());
        let adopted = open.dirs.iter().map(|&(dh, n)| (dh, (n, Arc::default())));
        handles.dirs.extend(adopted);
        Ok(())
    }

    /// Whether `handle` was given out by an earlier process serving this view's mount.
    pub fn is_inherited_handle(&self, handle: u64) -> bool {
        handle < self.shared.handles.lock().unwrap().base
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
        let mut handles = self.shared.handles.lock().unwrap();
        let node = handles.files.remove(&fh.0);
        self.close_handle(handles, node, fh.0, "file")
    }

    /// Closes the node of a handle taken out of the table (`None`: it was not there). A
    /// handle opened under a process that was killed is not counted here: it closes quietly.
    fn close_handle(
        &self,
        handles: std::sync::MutexGuard<'_, Handles>,
        node: Option<NodeId>,
        handle: u64,
        what: &str,
    ) -> Result<()> {
        let inherited = handle < handles.base;
        drop(handles);
        match node {
            Some(node) => self.close_node(node),
            None if inherited => Ok(()),
            None => Err(Error::InvalidInput(format!(
                "{what} handle {handle} is not open"
            ))),
        }
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
    ///
    /// `dir` is the directory the caller means: a handle an earlier process serving this
    /// mount gave out, and which it did not hand over, is opened on it here. An adopted handle
    /// (no snapshot yet) lists the directory anew at any offset.
    pub fn readdir(&self, dir: NodeId, dh: DirHandle, offset: u64) -> Result<Vec<DirEntry>> {
        let not_open = || Error::InvalidInput(format!("directory handle {} is not open", dh.0));
        let inherited = {
            let handles = self.shared.handles.lock().unwrap();
            !handles.dirs.contains_key(&dh.0) && dh.0 < handles.base
        };
        if inherited {
            let stack = self.stack();
            self.state(&stack, dir)?.open.fetch_add(1, Ordering::SeqCst);
            let mut handles = self.shared.handles.lock().unwrap();
            handles.dirs.insert(dh.0, (dir, Arc::default()));
        }
        let stale = {
            let handles = self.shared.handles.lock().unwrap();
            handles.dirs.get(&dh.0).ok_or_else(not_open)?.1.is_empty()
        };
        if offset == 0 || stale {
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
            return Ok(entries.into_iter().skip(offset as usize).collect());
        }
        let handles = self.shared.handles.lock().unwrap();
        let (_, entries) = handles.dirs.get(&dh.0).ok_or_else(not_open)?;
        Ok(entries.iter().skip(offset as usize).cloned().collect())
    }

    pub fn releasedir(&self, dh: DirHandle) -> Result<()> {
        let mut handles = self.shared.handles.lock().unwrap();
        let node = handles.dirs.remove(&dh.0).map(|(node, _)| node);
        self.close_handle(handles, node, dh.0, "directory")
    }

    /// Lists a directory in one call (opendir + readdir + releasedir).
    pub fn list_dir(&self, node: NodeId) -> Result<Vec<DirEntry>> {
        let dh = self.opendir(node)?;
        let entries = self.readdir(node, dh, 0);
        self.releasedir(dh)?;
        entries
    }
}

#[cfg(test)]
mod tests {
    use crate::{Caller, Store, StoreOptions, Volume};

    /// An empty container's view (with its store and directory, kept alive by the caller).
    fn container() -> (tempfile::TempDir, Store, Volume) {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::default()
            .block_size(4096)
            .flush_interval(None);
        let store = Store::init(dir.path().join("store"), options).unwrap();
        store.create_empty_image("empty").unwrap();
        store.create_container("c", "empty").unwrap();
        let v = store.open_container("c").unwrap();
        (dir, store, v)
    }

    #[test]
    fn a_read_from_offset_zero_lists_the_directory_anew() {
        let (_dir, _store, v) = container();
        let root = v.root();
        for name in [&b"a"[..], b"b", b"c"] {
            v.create(root, name, 0o644, Caller::ROOT).unwrap();
        }
        let names = |entries: Vec<super::DirEntry>| -> Vec<Vec<u8>> {
            entries.into_iter().map(|e| e.name).collect()
        };
        let dh = v.opendir(root).unwrap();
        assert_eq!(names(v.readdir(root, dh, 0).unwrap()), [b"a", b"b", b"c"]);
        v.unlink(root, b"b").unwrap();
        v.create(root, b"d", 0o644, Caller::ROOT).unwrap();
        // Later offsets keep indexing the snapshot (entries removed meanwhile stay listed)...
        assert_eq!(names(v.readdir(root, dh, 1).unwrap()), [b"b", b"c"]);
        // ...and a read from the start (rewinddir) shows the directory as it is now.
        assert_eq!(names(v.readdir(root, dh, 0).unwrap()), [b"a", b"c", b"d"]);
        assert_eq!(names(v.readdir(root, dh, 2).unwrap()), [b"d"]);
        v.releasedir(dh).unwrap();
    }

    #[test]
    fn handles_of_an_earlier_process_are_taken_over() {
        let (_dir, _store, v) = container();
        let root = v.root();
        let a = v.create(root, b"a", 0o644, Caller::ROOT).unwrap();
        v.create(root, b"b", 0o644, Caller::ROOT).unwrap();
        // Handed over: file handle 7 on `a` and directory handle 9 on the root, open.
        let open = super::OpenHandles {
            files: vec![(7, a.node)],
            dirs: vec![(9, root)],
        };
        v.adopt_handles(100, &open).unwrap();
        assert_eq!(v.open_handles(), open);
        assert!(v.is_inherited_handle(7) && !v.is_inherited_handle(100));
        // New handles number from the base up.
        let fresh = v.open(a.node, false).unwrap();
        assert!(fresh.0 >= 100);
        // The adopted directory handle lists anew at any offset.
        let names: Vec<Vec<u8>> = v
            .readdir(root, super::DirHandle(9), 1)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, [b"b"]);
        // An adopted handle keeps an unlinked file until its close.
        v.unlink(root, b"a").unwrap();
        v.release(fresh).unwrap();
        assert!(v.getattr(a.node).is_ok(), "still open through handle 7");
        v.release(super::FileHandle(7)).unwrap();
        assert!(v.getattr(a.node).is_err(), "freed at its last close");
        // A handle of a killed process (never handed over) closes quietly; one this process
        // never gave out is an error.
        v.release(super::FileHandle(3)).unwrap();
        v.releasedir(super::DirHandle(4)).unwrap();
        assert!(v.release(super::FileHandle(12345)).is_err());
        // Such a directory handle is opened on the directory it is used for.
        assert_eq!(v.readdir(root, super::DirHandle(5), 0).unwrap().len(), 1);
        v.releasedir(super::DirHandle(5)).unwrap();
        v.releasedir(super::DirHandle(9)).unwrap();
    }
}
