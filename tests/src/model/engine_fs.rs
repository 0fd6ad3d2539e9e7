//! The engine as a filesystem under test: one container's `Volume` in a temporary store,
//! driven by path the way the kernel drives a FUSE daemon, plus snapshots of any volume
//! (a container's or an image's).
//!
//! What the kernel answers before a request reaches the daemon is emulated here, and only
//! that: walking the path (a symlink in the middle, or followed at the end, leads out of the
//! namespace: ENOENT; a non-directory in the middle: ENOTDIR), `open` refused on a directory
//! for writing (EISDIR) and on a fifo (ENXIO: no reader), `fsync` of a fifo (EINVAL) and of a
//! directory (fsyncdir), `mkdir` dropping set-id bits, user xattrs only on regular files and
//! directories (EPERM). A `chown` carries `kill_set_id` as the FUSE adapter sends it (the
//! kernel leaves dropping set-ID bits to the filesystem). Every other answer is the engine's.

use std::collections::BTreeMap;

use tessera::volume::{FileHandle, Volume};
use tessera::{Attr, Caller, FileKind, NodeId, RenameFlags, SetAttr, XattrMode};

use super::engine_checks::check_file;
use super::snapshot::{Entry, Kind, Snapshot};
use super::{Errno, FsResult, FsUnderTest, RenameMode, SYMLINK_PREFIX, XattrFlag};
use crate::TempStore;

/// The errno the FUSE frontend answers for an engine error (its one mapping).
pub fn errno(e: &tessera::Error) -> Errno {
    tessera_fusefs::errno::errno(e).code()
}

fn err(e: tessera::Error) -> Errno {
    errno(&e)
}

/// A container of a temporary store, open for the ops.
pub struct EngineFs {
    store: TempStore,
    container: String,
    volume: Option<Volume>,
    handles: BTreeMap<u8, FileHandle>,
    /// Whether the last step flushed everything (commit, reopen); the next snapshot clears it.
    flushed: bool,
    /// Images made by `commit`, oldest first.
    pub committed: Vec<String>,
}

impl EngineFs {
    /// Opens `container` of `store`.
    pub fn open(store: TempStore, container: &str) -> EngineFs {
        let volume = store.open_container(container).expect("open container");
        EngineFs {
            store,
            container: container.into(),
            volume: Some(volume),
            handles: BTreeMap::new(),
            flushed: false,
            committed: Vec::new(),
        }
    }

    pub fn store(&self) -> &TempStore {
        &self.store
    }

    pub fn volume(&self) -> &Volume {
        self.volume.as_ref().expect("the container is open")
    }

    /// Closes the current container and opens another one of the same store.
    pub fn switch_to(&mut self, container: &str) {
        self.close_all().expect("closing handles");
        self.flushed = false;
        self.volume = None;
        self.volume = Some(
            self.store
                .open_container(container)
                .expect("open container"),
        );
        self.container = container.into();
    }

    /// Commits the container as `image` (closing its view meanwhile with `close_first`).
    pub fn commit_as(&mut self, image: &str, close_first: bool) -> FsResult {
        if close_first {
            self.close_all()?;
            self.volume = None;
        }
        let result = self.store.commit_container(&self.container, image);
        if close_first {
            self.volume = Some(self.store.open_container(&self.container).expect("reopen"));
        }
        result.map_err(err)?;
        self.flushed = true;
        self.committed.push(image.into());
        Ok(())
    }

    /// Releases every open handle.
    fn close_all(&mut self) -> FsResult {
        let handles = std::mem::take(&mut self.handles);
        handles
            .into_values()
            .try_for_each(|fh| self.volume().release(fh).map_err(err))
    }

    /// The node behind handle `slot`.
    fn handle_node(&self, slot: u8) -> Result<NodeId, Errno> {
        let fh = self.handles.get(&slot).ok_or(libc::EBADF)?;
        self.volume().handle_node(*fh).map_err(err)
    }

