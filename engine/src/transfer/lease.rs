//! Leases on a remote: how a push and `gc --remote` keep out of each other's way
//! (docs/design.md §8, "Garbage collection on a remote").
//!
//! Each writes its lease object (`leases/push-ID` or `leases/gc-ID`) first, then lists the
//! leases: a gc that finds a live push lease deletes nothing; a push that finds a live gc lease
//! waits until it is gone. With a store that lists what was written before (S3 and RGW do),
//! at least one of any two that overlap sees the other's lease, so no gc deletes while a push
//! decides what it may rely on. A lease's age is measured by the server's clock: its
//! last-modified time against that of the lease just written by the one who lists. A lease
//! older than [`LEASE_TTL`] is stale (its holder died); a holder renews its lease and stops
//! before it could look stale ([`Lease::check_fresh`]: half the TTL since its last renewal,
//! measured by this host's boot-time clock, which counts time spent suspended or stopped).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::remote::{Listed, Remote, bucket};

/// A lease not renewed for this long is stale: its holder is taken to be dead.
pub const LEASE_TTL: Duration = Duration::from_secs(3600);

/// How often a waiting push lists the leases again.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    Push,
    /// A lazy pull, until its hold is written (`hold.rs`): a gc keeps off as for a push.
    Pull,
    Gc,
}

impl LeaseKind {
    fn prefix(self) -> &'static str {
        match self {
            LeaseKind::Push => "push-",
            LeaseKind::Pull => "pull-",
            LeaseKind::Gc => "gc-",
        }
    }
}

/// A lease held on a remote; released (deleted) by `release` or, best effort, on drop.
pub struct Lease<'a> {
    remote: &'a Remote,
    name: String,
    /// When the last (re)write of the lease started (`since_boot`).
    renewed: Duration,
    released: bool,
}

/// The other leases of a remote, as one listing shows them.
pub struct Leases {
    /// The server's time when the lease of the one listing was last written (ms).
    pub now_ms: i64,
    pub live: Vec<Listed>,
    pub stale: Vec<Listed>,
}

impl Leases {
    pub fn live_of(&self, kind: LeaseKind) -> usize {
        let prefix = kind.prefix();
        self.live
            .iter()
            .filter(|l| l.name.starts_with(prefix))
            .count()
    }
}

impl<'a> Lease<'a> {
    /// Writes a new lease of `kind`.
    pub fn take(remote: &'a Remote, kind: LeaseKind) -> Result<Lease<'a>> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!("{}{nanos:x}-{:x}", kind.prefix(), std::process::id());
        let mut lease = Lease {
            remote,
            name,
            renewed: since_boot(),
            // Nothing to delete until the first write succeeds.
            released: true,
        };
        lease.renew()?;
        lease.released = false;
        Ok(lease)
    }

    /// Writes the lease again: its age starts over.
    pub fn renew(&mut self) -> Result<()> {
        let started = since_boot();
        self.remote.put(
            &bucket::lease_key(&self.name),
            self.name.clone().into_bytes(),
        )?;
        self.renewed = started;
        Ok(())
    }

    /// Renews the lease when a good part of the TTL went by since the last renewal.
    pub fn renew_if_due(&mut self) -> Result<()> {
        self.check_fresh()?;
        if self.elapsed() >= LEASE_TTL / 8 {
            self.renew()?;
        }
        Ok(())
    }

    /// An error once half the TTL went by since the last renewal: others may soon take the
    /// lease for stale, so what it protected can no longer be relied on.
    pub fn check_fresh(&self) -> Result<()> {
        let elapsed = self.elapsed();
        if elapsed >= LEASE_TTL / 2 {
            return Err(Error::Busy(format!(
                "the lease {} on {} was not renewed for {} s (the limit is {} s): stopped \
                 before relying on it; run the command again",
                self.name,
                self.remote.url(),
                elapsed.as_secs(),
                (LEASE_TTL / 2).as_secs()
            )));
        }
        Ok(())
    }

    /// The time since the last renewal started.
    fn elapsed(&self) -> Duration {
        since_boot().saturating_sub(self.renewed)
    }

    /// Lists every lease but this one, live or stale by the server's clock.
    pub fn others(&self) -> Result<Leases> {
        let listed = self.remote.list_detailed(&bucket::leases_dir())?;
        let now_ms = listed
            .iter()
            .find(|l| l.name == self.name)
            .map(|l| l.modified_ms)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "{} does not list the lease just written ({}): gc --remote and push \
                     need a store whose listings show what was written before",
                    self.remote.url(),
                    self.name
                ))
            })?;
        let ttl_ms = LEASE_TTL.as_millis() as i64;
        let (live, stale) = listed
            .into_iter()
            .filter(|l| l.name != self.name)
            .partition(|l| now_ms - l.modified_ms < ttl_ms);
        Ok(Leases {
            now_ms,
            live,
            stale,
        })
    }

    /// Waits until no live gc lease is left (a gc that saw this lease deletes nothing and
    /// goes; one that did not see it is finishing its deletes).
    pub fn wait_for_gc(&mut self) -> Result<()> {
        let mut said = false;
        loop {
            let leases = self.others()?;
            let gcs = leases.live_of(LeaseKind::Gc);
            if gcs == 0 {
                return Ok(());
            }
            if !said {
                tracing::info!("waiting for {gcs} gc run(s) on {}", self.remote.url());
                said = true;
            }
            self.renew_if_due()?;
            std::thread::sleep(POLL);
        }
    }

    /// Deletes the lease (best effort: one left behind only delays gc runs until it is stale).
    pub fn release(self) {}
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.released
            && let Err(e) = self.remote.delete(&bucket::lease_key(&self.name))
        {
            tracing::warn!("releasing the lease {}: {e}", self.name);
        }
    }
}

/// CLOCK_BOOTTIME: unlike `Instant` (CLOCK_MONOTONIC) it advances while the host is suspended,
/// so a push resumed after hours knows its lease may have been taken for stale.
fn since_boot() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
