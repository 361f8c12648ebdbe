//! LiteLLM-style `config.yaml`: raw serde structs (`raw.rs`), validated once at start-up into typed
//! [`Settings`]: deployments (`deployment.rs`) and the routing policy (`router.rs`).
//!
//! Unknown sections and fields are tolerated (a real LiteLLM config must load) and reported as warnings;
//! wrong types and invalid values are errors that name the offending entry, e.g. `model_list[1].model_info.tier`.

mod added;
mod aws;
pub(crate) mod builtin_prices;
mod check;
mod deployment;
mod limits;
mod media_prices;
mod metering;
mod model_card;
mod pattern;
mod period;
mod provider_table;
mod raw;
mod redact;
mod router;
mod service_account;
mod shared_store;
mod spend_logs;
#[cfg(test)]
mod tests;
mod vertex;
mod wildcard_prices;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

pub use added::{mixed_tier_group, validate_added};
pub use aws::{model_path as bedrock_model_path, AwsSigner};
pub use check::{check, Checked};
pub use deployment::{Deployment, UpstreamCredential, OPENAI_API_BASE, OPENAI_API_BASE_HEADER};
pub use limits::{dollars, set_or_cleared, LimitChanges, LimitSet, LIMIT_FIELDS, MAX_DOLLARS};
pub use metering::{MediaPrice, MediaUse, Price, PriceSource, PricedTokens, TokenCounting, MAX_PRICE_PER_TOKEN};
pub use model_card::{shown_params, Capabilities, ModelCard};
pub use pattern::{is_pattern, matches as pattern_matches, names_every_model, precedence as pattern_precedence};
pub use period::{BudgetPeriod, InvalidPeriod};
pub use provider_table::Shape;
pub use redact::redacted;
pub use router::{
    GroupAlias, RoutingPolicy, RoutingStrategy, DEFAULT_ALLOWED_FAILS, DEFAULT_COOLDOWN_TIME, DEFAULT_NUM_RETRIES,
    MAX_ALLOWED_FAILS, MAX_COOLDOWN, MAX_RETRIES, MAX_RETRY_BACKOFF, MAX_WAITED_RETRY_AFTER, RETRY_BACKOFF_BASE,
};
pub use service_account::{ServiceAccount, MAX_TOKEN_LIFETIME};
pub use shared_store::{RedisSettings, DEFAULT_REDIS_CACHE_TTL};
pub use spend_logs::{SpendLogSettings, DEFAULT_SPEND_LOGS_RETENTION, DEFAULT_SPEND_LOGS_ROWS};
pub use wildcard_prices::ConcretePrices;

use crate::secret::Secret;
use crate::tier::Tier;
use deployment::validate_deployment;
use raw::{parse_raw, RawGeneralSettings};
use router::routing_policy;
use shared_store::redis_settings;

/// Upstream timeout when neither `litellm_params.timeout` nor `router_settings.timeout` is set (LiteLLM's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest accepted request body when `general_settings.max_request_size_mb` is not set.
pub const DEFAULT_MAX_REQUEST_MB: f64 = 16.0;
/// The largest `max_request_size_mb` (1 GiB).
pub const MAX_REQUEST_MB: f64 = 1024.0;
/// The smallest `max_request_size_mb` (about 10 KB): a lower one would refuse ordinary requests.
pub const MIN_REQUEST_MB: f64 = 0.01;
/// The shortest client timeout (`request_header_timeout`, `request_body_timeout`): a shorter one would time
/// out ordinary requests.
pub const MIN_CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest upstream `timeout` / `stream_timeout` (one day).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
/// The largest deployment `weight`.
pub const MAX_WEIGHT: f64 = 1_000_000.0;
/// The publicly known master key from LiteLLM's docs; allowed, but warned about.
const KNOWN_DEFAULT_MASTER_KEY: &str = "sk-1234";
pub(super) const ENV_PREFIX: &str = "os.environ/";

