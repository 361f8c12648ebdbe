//! Limits on a key's use, checked before a request is routed: requests per 60 s window (`rpm_limit`) and
//! requests in flight (`max_parallel_requests`). Counters live in memory, shared by every HTTP worker, so a
//! limit holds across all of them; a window restarts with the process (documented).
//!
//! Keys without limits never touch the counters: the hot path of an unlimited key takes no lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// LiteLLM's `LITELLM_RATE_LIMIT_WINDOW_SIZE`: a fixed window that starts at a key's first request.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Counter shards: a key's counters sit behind one of these locks, picked by its hash.
const SHARDS: usize = 16;

/// What a key may use; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub parallel: Option<u64>,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    #[error("Rate limit exceeded for your key: {limit} requests per 60 s window (rpm_limit). Limit type: requests. Current limit: {limit}, Remaining: 0. The window resets in {} s.", .resets_in.as_secs().max(1))]
    Requests { limit: u64, resets_in: Duration },
    #[error("Rate limit exceeded for your key: {limit} requests in flight at once (max_parallel_requests). Limit type: max_parallel_requests. Current limit: {limit}, Remaining: 0. Retry when one of your requests has finished.")]
    Parallel { limit: u64 },
}

impl MeterError {
    /// Seconds for the client's `Retry-After`.
    pub fn retry_after_seconds(&self) -> u64 {
        match self {
            Self::Requests { resets_in, .. } => resets_in.as_secs().max(1),
            Self::Parallel { .. } => 1,
        }
    }
}

/// One key's counters.
#[derive(Debug, Default)]
struct Usage {
    /// Start of the current window, in seconds since the epoch.
    window_start: u64,
    requests: u64,
    in_flight: u64,
}

/// The counters of every limited key, shared by all workers.
#[derive(Debug)]
pub struct Meter {
    shards: Vec<Mutex<HashMap<[u8; 32], Usage>>>,
}

impl Default for Meter {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::default()).collect() }
    }
}

/// A request let through: it holds its parallel slot until dropped (with the response body), and tells
/// what is left of the window for the response headers.
#[derive(Debug)]
pub struct Admitted {
    meter: Option<(Arc<Meter>, [u8; 32])>,
    /// `(limit, remaining)` of the request window, when the key has an `rpm_limit`.
    pub requests: Option<(u64, u64)>,
}

impl Meter {
    /// Counts a request of the key `key` against `limits`, or refuses it (nothing is counted then). Checked
    /// and counted under one lock, so N concurrent requests against `rpm_limit: N` let exactly N through.
    pub fn admit(self: &Arc<Self>, key: [u8; 32], limits: Limits, now: SystemTime) -> Result<Admitted, MeterError> {
        if limits == Limits::default() {
            return Ok(Admitted { meter: None, requests: None });
        }
        let now = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut shard = self.shard(&key);
        let usage = shard.entry(key).or_default();
        if now.saturating_sub(usage.window_start) >= WINDOW.as_secs() {
            usage.window_start = now;
            usage.requests = 0;
        }
        if let Some(limit) = limits.parallel {
            if usage.in_flight >= limit {
                return Err(MeterError::Parallel { limit });
            }
        }
        if let Some(limit) = limits.rpm {
            if usage.requests >= limit {
                let resets_in = Duration::from_secs((usage.window_start + WINDOW.as_secs()).saturating_sub(now));
                return Err(MeterError::Requests { limit, resets_in });
            }
        }
        usage.requests += 1;
        let requests = limits.rpm.map(|limit| (limit, limit.saturating_sub(usage.requests)));
        let meter = limits.parallel.map(|_| {
            usage.in_flight += 1;
            (Arc::clone(self), key)
        });
        Ok(Admitted { meter, requests })
    }

    fn shard(&self, key: &[u8; 32]) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Usage>> {
        self.shards[key[0] as usize % SHARDS].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((meter, key)) = self.meter.take() {
            if let Some(usage) = meter.shard(&key).get_mut(&key) {
                usage.in_flight = usage.in_flight.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn rpm_lets_exactly_the_limit_through_per_window() {
        let meter = Arc::new(Meter::default());
        let limits = Limits { rpm: Some(3), parallel: None };
        let admitted: Vec<_> = (0..3).map(|_| meter.admit(KEY, limits, at(1_000)).unwrap()).collect();
        assert_eq!(admitted[2].requests, Some((3, 0)));
        match meter.admit(KEY, limits, at(1_030)) {
            Err(MeterError::Requests { limit: 3, resets_in }) => assert_eq!(resets_in, Duration::from_secs(30)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(meter.admit(KEY, limits, at(1_060)).is_ok(), "a new window");
        assert!(meter.admit([8; 32], limits, at(1_030)).is_ok(), "another key has its own window");
    }

    #[test]
    fn parallel_slots_come_back_when_requests_end() {
        let meter = Arc::new(Meter::default());
        let limits = Limits { rpm: None, parallel: Some(2) };
        let first = meter.admit(KEY, limits, at(0)).unwrap();
        let _second = meter.admit(KEY, limits, at(0)).unwrap();
        assert!(matches!(meter.admit(KEY, limits, at(0)), Err(MeterError::Parallel { limit: 2 })));
        drop(first);
        assert!(meter.admit(KEY, limits, at(0)).is_ok());
    }

    #[test]
    fn a_refused_request_is_not_counted_and_unlimited_keys_take_no_lock() {
        let meter = Arc::new(Meter::default());
        let limits = Limits { rpm: Some(1), parallel: Some(1) };
        let held = meter.admit(KEY, limits, at(0)).unwrap();
        assert!(meter.admit(KEY, limits, at(0)).is_err());
        drop(held);
        assert!(meter.admit(KEY, limits, at(0)).is_err(), "the window's one request is used");
        assert!(meter.admit(KEY, Limits::default(), at(0)).unwrap().meter.is_none());
    }
}
