//! Changing the namespace of a writable layer: create, link, unlink, rmdir, rename. Names that
//! exist below the writable layer are hidden with whiteouts; names that exist only in it are
//! deleted. Every function runs inside one metadata operation, so each is atomic.

use super::{Stack, check_name, copy_up, lookup, readdir};
use crate::error::{Error, Result};
use crate::format::records::Dirent;
use crate::ids::NodeId;
use crate::meta::Writer;
use crate::meta::records::NEXT_NODE;
use crate::tree::acl;
use crate::tree::node::{Content, FileKind, NodeRecord, TimeNs};

/// Who is asking, and when.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub uid: u32,
    pub gid: u32,
    pub now: TimeNs,
    /// See `Caller::umask`.
    pub umask: Option<u16>,
}

/// What a new node is.
#[derive(Debug, Clone)]
pub enum NewNode<'a> {
    File,
    Dir,
    Symlink(&'a [u8]),
    Device(FileKind, u64),
    Fifo,
    Socket,
}

/// Node ids start above the root's.
const FIRST_NODE: u64 = 2;

/// Tells whether a node is open in the view (open nodes become orphans instead of vanishing).
pub type IsOpen<'a> = &'a dyn Fn(NodeId) -> bool;

/// What became of a node that lost a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDrop {
    /// It still has other names.
    Remains,
    /// It lost its last name while open: kept (as an orphan) until its last close.
    Orphaned,
    /// It lost its last name and is gone from the view.
    Gone,
}

/// The node a removal took a name from, and what became of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlinked {
    pub node: NodeId,
    pub outcome: LinkDrop,
}

fn parent_dir(w: &Writer<'_>, stack: &Stack, parent: NodeId) -> Result<NodeRecord> {
    let record = copy_up::record(w, stack, parent)?;
    if record.kind != FileKind::Dir {
        return Err(Error::NotDir(format!("node {parent}")));
    }
    Ok(record)
}

