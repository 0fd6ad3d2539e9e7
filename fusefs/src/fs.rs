//! The `fuser::Filesystem` implementation: every method decodes its arguments, calls the
//! volume (through a fallible helper where there is more than one step), and replies. Node ids
//! are inode numbers and volume handles are FUSE file handles, so there is no translation
//! table to keep: the kernel's `forget` needs no bookkeeping.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileHandle, FopenFlags, INodeNo, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tessera::volume::{DirHandle, FileHandle as VolumeHandle};
use tessera::{SeekTarget, SetAttr, Volume, XattrMode};

use crate::MountConfig;
use crate::attr::{self, ATTR_TTL, ENTRY_TTL, GENERATION, NEGATIVE_TTL};
use crate::convert::{caller, creator, fallocate_mode, node, ns, reply_empty, reply_sized};
use crate::errno::errno;
use crate::handover::{Handover, UNIQUE_RESEND};
use crate::negotiate::negotiate;
use crate::writeback::Writeback;
use crate::{dir_reply, set_id};

pub struct TesseraFs {
    volume: Volume,
    config: MountConfig,
    writeback: Arc<Writeback>,
    /// The kernel leaves the umask to us (FUSE_DONT_MASK): a default ACL replaces it.
    dont_mask: bool,
    handover: Arc<Handover>,
}

impl TesseraFs {
    pub fn new(
        volume: Volume,
        config: MountConfig,
        writeback: Arc<Writeback>,
        handover: Arc<Handover>,
    ) -> TesseraFs {
        TesseraFs {
            volume,
            config,
            writeback,
            dont_mask: handover.dont_mask(),
            handover,
        }
    }

    fn open_flags(&self) -> FopenFlags {
        if self.config.share_memory {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        }
    }

    fn reply_entry(&self, result: tessera::Result<tessera::Attr>, reply: ReplyEntry) {
        match result {
            Ok(attr) => reply.entry(&ENTRY_TTL, &attr::file_attr(&attr), GENERATION),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// An fsync that cannot vouch for what a killed predecessor lost (see `handover`).
    fn fsync_lost(&self, req: &Request, fh: FileHandle) -> bool {
        let resent = req.unique().0 & UNIQUE_RESEND != 0;
        self.handover.fsync_lost(&self.volume, fh.0, resent)
    }

    fn setattr_change(&self, ino: INodeNo, change: SetAttr) -> tessera::Result<tessera::Attr> {
        self.volume.setattr(node(ino), &change)
    }
}

impl fuser::Filesystem for TesseraFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        self.dont_mask = negotiate(&self.config, config);
        self.handover.set_dont_mask(self.dont_mask);
        Ok(())
    }

