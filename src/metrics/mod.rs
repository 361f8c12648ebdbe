//! Prometheus metrics under LiteLLM's names: what the gateway counts on the way (requests, upstream attempts,
//! spend and tokens, fallbacks, limit refusals, key budgets), kept in 16 shards that each HTTP worker
//! thread writes to without sharing a lock with the others, and written out in the text format on scrape.
//!
//! Per-key series are capped: the first [`Metrics::new`]`(max_keys)` keys seen get their own
//! `hashed_api_key` label, later ones share `other`, so a million keys cannot grow the series without bound.

mod exposition;
mod series;

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use exposition::{write_text, DeploymentGauge};
pub use series::CallerLabels;
use series::{DeploymentRef, DeploymentSeries, RequestSeries, Shard, SpendSeries};

use crate::config::Deployment;
use crate::tier::Tier;

const SHARDS: usize = 16;

/// Key hash → its `hashed_api_key` label.
type KeyLabels = series::HashMap<[u8; 32], Arc<str>>;

/// The `hashed_api_key` of keys past the cap, and the `requested_model` of models the config lacks.
const OTHER: &str = "other";
const OTHER_KEYS: &str = OTHER;

/// Where the counts go; one per gateway, shared by every worker.
pub struct Metrics {
    shards: Box<[Mutex<Shard>]>,
    /// `hashed_api_key` labels given out, sharded by the key's hash.
    keys: Box<[Mutex<KeyLabels>]>,
    labelled: AtomicUsize,
    max_keys: usize,
    other: Arc<str>,
    /// The master key's (empty) label.
    empty: Arc<str>,
    /// Tells this `Metrics` apart in the per-thread label caches.
    instance: usize,
    /// `false`: nothing is recorded (each recording returns at once).
    enabled: bool,
}

thread_local! {
    /// This thread's shard: threads take shards in turn, so up to 16 workers never share one.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Labels of keys this thread has seen lately, for one `Metrics` (the first field).
    static LABELS: RefCell<(usize, KeyLabels)> = RefCell::new((0, KeyLabels::default()));
}
static NEXT_INSTANCE: AtomicUsize = AtomicUsize::new(1);

/// The most key labels one thread remembers (then it forgets them all and asks again).
const LOCAL_LABELS: usize = 4096;

/// How an upstream attempt ended, for the deployment's counters.
#[derive(Debug, Clone, Copy)]
pub enum AttemptEnd {
    /// The upstream answered something that is not a failure.
    Success,
    /// A failed attempt: the upstream's status, or 0 when there was no answer (connect error, timeout).
    Failure(u16),
}

impl Metrics {
    /// `max_keys`: how many keys get their own `hashed_api_key` series (0: none do).
    pub fn new(max_keys: usize) -> Self {
        Self::with(max_keys, true)
    }

    /// Metrics that record nothing (`litellm_settings.prometheus_metrics: false`).
    pub fn disabled() -> Self {
        Self::with(0, false)
    }