fn name_text(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Creates a node named `name` in `parent`.
pub fn create(
    w: &mut Writer<'_>,
    stack: &Stack,
    parent: NodeId,
    name: &[u8],
    what: NewNode<'_>,
    perm: u16,
    ctx: Ctx,
) -> Result<(NodeId, NodeRecord)> {
    check_name(name)?;
    let mut dir = parent_dir(w, stack, parent)?;
    if lookup::entry(w, &stack.layers, parent, name)?.is_some() {
        return Err(Error::Exists(name_text(name)));
    }
    let (kind, content) = match what {
        NewNode::File => (FileKind::File, None),
        NewNode::Dir => (FileKind::Dir, Some(Content::Dir { parent })),
        NewNode::Symlink(target) => (FileKind::Symlink, Some(Content::Symlink(target.to_vec()))),
        NewNode::Device(kind, rdev) => {
            if kind == FileKind::CharDev && rdev == 0 {
                return Err(Error::PermissionDenied(
                    "a 0:0 character device is the whiteout encoding".into(),
                ));
            }
            (kind, Some(Content::Device(rdev)))
        }
        NewNode::Fifo => (FileKind::Fifo, None),
        NewNode::Socket => (FileKind::Socket, None),
    };
    let id = NodeId(w.next_id(NEXT_NODE, FIRST_NODE)?);
    let (perm, acls) = match kind {
        FileKind::Symlink => (perm, Vec::new()),
        _ => acl::on_create(
            dir.xattr(acl::DEFAULT),
            kind == FileKind::Dir,
            perm,
            ctx.umask,
        ),
    };
    let mut record = NodeRecord::new(kind, perm, ctx.uid, ctx.gid, ctx.now);
    if let Some(content) = content {
        record.content = content;
    }
    for (name, value) in acls {
        record.set_xattr(name, Some(&value));
    }
    if dir.perm & libc::S_ISGID as u16 != 0 {
        // BSD group semantics of setgid directories.
        record.gid = dir.gid;
        if kind == FileKind::Dir {
            record.perm |= libc::S_ISGID as u16;
        }
    }
    let upper = stack.upper()?;
    w.put_node(upper, id, &record);
    w.put_dirent(upper, parent, name, Dirent::Node(id, kind));
    dir.mtime = ctx.now;
    dir.ctime = ctx.now;
    if kind == FileKind::Dir {
        dir.nlink += 1;
    }
    copy_up::store(w, stack, parent, &dir)?;
    Ok((id, record))
}

/// Adds the name `name` in `parent` for the existing node `node`.
pub fn link(
    w: &mut Writer<'_>,
    stack: &Stack,
    node: NodeId,
    parent: NodeId,
    name: &[u8],
    ctx: Ctx,
) -> Result<NodeRecord> {
    check_name(name)?;
    let mut record = copy_up::record(w, stack, node)?;
    // An existing name wins over a directory source (EEXIST before EPERM, as link(2) checks).
    let mut dir = parent_dir(w, stack, parent)?;
    if lookup::entry(w, &stack.layers, parent, name)?.is_some() {
        return Err(Error::Exists(name_text(name)));
    }
    if record.kind == FileKind::Dir {
        return Err(Error::PermissionDenied("hard links to directories".into()));
    }
    record.nlink += 1;
    record.ctime = ctx.now;
    copy_up::store(w, stack, node, &record)?;
    w.put_dirent(
        stack.upper()?,
        parent,
        name,
        Dirent::Node(node, record.kind),
    );
    dir.mtime = ctx.now;
    dir.ctime = ctx.now;
    copy_up::store(w, stack, parent, &dir)?;
    Ok(record)
}

/// Removes a name from the view: a whiteout when a lower layer has it, else the entry goes.
fn remove_name(w: &mut Writer<'_>, stack: &Stack, parent: NodeId, name: &[u8]) -> Result<()> {
    let upper = stack.upper()?;
    if lookup::entry(w, stack.lower(), parent, name)?.is_some() {
        w.put_dirent(upper, parent, name, Dirent::Whiteout);
    } else {
        w.delete_dirent(upper, parent, name);
    }
    Ok(())
}

/// Records that `node` lost a name. At zero names it becomes an orphan when open, else its
/// writable-layer record goes.
fn drop_link(
    w: &mut Writer<'_>,
    stack: &Stack,
    node: NodeId,
    mut record: NodeRecord,
    is_open: IsOpen<'_>,
    now: TimeNs,
) -> Result<Unlinked> {
    let upper = stack.upper()?;
    record.nlink = if record.kind == FileKind::Dir {
        0
    } else {
        record.nlink.saturating_sub(1)
    };
    record.ctime = now;
    let outcome = if record.nlink > 0 {
        w.put_node(upper, node, &record);
        LinkDrop::Remains
    } else if is_open(node) {
        w.put_node(upper, node, &record);
        w.put_orphan(upper, node);
        LinkDrop::Orphaned
    } else {
        w.delete_node(upper, node);
        LinkDrop::Gone
    };
    Ok(Unlinked { node, outcome })
}

/// Removes a non-directory name.
pub fn unlink(
    w: &mut Writer<'_>,
    stack: &Stack,
    parent: NodeId,
    name: &[u8],
    is_open: IsOpen<'_>,
    ctx: Ctx,
) -> Result<Unlinked> {
    check_name(name)?;
    let mut dir = parent_dir(w, stack, parent)?;
    let (node, kind) = lookup::entry(w, &stack.layers, parent, name)?
        .ok_or_else(|| Error::NotFound(name_text(name)))?;
    if kind == FileKind::Dir {
        return Err(Error::IsDir(name_text(name)));
    }
    let record = lookup::existing(w, &stack.layers, node)?;
    remove_name(w, stack, parent, name)?;
    let unlinked = drop_link(w, stack, node, record, is_open, ctx.now)?;
    dir.mtime = ctx.now;
    dir.ctime = ctx.now;
    copy_up::store(w, stack, parent, &dir)?;
    Ok(unlinked)
}

/// Removes an empty directory.
pub fn rmdir(
    w: &mut Writer<'_>,
    stack: &Stack,
    parent: NodeId,
    name: &[u8],
    is_open: IsOpen<'_>,
    ctx: Ctx,
) -> Result<Unlinked> {
    check_name(name)?;
    let mut dir = parent_dir(w, stack, parent)?;
    let (node, kind) = lookup::entry(w, &stack.layers, parent, name)?
        .ok_or_else(|| Error::NotFound(name_text(name)))?;
    if kind != FileKind::Dir {
        return Err(Error::NotDir(name_text(name)));
    }
    if !readdir::is_empty(w, &stack.layers, node)? {
        return Err(Error::NotEmpty(name_text(name)));
    }
    let record = lookup::existing(w, &stack.layers, node)?;
    remove_name(w, stack, parent, name)?;
    let unlinked = drop_link(w, stack, node, record, is_open, ctx.now)?;
    dir.nlink = dir.nlink.saturating_sub(1);
    dir.mtime = ctx.now;
    dir.ctime = ctx.now;
    copy_up::store(w, stack, parent, &dir)?;
    Ok(unlinked)
}

/// `renameat2` flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// Fail with `Exists` when the target exists (RENAME_NOREPLACE).
    pub noreplace: bool,
    /// Swap the two names atomically (RENAME_EXCHANGE).
    pub exchange: bool,
}

