//! Per-deployment health, shared by every worker through the routing table they pick from: requests in
//! flight, recent latency, recent failures and cooldown. Lock-free except for the failure window, which only
//! failures touch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::RoutingPolicy;
use crate::config::MAX_COOLDOWN;

/// The window in which `allowed_fails` failures put a deployment into cooldown.
const FAILURE_WINDOW_MS: u64 = 60_000;
/// Weight of the newest sample in the latency moving average.
const LATENCY_SMOOTHING: f64 = 0.2;

/// Milliseconds on a process-wide monotonic clock; never 0 (0 means "not cooling").
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// How an attempt on a deployment ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// The upstream answered (any status but 429, 5xx, 401 and 403): its head arrived after `latency`.
    Success { latency: Duration },
    /// Connect error, timeout, unusable answer, 429, 5xx or refused credentials; `asked_pause` when the
    /// upstream asked for a pause with `Retry-After`. Failures do not enter the latency average: they mark the
    /// deployment as recently failed, which latency-based routing ranks after every deployment that is not.
    /// `status`: the upstream's, 0 when there was no answer (for metrics).
    Failure { asked_pause: Option<Duration>, status: u16 },
}

#[derive(Debug, Default)]
pub struct Health {
    in_flight: AtomicU32,
    /// `now_ms()` until which the deployment is not picked; 0 when it is not cooling down.
    cooldown_until: AtomicU64,
    /// Moving average of the time to the response head, in µs; 0 before the first answer.
    latency_us: AtomicU64,
    /// `now_ms()` of the last failure; 0 before any.
    last_failure: AtomicU64,
    /// Failure times (`now_ms()`) within the last minute.
    failures: Mutex<VecDeque<u64>>,
}

/// What `GET /health` shows of a deployment.
#[derive(Debug, Clone)]
pub struct DeploymentState {
    pub cooling_down_until: Option<SystemTime>,
    pub in_flight: u32,
    pub latency: Option<Duration>,
    pub recent_failures: usize,
}

impl Health {
    pub fn is_cooling(&self, now: u64) -> bool {
        self.cooldown_until.load(Ordering::Relaxed) > now
    }

    /// Time left in the cooldown, if any.
    pub fn cooldown_left(&self, now: u64) -> Option<Duration> {
        let until = self.cooldown_until.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn latency_us(&self) -> u64 {
        self.latency_us.load(Ordering::Relaxed)
    }

    /// Whether the deployment failed within the last minute (the failure window).
    pub fn recently_failed(&self, now: u64) -> bool {
        let at = self.last_failure.load(Ordering::Relaxed);
        at != 0 && now.saturating_sub(at) < FAILURE_WINDOW_MS
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Records an attempt's outcome; enough failures within a minute (or an upstream `Retry-After`) start a
    /// cooldown. Returns whether this outcome started one.
    pub fn record(&self, outcome: Outcome, policy: &RoutingPolicy, now: u64) -> bool {
        let was_cooling = self.is_cooling(now);
        match outcome {
            Outcome::Success { latency } => self.record_latency(latency),
            Outcome::Failure { asked_pause, .. } => {
                self.last_failure.store(now, Ordering::Relaxed);
                if let Some(pause) = asked_pause {
                    self.cool_down_for(now, pause);
                }
                let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
                failures.push_back(now);
                while failures.front().is_some_and(|&at| at + FAILURE_WINDOW_MS <= now) {
                    failures.pop_front();
                }
                if failures.len() >= policy.allowed_fails as usize {
                    failures.clear();
                    self.cool_down_for(now, policy.cooldown_time);
                }
            }
        }
        !was_cooling && self.is_cooling(now)
    }

    /// Folds a sample into the moving average (0 stays reserved for "never measured").
    fn record_latency(&self, latency: Duration) {
        let sample = latency.as_micros().clamp(1, u64::MAX as u128) as f64;
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { old as f64 * (1.0 - LATENCY_SMOOTHING) + sample * LATENCY_SMOOTHING };
        self.latency_us.store(new as u64, Ordering::Relaxed);
    }

    /// Cools down for `left`, as another replica said this deployment does (never longer than
    /// [`MAX_COOLDOWN`]).
    pub fn cool_down_as_told(&self, now: u64, left: Duration) {
        self.cool_down_for(now, left);
    }

    /// Cools down for `pause`, at most [`MAX_COOLDOWN`] (an upstream's `Retry-After` can say anything).
    fn cool_down_for(&self, now: u64, pause: Duration) {
        let until = now.saturating_add(pause.min(MAX_COOLDOWN).as_millis() as u64);
        self.cooldown_until.fetch_max(until, Ordering::Relaxed);
    }

    pub fn state(&self, now: u64) -> DeploymentState {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let recent_failures = failures.iter().filter(|&&at| at + FAILURE_WINDOW_MS > now).count();
        DeploymentState {
            cooling_down_until: self.cooldown_left(now).and_then(|left| SystemTime::now().checked_add(left)),
            in_flight: self.in_flight(),
            latency: Some(self.latency_us()).filter(|&us| us > 0).map(Duration::from_micros),
            recent_failures,
        }
    }
}

/// A request in flight on a deployment (for least-busy routing); counted until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Health>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RoutingPolicy {
        RoutingPolicy { allowed_fails: 2, cooldown_time: Duration::from_secs(5), ..RoutingPolicy::default() }
    }

    #[test]
    fn allowed_fails_within_a_minute_start_a_cooldown_that_ends() {
        let health = Health::default();
        let failure = Outcome::Failure { asked_pause: None, status: 500 };
        health.record(failure, &policy(), 1_000);
        assert!(!health.is_cooling(1_001));
        health.record(failure, &policy(), 2_000);
        assert!(health.is_cooling(2_001));
        assert_eq!(health.cooldown_left(3_000), Some(Duration::from_secs(4)));
        assert!(!health.is_cooling(7_000));
    }

    #[test]
    fn failures_older_than_a_minute_do_not_count() {
        let health = Health::default();
        let failure = Outcome::Failure { asked_pause: None, status: 500 };
        health.record(failure, &policy(), 1_000);
        health.record(failure, &policy(), 62_000);
        assert!(!health.is_cooling(62_001));
    }

    #[test]
    fn an_absurd_asked_pause_is_clamped_to_the_maximum_cooldown() {
        let health = Health::default();
        let forever = Outcome::Failure { asked_pause: Some(Duration::from_secs(10_000_000_000_000_000)), status: 429 };
        health.record(forever, &policy(), 1_000);
        assert_eq!(health.cooldown_left(1_000), Some(MAX_COOLDOWN));
        assert!(health.state(1_000).cooling_down_until.is_some());
    }

    #[test]
    fn asked_pause_cools_down_at_once() {
        let health = Health::default();
        health.record(Outcome::Failure { asked_pause: Some(Duration::from_secs(7)), status: 429 }, &policy(), 1_000);
        assert_eq!(health.cooldown_left(1_000), Some(Duration::from_secs(7)));
    }

    #[test]
    fn in_flight_counts_until_the_guard_drops_and_latency_averages() {
        let health = Arc::new(Health::default());
        let guard = health.start();
        assert_eq!(health.in_flight(), 1);
        drop(guard);
        assert_eq!(health.in_flight(), 0);
        health.record(Outcome::Success { latency: Duration::from_millis(10) }, &policy(), 1);
        health.record(Outcome::Success { latency: Duration::from_millis(20) }, &policy(), 2);
        assert_eq!(health.latency_us(), 12_000);
    }
}
