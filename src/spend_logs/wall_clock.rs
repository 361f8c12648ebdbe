//! The wall time of the instants spend-log rows start at, made once per batch on the writer.

use std::time::{Duration, Instant, SystemTime};

/// The wall time of the [`Instant`]s rows start at: one clock read per batch on the writer rather than two
/// per request on the worker.
pub(super) struct WallClock {
    /// The wall time at `at`, since the epoch (made once per batch, not per row).
    since_epoch: Duration,
    at: Instant,
}

impl WallClock {
    pub(super) fn now() -> Self {
        Self::reading(SystemTime::now(), Instant::now())
    }

    /// A clock that reads `wall` at the instant `at`.
    pub(super) fn reading(wall: SystemTime, at: Instant) -> Self {
        Self { since_epoch: wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default(), at }
    }

    /// The wall time of `instant`, since the epoch (the epoch itself before it, the clock's reading if past
    /// what a `Duration` holds). A wall clock set before 1970 reads as the epoch.
    pub(super) fn since_epoch_of(&self, instant: Instant) -> Duration {
        match self.at.checked_duration_since(instant) {
            Some(before) => self.since_epoch.saturating_sub(before),
            None => self.since_epoch.checked_add(instant.duration_since(self.at)).unwrap_or(self.since_epoch),
        }
    }
}
