//! The routing policy (`router_settings`): strategy, retries, cooldowns, fallbacks, each bounded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::pattern::{is_pattern, matches};
use super::raw::{RawGroupAlias, RawRouterSettings};
use super::{invalid, ConfigError, Deployment};

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
    /// Retries after a failed attempt (connect error, timeout, unusable answer, 429, 5xx, 401/403), each on a
    /// fresh pick.
    pub num_retries: u32,
    /// The least pause before each retry (`router_settings.retry_after`); a retry on a deployment already
    /// tried backs off longer (see [`RETRY_BACKOFF_BASE`]).
    pub retry_pause: Duration,
    /// Failures within a minute that put a deployment into cooldown.
    pub allowed_fails: u32,
    pub cooldown_time: Duration,
    /// Model groups to try, in order, when a group's attempts are used up: `{"gpt-4": ["gpt-3.5-turbo"]}`.
    pub fallbacks: HashMap<String, Vec<Arc<str>>>,
    /// Model groups to try when the upstream says the context window is exceeded.
    pub context_window_fallbacks: HashMap<String, Vec<Arc<str>>>,
    /// `router_settings.model_group_alias`: names that route to another model group (or to a name a wildcard
    /// group serves). An alias never shadows a `model_name`, and its target is never another alias.
    pub model_group_alias: HashMap<String, GroupAlias>,
    /// `model_info.access_groups`: each group's member model names (a key naming the group may call them).
    pub access_groups: HashMap<String, Vec<Arc<str>>>,
}

/// Where a `model_group_alias` entry routes, and whether `/v1/models` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAlias {
    pub target: Arc<str>,
    pub hidden: bool,
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
/// The pause before the first retry that goes back to a deployment the request already tried; it doubles
/// with each retry up to [`MAX_RETRY_BACKOFF`], and a random 0 to 25 % is taken off it (jitter), so clients
/// failing together do not come back together. LiteLLM's and the OpenAI SDKs' values.
pub const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The longest backoff pause.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(8);
/// The longest `Retry-After` a request waits out when no other deployment of its tier can take the retry;
/// a longer one is answered at once (the 429 goes to the client, who can decide to wait).
pub const MAX_WAITED_RETRY_AFTER: Duration = Duration::from_secs(5);
/// LiteLLM's `DEFAULT_COOLDOWN_TIME_SECONDS`.
pub const DEFAULT_COOLDOWN_TIME: Duration = Duration::from_secs(5);

impl Default for RoutingPolicy {
    fn default() -> Self {
        Self {
            strategy: RoutingStrategy::default(),
            num_retries: DEFAULT_NUM_RETRIES,
            retry_pause: Duration::ZERO,
            allowed_fails: DEFAULT_ALLOWED_FAILS,
            cooldown_time: DEFAULT_COOLDOWN_TIME,
            fallbacks: HashMap::new(),
            context_window_fallbacks: HashMap::new(),
            model_group_alias: HashMap::new(),
            access_groups: HashMap::new(),
        }
    }
}

/// `router_settings` → the routing policy; fallbacks must name configured model groups.
pub(super) fn routing_policy(
    raw: RawRouterSettings,
    deployments: &[Deployment],
    warnings: &mut Vec<String>,
) -> Result<RoutingPolicy, ConfigError> {
    let mut policy = RoutingPolicy::default();
    if let Some(name) = raw.routing_strategy {
        match RoutingStrategy::from_name(&name) {
            Some(strategy) => policy.strategy = strategy,
            None => warnings.push(format!(
                "router_settings.routing_strategy `{name}` is not supported; using simple-shuffle \
                 (supported: simple-shuffle, least-busy, latency-based-routing)"
            )),
        }
    }
    policy.num_retries =
        at_most("router_settings.num_retries", raw.num_retries.unwrap_or(policy.num_retries), MAX_RETRIES)?;
    policy.allowed_fails =
        at_most("router_settings.allowed_fails", raw.allowed_fails.unwrap_or(policy.allowed_fails), MAX_ALLOWED_FAILS)?;
    if policy.allowed_fails == 0 {
        return Err(invalid("router_settings.allowed_fails", "must be at least 1"));
    }
    if let Some(seconds) = raw.retry_after {
        policy.retry_pause = bounded_seconds("router_settings.retry_after", seconds, MAX_COOLDOWN)?;
    }
    if let Some(seconds) = raw.cooldown_time {
        policy.cooldown_time = bounded_seconds("router_settings.cooldown_time", seconds, MAX_COOLDOWN)?;
    }
    let known: HashSet<&str> = deployments.iter().map(|d| &*d.model_name).collect();
    policy.fallbacks = fallback_map("router_settings.fallbacks", raw.fallbacks, &known)?;
    policy.context_window_fallbacks =
        fallback_map("router_settings.context_window_fallbacks", raw.context_window_fallbacks, &known)?;
    policy.model_group_alias = group_aliases(raw.model_group_alias, &known)?;
    policy.access_groups = access_groups(deployments);
    Ok(policy)
}