/// Everything the gateway needs from the config, validated.
#[derive(Debug)]
pub struct Settings {
    pub master_key: Secret,
    pub deployments: Vec<Deployment>,
    pub routing: RoutingPolicy,
    pub max_request_bytes: usize,
    /// `general_settings.default_key_tier`: the tier of keys minted without one (a tier some deployment has).
    pub default_key_tier: Option<Tier>,
    pub server: ServerTimeouts,
    /// `tier_limits`: what every key on a tier gets where neither the key nor its budget sets a limit.
    pub tier_limits: HashMap<Tier, LimitSet>,
    /// `general_settings.token_rate_limit_type`.
    pub token_counting: TokenCounting,
    pub metrics: MetricsSettings,
    /// Redis, when replicas share keys, limits, spend and health; `None`: this process alone (sled).
    pub redis: Option<RedisSettings>,
    /// `router_settings.timeout` (else [`DEFAULT_TIMEOUT`]): what models added at run time get too.
    pub default_timeout: Duration,
    /// Spend-log rows: on or off, how long and how many are kept.
    pub spend_logs: SpendLogSettings,
    /// `litellm_settings.max_end_user_budget` and `max_end_user_budget_id`: what an end user without a
    /// budget of their own gets.
    pub end_user_budget: EndUserBudget,
}

/// The default budget of end users: a `/budget/new` tier's id (wins), else an amount in USD.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndUserBudget {
    pub max_budget: Option<f64>,
    pub budget_id: Option<String>,
}

/// How `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `litellm_settings.prometheus_metrics` (default true): whether requests are counted at all.
    pub enabled: bool,
    /// `litellm_settings.require_auth_for_metrics_endpoint` (default true): only the master key may scrape.
    pub require_auth: bool,
    /// `litellm_settings.prometheus_max_key_series` (default 1000): keys with their own series; the rest
    /// share `hashed_api_key="other"`.
    pub max_key_series: usize,
}

/// The most keys with their own series: each costs a few hundred bytes per metric family it appears in.
pub const MAX_KEY_SERIES: usize = 100_000;

/// How long the gateway waits on its own clients, and on in-flight requests at shutdown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerTimeouts {
    /// `general_settings.request_header_timeout`: to receive a request's head.
    pub header: Duration,
    /// `general_settings.request_body_timeout`: to receive a request's whole body.
    pub body: Duration,
    /// `general_settings.shutdown_grace_period`: after SIGTERM, for in-flight requests (streams too) to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServerTimeouts {
    fn default() -> Self {
        Self { header: Duration::from_secs(10), body: Duration::from_secs(60), shutdown_grace: Duration::from_secs(30) }
    }
}

impl Settings {
    /// Every tier some deployment is on, sorted.
    pub fn known_tiers(&self) -> Vec<Tier> {
        let tiers: BTreeSet<Tier> = self.deployments.iter().filter_map(|d| d.tier.clone()).collect();
        tiers.into_iter().collect()
    }

    /// Every `model_name`, sorted, without duplicates.
    pub fn model_names(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self.deployments.iter().map(|d| &*d.model_name).collect();
        names.into_iter().map(str::to_owned).collect()
    }

    /// Every name a key's `models` may list besides a `model_name`: `model_group_alias` aliases and model
    /// access groups, sorted.
    pub fn model_grant_names(&self) -> Vec<String> {
        let aliases = self.routing.model_group_alias.keys();
        let names: BTreeSet<&String> = aliases.chain(self.routing.access_groups.keys()).collect();
        names.into_iter().cloned().collect()
    }
}

/// A loaded config and the warnings the operator should see once at start-up.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; pass --config <path> to point at your config.yaml")]
    Unreadable { path: String, source: std::io::Error },
    #[error("config is not valid: {0}")]
    Malformed(String),
    #[error("config entry {entry}: {problem}")]
    Invalid { entry: String, problem: String },
    #[error("no master key: {0}")]
    NoMasterKey(String),
}

pub(super) fn invalid(entry: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { entry: entry.into(), problem: problem.into() }
}

/// Reads and validates the config file; `env` looks up environment variables.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    parse(&read(path)?, env)
}

/// The config file's text.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable { path: path.display().to_string(), source })
}

/// Parses and validates config text; `env` looks up environment variables.
pub fn parse(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let settings = validate(yaml, env, &mut warnings)?;
    Ok(Loaded { settings, warnings })
}