/// Renames `parent/name` to `new_parent/new_name`. Returns the node the rename replaced, if any.
#[allow(clippy::too_many_arguments)]
pub fn rename(
    w: &mut Writer<'_>,
    stack: &Stack,
    parent: NodeId,
    name: &[u8],
    new_parent: NodeId,
    new_name: &[u8],
    flags: RenameFlags,
    is_open: IsOpen<'_>,
    ctx: Ctx,
) -> Result<Option<Unlinked>> {
    check_name(name)?;
    if flags.noreplace && flags.exchange {
        return Err(Error::InvalidInput(
            "RENAME_NOREPLACE with RENAME_EXCHANGE".into(),
        ));
    }
    parent_dir(w, stack, parent)?;
    parent_dir(w, stack, new_parent)?;
    let layers = &stack.layers;
    let (src, src_kind) =
        lookup::entry(w, layers, parent, name)?.ok_or_else(|| Error::NotFound(name_text(name)))?;
    // The new name is checked once the source is found (rename(2) answers ENOENT first).
    check_name(new_name)?;
    let dst = lookup::entry(w, layers, new_parent, new_name)?;
    if flags.exchange {
        let (dst, dst_kind) = dst.ok_or_else(|| Error::NotFound(name_text(new_name)))?;
        return exchange(
            w,
            stack,
            (parent, name, src, src_kind),
            (new_parent, new_name, dst, dst_kind),
            ctx,
        )
        .map(|()| None);
    }
    if let Some((dst_node, _)) = dst {
        if flags.noreplace {
            return Err(Error::Exists(name_text(new_name)));
        }
        if dst_node == src {
            return Ok(None); // two names of one node: POSIX says do nothing
        }
    }
    if let Some((dst_node, FileKind::Dir)) = dst
        && lookup::is_ancestor(w, layers, dst_node, parent)?
    {
        // The target holds the source, so it is not empty (rename(2) answers ENOTEMPTY).
        return Err(Error::NotEmpty(name_text(new_name)));
    }
    if src_kind == FileKind::Dir {
        if lookup::is_ancestor(w, layers, src, new_parent)? {
            return Err(Error::InvalidInput(format!(
                "cannot move directory {} into itself",
                name_text(name)
            )));
        }
        if let Some((dst_node, dst_kind)) = dst {
            if dst_kind != FileKind::Dir {
                return Err(Error::NotDir(name_text(new_name)));
            }
            if !readdir::is_empty(w, layers, dst_node)? {
                return Err(Error::NotEmpty(name_text(new_name)));
            }
        }
    } else if let Some((_, FileKind::Dir)) = dst {
        return Err(Error::IsDir(name_text(new_name)));
    }

    let replaced = match dst {
        Some((node, _)) => Some((node, lookup::existing(w, layers, node)?)),
        None => None,
    };
    remove_name(w, stack, parent, name)?;
    w.put_dirent(
        stack.upper()?,
        new_parent,
        new_name,
        Dirent::Node(src, src_kind),
    );
    let mut moved = lookup::existing(w, layers, src)?;
    moved.ctime = ctx.now;
    if let Content::Dir { parent: p } = &mut moved.content {
        *p = new_parent;
    }
    copy_up::store(w, stack, src, &moved)?;
    let unlinked = match replaced {
        Some((node, record)) => Some(drop_link(w, stack, node, record, is_open, ctx.now)?),
        None => None,
    };

    // Directory link counts: the source parent loses a subdirectory, the target gains one
    // (unless it replaced one).
    let dirs_moved = (src_kind == FileKind::Dir) as i64;
    let dir_replaced = matches!(dst, Some((_, FileKind::Dir))) as i64;
    adjust_parent(w, stack, parent, -dirs_moved, ctx.now)?;
    adjust_parent(w, stack, new_parent, dirs_moved - dir_replaced, ctx.now)?;
    Ok(unlinked)
}

