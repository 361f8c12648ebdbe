//! The routing policy: how a model group's load is spread, and what happens when a deployment fails.
//! LiteLLM's `router_settings` names; defaults follow LiteLLM except where noted in README.

use std::collections::HashMap;
use std::time::Duration;

/// `router_settings.routing_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingStrategy {
    /// Weighted random by `weight` (else `rpm`, else `tpm`); in turn (round robin) when none is set.
    #[default]
    SimpleShuffle,
    /// The deployment with the fewest requests in flight.
    LeastBusy,
    /// The deployment with the lowest recent latency (untried ones first).
    LatencyBased,
}

impl RoutingStrategy {
    /// The strategy named `name`, or `None` for names tiergate does not implement.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "simple-shuffle" => Some(Self::SimpleShuffle),
            "least-busy" => Some(Self::LeastBusy),
            "latency-based-routing" => Some(Self::LatencyBased),
            _ => None,
        }
    }
}

/// Retries, cooldowns and fallbacks. Every one of them stays inside the key's tier: they only ever choose
/// among the candidates `RoutingTable` built for that tier.
#[derive(Debug, Clone)]
pub struct RoutingPolicy {
    pub strategy: RoutingStrategy,
    /// Retries after a failed attempt (connect error, timeout, 429, 5xx), each on a fresh pick.
    pub num_retries: u32,
    /// Pause before each retry.
    pub retry_after: Duration,
    /// Failures within a minute that put a deployment into cooldown.
    pub allowed_fails: u32,
    pub cooldown_time: Duration,
    /// Model groups to try, in order, when a group's attempts are used up: `{"gpt-4": ["gpt-3.5-turbo"]}`.
    pub fallbacks: HashMap<String, Vec<String>>,
    /// Model groups to try when the upstream says the context window is exceeded.
    pub context_window_fallbacks: HashMap<String, Vec<String>>,
}

/// Retries when neither `router_settings.num_retries` nor the deployment's `max_retries` is set. LiteLLM's
/// Router defaults to 0; tiergate retries a blip by default, as the OpenAI SDKs do (2).
pub const DEFAULT_NUM_RETRIES: u32 = 2;
/// LiteLLM's `DEFAULT_ALLOWED_FAILS`.
pub const DEFAULT_ALLOWED_FAILS: u32 = 3;
/// The longest a deployment is ever cooled down, whether by `cooldown_time` or by an upstream's `Retry-After`
/// (larger `Retry-After` values are clamped to it; a larger `cooldown_time` is a config error).
pub const MAX_COOLDOWN: Duration = Duration::from_secs(3_600);
/// The most retries `num_retries` or a deployment's `max_retries` may ask for.
pub const MAX_RETRIES: u32 = 100;
/// The largest `allowed_fails`.
pub const MAX_ALLOWED_FAILS: u32 = 10_000;
/// LiteLLM's `DEFAULT_COOLDOWN_TIME_SECONDS`.
pub const DEFAULT_COOLDOWN_TIME: Duration = Duration::from_secs(5);

impl Default for RoutingPolicy {
    fn default() -> Self {
        Self {
            strategy: RoutingStrategy::default(),
            num_retries: DEFAULT_NUM_RETRIES,
            retry_after: Duration::ZERO,
            allowed_fails: DEFAULT_ALLOWED_FAILS,
            cooldown_time: DEFAULT_COOLDOWN_TIME,
            fallbacks: HashMap::new(),
            context_window_fallbacks: HashMap::new(),
        }
    }
}