    /// The tree of image `image`, through a read-only view.
    pub fn image_snapshot(&self, image: &str) -> Snapshot {
        snapshot_volume(&self.store.open_image(image).expect("open image"), true)
    }

    fn root(&self) -> Result<Attr, Errno> {
        let v = self.volume();
        v.getattr(v.root()).map_err(err)
    }

    /// `name` in directory `dir`, following a symlink when `follow`.
    fn lookup(&self, dir: &Attr, name: &str, follow: bool) -> Result<Attr, Errno> {
        if dir.kind != FileKind::Dir {
            return Err(libc::ENOTDIR);
        }
        let v = self.volume();
        let attr = v.lookup(dir.node, name.as_bytes()).map_err(err)?;
        if follow && attr.kind == FileKind::Symlink {
            let target = v.readlink(attr.node).map_err(err)?;
            assert!(
                target.starts_with(SYMLINK_PREFIX.as_bytes()),
                "the model assumes every symlink dangles out of the namespace"
            );
            return Err(libc::ENOENT);
        }
        Ok(attr)
    }

    /// Walks `path`, following symlinks in the middle and, with `follow_last`, at the end.
    fn resolve(&self, path: &str, follow_last: bool) -> Result<Attr, Errno> {
        let parts: Vec<&str> = path.split('/').collect();
        let mut current = self.root()?;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            current = self.lookup(&current, part, !last || follow_last)?;
        }
        Ok(current)
    }

    /// The directory that holds `path`'s last name, and that name.
    fn parent<'p>(&self, path: &'p str) -> Result<(NodeId, &'p [u8]), Errno> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let dir = match dir {
            "" => self.root()?,
            dir => self.resolve(dir, true)?,
        };
        if dir.kind != FileKind::Dir {
            return Err(libc::ENOTDIR);
        }
        Ok((dir.node, name.as_bytes()))
    }

    /// Opens a regular file for writing (the kernel's checks first), runs `f`, closes it.
    fn with_open_file(
        &self,
        path: &str,
        f: impl FnOnce(&Volume, NodeId) -> tessera::Result<()>,
    ) -> FsResult {
        let attr = self.resolve(path, true)?;
        match attr.kind {
            FileKind::Dir => return Err(libc::EISDIR),
            FileKind::File => {}
            _ => return Err(libc::ENXIO),
        }
        let v = self.volume();
        let fh = v.open(attr.node, false).map_err(err)?;
        let result = f(v, attr.node);
        v.release(fh).map_err(err)?;
        result.map_err(err)
    }

    /// Node of `path` for an xattr change: user xattrs live on files and directories only.
    fn xattr_node(&self, path: &str) -> Result<NodeId, Errno> {
        let attr = self.resolve(path, false)?;
        match attr.kind {
            FileKind::File | FileKind::Dir => Ok(attr.node),
            _ => Err(libc::EPERM),
        }
    }
}

impl FsUnderTest for EngineFs {
    fn label(&self) -> &str {
        "engine"
    }

    fn create(&mut self, path: &str, perm: u32) -> FsResult {
        let (dir, name) = self.parent(path)?;
        let perm = (perm & 0o7777) as u16;
        self.volume()
            .create(dir, name, perm, Caller::ROOT)
            .map(drop)
            .map_err(err)
    }

    fn mkdir(&mut self, path: &str, perm: u32) -> FsResult {
        let (dir, name) = self.parent(path)?;
        let perm = (perm & 0o1777) as u16;
        self.volume()
            .mkdir(dir, name, perm, Caller::ROOT)
            .map(drop)
            .map_err(err)
    }

    fn mkfifo(&mut self, path: &str, perm: u32) -> FsResult {
        let (dir, name) = self.parent(path)?;
        let mode = libc::S_IFIFO | (perm & 0o7777);
        self.volume()
            .mknod(dir, name, mode, 0, Caller::ROOT)
            .map(drop)
            .map_err(err)
    }