/// [`parse`], leaving the warnings found so far in `warnings` even when it fails (`tiergate check` shows
/// them beside the error).
fn validate(
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Settings, ConfigError> {
    let raw = parse_raw(yaml, warnings)?;
    let master_key = master_key(&raw.general_settings, env, warnings)?;
    let default_timeout = match raw.router_settings.timeout {
        Some(seconds) => seconds_to_duration("router_settings.timeout", seconds)?,
        None => DEFAULT_TIMEOUT,
    };
    let mut seen_ids = HashSet::new();
    let mut twins: HashMap<String, usize> = HashMap::new();
    let mut deployments = Vec::with_capacity(raw.model_list.len());
    for (index, entry) in raw.model_list.into_iter().enumerate() {
        // Identical entries are told apart by their order among themselves, so a derived id survives the
        // reordering, addition or removal of other entries.
        let twin = twins.entry(entry.identity()).and_modify(|count| *count += 1).or_insert(0);
        let deployment =
            validate_deployment(format!("model_list[{index}]"), *twin, entry, default_timeout, env, warnings)?;
        pattern::check(&deployment.model_name, &deployment.upstream_model)
            .map_err(|problem| invalid(format!("model_list[{index}].model_name"), problem))?;
        if !seen_ids.insert(deployment.id.clone()) {
            return Err(invalid(
                format!("model_list[{index}].model_info.id"),
                format!("id `{}` is used by an earlier entry; ids must be unique", deployment.id),
            ));
        }
        deployments.push(deployment);
    }
    tiers_whole_per_group(&deployments)?;
    if deployments.is_empty() {
        warnings.push("model_list is empty: every chat completion will fail with `unknown model`".into());
    }
    let max_request_mb = raw.general_settings.max_request_size_mb.unwrap_or(DEFAULT_MAX_REQUEST_MB);
    if !(max_request_mb.is_finite() && (MIN_REQUEST_MB..=MAX_REQUEST_MB).contains(&max_request_mb)) {
        return Err(invalid(
            "general_settings.max_request_size_mb",
            format!("must be a number of megabytes from {MIN_REQUEST_MB} to {MAX_REQUEST_MB}"),
        ));
    }
    let max_request_bytes = (max_request_mb * 1024.0 * 1024.0) as usize;
    let redis = redis_settings(&raw.general_settings, &raw.router_settings, env)?;
    let routing = routing_policy(raw.router_settings, &deployments, warnings)?;
    let default_key_tier = default_key_tier(raw.general_settings.default_key_tier.as_deref(), &deployments)?;
    let server = server_timeouts(&raw.general_settings)?;
    let spend_logs = spend_logs::spend_log_settings(&raw.general_settings)?;
    let token_counting = metering::token_counting(raw.general_settings.token_rate_limit_type.as_deref())?;
    let tier_limits = metering::tier_limits(raw.tier_limits, &deployments, warnings)?;
    let settings = Settings {
        master_key,
        deployments,
        routing,
        max_request_bytes,
        default_key_tier,
        server,
        tier_limits,
        token_counting,
        metrics: MetricsSettings {
            enabled: raw.litellm_settings.prometheus_metrics.unwrap_or(true),
            require_auth: raw.litellm_settings.require_auth_for_metrics_endpoint.unwrap_or(true),
            max_key_series: match raw.litellm_settings.prometheus_max_key_series.unwrap_or(1000) {
                count if count <= MAX_KEY_SERIES => count,
                _ => {
                    let field = "litellm_settings.prometheus_max_key_series";
                    return Err(invalid(field, format!("must be at most {MAX_KEY_SERIES}")));
                }
            },
        },
        redis,
        default_timeout,
        spend_logs,
        end_user_budget: EndUserBudget {
            max_budget: match raw.litellm_settings.max_end_user_budget {
                Some(budget) => match limits::checked_dollars(budget) {
                    Some(budget) => Some(budget),
                    None => {
                        let field = "litellm_settings.max_end_user_budget";
                        return Err(invalid(field, format!("must be an amount in USD from 0 to {MAX_DOLLARS:e}")));
                    }
                },
                None => None,
            },
            budget_id: raw.litellm_settings.max_end_user_budget_id.filter(|id| !id.is_empty()),
        },
    };
    Ok(settings)
}

fn master_key(
    general: &RawGeneralSettings,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Secret, ConfigError> {
    const HOW: &str = "set general_settings.master_key in the config (a literal or os.environ/VAR), \
                       or the LITELLM_MASTER_KEY environment variable";
    let key = match env("LITELLM_MASTER_KEY").filter(|key| !key.is_empty()) {
        Some(key) => key,
        None => match general.master_key.as_deref() {
            None | Some("") => return Err(ConfigError::NoMasterKey(HOW.into())),
            Some(value) => match value.strip_prefix(ENV_PREFIX) {
                Some(var) => env(var).filter(|key| !key.is_empty()).ok_or_else(|| {
                    ConfigError::NoMasterKey(format!(
                        "general_settings.master_key is os.environ/{var} but {var} is not set; set {var} or {HOW}"
                    ))
                })?,
                None => value.to_owned(),
            },
        },
    };
    if key == KNOWN_DEFAULT_MASTER_KEY {
        warnings.push(format!(
            "the master key is LiteLLM's publicly known example `{KNOWN_DEFAULT_MASTER_KEY}`: \
             anyone can mint keys; set a secret one before exposing this gateway"
        ));
    }
    if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ConfigError::NoMasterKey(
            "the master key has spaces, control or non-ASCII characters, so no client could send it in a \
             header; use printable ASCII only"
                .into(),
        ));
    }
    Ok(Secret::new(key))
}