    fn with(max_keys: usize, enabled: bool) -> Self {
        Self {
            enabled,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            keys: (0..SHARDS).map(|_| Mutex::default()).collect(),
            labelled: AtomicUsize::new(0),
            max_keys,
            other: Arc::from(OTHER_KEYS),
            empty: Arc::from(""),
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn shard(&self) -> MutexGuard<'_, Shard> {
        let index = SHARD.with(|index| *index);
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared `other` label (for a model the config lacks), without allocating one per request.
    pub fn other(&self) -> Arc<str> {
        Arc::clone(&self.other)
    }

    /// The labels of a caller: a virtual key by its hash (`key`), the master key by none.
    pub fn caller(&self, key: Option<&[u8; 32]>, tier: Option<&Tier>) -> CallerLabels {
        let hashed_api_key = match key {
            _ if !self.enabled => Arc::clone(&self.other),
            None => Arc::clone(&self.empty),
            // This thread's cache first: a hot key takes no lock shared with other workers.
            Some(hash) => LABELS.with(|cache| {
                let mut cache = cache.borrow_mut();
                if cache.0 != self.instance {
                    *cache = (self.instance, KeyLabels::default());
                }
                if let Some(label) = cache.1.get(hash) {
                    return Arc::clone(label);
                }
                let label = self.shared_label(hash);
                if cache.1.len() >= LOCAL_LABELS {
                    cache.1.clear();
                }
                cache.1.insert(*hash, Arc::clone(&label));
                label
            }),
        };
        CallerLabels { hashed_api_key, tier: tier.cloned() }
    }

    /// A key's label as all threads agree on it: its own while fewer than `max_keys` have one, else `other`.
    fn shared_label(&self, hash: &[u8; 32]) -> Arc<str> {
        let mut labels = self.keys[hash[0] as usize % SHARDS].lock().unwrap_or_else(PoisonError::into_inner);
        match labels.get(hash) {
            Some(label) => Arc::clone(label),
            None if self.labelled.fetch_add(1, Ordering::Relaxed) < self.max_keys => {
                let label: Arc<str> = Arc::from(hex(hash));
                labels.insert(*hash, Arc::clone(&label));
                label
            }
            None => {
                self.labelled.fetch_sub(1, Ordering::Relaxed);
                Arc::clone(&self.other)
            }
        }
    }

    /// A client request answered with `status` after `elapsed` (to its response head).
    pub fn request(
        &self,
        caller: CallerLabels,
        requested_model: Arc<str>,
        route: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        if !self.enabled {
            return;
        }
        let minute = unix_minute();
        let mut shard = self.shard();
        shard.minute(minute, &caller.tier).requests += 1;
        let series = RequestSeries { caller, requested_model, route, status };
        let entry = shard.requests.entry(series).or_default();
        entry.0 += 1;
        entry.1.observe(elapsed);
    }

    /// One upstream attempt on `deployment` for `requested_model`, its response head after `latency`.
    pub fn attempt(
        &self,
        deployment: &Arc<Deployment>,
        requested_model: &Arc<str>,
        end: AttemptEnd,
        latency: Duration,
    ) {
        if !self.enabled {
            return;
        }
        let mut shard = self.shard();
        let values = shard.deployments.entry(deployment_series(deployment, requested_model)).or_default();
        match end {
            AttemptEnd::Success => {
                values.successes += 1;
                values.latency.observe(latency);
            }
            AttemptEnd::Failure(status) => *values.failures.entry(status).or_default() += 1,
        }
    }

    /// A stream's first piece arrived from `deployment` after `elapsed`.
    pub fn first_token(&self, deployment: &Arc<Deployment>, requested_model: &Arc<str>, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        let mut shard = self.shard();
        let values = shard.deployments.entry(deployment_series(deployment, requested_model)).or_default();
        values.time_to_first_token.observe(elapsed);
    }

    /// The router put `deployment` into cooldown after a failure with `status` (0: no answer).
    pub fn cooled_down(&self, deployment: &Arc<Deployment>, status: u16) {
        if !self.enabled {
            return;
        }
        let mut shard = self.shard();
        let empty: Arc<str> = Arc::from("");
        let values = shard.deployments.entry(deployment_series(deployment, &empty)).or_default();
        *values.cooldowns.entry(status).or_default() += 1;
    }

    /// An answer counted to a key: its cost and tokens, and the key's budget after it (max, remaining).
    pub fn spend(&self, answer: CountedAnswer<'_>) {
        if !self.enabled {
            return;
        }
        let series = SpendSeries {
            caller: answer.caller.clone(),
            requested_model: Arc::clone(answer.requested_model),
            deployment: DeploymentRef(Arc::clone(answer.deployment)),
        };
        let mut shard = self.shard();
        let minute = shard.minute(unix_minute(), &answer.caller.tier);
        minute.tokens += answer.input_tokens + answer.output_tokens;
        minute.spend += answer.cost;
        let values = shard.spend.entry(series).or_default();
        values.spend += answer.cost;
        values.input_tokens += answer.input_tokens;
        values.output_tokens += answer.output_tokens;
        // A key past the cap has no gauge of its own (one shared by many would show whichever answered last).
        let own_series = !answer.caller.hashed_api_key.is_empty() && *answer.caller.hashed_api_key != *OTHER;
        if let Some((max, remaining)) = answer.budget.filter(|_| own_series) {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.as_millis() as u64);
            shard.budgets.insert(Arc::clone(&answer.caller.hashed_api_key), (max, remaining, now));
        }
    }

    /// A fallback from `requested_model` to `fallback_model` answered (`answered`) or failed too.
    pub fn fallback(&self, requested_model: &Arc<str>, fallback_model: &Arc<str>, answered: bool) {
        if !self.enabled {
            return;
        }
        let series = (Arc::clone(requested_model), Arc::clone(fallback_model), answered);
        *self.shard().fallbacks.entry(series).or_default() += 1;
    }

    /// A request refused by a key limit (`rpm`, `tpm`, `parallel`, `model_rpm`, `model_tpm`, `budget`).
    pub fn refused(&self, limit: &'static str) {
        if !self.enabled {
            return;
        }
        *self.shard().refusals.entry(limit).or_default() += 1;
    }

    /// Every shard's counts, summed.
    fn snapshot(&self) -> Shard {
        let mut all = Shard::default();
        for shard in self.shards.iter() {
            all.merge(&shard.lock().unwrap_or_else(PoisonError::into_inner));
        }
        all
    }

    /// The last hour, minute by minute and tier by tier (oldest first): requests, tokens, spend.
    pub fn history(&self) -> Vec<(u64, Option<Tier>, series::MinuteUsage)> {
        let now = unix_minute();
        let mut history: series::HashMap<(u64, Option<Tier>), series::MinuteUsage> = Default::default();
        for shard in self.shards.iter() {
            for (key, usage) in &shard.lock().unwrap_or_else(PoisonError::into_inner).history {
                let entry = history.entry(key.clone()).or_default();
                entry.requests += usage.requests;
                entry.tokens += usage.tokens;
                entry.spend += usage.spend;
            }
        }
        let mut minutes: Vec<_> = history
            .into_iter()
            .filter(|((minute, _), _)| minute + series::HISTORY_MINUTES > now)
            .map(|((minute, tier), usage)| (minute, tier, usage))
            .collect();
        minutes.sort_by(|a, b| (a.0, a.1.as_ref().map(Tier::as_str)).cmp(&(b.0, b.1.as_ref().map(Tier::as_str))));
        minutes
    }

    /// The text exposition of everything counted, plus each deployment's state.
    pub fn render(&self, deployments: &[DeploymentGauge]) -> String {
        write_text(&self.snapshot(), deployments)
    }
}

/// An answer counted to a key, for [`Metrics::spend`].
pub struct CountedAnswer<'a> {
    pub caller: &'a CallerLabels,
    pub requested_model: &'a Arc<str>,
    pub deployment: &'a Arc<Deployment>,
    pub cost: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub budget: Option<(f64, f64)>,
}

