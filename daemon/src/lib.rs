//! The store's daemon and the vocabulary it is driven with, as a library: the CLI, the
//! containerd snapshotter and tests talk to a store through it.
//!
//! - [`Request`]: what can be asked of a store, as data; [`service::execute`] carries one out
//!   against an open `Store` and answers a typed [`Reply`] (`reply`).
//! - [`server`]: the daemon, the one process that owns an open store and serves every mount
//!   of it, listening on the store's control socket (`protocol`: one JSON line each way).
//! - [`keeper`]: the process that keeps mounts up while daemons come and go ([`kept`]: a
//!   daemon's link to it).
//! - [`client`]: runs a request through the store's daemon when one runs, else in the
//!   caller's process (the same `execute` either way); starts a daemon.

pub mod client;
pub mod keeper;
pub mod kept;
pub mod malloc;
pub mod paths;
pub mod protocol;
pub mod reply;
pub mod server;
pub mod service;

pub use reply::{FromReply, Reply};
pub use server::{DaemonOptions, MountRequest};
pub use service::Request;

/// An error and its causes on one line.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
