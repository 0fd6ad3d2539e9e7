//! The connection to one remote: an `s3://BUCKET/PREFIX` URL, an `object_store` client built
//! from the standard AWS variables, a runtime to drive it from synchronous callers, and the
//! counts of what crossed the network. It moves bytes and names objects; it never interprets
//! them (that is `bucket.rs` and the store's).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::coalesce_ranges;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use crate::error::{Error, Result};

/// Where a remote lives: a bucket and a prefix inside it (no leading or trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    pub bucket: String,
    pub prefix: String,
}

impl std::str::FromStr for RemoteUrl {
    type Err = Error;

    /// Parses `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    fn from_str(url: &str) -> Result<RemoteUrl> {
        let bad = |why: &str| Error::InvalidInput(format!("remote URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(bad("the bucket name must be 3 to 63 of a-z, 0-9, '-', '.'"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == "." || part == "..")
            || prefix.contains("//")
            || prefix.chars().any(|c| c.is_control())
        {
            return Err(bad("the prefix must be plain path segments"));
        }
        Ok(RemoteUrl {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// What crossed the network so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteFigures {
    pub requests: u64,
    pub lists: u64,
    pub bytes_sent: u64,
    pub bytes_fetched: u64,
    /// Blocks fetched and verified (a store's lazy reads and pulls).
    pub blocks_fetched: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    lists: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_fetched: AtomicU64,
    blocks_fetched: AtomicU64,
}

/// A client for one remote. Clones share the connection and the counters.
#[derive(Clone)]
pub struct Remote {
    url: RemoteUrl,
    store: Arc<AmazonS3>,
    runtime: Arc<tokio::runtime::Runtime>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

/// Attempts after the first for a failed request, and the time they may take in all: an
/// unreachable server is reported in seconds, not after object_store's default 3 minutes.
const RETRIES: usize = 2;
const RETRY_TIMEOUT: Duration = Duration::from_secs(10);
/// Ranges of one object less than this apart are read with one GET (a gap costs less to
/// read than a request).
const COALESCE: u64 = 64 * 1024;
/// Whole-object GETs in flight at once (`get_many`).
const IN_FLIGHT: usize = 16;

impl Remote {
    /// A client for `url`, with credentials, region and endpoint from the AWS_* variables of
    /// the environment. Makes no request.
    pub fn connect(url: &RemoteUrl) -> Result<Remote> {
        Remote::connect_with(url, std::env::vars())
    }

    /// A client for `url` configured by the given AWS_* variables (others are ignored).
    pub fn connect_with(
        url: &RemoteUrl,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Remote> {
        let retry = RetryConfig {
            max_retries: RETRIES,
            retry_timeout: RETRY_TIMEOUT,
            ..RetryConfig::default()
        };
        let options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(60));
        // Client options first: the variables (AWS_ALLOW_HTTP among them) are set into them.
        let mut builder = AmazonS3Builder::new()
            .with_client_options(options)
            .with_retry(retry);
        for (key, value) in vars {
            if key.starts_with("AWS_")
                && let Ok(config) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
            {
                builder = builder.with_config(config, value);
            }
        }
        let store = builder
            .with_bucket_name(&url.bucket)
            .build()
            .map_err(|e| Error::InvalidInput(format!("remote {url}: {}", one_line(&e))))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tessera-remote")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the remote's runtime", e))?;
        Ok(Remote {
            url: url.clone(),
            store: Arc::new(store),
            runtime: Arc::new(runtime),
            counters: Arc::new(Counters::default()),
        })
    }

    pub fn url(&self) -> &RemoteUrl {
        &self.url
    }

    /// Counts a block fetched and verified.
    pub(super) fn count_block_fetched(&self) {
        self.counters.blocks_fetched.fetch_add(1, Ordering::Relaxed);
    }

    pub fn figures(&self) -> RemoteFigures {
        let c = &self.counters;
        RemoteFigures {
            requests: c.requests.load(Ordering::Relaxed),
            lists: c.lists.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_fetched: c.bytes_fetched.load(Ordering::Relaxed),
            blocks_fetched: c.blocks_fetched.load(Ordering::Relaxed),
        }
    }

    /// The object path of `key` (relative to the prefix).
    fn path(&self, key: &str) -> ObjectPath {
        if self.url.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.url.prefix))
        }
    }

