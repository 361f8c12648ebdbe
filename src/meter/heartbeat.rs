//! Which replicas are alive: each keeps a short heartbeat in Redis (`tiergate:alive:<replica>`), renewed by
//! its periodic spend exchange. Parallel slots and budget holds carry the id of the replica that took them,
//! and the admission script gives back those of a replica whose heartbeat ended (killed with `kill -9`, its
//! machine gone) instead of keeping them taken for a fixed lease: a key with `max_parallel_requests` is free
//! again on every other replica within [`Heartbeat::lease`], while a live replica's request, however long it
//! runs, keeps its slot and hold.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::SharedCounters;
use crate::redis_link::PREFIX;

/// How long a live replica's slot or hold is kept at most when its release is lost (a bug, or Redis lost
/// the release): the bound on what a live replica can leave taken. Far longer than any request runs.
pub(super) const BACKSTOP: Duration = Duration::from_secs(86_400);
/// How long a replica counts as alive after its last renewal: what another replica waits, at most, for the
/// slots and holds of one that died.
const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// The bounds of a lease set by `TIERGATE_REPLICA_LEASE_MS`: at least a few renewals (every
/// [`super::PERSIST_EVERY`]) fit in it, and a dead replica is noticed within a minute.
const LEASE_BOUNDS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
/// A replica renews its heartbeat this many times per lease, so a few late exchanges do not end it.
const RENEWALS_PER_LEASE: u32 = 5;

/// This replica's heartbeat: its lease, and when it was last renewed.
pub(super) struct Heartbeat {
    lease: Duration,
    started: Instant,
    /// Milliseconds after `started` of the last renewal that Redis acknowledged (0: none yet).
    renewed_ms: AtomicU64,
}

impl Heartbeat {
    /// The lease from `TIERGATE_REPLICA_LEASE_MS` (milliseconds, within [`LEASE_BOUNDS`]; for tests and for
    /// fleets that want a dead replica noticed sooner), else [`DEFAULT_LEASE`].
    pub fn from_env() -> Self {
        let lease = std::env::var("TIERGATE_REPLICA_LEASE_MS").ok().and_then(|ms| ms.trim().parse::<u64>().ok());
        Self::with_lease(lease.map(Duration::from_millis))
    }

    fn with_lease(lease: Option<Duration>) -> Self {
        let lease = lease.map_or(DEFAULT_LEASE, |lease| lease.clamp(LEASE_BOUNDS.0, LEASE_BOUNDS.1));
        Self { lease, started: Instant::now(), renewed_ms: AtomicU64::new(0) }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Whether the heartbeat is due for renewal now.
    fn due(&self) -> bool {
        let since_start = self.started.elapsed().as_millis() as u64;
        let renewed = self.renewed_ms.load(Ordering::Relaxed);
        renewed == 0 || since_start.saturating_sub(renewed) >= (self.lease / RENEWALS_PER_LEASE).as_millis() as u64
    }

    fn renewed(&self) {
        self.renewed_ms.store((self.started.elapsed().as_millis() as u64).max(1), Ordering::Relaxed);
    }
}

/// The prefix of replicas' heartbeats; a replica's is this followed by its id.
pub(super) fn alive_prefix() -> String {
    format!("{PREFIX}alive:")
}

impl SharedCounters {
    /// Renews this replica's heartbeat when it is due (a few times per lease). Blocking: for the meter's
    /// persist thread. A failure is left for the next exchange: Redis is then down, and nothing it holds
    /// can be judged meanwhile.
    pub(super) fn renew_heartbeat(&self) {
        if !self.heartbeat.due() {
            return;
        }
        let mut renew = redis::cmd("SET");
        renew.arg(format!("{}{}", alive_prefix(), self.replica)).arg(1);
        renew.arg("PX").arg(self.heartbeat.lease().as_millis() as u64);
        if self.redis().run(|connection| renew.query::<()>(connection)).is_ok() {
            self.heartbeat.renewed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_from_outside_is_kept_within_its_bounds() {
        assert_eq!(Heartbeat::with_lease(None).lease(), DEFAULT_LEASE);
        assert_eq!(Heartbeat::with_lease(Some(Duration::from_millis(1))).lease(), LEASE_BOUNDS.0);
        assert_eq!(Heartbeat::with_lease(Some(Duration::from_secs(u64::MAX / 2))).lease(), LEASE_BOUNDS.1);
        assert_eq!(Heartbeat::with_lease(Some(Duration::from_secs(2))).lease(), Duration::from_secs(2));
    }

    #[test]
    fn a_heartbeat_is_renewed_a_few_times_per_lease_not_every_exchange() {
        let heartbeat = Heartbeat::with_lease(Some(Duration::from_secs(60)));
        assert!(heartbeat.due(), "the first renewal is due at once");
        heartbeat.renewed();
        assert!(!heartbeat.due(), "not again before a fifth of the lease");
    }
}