    fn symlink(&mut self, path: &str, target: &str) -> FsResult {
        let (dir, name) = self.parent(path)?;
        self.volume()
            .symlink(dir, name, target.as_bytes(), Caller::ROOT)
            .map(drop)
            .map_err(err)
    }

    fn write(&mut self, path: &str, offset: u64, data: &[u8]) -> FsResult {
        self.with_open_file(path, |v, node| v.write(node, offset, data).map(drop))
    }

    fn truncate(&mut self, path: &str, size: u64) -> FsResult {
        let attr = self.resolve(path, true)?;
        let change = SetAttr {
            size: Some(size),
            ..Default::default()
        };
        self.volume()
            .setattr(attr.node, &change)
            .map(drop)
            .map_err(err)
    }

    fn fallocate(
        &mut self,
        path: &str,
        mode: tessera::Fallocate,
        offset: u64,
        len: u64,
    ) -> FsResult {
        self.with_open_file(path, |v, node| v.fallocate(node, mode, offset, len))
    }

    fn unlink(&mut self, path: &str) -> FsResult {
        let (dir, name) = self.parent(path)?;
        self.volume().unlink(dir, name).map_err(err)
    }

    fn rmdir(&mut self, path: &str) -> FsResult {
        let (dir, name) = self.parent(path)?;
        self.volume().rmdir(dir, name).map_err(err)
    }

    fn remove_tree(&mut self, path: &str) -> FsResult {
        let attr = self.resolve(path, false)?;
        if attr.kind != FileKind::Dir {
            return Err(libc::ENOTDIR);
        }
        empty_dir(self.volume(), attr.node).map_err(err)?;
        self.rmdir(path)
    }

    fn rename(&mut self, from: &str, to: &str, mode: RenameMode) -> FsResult {
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        let flags = RenameFlags {
            noreplace: mode == RenameMode::NoReplace,
            exchange: mode == RenameMode::Exchange,
        };
        self.volume()
            .rename(from_dir, from_name, to_dir, to_name, flags)
            .map_err(err)
    }

    fn link(&mut self, from: &str, to: &str) -> FsResult {
        let node = self.resolve(from, false)?.node;
        let (dir, name) = self.parent(to)?;
        self.volume().link(node, dir, name).map(drop).map_err(err)
    }

    fn chmod(&mut self, path: &str, mode: u32) -> FsResult {
        let attr = self.resolve(path, true)?;
        let change = SetAttr {
            mode: Some(mode & 0o7777),
            ..Default::default()
        };
        self.volume()
            .setattr(attr.node, &change)
            .map(drop)
            .map_err(err)
    }

    fn chown(&mut self, path: &str, uid: u32, gid: u32) -> FsResult {
        let attr = self.resolve(path, false)?;
        let change = SetAttr {
            uid: Some(uid),
            gid: Some(gid),
            kill_set_id: Some(Caller::ROOT),
            ..Default::default()
        };
        self.volume()
            .setattr(attr.node, &change)
            .map(drop)
            .map_err(err)
    }

    fn setxattr(&mut self, path: &str, name: &str, value: &[u8], flag: XattrFlag) -> FsResult {
        let node = self.xattr_node(path)?;
        let mode = match flag {
            XattrFlag::Any => XattrMode::Any,
            XattrFlag::Create => XattrMode::Create,
            XattrFlag::Replace => XattrMode::Replace,
        };
        self.volume()
            .setxattr(node, name.as_bytes(), value, mode)
            .map_err(err)
    }

    fn removexattr(&mut self, path: &str, name: &str) -> FsResult {
        let node = self.xattr_node(path)?;
        self.volume()
            .removexattr(node, name.as_bytes())
            .map_err(err)
    }