    fn error(&self, what: &str, key: &str, e: object_store::Error) -> Error {
        let object = format!("{}/{key}", self.url);
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound(format!("{what} {object}")),
            e => Error::Remote(format!("{what} {object}: {}", one_line(&e))),
        }
    }

    /// Writes a whole object (replacing any object of that name).
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let len = bytes.len() as u64;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.runtime
            .block_on(self.store.put(&self.path(key), PutPayload::from(bytes)))
            .map_err(|e| self.error("writing", key, e))?;
        self.counters.bytes_sent.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Reads a whole object.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let bytes = self
            .runtime
            .block_on(async {
                let result = self.store.get(&self.path(key)).await?;
                result.bytes().await
            })
            .map_err(|e| self.error("reading", key, e))?;
        self.counters
            .bytes_fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes.to_vec())
    }

    /// Reads whole objects, up to `IN_FLIGHT` GETs at once; one result per key, in order.
    pub fn get_many(&self, keys: &[String]) -> Vec<Result<Vec<u8>>> {
        let mut results: Vec<Option<Result<Vec<u8>>>> = keys.iter().map(|_| None).collect();
        for (chunk_at, chunk) in keys.chunks(IN_FLIGHT).enumerate() {
            let got = self.runtime.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for (i, key) in chunk.iter().enumerate() {
                    let (store, path) = (self.store.clone(), self.path(key));
                    let counters = self.counters.clone();
                    tasks.spawn(async move {
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                        let got = async { store.get(&path).await?.bytes().await }.await;
                        if let Ok(bytes) = &got {
                            counters
                                .bytes_fetched
                                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        }
                        (i, got)
                    });
                }
                let mut got = Vec::with_capacity(chunk.len());
                while let Some(joined) = tasks.join_next().await {
                    got.push(joined.expect("a remote read task panicked"));
                }
                got
            });
            for (i, result) in got {
                let key = &chunk[i];
                results[chunk_at * IN_FLIGHT + i] = Some(
                    result
                        .map(|b| b.to_vec())
                        .map_err(|e| self.error("reading", key, e)),
                );
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every key read"))
            .collect()
    }

    /// Reads bytes `range` of an object (one ranged GET).
    pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let bytes = self
            .runtime
            .block_on(self.store.get_range(&self.path(key), range))
            .map_err(|e| self.error("reading", key, e))?;
        self.counters
            .bytes_fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes.to_vec())
    }

    /// Reads ranges of several objects. Per object, ranges under `COALESCE` apart are read
    /// with one ranged GET, and up to ten GETs per object are in flight, all objects at once
    /// (object_store's `coalesce_ranges`). One result per object: its ranges' bytes, in order.
    pub fn get_ranges_of(
        &self,
        requests: &[(String, Vec<Range<u64>>)],
    ) -> Vec<Result<Vec<Vec<u8>>>> {
        let results = self.runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, (key, ranges)) in requests.iter().enumerate() {
                let (store, path) = (self.store.clone(), self.path(key));
                let (counters, ranges) = (self.counters.clone(), ranges.clone());
                tasks.spawn(async move {
                    let fetch = |range: Range<u64>| {
                        let (store, path, counters) =
                            (store.clone(), path.clone(), counters.clone());
                        async move {
                            counters.requests.fetch_add(1, Ordering::Relaxed);
                            let bytes = store.get_range(&path, range).await?;
                            counters
                                .bytes_fetched
                                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                            Ok::<_, object_store::Error>(bytes)
                        }
                    };
                    (i, coalesce_ranges(&ranges, fetch, COALESCE).await)
                });
            }
            let mut results: Vec<_> = requests.iter().map(|_| None).collect();
            while let Some(joined) = tasks.join_next().await {
                let (i, got) = joined.expect("a remote read task panicked");
                results[i] = Some(got);
            }
            results
        });
        results
            .into_iter()
            .zip(requests)
            .map(|(got, (key, _))| {
                got.expect("every task reported")
                    .map(|parts| parts.into_iter().map(|b| b.to_vec()).collect())
                    .map_err(|e| self.error("reading", key, e))
            })
            .collect()
    }

    /// Whether an object exists.
    pub fn exists(&self, key: &str) -> Result<bool> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        match self.runtime.block_on(self.store.head(&self.path(key))) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("looking up", key, e)),
        }
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.runtime
            .block_on(self.store.delete(&self.path(key)))
            .map_err(|e| self.error("deleting", key, e))
    }

    /// The names of the objects directly under `dir` (relative to it).
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        Ok(self
            .list_detailed(dir)?
            .into_iter()
            .map(|listed| listed.name)
            .collect())
    }

    /// The objects directly under `dir` with their sizes and last-modified times (one listing;
    /// the times are the server's, so comparing them needs no trust in this host's clock).
    pub fn list_detailed(&self, dir: &str) -> Result<Vec<Listed>> {
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        let path = self.path(dir);
        let listing = self
            .runtime
            .block_on(self.store.list_with_delimiter(Some(&path)))
            .map_err(|e| self.error("listing", dir, e))?;
        Ok(listing
            .objects
            .into_iter()
            .filter_map(|o| {
                Some(Listed {
                    name: o.location.filename()?.to_string(),
                    size: o.size,
                    modified_ms: o.last_modified.timestamp_millis(),
                })
            })
            .collect())
    }
}

/// One object of a listing: its name (relative to the listed directory), its size, and when
/// it was last written, in milliseconds since the epoch by the server's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    pub modified_ms: i64,
}

/// An error and its causes on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_remote_urls() {
        let url: RemoteUrl = "s3://tessera/hosts/a/".parse().unwrap();
        assert_eq!(
            (url.bucket.as_str(), url.prefix.as_str()),
            ("tessera", "hosts/a")
        );
        assert_eq!(url.to_string(), "s3://tessera/hosts/a");
        let url: RemoteUrl = "s3://tessera".parse().unwrap();
        assert_eq!(url.prefix, "");
        for bad in [
            "http://x/y",
            "s3://",
            "s3://A_B/x",
            "s3://ok-bucket/a/../b",
            "tessera",
        ] {
            assert!(bad.parse::<RemoteUrl>().is_err(), "{bad}");
        }
    }
}