fn deployment_series(deployment: &Arc<Deployment>, requested_model: &Arc<str>) -> DeploymentSeries {
    DeploymentSeries { deployment: DeploymentRef(Arc::clone(deployment)), requested_model: Arc::clone(requested_model) }
}

fn unix_minute() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs() / 60)
}

/// A key hash as 64 hex digits (also the meter's Redis names).
pub fn hex(bytes: &[u8; 32]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_key_series_stop_at_the_cap_and_a_known_key_keeps_its_own() {
        let metrics = Metrics::new(2);
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let label = |key: &[u8; 32]| metrics.caller(Some(key), None).hashed_api_key.to_string();
        assert_eq!(label(&a), "01".repeat(32));
        assert_eq!(label(&b), "02".repeat(32));
        assert_eq!(label(&c), OTHER_KEYS, "past the cap");
        assert_eq!(label(&a), "01".repeat(32), "a key seen before keeps its series");
        assert_eq!(&*metrics.caller(None, None).hashed_api_key, "", "the master key");
        assert_eq!(Metrics::new(0).caller(Some(&a), None).hashed_api_key.as_ref(), OTHER_KEYS);
    }

    #[test]
    fn label_values_are_escaped_and_counters_add_up_across_threads() {
        let metrics = Arc::new(Metrics::new(10));
        let model: Arc<str> = Arc::from("we\"ird\\model\nname");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (metrics, model) = (Arc::clone(&metrics), Arc::clone(&model));
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        metrics.request(
                            CallerLabels::default(),
                            Arc::clone(&model),
                            "/v1/chat/completions",
                            200,
                            Duration::from_millis(3),
                        );
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|thread| thread.join().unwrap());
        let text = metrics.render(&[]);
        assert!(text.contains(r#"requested_model="we\"ird\\model\nname""#), "{text}");
        assert!(text.contains("status_code=\"200\"} 400.0"), "{text}");
        assert!(text.contains("le=\"0.005\"} 400"), "3 ms falls in the first bucket: {text}");
    }
}
