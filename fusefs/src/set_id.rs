//! Set-user-ID and set-group-ID bits under `FUSE_HANDLE_KILLPRIV_V2`: the kernel leaves
//! dropping them to the filesystem, and says when only in part, so the rules are here.

use fuser::Request;
use tessera::SetAttr;

use crate::convert::caller;

/// Drops set-ID bits as `req`'s caller, and changes nothing else.
pub(crate) fn kill(req: &Request) -> SetAttr {
    SetAttr {
        kill_set_id: Some(caller(req)),
        ..SetAttr::default()
    }
}

/// `change` (a SETATTR) with the set-ID bits dropped where the kernel expects the filesystem
/// to drop them.
pub(crate) fn on_setattr(req: &Request, change: SetAttr) -> SetAttr {
    // Under KILLPRIV_V2 the kernel strips the mode it would have set to drop the bits
    // (file_remove_privs before fallocate or copy_file_range, chown to -1:-1) and sends what
    // is left: nothing, or (writeback cache, where the kernel keeps a file's times) only the
    // ctime. Such a SETATTR has no other sender (utimensat with both times UTIME_OMIT returns
    // before it reaches the filesystem).
    let without_ctime = SetAttr {
        ctime: None,
        ..change.clone()
    };
    if without_ctime == SetAttr::default() {
        return kill(req);
    }
    // A change of owner always drops them; a truncation only when the caller lacks
    // CAP_FSETID, which fuser does not pass on (FATTR_KILL_SUIDGID): root is taken to have
    // it, everyone else not to.
    let owner = change.uid.is_some() || change.gid.is_some();
    let truncation = change.size.is_some() && req.uid() != 0;
    SetAttr {
        kill_set_id: (owner || truncation).then(|| caller(req)),
        ..change
    }
}
