//! The one mapping from engine errors to errno.

use fuser::Errno;
use tessera::{Error, ErrorKind};

pub fn errno(error: &Error) -> Errno {
    let code = match error.kind() {
        ErrorKind::NotFound => libc::ENOENT,
        ErrorKind::Exists => libc::EEXIST,
        ErrorKind::NotEmpty => libc::ENOTEMPTY,
        ErrorKind::NotDir => libc::ENOTDIR,
        ErrorKind::IsDir => libc::EISDIR,
        ErrorKind::InvalidInput => libc::EINVAL,
        ErrorKind::NameTooLong => libc::ENAMETOOLONG,
        ErrorKind::PermissionDenied => libc::EPERM,
        ErrorKind::ReadOnly => libc::EROFS,
        ErrorKind::CrossDevice => libc::EXDEV,
        ErrorKind::Busy | ErrorKind::Locked => libc::EBUSY,
        ErrorKind::NoSpace => libc::ENOSPC,
        ErrorKind::Unsupported => libc::EOPNOTSUPP,
        ErrorKind::NoAttr => libc::ENODATA,
        ErrorKind::TooLarge => libc::EFBIG,
        ErrorKind::Corrupt => libc::EIO,
        ErrorKind::Io => error.raw_os_error().unwrap_or(libc::EIO),
    };
    if matches!(error.kind(), ErrorKind::Corrupt | ErrorKind::Io) {
        tracing::error!("I/O error reported to the kernel: {error}");
    }
    Errno::from_i32(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_their_errno() {
        let cases = [
            (Error::NotFound("x".into()), libc::ENOENT),
            (Error::NameTooLong(300), libc::ENAMETOOLONG),
            (Error::NoAttr("user.x".into()), libc::ENODATA),
            (Error::Corrupt("pack 1".into()), libc::EIO),
            (
                Error::io("pack", std::io::Error::from_raw_os_error(libc::ENOSPC)),
                libc::ENOSPC,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(errno(&error), Errno::from_i32(code), "{error}");
        }
    }
}
