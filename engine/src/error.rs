//! The engine's one error type. Frontends match on [`Error::kind`] (the FUSE adapter maps kinds to
//! errno, the CLI prints the message); the message always names the object that failed.

use std::io;

/// What went wrong, coarsely, for frontends that must pick an errno or an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Exists,
    NotEmpty,
    NotDir,
    IsDir,
    InvalidInput,
    NameTooLong,
    PermissionDenied,
    ReadOnly,
    CrossDevice,
    Busy,
    Locked,
    NoSpace,
    Unsupported,
    NoAttr,
    TooLarge,
    Corrupt,
    Io,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("directory {0} is not empty")]
    NotEmpty(String),
    #[error("{0} is not a directory")]
    NotDir(String),
    #[error("{0} is a directory")]
    IsDir(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("name too long ({0} bytes, the limit is 255)")]
    NameTooLong(usize),
    #[error("operation not permitted: {0}")]
    PermissionDenied(String),
    #[error("{0} is read-only")]
    ReadOnly(String),
    #[error("cannot move across devices: {0}")]
    CrossDevice(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Locked(String),
    #[error("no space left: {0}")]
    NoSpace(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("no extended attribute {0}")]
    NoAttr(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A remote (object store) failed to answer: unreachable, refused, or a server error.
    #[error("remote: {0}")]
    Remote(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Exists(_) => ErrorKind::Exists,
            Error::NotEmpty(_) => ErrorKind::NotEmpty,
            Error::NotDir(_) => ErrorKind::NotDir,
            Error::IsDir(_) => ErrorKind::IsDir,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::NameTooLong(_) => ErrorKind::NameTooLong,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::ReadOnly(_) => ErrorKind::ReadOnly,
            Error::CrossDevice(_) => ErrorKind::CrossDevice,
            Error::Busy(_) => ErrorKind::Busy,
            Error::Locked(_) => ErrorKind::Locked,
            Error::NoSpace(_) => ErrorKind::NoSpace,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::NoAttr(_) => ErrorKind::NoAttr,
            Error::TooLarge(_) => ErrorKind::TooLarge,
            Error::Corrupt(_) => ErrorKind::Corrupt,
            Error::Remote(_) => ErrorKind::Io,
            Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                ErrorKind::NoSpace
            }
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    /// Wraps an I/O error with the object it concerns (a path, a pack, a table).
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The raw OS error code when this error carries one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Puts `what` in front of an error's message, keeping its kind.
    pub fn within(self, what: &str) -> Error {
        match self {
            Error::InvalidInput(m) => Error::InvalidInput(format!("{what}: {m}")),
            Error::Unsupported(m) => Error::Unsupported(format!("{what}: {m}")),
            Error::NotFound(m) => Error::NotFound(format!("{what}: {m}")),
            Error::Corrupt(m) => Error::Corrupt(format!("{what}: {m}")),
            Error::Io { context, source } => Error::Io {
                context: format!("{what}: {context}"),
                source,
            },
            other => other,
        }
    }
}

/// Adds the object an I/O error concerns, as `anyhow::Context` does for the CLI.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                let text = e.to_string();
                match e.into() {
                    redb::Error::Io(source) => Error::io("metadata database", source),
                    redb::Error::Corrupted(m) => Error::Corrupt(format!("metadata database: {m}")),
                    _ => Error::Corrupt(format!("metadata database: {text}")),
                }
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