    fn open(&mut self, slot: u8, path: &str, truncate: bool) -> FsResult {
        if self.handles.contains_key(&slot) {
            self.close(slot)?;
        }
        let attr = self.resolve(path, true)?;
        match attr.kind {
            FileKind::Dir => return Err(libc::EISDIR),
            FileKind::File => {}
            _ => return Err(libc::ENXIO),
        }
        let fh = self.volume().open(attr.node, truncate).map_err(err)?;
        self.handles.insert(slot, fh);
        Ok(())
    }

    fn write_fd(&mut self, slot: u8, offset: u64, data: &[u8]) -> FsResult {
        let node = self.handle_node(slot)?;
        self.volume()
            .write(node, offset, data)
            .map(drop)
            .map_err(err)
    }

    fn truncate_fd(&mut self, slot: u8, size: u64) -> FsResult {
        let node = self.handle_node(slot)?;
        let change = SetAttr {
            size: Some(size),
            ..Default::default()
        };
        self.volume().setattr(node, &change).map(drop).map_err(err)
    }

    fn close(&mut self, slot: u8) -> FsResult {
        let fh = self.handles.remove(&slot).ok_or(libc::EBADF)?;
        self.volume().release(fh).map_err(err)
    }

    fn fsync(&mut self, path: &str) -> FsResult {
        let attr = self.resolve(path, true)?;
        let v = self.volume();
        match attr.kind {
            FileKind::Dir => v.fsyncdir().map_err(err),
            FileKind::Fifo => Err(libc::EINVAL),
            _ => {
                let fh = v.open(attr.node, false).map_err(err)?;
                let result = v.fsync(attr.node);
                v.release(fh).map_err(err)?;
                result.map_err(err)
            }
        }
    }

    fn fsync_fd(&mut self, slot: u8) -> FsResult {
        let node = self.handle_node(slot)?;
        self.volume().fsync(node).map_err(err)
    }

    fn sync_all(&mut self) -> FsResult {
        self.volume().sync().map_err(err)?;
        self.flushed = true;
        Ok(())
    }

    fn reclaim(&mut self) -> FsResult {
        super::reclaim_all(self.store()).map_err(err)
    }

    fn commit(&mut self, close_first: bool) -> FsResult {
        let image = format!("commit{}", self.committed.len() + 1);
        self.commit_as(&image, close_first)
    }

    fn reopen(&mut self) -> FsResult {
        self.close_all()?;
        self.volume = None;
        self.store.reopen();
        self.volume = Some(self.store.open_container(&self.container).map_err(err)?);
        self.flushed = true;
        Ok(())
    }

    fn snapshot(&mut self) -> Snapshot {
        // Commit and reopen flush everything; any other step may leave dirty data.
        let flushed = std::mem::take(&mut self.flushed);
        let v = self.volume();
        let mut snap = snapshot_volume(v, flushed);
        for (slot, fh) in &self.handles {
            let entry = v
                .handle_node(*fh)
                .and_then(|node| v.getattr(node))
                .and_then(|attr| {
                    let mut entry = entry_of(&attr);
                    entry.content = v.read(attr.node, 0, attr.size as usize)?;
                    Ok(entry)
                });
            match entry {
                Ok(entry) => drop(snap.handles.insert(*slot, entry)),
                Err(e) => snap.problems.push(format!("handle {slot}: {e}")),
            }
        }
        snap
    }
}

/// Removes everything in directory `dir`, reading its listing two entries at a time while
/// deleting them (readdir offsets must stay valid meanwhile).
fn empty_dir(v: &Volume, dir: NodeId) -> tessera::Result<()> {
    let dh = v.opendir(dir)?;
    let mut offset = 0;
    let result = loop {
        let page = match v.readdir(dir, dh, offset) {
            Ok(page) if page.is_empty() => break Ok(()),
            Ok(page) => page,
            Err(e) => break Err(e),
        };
        let removed = page.iter().take(2).try_for_each(|entry| {
            offset = entry.offset;
            if entry.kind == FileKind::Dir {
                empty_dir(v, entry.node)?;
                v.rmdir(dir, &entry.name)
            } else {
                v.unlink(dir, &entry.name)
            }
        });
        if let Err(e) = removed {
            break Err(e);
        }
    };
    v.releasedir(dh)?;
    result
}

