//! Namespace and metadata operations of a view: create, mkdir, mknod, symlink, link, unlink,
//! rmdir, rename, setattr and extended attributes. Each is one atomic metadata operation; a
//! change to a lower node copies up its record only, whatever the file's size.

use super::attr::set_id_bits_to_drop;
use super::{Attr, Caller, SetAttr, Volume, XattrMode, now_ns};
use crate::error::{Error, Result};
use crate::ids::NodeId;
use crate::layer::mutate::{self, LinkDrop, NewNode, RenameFlags, Unlinked};
use crate::layer::{Stack, copy_up, lookup};
use crate::tree::acl::{self, Acl};
use crate::tree::node::{FileKind, NodeRecord};

/// The longest xattr name and value Linux allows.
const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65536;

impl Volume {
    fn create_node(
        &self,
        parent: NodeId,
        name: &[u8],
        what: NewNode<'_>,
        perm: u16,
        caller: Caller,
    ) -> Result<Attr> {
        let stack = self.stack();
        let ctx = Self::ctx(caller);
        let (id, record) = self
            .shared
            .store
            .meta()
            .write(|w| mutate::create(w, &stack, parent, name, what, perm, ctx))?;
        Ok(self.attr_of(id, &record))
    }

    /// Creates an empty regular file.
    pub fn create(&self, parent: NodeId, name: &[u8], perm: u16, caller: Caller) -> Result<Attr> {
        self.create_node(parent, name, NewNode::File, perm, caller)
    }

    pub fn mkdir(&self, parent: NodeId, name: &[u8], perm: u16, caller: Caller) -> Result<Attr> {
        self.create_node(parent, name, NewNode::Dir, perm, caller)
    }

    pub fn symlink(
        &self,
        parent: NodeId,
        name: &[u8],
        target: &[u8],
        caller: Caller,
    ) -> Result<Attr> {
        if target.is_empty() || target.len() > 4095 {
            return Err(Error::InvalidInput(
                "symlink target must be 1 to 4095 bytes".into(),
            ));
        }
        self.create_node(parent, name, NewNode::Symlink(target), 0o777, caller)
    }

    /// Creates a node from a full mode (`S_IFREG`, `S_IFCHR`, `S_IFBLK`, `S_IFIFO`,
    /// `S_IFSOCK`, or `S_IFDIR`) and a device number.
    pub fn mknod(
        &self,
        parent: NodeId,
        name: &[u8],
        mode: u32,
        rdev: u64,
        caller: Caller,
    ) -> Result<Attr> {
        let kind = FileKind::from_mode(mode)
            .ok_or_else(|| Error::InvalidInput(format!("mode {mode:o} names no file type")))?;
        let what = match kind {
            FileKind::File => NewNode::File,
            FileKind::Dir => NewNode::Dir,
            FileKind::CharDev | FileKind::BlockDev => NewNode::Device(kind, rdev),
            FileKind::Fifo => NewNode::Fifo,
            FileKind::Socket => NewNode::Socket,
            FileKind::Symlink => {
                return Err(Error::InvalidInput("mknod cannot make symlinks".into()));
            }
        };
        self.create_node(parent, name, what, (mode & 0o7777) as u16, caller)
    }

    /// Adds a hard link `parent/name` to `node`.
    pub fn link(&self, node: NodeId, parent: NodeId, name: &[u8]) -> Result<Attr> {
        let stack = self.stack();
        let ctx = Self::ctx(Caller::ROOT);
        let record = self
            .shared
            .store
            .meta()
            .write(|w| mutate::link(w, &stack, node, parent, name, ctx))?;
        Ok(self.attr_of(node, &record))
    }

    fn after_removal(&self, removed: Option<Unlinked>) {
        if let Some(Unlinked {
            node,
            outcome: LinkDrop::Gone,
        }) = removed
        {
            self.forget_node(node);
        }
    }

    pub fn unlink(&self, parent: NodeId, name: &[u8]) -> Result<()> {
        self.shared.limit.note_freed();
        let stack = self.stack();
        let ctx = Self::ctx(Caller::ROOT);
        let is_open = |n| self.is_open(n);
        let removed = self
            .shared
            .store
            .meta()
            .write(|w| mutate::unlink(w, &stack, parent, name, &is_open, ctx))?;
        drop(stack);
        self.after_removal(Some(removed));
        Ok(())
    }