/// `model_group_alias`, checked: an alias must not be a `model_name` (it would shadow it, and which of the two
/// a key's `models` meant would be unclear), and its target must be a `model_name` or a name a wildcard
/// `model_name` matches (not another alias: one hop, so no cycles).
fn group_aliases(
    raw: Option<BTreeMap<String, RawGroupAlias>>,
    known: &HashSet<&str>,
) -> Result<HashMap<String, GroupAlias>, ConfigError> {
    let mut aliases = HashMap::new();
    for (alias, entry) in raw.unwrap_or_default() {
        let field = format!("router_settings.model_group_alias.{alias}");
        let (target, hidden) = match entry {
            RawGroupAlias::Target(target) => (target, false),
            RawGroupAlias::Full { model, hidden } => (model, hidden.unwrap_or(false)),
        };
        if alias.trim().is_empty() || is_pattern(&alias) {
            return Err(invalid(field, "an alias must be a plain model name, without `*`"));
        }
        if known.contains(alias.as_str()) {
            return Err(invalid(
                field,
                format!("`{alias}` is a model_name in model_list; an alias may not shadow it (rename one of them)"),
            ));
        }
        let served = known.contains(target.as_str())
            || (!is_pattern(&target) && known.iter().any(|name| is_pattern(name) && matches(name, &target)));
        if !served {
            return Err(invalid(
                field,
                format!(
                    "target `{target}` is not a model_name in model_list, nor a name a wildcard model_name matches"
                ),
            ));
        }
        aliases.insert(alias, GroupAlias { target: Arc::from(target), hidden });
    }
    Ok(aliases)
}

/// Each `model_info.access_groups` group with the model names of its deployments, in config order, once each.
fn access_groups(deployments: &[Deployment]) -> HashMap<String, Vec<Arc<str>>> {
    let mut groups: HashMap<String, Vec<Arc<str>>> = HashMap::new();
    for deployment in deployments {
        for group in deployment.access_groups.iter() {
            let members = groups.entry(group.to_string()).or_default();
            if !members.iter().any(|member| **member == *deployment.model_name) {
                members.push(Arc::from(&*deployment.model_name));
            }
        }
    }
    groups
}

/// LiteLLM's `[{"gpt-4": ["gpt-3.5-turbo"]}, ...]` → model group → fallback groups, all checked to exist.
fn fallback_map(
    field: &str,
    raw: Option<Vec<BTreeMap<String, Vec<String>>>>,
    known: &HashSet<&str>,
) -> Result<HashMap<String, Vec<Arc<str>>>, ConfigError> {
    let mut map = HashMap::new();
    for (index, entry) in raw.unwrap_or_default().into_iter().enumerate() {
        for (model, fallbacks) in entry {
            // A fallback to a wildcard group would have no name to fill its `*`s from.
            if let Some(pattern) = fallbacks.iter().find(|name| is_pattern(name)) {
                return Err(invalid(
                    format!("{field}[{index}].{model}"),
                    format!("`{pattern}` is a wildcard; a fallback must be a model group with a fixed name"),
                ));
            }
            for name in fallbacks.iter().chain(std::iter::once(&model)) {
                if !known.contains(name.as_str()) {
                    return Err(invalid(
                        format!("{field}[{index}].{model}"),
                        format!("`{name}` is not a model_name in model_list"),
                    ));
                }
            }
            map.insert(model, fallbacks.into_iter().map(Arc::from).collect());
        }
    }
    Ok(map)
}

/// `0 ..= max` seconds.
fn bounded_seconds(field: &str, seconds: f64, max: Duration) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| *duration <= max)
        .ok_or_else(|| invalid(field, format!("must be a number of seconds from 0 to {}", max.as_secs())))
}

pub(super) fn at_most(field: &str, value: u32, max: u32) -> Result<u32, ConfigError> {
    match value <= max {
        true => Ok(value),
        false => Err(invalid(field, format!("must be at most {max}"))),
    }
}