fn server_timeouts(general: &RawGeneralSettings) -> Result<ServerTimeouts, ConfigError> {
    let defaults = ServerTimeouts::default();
    let read = |field: &str, value: Option<f64>, default: Duration| match value {
        Some(seconds) => seconds_to_duration(&format!("general_settings.{field}"), seconds),
        None => Ok(default),
    };
    let client = |field: &str, value: Option<f64>, default: Duration| {
        let timeout = read(field, value, default)?;
        match timeout >= MIN_CLIENT_TIMEOUT {
            true => Ok(timeout),
            false => Err(invalid(format!("general_settings.{field}"), "must be at least 1 second")),
        }
    };
    Ok(ServerTimeouts {
        header: client("request_header_timeout", general.request_header_timeout, defaults.header)?,
        body: client("request_body_timeout", general.request_body_timeout, defaults.body)?,
        shutdown_grace: read("shutdown_grace_period", general.shutdown_grace_period, defaults.shutdown_grace)?,
    })
}

/// A model group is tiered throughout or not at all: a group that mixed tiered deployments with untiered
/// ones (which every key may reach) would let a key of one tier reach what another tier pays for, and is
/// what a half-written file looks like (its last `tier:` cut off).
fn tiers_whole_per_group(deployments: &[Deployment]) -> Result<(), ConfigError> {
    for (index, deployment) in deployments.iter().enumerate() {
        let Some(tier) = &deployment.tier else { continue };
        let same_group = |other: &&Deployment| other.model_name == deployment.model_name;
        if let Some(open) = deployments.iter().position(|other| same_group(&other) && other.tier.is_none()) {
            return Err(invalid(
                format!("model_list[{open}].model_info.tier"),
                format!(
                    "model group `{}` mixes tiered deployments (model_list[{index}] is on tier `{tier}`) with untiered ones, which every key may reach; give each deployment of the group a model_info.tier, or none of them",
                    deployment.model_name
                ),
            ));
        }
    }
    Ok(())
}

/// `default_key_tier` must be a tier some deployment is on, or a key minted without a tier would reach nothing.
fn default_key_tier(label: Option<&str>, deployments: &[Deployment]) -> Result<Option<Tier>, ConfigError> {
    let Some(label) = label else { return Ok(None) };
    let tier = Tier::parse(label);
    match deployments.iter().any(|d| d.tier.as_ref() == Some(&tier)) {
        true => Ok(Some(tier)),
        false => Err(invalid("general_settings.default_key_tier", format!("no deployment is on tier `{label}`"))),
    }
}

/// A positive timeout of at most [`MAX_TIMEOUT`].
pub(super) fn seconds_to_duration(field: &str, seconds: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero() && *duration <= MAX_TIMEOUT)
        .ok_or_else(|| {
            invalid(field, format!("must be a positive number of seconds, at most {} (one day)", MAX_TIMEOUT.as_secs()))
        })
}