    pub fn rmdir(&self, parent: NodeId, name: &[u8]) -> Result<()> {
        self.shared.limit.note_freed();
        let stack = self.stack();
        let ctx = Self::ctx(Caller::ROOT);
        let is_open = |n| self.is_open(n);
        let removed = self
            .shared
            .store
            .meta()
            .write(|w| mutate::rmdir(w, &stack, parent, name, &is_open, ctx))?;
        drop(stack);
        self.after_removal(Some(removed));
        Ok(())
    }

    pub fn rename(
        &self,
        parent: NodeId,
        name: &[u8],
        new_parent: NodeId,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        self.shared.limit.note_freed();
        let stack = self.stack();
        let ctx = Self::ctx(Caller::ROOT);
        let is_open = |n| self.is_open(n);
        let removed = self.shared.store.meta().write(|w| {
            mutate::rename(
                w, &stack, parent, name, new_parent, new_name, flags, &is_open, ctx,
            )
        })?;
        drop(stack);
        self.after_removal(removed);
        Ok(())
    }

    /// Changes attributes. A size change truncates or extends a regular file.
    pub fn setattr(&self, node: NodeId, change: &SetAttr) -> Result<Attr> {
        self.shared.limit.note_freed();
        let stack = self.stack();
        stack.upper()?;
        // Only dropping set-ID bits (asked on every unprivileged write in direct-I/O mode):
        // nothing to write, not even ctime, when there are none.
        if let Some(caller) = change.kill_set_id
            && *change
                == (SetAttr {
                    kill_set_id: Some(caller),
                    ..SetAttr::default()
                })
        {
            let record = self.record(&stack, node)?;
            if set_id_bits_to_drop(&record, caller) == 0 {
                return Ok(self.attr_of(node, &record));
            }
        }
        if let Some(attr) = self.set_write_time(&stack, node, change)? {
            return Ok(attr);
        }
        let now = change.ctime.unwrap_or_else(now_ns);
        // A file's unflushed state is locked first (lock order: node, then metadata).
        let state = match self.record(&stack, node)?.kind {
            FileKind::File => Some(self.state(&stack, node)?),
            FileKind::Dir if change.size.is_some() => {
                return Err(Error::IsDir(format!("node {node}")));
            }
            _ if change.size.is_some() => {
                return Err(Error::InvalidInput(format!(
                    "node {node} is not a regular file"
                )));
            }
            _ => None,
        };
        if let (Some(size), Some(_)) = (change.size, &state) {
            self.truncate(&stack, node, size)?;
        }
        let mut fd = state.as_ref().map(|s| s.data.lock().unwrap());
        let record = self.shared.store.meta().write(|w| {
            let mut record = copy_up::record(w, &stack, node)?;
            // Before the owner changes: the group that counts is the file's group now.
            if let Some(caller) = change.kill_set_id {
                record.perm &= !set_id_bits_to_drop(&record, caller);
            }
            if let Some(mode) = change.mode {
                record.perm = (mode & 0o7777) as u16;
                chmod_acl(&mut record);
            }
            if let Some(uid) = change.uid {
                record.uid = uid;
            }
            if let Some(gid) = change.gid {
                record.gid = gid;
            }
            if let Some(atime) = change.atime {
                record.atime = atime;
            }
            if let Some(mtime) = change.mtime {
                record.mtime = mtime;
            }
            record.ctime = now;
            copy_up::store(w, &stack, node, &record)?;
            Ok(record)
        })?;
        if let Some(fd) = fd.as_mut() {
            fd.copied_up = true;
            match (change.mtime, fd.mtime) {
                // An explicit mtime wins over the time of unflushed writes.
                (Some(_), Some(_)) => fd.mtime = None,
                (None, Some(_)) => fd.mtime = Some(now),
                _ => {}
            }
        }
        drop(fd);
        Ok(self.attr_of(node, &record))
    }

