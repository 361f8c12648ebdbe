//! Time as the meter reads it: the wall clock for budget periods, a monotonic clock for rate windows.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use super::{millis, WINDOW};

/// A moment as the meter reads it, in milliseconds: the wall clock for budget periods, which follow the
/// calendar, and a monotonic clock for rate windows, so a clock stepped back (NTP) neither stretches a
/// window nor leaves a key at its limit refused for minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    /// Since the Unix epoch.
    pub wall_ms: u64,
    /// On a monotonic clock that starts a window's length past 0 (so a window never used, starting at 0, is
    /// over at its first request).
    pub mono_ms: u64,
}

impl Moment {
    pub fn now() -> Self {
        static START: OnceLock<Instant> = OnceLock::new();
        let since_start = START.get_or_init(Instant::now).elapsed();
        Self { wall_ms: millis(SystemTime::now()), mono_ms: (since_start + WINDOW).as_millis() as u64 }
    }
}
