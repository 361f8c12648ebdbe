//! What the gateway counts, as plain data: the series of each metric family (their labels) and their values,
//! kept per shard and summed at scrape time.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Deployment;
use crate::tier::Tier;

/// The maps of series: foldhash, not SipHash (a request writes two or three of them, and their keys are
/// labels the gateway bounds: config model groups, capped key labels, tiers, statuses).
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Upper bounds of the latency histograms, in seconds (LiteLLM's newest buckets).
pub const BUCKETS: [f64; 17] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 420.0, 600.0];

/// A latency histogram: counts per bucket (not cumulative; the last is `+Inf`), their sum and count.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub buckets: [u64; BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(BUCKETS.len());
        self.buckets[slot] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// A deployment as a label set, compared by its id (a reload builds new deployments; one whose id is unchanged
/// keeps its series), so a series key clones a pointer.
#[derive(Debug, Clone)]
pub struct DeploymentRef(pub Arc<Deployment>);

impl PartialEq for DeploymentRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.id == other.0.id
    }
}

impl Eq for DeploymentRef {}

impl Hash for DeploymentRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

/// Who asked, as labels: `hashed_api_key` (the key's SHA-256, or `other` past the cap, or empty for the
/// master key) and the key's tier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CallerLabels {
    pub hashed_api_key: Arc<str>,
    pub tier: Option<Tier>,
}

/// One client request's series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestSeries {
    pub caller: CallerLabels,
    pub requested_model: Arc<str>,
    pub route: &'static str,
    pub status: u16,
}

/// One upstream deployment's series for one requested model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeploymentSeries {
    pub deployment: DeploymentRef,
    pub requested_model: Arc<str>,
}

/// What a deployment's attempts did.
#[derive(Debug, Clone, Default)]
pub struct DeploymentValues {
    pub successes: u64,
    /// Failures by the status they ended with (0: no answer at all, a connect error or timeout).
    pub failures: HashMap<u16, u64>,
    pub cooldowns: HashMap<u16, u64>,
    pub latency: Histogram,
    pub time_to_first_token: Histogram,
}

/// Spend and tokens of answers counted to one key, model and deployment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpendSeries {
    pub caller: CallerLabels,
    pub requested_model: Arc<str>,
    pub deployment: DeploymentRef,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SpendValues {
    pub spend: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A key's budget as last seen: (max_budget, remaining, when it was seen, in ms).
pub type BudgetGauge = (f64, f64, u64);

/// Everything one shard has counted.
#[derive(Debug, Default)]
pub struct Shard {
    pub requests: HashMap<RequestSeries, (u64, Histogram)>,
    pub deployments: HashMap<DeploymentSeries, DeploymentValues>,
    pub spend: HashMap<SpendSeries, SpendValues>,
    /// (requested model, fallback model, whether the fallback answered) → count.
    pub fallbacks: HashMap<(Arc<str>, Arc<str>, bool), u64>,
    /// Requests refused by a key limit, by the limit's name.
    pub refusals: HashMap<&'static str, u64>,
    pub budgets: HashMap<Arc<str>, BudgetGauge>,
    /// Per minute (since the Unix epoch) and tier: what the admin page plots.
    pub history: HashMap<(u64, Option<Tier>), MinuteUsage>,
}

/// One minute of one tier's use.
#[derive(Debug, Clone, Copy, Default)]
pub struct MinuteUsage {
    pub requests: u64,
    pub tokens: u64,
    pub spend: f64,
}

/// How many minutes of history are kept.
pub const HISTORY_MINUTES: u64 = 60;

impl Shard {
    /// The usage of `tier` in `minute`, dropping minutes older than the history when a new one starts.
    pub fn minute(&mut self, minute: u64, tier: &Option<Tier>) -> &mut MinuteUsage {
        let key = (minute, tier.clone());
        if !self.history.contains_key(&key) {
            self.history.retain(|(at, _), _| at + HISTORY_MINUTES > minute);
        }
        self.history.entry(key).or_default()
    }
}

impl Shard {
    /// Adds `other`'s counts to this one's (budgets: the newer reading wins).
    pub fn merge(&mut self, other: &Shard) {
        for (series, (count, latency)) in &other.requests {
            let entry = self.requests.entry(series.clone()).or_default();
            entry.0 += count;
            entry.1.merge(latency);
        }
        for (series, values) in &other.deployments {
            let entry = self.deployments.entry(series.clone()).or_default();
            entry.successes += values.successes;
            for (status, count) in &values.failures {
                *entry.failures.entry(*status).or_default() += count;
            }
            for (status, count) in &values.cooldowns {
                *entry.cooldowns.entry(*status).or_default() += count;
            }
            entry.latency.merge(&values.latency);
            entry.time_to_first_token.merge(&values.time_to_first_token);
        }
        for (series, values) in &other.spend {
            let entry = self.spend.entry(series.clone()).or_default();
            entry.spend += values.spend;
            entry.input_tokens += values.input_tokens;
            entry.output_tokens += values.output_tokens;
        }
        for (series, count) in &other.fallbacks {
            *self.fallbacks.entry(series.clone()).or_default() += count;
        }
        for (limit, count) in &other.refusals {
            *self.refusals.entry(limit).or_default() += count;
        }
        for (key, usage) in &other.history {
            let entry = self.history.entry(key.clone()).or_default();
            entry.requests += usage.requests;
            entry.tokens += usage.tokens;
            entry.spend += usage.spend;
        }
        for (key, gauge) in &other.budgets {
            let entry = self.budgets.entry(Arc::clone(key)).or_insert(*gauge);
            if gauge.2 > entry.2 {
                *entry = *gauge;
            }
        }
    }
}