fn kind_of(kind: FileKind) -> Kind {
    match kind {
        FileKind::File => Kind::File,
        FileKind::Dir => Kind::Dir,
        FileKind::Symlink => Kind::Symlink,
        FileKind::Fifo => Kind::Fifo,
        _ => Kind::Other,
    }
}

/// The whole tree of a volume. Also checks the volume against itself: a listing's node and
/// kind must be what a lookup of the name says (d_ino = st_ino), and `getattr` of the node
/// what the lookup returned.
pub fn snapshot_volume(v: &Volume, flushed: bool) -> Snapshot {
    let mut snap = Snapshot::default();
    match v.getattr(v.root()) {
        Ok(root) => visit(v, "/".into(), root, flushed, &mut snap),
        Err(e) => snap.problems.push(format!("/: getattr: {e}")),
    }
    snap
}

/// The attributes part of an entry.
fn entry_of(attr: &Attr) -> Entry {
    let mut entry = Entry::new(
        kind_of(attr.kind),
        attr.perm as u32,
        attr.uid,
        attr.gid,
        attr.nlink as u64,
        attr.node.0,
    );
    entry.size = attr.size;
    entry
}

fn visit(v: &Volume, key: String, attr: Attr, flushed: bool, snap: &mut Snapshot) {
    let kind = kind_of(attr.kind);
    let mut entry = entry_of(&attr);
    match v.getattr(attr.node) {
        Ok(again) if again != attr => snap
            .problems
            .push(format!("{key}: lookup gave {attr:?}, getattr {again:?}")),
        Ok(_) => {}
        Err(e) => snap.problems.push(format!("{key}: getattr: {e}")),
    }
    match v.listxattr(attr.node) {
        Ok(names) => {
            for name in names {
                match v.getxattr(attr.node, &name) {
                    Ok(value) => drop(entry.xattrs.insert(name, value)),
                    Err(e) => snap.problems.push(format!("{key}: getxattr: {e}")),
                }
            }
        }
        Err(e) => snap.problems.push(format!("{key}: listxattr: {e}")),
    }
    let mut children = Vec::new();
    let read = match kind {
        Kind::File => v
            .read(attr.node, 0, attr.size as usize)
            .map(|c| entry.content = c),
        Kind::Symlink => v.readlink(attr.node).map(|t| entry.target = t),
        Kind::Dir => v.list_dir(attr.node).map(|list| children = list),
        _ => Ok(()),
    };
    if let Err(e) = read {
        snap.problems.push(format!("{key}: reading: {e}"));
    }
    if kind == Kind::File {
        let problems = check_file(v, &attr, &entry.content, flushed);
        snap.problems
            .extend(problems.into_iter().map(|p| format!("{key}: {p}")));
    }
    entry.children = children.iter().map(|c| c.name.clone()).collect();
    snap.entries.insert(key.clone(), entry);
    for child in children {
        let name = String::from_utf8_lossy(&child.name).into_owned();
        let child_key = if key == "/" {
            format!("/{name}")
        } else {
            format!("{key}/{name}")
        };
        match v.lookup(attr.node, &child.name) {
            Ok(found) => {
                if found.node != child.node || found.kind != child.kind {
                    snap.problems.push(format!(
                        "{child_key}: listed as node {} {:?}, looked up as node {} {:?}",
                        child.node, child.kind, found.node, found.kind
                    ));
                }
                visit(v, child_key, found, flushed, snap);
            }
            Err(e) => snap
                .problems
                .push(format!("{child_key}: listed, but lookup fails: {e}")),
        }
    }
}