/// Swaps two names (RENAME_EXCHANGE).
fn exchange(
    w: &mut Writer<'_>,
    stack: &Stack,
    a: (NodeId, &[u8], NodeId, FileKind),
    b: (NodeId, &[u8], NodeId, FileKind),
    ctx: Ctx,
) -> Result<()> {
    let layers = &stack.layers;
    let (a_parent, a_name, a_node, a_kind) = a;
    let (b_parent, b_name, b_node, b_kind) = b;
    if a_node == b_node {
        return Ok(());
    }
    if (a_kind == FileKind::Dir && lookup::is_ancestor(w, layers, a_node, b_parent)?)
        || (b_kind == FileKind::Dir && lookup::is_ancestor(w, layers, b_node, a_parent)?)
    {
        return Err(Error::InvalidInput(
            "cannot move a directory into itself".into(),
        ));
    }
    let upper = stack.upper()?;
    w.put_dirent(upper, a_parent, a_name, Dirent::Node(b_node, b_kind));
    w.put_dirent(upper, b_parent, b_name, Dirent::Node(a_node, a_kind));
    for (node, new_parent) in [(a_node, b_parent), (b_node, a_parent)] {
        let mut record = lookup::existing(w, layers, node)?;
        record.ctime = ctx.now;
        if let Content::Dir { parent } = &mut record.content {
            *parent = new_parent;
        }
        copy_up::store(w, stack, node, &record)?;
    }
    let delta = (a_kind == FileKind::Dir) as i64 - (b_kind == FileKind::Dir) as i64;
    if a_parent == b_parent {
        adjust_parent(w, stack, a_parent, 0, ctx.now)
    } else {
        adjust_parent(w, stack, a_parent, -delta, ctx.now)?;
        adjust_parent(w, stack, b_parent, delta, ctx.now)
    }
}

/// Touches a parent directory's times and changes its link count by `nlink_delta`.
fn adjust_parent(
    w: &mut Writer<'_>,
    stack: &Stack,
    dir: NodeId,
    nlink_delta: i64,
    now: TimeNs,
) -> Result<()> {
    let mut record = copy_up::record(w, stack, dir)?;
    record.nlink = (record.nlink as i64 + nlink_delta).max(1) as u32;
    record.mtime = now;
    record.ctime = now;
    copy_up::store(w, stack, dir, &record)
}