    fn enter(&self) -> Option<Box<dyn std::any::Any + Send>> {
        Some(self.handover.enter())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.volume.sync() {
            tracing::error!("flushing at unmount failed: {e}");
        }
        self.writeback.mark_ended();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.volume.lookup(node(parent), name.as_bytes()) {
            Ok(attr) => reply.entry(&ENTRY_TTL, &attr::file_attr(&attr), GENERATION),
            Err(e) if e.kind() == tessera::ErrorKind::NotFound => {
                reply.entry(&NEGATIVE_TTL, &attr::negative(), GENERATION)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.volume.getattr(node(ino)) {
            Ok(attr) => reply.attr(&ATTR_TTL, &attr::file_attr(&attr)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mtime_ns = mtime.map(ns);
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(ns),
            mtime: mtime_ns,
            ctime: ctime.map(attr::nanos),
            kill_set_id: None,
        };
        let times_only = mtime_ns.is_some()
            && change.ctime.is_some()
            && change
                == SetAttr {
                    mtime: change.mtime,
                    ctime: change.ctime,
                    ..SetAttr::default()
                };
        let change = set_id::on_setattr(req, change);
        match self.setattr_change(ino, change) {
            Ok(attr) => reply.attr(&ATTR_TTL, &attr::file_attr(&attr)),
            // The kernel writes a file's times back after its last close, and the volume
            // forgets an unlinked file at its last close: for a file both gone and closed,
            // there is nothing to keep them on. (An error here would fail the next syncfs.)
            Err(e) if e.kind() == tessera::ErrorKind::NotFound && times_only => {
                reply.attr(&ATTR_TTL, &attr::gone(ino, mtime_ns.unwrap_or(0)))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.volume.readlink(node(ino)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let result = self.volume.mknod(
            node(parent),
            name.as_bytes(),
            mode,
            rdev as u64,
            creator(req, umask, self.dont_mask),
        );
        self.reply_entry(result, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let perm = (mode & 0o7777) as u16;
        let result = self.volume.mkdir(
            node(parent),
            name.as_bytes(),
            perm,
            creator(req, umask, self.dont_mask),
        );
        self.reply_entry(result, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.volume.unlink(node(parent), name.as_bytes()), reply)
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.volume.rmdir(node(parent), name.as_bytes()), reply)
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = self.volume.symlink(
            node(parent),
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
            caller(req),
        );
        self.reply_entry(result, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let flags = tessera::RenameFlags {
            noreplace: flags.contains(RenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(RenameFlags::RENAME_EXCHANGE),
        };
        let result = self.volume.rename(
            node(parent),
            name.as_bytes(),
            node(newparent),
            newname.as_bytes(),
            flags,
        );
        reply_empty(result, reply)
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = self
            .volume
            .link(node(ino), node(newparent), newname.as_bytes());
        self.reply_entry(result, reply);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let truncate = flags.0 & libc::O_TRUNC != 0;
        // As for a truncation by setattr (FUSE_OPEN_KILL_SUIDGID is not passed on either).
        if truncate
            && req.uid() != 0
            && let Err(e) = self.volume.setattr(node(ino), &set_id::kill(req))
        {
            return reply.error(errno(&e));
        }
        match self.volume.open(node(ino), truncate) {
            Ok(fh) => {
                self.writeback.opened(fh.0, node(ino), flags.0);
                reply.opened(FileHandle(fh.0), self.open_flags())
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.volume.read(node(ino), offset, size as usize) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if !self.config.test_write_delay.is_zero() {
            std::thread::sleep(self.config.test_write_delay);
        }
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID)
            && let Err(e) = self.volume.setattr(node(ino), &set_id::kill(req))
        {
            return reply.error(errno(&e));
        }
        match self.volume.write(node(ino), offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is not a durability point; it only reports a failed background flush.
        match self.volume.store().take_background_error_message() {
            Some(message) => {
                tracing::error!("reporting a background flush error at close: {message}");
                reply.error(Errno::EIO)
            }
            None => reply.ok(),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.writeback.released(fh.0);
        reply_empty(self.volume.release(VolumeHandle(fh.0)), reply)
    }

    fn fsync(&self, req: &Request, ino: INodeNo, fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        if self.fsync_lost(req, fh) {
            return reply.error(Errno::EIO);
        }
        reply_empty(self.volume.fsync(node(ino)), reply)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.volume.opendir(node(ino)) {
            Ok(dh) => reply.opened(FileHandle(dh.0), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        dir_reply::fill(&self.volume, ino, fh, offset, reply)
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        dir_reply::fill_plus(&self.volume, ino, fh, offset, reply)
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(self.volume.releasedir(DirHandle(fh.0)), reply)
    }

    fn fsyncdir(&self, req: &Request, _ino: INodeNo, fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        if self.fsync_lost(req, fh) {
            return reply.error(Errno::EIO);
        }
        reply_empty(self.volume.fsyncdir(), reply)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.volume.statfs() {
            Ok(s) => reply.statfs(
                s.blocks,
                s.blocks_free,
                s.blocks_available,
                s.files,
                s.files_free,
                s.block_size,
                s.name_max,
                s.block_size,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mode = match flags {
            0 => XattrMode::Any,
            libc::XATTR_CREATE => XattrMode::Create,
            libc::XATTR_REPLACE => XattrMode::Replace,
            _ => return reply.error(Errno::EINVAL),
        };
        reply_empty(
            self.volume
                .setxattr(node(ino), name.as_bytes(), value, mode),
            reply,
        )
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.volume.getxattr(node(ino), name.as_bytes()) {
            Ok(value) => reply_sized(reply, size, &value),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.volume.listxattr(node(ino)) {
            Ok(names) => {
                let mut list = Vec::new();
                for name in names {
                    list.extend_from_slice(&name);
                    list.push(0);
                }
                reply_sized(reply, size, &list)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.volume.removexattr(node(ino), name.as_bytes()), reply)
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The kernel checks permissions (default_permissions); only existence is ours.
        reply_empty(self.volume.getattr(node(ino)).map(drop), reply)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let perm = (mode & 0o7777) as u16;
        let created = self
            .volume
            .create(
                node(parent),
                name.as_bytes(),
                perm,
                creator(req, umask, self.dont_mask),
            )
            .and_then(|attr| Ok((self.volume.open(attr.node, false)?, attr)));
        match created {
            Ok((fh, attr)) => {
                self.writeback.opened(fh.0, attr.node, flags);
                reply.created(
                    &ENTRY_TTL,
                    &attr::file_attr(&attr),
                    GENERATION,
                    FileHandle(fh.0),
                    self.open_flags(),
                )
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some(mode) = fallocate_mode(mode) else {
            return reply.error(Errno::EOPNOTSUPP);
        };
        reply_empty(
            self.volume.fallocate(node(ino), mode, offset, length),
            reply,
        )
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let target = match whence {
            libc::SEEK_DATA => SeekTarget::Data,
            libc::SEEK_HOLE => SeekTarget::Hole,
            _ => return reply.error(Errno::EINVAL),
        };
        if offset < 0 {
            return reply.error(Errno::ENXIO);
        }
        self.writeback
            .seek(&self.volume, node(ino), offset as u64, target, reply);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let len = len.min(u32::MAX as u64 & !0xfff);
        match self
            .volume
            .copy_range(node(ino_in), offset_in, node(ino_out), offset_out, len)
        {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }
}
