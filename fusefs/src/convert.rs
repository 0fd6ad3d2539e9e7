//! Conversions between fuser's request types and the engine's, shared by the methods of
//! `TesseraFs`: node ids, callers, times, fallocate modes, empty replies, and the sized
//! replies of getxattr/listxattr.

use std::time::SystemTime;

use fuser::{Errno, INodeNo, ReplyEmpty, ReplyXattr, Request, TimeOrNow};
use tessera::{Caller, Fallocate, NodeId};

use crate::attr;
use crate::errno::errno;

pub(crate) fn node(ino: INodeNo) -> NodeId {
    NodeId(ino.0)
}

/// The fallocate modes the engine implements (COLLAPSE_RANGE and INSERT_RANGE never reach a
/// FUSE server: the kernel refuses them).
pub(crate) fn fallocate_mode(mode: i32) -> Option<Fallocate> {
    Some(match mode {
        0 => Fallocate::Allocate,
        libc::FALLOC_FL_KEEP_SIZE => Fallocate::KeepSize,
        m if m == libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE => Fallocate::PunchHole,
        libc::FALLOC_FL_ZERO_RANGE => Fallocate::ZeroRange { keep_size: false },
        m if m == libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE => {
            Fallocate::ZeroRange { keep_size: true }
        }
        _ => return None,
    })
}

/// The caller of a request that creates a node, with the umask still to apply when the kernel
/// left it to us (FUSE_DONT_MASK).
pub(crate) fn creator(req: &Request, umask: u32, dont_mask: bool) -> Caller {
    Caller {
        umask: dont_mask.then_some((umask & 0o777) as u16),
        ..caller(req)
    }
}

pub(crate) fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        umask: None,
    }
}

pub(crate) fn ns(t: TimeOrNow) -> i64 {
    match t {
        TimeOrNow::SpecificTime(t) => attr::nanos(t),
        TimeOrNow::Now => attr::nanos(SystemTime::now()),
    }
}

/// Replies to getxattr/listxattr: the size when asked for it, ERANGE when it does not fit.
pub(crate) fn reply_sized(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if (size as usize) < data.len() {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

/// Replies to a request whose answer is success or an errno.
pub(crate) fn reply_empty(result: tessera::Result<()>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}
