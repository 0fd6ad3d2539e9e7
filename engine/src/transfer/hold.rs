//! Holds: what a store backed by a remote (`pull --lazy`) keeps of it. Such a store reads its
//! blocks from the remote's packs on demand, for as long as it holds the image — so
//! `gc --remote` must not delete those packs when their image is removed from the remote or
//! replaced there. Each backed store writes one object, `holds/ID` (ID: the store's, from
//! `STORE/remote/hold`), naming every pack it attached; `gc --remote` keeps the packs any hold
//! names, and `gc --remote --release-hold ID` drops the hold of a store that is gone for good
//! (a hold never expires by itself: a host that is off for a week still finds its blocks).
//!
//! A lazy pull writes its hold under a pull lease (`lease.rs`), after waiting for any gc under
//! way: a gc that started before sees the lease and deletes nothing; one that starts after
//! reads the hold. The hold names the packs holding the remote blocks the store's layers
//! reference (`Store::write_own_hold`, in transfer/mod.rs), so it shrinks as well as grows: it is rewritten at
//! every lazy pull and at every `tessera gc` of the store — a store that removed a lazily
//! pulled image lets its packs go at its next gc. Both compute and write it under the store's
//! `hold_lock`, so a gc cannot write a hold that misses an image a pull just published.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::remote::Remote;
use crate::store::remote::bucket::{self, PackName};

/// The object a backed store writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// The store's hold id (the object's name).
    pub store: String,
    /// The host that wrote it, for whoever wonders whose it is.
    pub host: String,
    /// The packs the store relies on.
    pub packs: Vec<String>,
}

/// A hold as `gc --remote` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldInfo {
    pub store: String,
    pub host: String,
    pub packs: usize,
    /// When it was last written, by the server's clock (ms since the epoch).
    pub written_ms: i64,
}

/// Writes (replaces) the hold of store `id` on the packs `packs`.
pub fn write_hold(remote: &Remote, id: &str, packs: &[PackName]) -> Result<()> {
    check_id(id)?;
    let hold = Hold {
        store: id.to_string(),
        host: host_name(),
        packs: packs.iter().map(|p| p.0.clone()).collect(),
    };
    let bytes = serde_json::to_vec(&hold)
        .map_err(|e| Error::InvalidInput(format!("encoding the hold of {id}: {e}")))?;
    remote.put(&bucket::hold_key(id), bytes)
}

/// Every hold on the remote, with when it was written.
pub fn read_holds(remote: &Remote) -> Result<Vec<(Hold, i64)>> {
    let mut holds = Vec::new();
    for listed in remote.list_detailed(&bucket::holds_dir())? {
        let key = bucket::hold_key(&listed.name);
        let bytes = match remote.get(&key) {
            Ok(bytes) => bytes,
            // Released since the listing.
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let hold: Hold = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Corrupt(format!(
                "hold {} on {} is not valid: {e} (release it with gc --remote --release-hold)",
                listed.name,
                remote.url()
            ))
        })?;
        holds.push((hold, listed.modified_ms));
    }
    Ok(holds)
}

/// Deletes the hold of store `id`; an error when there is none.
pub fn release_hold(remote: &Remote, id: &str) -> Result<()> {
    check_id(id)?;
    let key = bucket::hold_key(id);
    if !remote.exists(&key)? {
        return Err(Error::NotFound(format!("hold {id} on {}", remote.url())));
    }
    remote.delete(&key)
}

/// A hold id names an object: hex digits only (what `new_id` makes).
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "{id:?} is not a hold id (hex digits, as `gc --remote` lists them)"
        )));
    }
    Ok(())
}

/// A new hold id: unique to this store (its path, this host, now).
pub(crate) fn new_id(store: &std::path::Path) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = format!(
        "{}\n{}\n{nanos}\n{}",
        store.display(),
        host_name(),
        std::process::id()
    );
    blake3::hash(seed.as_bytes()).to_hex()[..16].to_string()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_checked() {
        let id = new_id(std::path::Path::new("/s"));
        assert_eq!(id.len(), 16);
        check_id(&id).unwrap();
        for bad in ["", "../x", "ab/cd", "zz"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }
}