    /// The kernel's time stamp of writes it cached — a writeback-cache mount sends a file's
    /// mtime and ctime, equal, after writing its pages back — kept with the file's unflushed
    /// writes, as the time of a write through the volume is: no metadata change of its own, so
    /// an fsync after it still goes through the intent log. `None`: not that case.
    fn set_write_time(
        &self,
        stack: &Stack,
        node: NodeId,
        change: &SetAttr,
    ) -> Result<Option<Attr>> {
        let (Some(mtime), Some(ctime)) = (change.mtime, change.ctime) else {
            return Ok(None);
        };
        let times_only = SetAttr {
            mtime: Some(mtime),
            ctime: Some(ctime),
            ..SetAttr::default()
        };
        if mtime != ctime || *change != times_only {
            return Ok(None);
        }
        let Some(state) = self.existing_state(node).filter(|s| s.is_file) else {
            return Ok(None);
        };
        state.data.lock().unwrap().mtime = Some(mtime);
        let record = self.record(stack, node)?;
        Ok(Some(self.attr_of(node, &record)))
    }

    pub fn getxattr(&self, node: NodeId, name: &[u8]) -> Result<Vec<u8>> {
        let stack = self.stack();
        self.record(&stack, node)?
            .xattr(name)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::NoAttr(String::from_utf8_lossy(name).into_owned()))
    }

    pub fn listxattr(&self, node: NodeId) -> Result<Vec<Vec<u8>>> {
        let stack = self.stack();
        Ok(self
            .record(&stack, node)?
            .xattrs
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    pub fn setxattr(&self, node: NodeId, name: &[u8], value: &[u8], mode: XattrMode) -> Result<()> {
        check_xattr_name(name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(Error::InvalidInput("xattr value larger than 64 KiB".into()));
        }
        self.change_xattr(node, name, Some(value), mode)
    }

    pub fn removexattr(&self, node: NodeId, name: &[u8]) -> Result<()> {
        check_xattr_name(name)?;
        self.change_xattr(node, name, None, XattrMode::Replace)
    }

    fn change_xattr(
        &self,
        node: NodeId,
        name: &[u8],
        value: Option<&[u8]>,
        mode: XattrMode,
    ) -> Result<()> {
        let stack = self.stack();
        let now = now_ns();
        self.shared.store.meta().write(|w| {
            let mut record = copy_up::record(w, &stack, node)?;
            let exists = record.xattr(name).is_some();
            let text = || String::from_utf8_lossy(name).into_owned();
            match mode {
                XattrMode::Create if exists => return Err(Error::Exists(text())),
                XattrMode::Replace if !exists => return Err(Error::NoAttr(text())),
                _ => {}
            }
            let value = match value {
                Some(bytes) if name == acl::ACCESS => set_access_acl(&mut record, bytes)?,
                Some(bytes) if name == acl::DEFAULT => Some(Acl::decode(bytes).map(|_| bytes)?),
                value => value,
            };
            record.set_xattr(name, value);
            record.ctime = now;
            copy_up::store(w, &stack, node, &record)
        })
    }

    /// Whether `node` is visible under `parent` as `name` (for tests and tools).
    pub fn exists(&self, parent: NodeId, name: &[u8]) -> Result<bool> {
        let stack = self.stack();
        let r = self.shared.store.meta().read();
        Ok(lookup::entry(&r, &stack.layers, parent, name)?.is_some())
    }
}

/// Setting an access ACL sets the mode's permission bits; an ACL the mode says exactly is not
/// stored (as ext4 does). Returns what to store.
fn set_access_acl<'a>(record: &mut NodeRecord, bytes: &'a [u8]) -> Result<Option<&'a [u8]>> {
    let acl = Acl::decode(bytes)?;
    record.perm = (record.perm & !0o777) | acl.perm_bits();
    Ok((!acl.is_minimal()).then_some(bytes))
}

/// chmod of a node with an access ACL: its owner, mask (or group) and other entries follow.
fn chmod_acl(record: &mut NodeRecord) {
    let Some(bytes) = record.xattr(acl::ACCESS) else {
        return;
    };
    match Acl::decode(bytes) {
        Ok(mut acl) => {
            acl.chmod(record.perm & 0o777);
            record.set_xattr(acl::ACCESS, Some(&acl.encode()));
        }
        Err(e) => tracing::warn!("chmod leaves a malformed access ACL as it is: {e}"),
    }
}

/// xattr names must carry a namespace Linux knows.
fn check_xattr_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Error::InvalidInput(
            "xattr name must be 1 to 255 bytes".into(),
        ));
    }
    let known = [&b"user."[..], b"trusted.", b"security.", b"system."];
    if !known
        .iter()
        .any(|ns| name.starts_with(ns) && name.len() > ns.len())
    {
        return Err(Error::Unsupported(format!(
            "xattr namespace of {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}
