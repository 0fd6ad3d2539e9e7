//! Which block store a store opens: its packs, or — once it pulled an image lazily — the
//! remote-backed store over them, whose remote `STORE/remote/backing` names (one URL). The
//! remote's client comes from `StoreOptions::remote`, else from the AWS_* variables.

use std::collections::BTreeMap;

use super::StoreOptions;
use crate::error::{Error, IoContext, Result};
use crate::format::records::PackRecord;
use crate::format::store_header::StoreHeader;
use crate::ids::PackId;
use crate::io::{Io, OpenMode};
use crate::layout::StoreLayout;
use crate::store::pack_store::PackStoreConfig;
use crate::store::{BlockStore, MemoryStore, PackStore, Remote, RemoteStore, RemoteUrl};

pub(super) fn open_blocks(
    io: &Io,
    layout: &StoreLayout,
    options: &StoreOptions,
    header: &StoreHeader,
    records: &BTreeMap<PackId, PackRecord>,
) -> Result<Box<dyn BlockStore>> {
    if options.blocks_in_memory {
        return Ok(Box::new(MemoryStore::new(header.block_size as usize)));
    }
    let config = PackStoreConfig {
        block_size: header.block_size,
        pack_target: header.pack_target,
        cache_bytes: options.block_cache_bytes,
        format_version: header.version,
        compression: header.compression,
    };
    let remote = match (backing_url(io, layout)?, &options.remote) {
        (Some(url), Some(remote)) if *remote.url() != url => {
            return Err(Error::InvalidInput(format!(
                "the store is backed by {url}, not {}",
                remote.url()
            )));
        }
        (_, Some(remote)) => Some(remote.clone()),
        (Some(url), None) => Some(Remote::connect(&url)?),
        (None, None) => None,
    };
    Ok(match remote {
        Some(remote) => {
            let store = RemoteStore::open(io.clone(), layout.clone(), config, records, remote)?;
            store.cache().set_limit(cache_limit(io, layout)?);
            Box::new(store)
        }
        None => Box::new(PackStore::open(
            io.clone(),
            layout.clone(),
            config,
            records,
        )?),
    })
}

/// The remote the store is backed by, if any.
pub(crate) fn backing_url(io: &Io, layout: &StoreLayout) -> Result<Option<RemoteUrl>> {
    let path = layout.remote_backing();
    let Some(text) = read_small(io, &path)? else {
        return Ok(None);
    };
    text.trim()
        .parse()
        .map(Some)
        .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))
}

/// Records durably that the store is backed by `url` (before metadata references a block
/// only the remote holds).
pub(crate) fn record_backing(io: &Io, layout: &StoreLayout, url: &RemoteUrl) -> Result<()> {
    write_small(io, layout, "backing", &format!("{url}\n"))
}

/// The limit on the remote's blocks a backed store keeps locally (`STORE/remote/cache-size`,
/// bytes), if one was set.
pub(crate) fn cache_limit(io: &Io, layout: &StoreLayout) -> Result<Option<u64>> {
    let path = layout.remotes_dir().join("cache-size");
    let Some(text) = read_small(io, &path)? else {
        return Ok(None);
    };
    let limit: u64 = text
        .trim()
        .parse()
        .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
    Ok(Some(limit).filter(|l| *l > 0))
}

pub(crate) fn record_cache_limit(io: &Io, layout: &StoreLayout, limit: Option<u64>) -> Result<()> {
    write_small(
        io,
        layout,
        "cache-size",
        &format!("{}\n", limit.unwrap_or(0)),
    )
}

/// The id of this store's hold on the remote it is backed by (`transfer::hold`), made and
/// recorded (`STORE/remote/hold`) the first time.
pub(crate) fn hold_id(io: &Io, layout: &StoreLayout) -> Result<String> {
    let path = layout.remotes_dir().join("hold");
    if let Some(id) = read_small(io, &path)? {
        return Ok(id.trim().to_string());
    }
    let id = crate::transfer::hold::new_id(layout.root());
    write_small(io, layout, "hold", &format!("{id}\n"))?;
    Ok(id)
}

/// The id of this store's hold, if it ever made one (a lazy pull).
pub(crate) fn existing_hold_id(io: &Io, layout: &StoreLayout) -> Result<Option<String>> {
    let path = layout.remotes_dir().join("hold");
    Ok(read_small(io, &path)?.map(|id| id.trim().to_string()))
}

fn read_small(io: &Io, path: &std::path::Path) -> Result<Option<String>> {
    if !io.exists(path) {
        return Ok(None);
    }
    let file = io
        .open(path, OpenMode::ReadOnly)
        .ctx(|| format!("opening {}", path.display()))?;
    let mut bytes = vec![0u8; file.len().ctx(|| format!("reading {}", path.display()))? as usize];
    file.read_exact_at(&mut bytes, 0)
        .ctx(|| format!("reading {}", path.display()))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Writes `STORE/remote/NAME` whole and durably: a temporary file, synced, renamed.
fn write_small(io: &Io, layout: &StoreLayout, name: &str, text: &str) -> Result<()> {
    let dir = layout.remotes_dir();
    io.create_dir_all(&dir)
        .ctx(|| format!("creating {}", dir.display()))?;
    let (tmp, path) = (dir.join(format!("{name}.tmp")), dir.join(name));
    let file = io
        .open(&tmp, OpenMode::Create)
        .ctx(|| format!("creating {}", tmp.display()))?;
    file.set_len(0)
        .and_then(|_| file.write_all_at(text.as_bytes(), 0))
        .and_then(|_| file.sync_data())
        .ctx(|| format!("writing {}", tmp.display()))?;
    io.rename(&tmp, &path)
        .and_then(|_| io.sync_dir(&dir))
        .ctx(|| format!("renaming {} into place", tmp.display()))
}
