//! LiteLLM-style `config.yaml`: raw serde structs, validated once at start-up into typed [`Settings`].
//!
//! Unknown sections and fields are tolerated (a real LiteLLM config must load) and reported as warnings;
//! wrong types and invalid values are errors that name the offending entry, e.g. `model_list[1].model_info.tier`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use awc::http::header::HeaderValue;
use awc::http::Uri;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::pool::{
    Deployment, RoutingPolicy, RoutingStrategy, Tier, UpstreamCredential, MAX_ALLOWED_FAILS, MAX_COOLDOWN, MAX_RETRIES,
};
use crate::secret::Secret;

/// Upstream timeout when neither `litellm_params.timeout` nor `router_settings.timeout` is set (LiteLLM's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest accepted request body when `general_settings.max_request_size_mb` is not set.
pub const DEFAULT_MAX_REQUEST_MB: f64 = 16.0;
/// The largest `max_request_size_mb` (1 GiB).
pub const MAX_REQUEST_MB: f64 = 1024.0;
/// The longest upstream `timeout` / `stream_timeout` (one day).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
/// The largest deployment `weight`.
pub const MAX_WEIGHT: f64 = 1_000_000.0;
/// Where `openai/` deployments without `api_base` (and without `OPENAI_API_BASE`) are sent.
pub const OPENAI_API_BASE: &str = "https://api.openai.com/v1";
/// The `x-litellm-model-api-base` such deployments report, exactly as LiteLLM does.
pub const OPENAI_API_BASE_HEADER: &str = "https://api.openai.com";
/// The publicly known master key from LiteLLM's docs; allowed, but warned about.
const KNOWN_DEFAULT_MASTER_KEY: &str = "sk-1234";
const ENV_PREFIX: &str = "os.environ/";

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
}

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

fn invalid(entry: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { entry: entry.into(), problem: problem.into() }
}

/// Reads and validates the config file; `env` looks up environment variables.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Unreadable { path: path.display().to_string(), source })?;
    parse(&text, env)
}

/// Parses and validates config text; `env` looks up environment variables.
pub fn parse(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let raw = parse_raw(yaml, &mut warnings)?;
    let master_key = master_key(&raw.general_settings, env, &mut warnings)?;
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
        let deployment = validate_deployment(index, *twin, entry, default_timeout, env, &mut warnings)?;
        if !seen_ids.insert(deployment.id.clone()) {
            return Err(invalid(
                format!("model_list[{index}].model_info.id"),
                format!("id `{}` is used by an earlier entry; ids must be unique", deployment.id),
            ));
        }
        deployments.push(deployment);
    }
    if deployments.is_empty() {
        warnings.push("model_list is empty: every chat completion will fail with `unknown model`".into());
    }
    let max_request_mb = raw.general_settings.max_request_size_mb.unwrap_or(DEFAULT_MAX_REQUEST_MB);
    if !(max_request_mb.is_finite() && max_request_mb > 0.0 && max_request_mb <= MAX_REQUEST_MB) {
        return Err(invalid(
            "general_settings.max_request_size_mb",
            format!("must be a positive number of megabytes, at most {MAX_REQUEST_MB}"),
        ));
    }
    let max_request_bytes = (max_request_mb * 1024.0 * 1024.0) as usize;
    let routing = routing_policy(raw.router_settings, &deployments, &mut warnings)?;
    let default_key_tier = default_key_tier(raw.general_settings.default_key_tier.as_deref(), &deployments)?;
    let server = server_timeouts(&raw.general_settings)?;
    let settings = Settings { master_key, deployments, routing, max_request_bytes, default_key_tier, server };
    Ok(Loaded { settings, warnings })
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    model_list: Vec<RawDeployment>,
    #[serde(default)]
    general_settings: RawGeneralSettings,
    #[serde(default)]
    router_settings: RawRouterSettings,
}

#[derive(Deserialize)]
struct RawDeployment {
    model_name: String,
    litellm_params: RawLitellmParams,
    #[serde(default)]
    model_info: RawModelInfo,
}

impl RawDeployment {
    /// What identifies an entry for a derived id: never its api key.
    fn identity(&self) -> String {
        let params = &self.litellm_params;
        let parts = [
            &*self.model_name,
            &params.model,
            params.api_base.as_deref().unwrap_or(""),
            self.model_info.tier.as_deref().unwrap_or(""),
        ];
        parts.join("\0")
    }
}

#[derive(Deserialize)]
struct RawLitellmParams {
    model: String,
    api_key: Option<String>,
    api_base: Option<String>,
    timeout: Option<f64>,
    stream_timeout: Option<f64>,
    weight: Option<f64>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    max_retries: Option<u32>,
}

#[derive(Deserialize, Default)]
struct RawModelInfo {
    tier: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawGeneralSettings {
    master_key: Option<String>,
    max_request_size_mb: Option<f64>,
    default_key_tier: Option<String>,
    request_header_timeout: Option<f64>,
    request_body_timeout: Option<f64>,
    shutdown_grace_period: Option<f64>,
}

#[derive(Deserialize, Default)]
struct RawRouterSettings {
    timeout: Option<f64>,
    routing_strategy: Option<String>,
    num_retries: Option<u32>,
    retry_after: Option<f64>,
    allowed_fails: Option<u32>,
    cooldown_time: Option<f64>,
    fallbacks: Option<Vec<BTreeMap<String, Vec<String>>>>,
    context_window_fallbacks: Option<Vec<BTreeMap<String, Vec<String>>>>,
}

fn parse_raw(yaml: &str, warnings: &mut Vec<String>) -> Result<RawConfig, ConfigError> {
    if yaml.trim().is_empty() {
        return Err(ConfigError::Malformed(
            "the file is empty; it needs at least `model_list` and `general_settings.master_key`".into(),
        ));
    }
    let deserializer = serde_yaml::Deserializer::from_str(yaml);
    let mut on_unknown = |path: serde_ignored::Path<'_>| {
        warnings.push(format!("ignoring config field `{path}`: tiergate does not use it"));
    };
    serde_path_to_error::deserialize(serde_ignored::Deserializer::new(deserializer, &mut on_unknown)).map_err(|err| {
        let path = err.path().to_string();
        match path.as_str() {
            "." => ConfigError::Malformed(err.into_inner().to_string()),
            _ => ConfigError::Invalid { entry: path, problem: err.into_inner().to_string() },
        }
    })
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
    Ok(Secret::new(key))
}

fn server_timeouts(general: &RawGeneralSettings) -> Result<ServerTimeouts, ConfigError> {
    let defaults = ServerTimeouts::default();
    let read = |field: &str, value: Option<f64>, default: Duration| match value {
        Some(seconds) => seconds_to_duration(&format!("general_settings.{field}"), seconds),
        None => Ok(default),
    };
    Ok(ServerTimeouts {
        header: read("request_header_timeout", general.request_header_timeout, defaults.header)?,
        body: read("request_body_timeout", general.request_body_timeout, defaults.body)?,
        shutdown_grace: read("shutdown_grace_period", general.shutdown_grace_period, defaults.shutdown_grace)?,
    })
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

fn validate_deployment(
    index: usize,
    twin: usize,
    raw: RawDeployment,
    default_timeout: Duration,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Deployment, ConfigError> {
    let entry = format!("model_list[{index}]");
    let identity = raw.identity();
    if raw.model_name.trim().is_empty() {
        return Err(invalid(format!("{entry}.model_name"), "must not be empty"));
    }
    let params = raw.litellm_params;
    let upstream_model =
        upstream_model(&params.model).map_err(|problem| invalid(format!("{entry}.litellm_params.model"), problem))?;
    let (chat_url, api_base_header) = api_base(&entry, params.api_base.as_deref(), env)?;
    let credential =
        credential(&entry, &raw.model_name, params.api_key.as_deref(), params.api_base.is_none(), env, warnings)?;
    let tier = match raw.model_info.tier.as_deref() {
        None => None,
        Some("") => {
            return Err(invalid(
                format!("{entry}.model_info.tier"),
                "must not be empty; use e.g. `free` or `paid`, or leave it out",
            ))
        }
        Some(label) => Some(Tier::parse(label)),
    };
    let timeout = match params.timeout {
        Some(seconds) => seconds_to_duration(&format!("{entry}.litellm_params.timeout"), seconds)?,
        None => default_timeout,
    };
    let stream_timeout = match params.stream_timeout {
        Some(seconds) => seconds_to_duration(&format!("{entry}.litellm_params.stream_timeout"), seconds)?,
        None => timeout,
    };
    if params.weight.is_some_and(|weight| !(weight.is_finite() && (0.0..=MAX_WEIGHT).contains(&weight))) {
        return Err(invalid(
            format!("{entry}.litellm_params.weight"),
            format!("must be a number from 0 to {MAX_WEIGHT}"),
        ));
    }
    if let Some(retries) = params.max_retries {
        at_most(&format!("{entry}.litellm_params.max_retries"), retries, MAX_RETRIES)?;
    }
    let id = match raw.model_info.id {
        Some(id) if id.trim().is_empty() => return Err(invalid(format!("{entry}.model_info.id"), "must not be empty")),
        Some(id) => id,
        None => derived_id(&identity, twin),
    };
    let id_header = HeaderValue::from_str(&id)
        .map_err(|_| invalid(format!("{entry}.model_info.id"), "must be printable ASCII (it is sent as a header)"))?;
    let upstream_model_json = serde_json::to_string(upstream_model).unwrap_or_default().into_boxed_str();
    Ok(Deployment {
        id: id.into_boxed_str(),
        model_name: raw.model_name.into_boxed_str(),
        upstream_model: upstream_model.into(),
        upstream_model_json,
        tier,
        chat_url,
        api_base_header,
        id_header,
        credential,
        timeout,
        stream_timeout,
        weight: params.weight,
        rpm: params.rpm,
        tpm: params.tpm,
        max_retries: params.max_retries,
    })
}

/// `router_settings` → the routing policy; fallbacks must name configured model groups.
fn routing_policy(
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
        policy.retry_after = bounded_seconds("router_settings.retry_after", seconds, MAX_COOLDOWN)?;
    }
    if let Some(seconds) = raw.cooldown_time {
        policy.cooldown_time = bounded_seconds("router_settings.cooldown_time", seconds, MAX_COOLDOWN)?;
    }
    let known: HashSet<&str> = deployments.iter().map(|d| &*d.model_name).collect();
    policy.fallbacks = fallback_map("router_settings.fallbacks", raw.fallbacks, &known)?;
    policy.context_window_fallbacks =
        fallback_map("router_settings.context_window_fallbacks", raw.context_window_fallbacks, &known)?;
    Ok(policy)
}

/// LiteLLM's `[{"gpt-4": ["gpt-3.5-turbo"]}, ...]` → model group → fallback groups, all checked to exist.
fn fallback_map(
    field: &str,
    raw: Option<Vec<BTreeMap<String, Vec<String>>>>,
    known: &HashSet<&str>,
) -> Result<HashMap<String, Vec<String>>, ConfigError> {
    let mut map = HashMap::new();
    for (index, entry) in raw.unwrap_or_default().into_iter().enumerate() {
        for (model, fallbacks) in entry {
            for name in fallbacks.iter().chain(std::iter::once(&model)) {
                if !known.contains(name.as_str()) {
                    return Err(invalid(
                        format!("{field}[{index}].{model}"),
                        format!("`{name}` is not a model_name in model_list"),
                    ));
                }
            }
            map.insert(model, fallbacks);
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

fn at_most(field: &str, value: u32, max: u32) -> Result<u32, ConfigError> {
    match value <= max {
        true => Ok(value),
        false => Err(invalid(field, format!("must be at most {max}"))),
    }
}

/// `openai/<model>` or a bare `<model>` (OpenAI) → `<model>`; other providers are not supported yet.
fn upstream_model(model: &str) -> Result<&str, String> {
    match model.split_once('/') {
        Some(("openai", rest)) if !rest.is_empty() => Ok(rest),
        Some(("openai", _)) => Err("`openai/` needs a model name after it, e.g. `openai/gpt-4o`".into()),
        Some((provider, _)) => Err(format!(
            "provider `{provider}` is not supported yet; tiergate speaks the OpenAI API: use `openai/<model>` \
             with an api_base of an OpenAI-compatible server"
        )),
        None if model.trim().is_empty() => Err("must not be empty; use `openai/<model>`".into()),
        None => Ok(model),
    }
}

/// The chat completions URL and the `x-litellm-model-api-base` header value for an entry.
fn api_base(
    entry: &str,
    configured: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Uri, HeaderValue), ConfigError> {
    let field = format!("{entry}.litellm_params.api_base");
    let (base, header) = match configured {
        Some(value) => {
            let base = resolve_env(value, env)
                .map_err(|var| invalid(&field, format!("is os.environ/{var} but {var} is not set")))?;
            (base.clone(), base)
        }
        None => match env("OPENAI_API_BASE").filter(|base| !base.is_empty()) {
            Some(base) => (base.clone(), base),
            None => (OPENAI_API_BASE.to_owned(), OPENAI_API_BASE_HEADER.to_owned()),
        },
    };
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(invalid(field, "must be an http:// or https:// URL, e.g. http://localhost:8000/v1"));
    }
    let url = format!("{}/chat/completions", base.trim_end_matches('/'));
    let chat_url = url.parse::<Uri>().map_err(|err| invalid(&field, format!("is not a valid URL ({err})")))?;
    let header =
        HeaderValue::from_str(&without_userinfo(&header)).map_err(|_| invalid(&field, "must be printable ASCII"))?;
    Ok((chat_url, header))
}

/// `https://user:password@host/v1` → `https://host/v1`: what the gateway may show of a base URL.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

fn credential(
    entry: &str,
    model_name: &str,
    configured: Option<&str>,
    default_base: bool,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<UpstreamCredential, ConfigError> {
    let key = match configured {
        Some(value) => match resolve_env(value, env) {
            Ok(key) => key,
            Err(var) => {
                warnings.push(format!(
                    "{entry} ({model_name}): api_key is os.environ/{var} but {var} is not set; \
                     requests routed to this deployment will fail until it is set"
                ));
                return Ok(UpstreamCredential::UnsetEnv(var.into()));
            }
        },
        // OPENAI_API_KEY belongs to OpenAI (or OPENAI_API_BASE): it is never sent to another api_base.
        None => match env("OPENAI_API_KEY").filter(|_| default_base) {
            Some(key) => key,
            None => return Ok(UpstreamCredential::Anonymous),
        },
    };
    let mut header = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
        invalid(format!("{entry}.litellm_params.api_key"), "contains characters that cannot be sent in a header")
    })?;
    header.set_sensitive(true);
    Ok(UpstreamCredential::Bearer(header))
}

/// `os.environ/VAR` → the variable's value (`Err(VAR)` when unset); anything else is a literal.
fn resolve_env<'a>(value: &'a str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, &'a str> {
    match value.strip_prefix(ENV_PREFIX) {
        Some(var) => env(var).ok_or(var),
        None => Ok(value.to_owned()),
    }
}

/// A positive timeout of at most [`MAX_TIMEOUT`].
fn seconds_to_duration(field: &str, seconds: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero() && *duration <= MAX_TIMEOUT)
        .ok_or_else(|| {
            invalid(field, format!("must be a positive number of seconds, at most {} (one day)", MAX_TIMEOUT.as_secs()))
        })
}

/// A stable id for entries without `model_info.id`: a hash of what identifies the entry (model name, model,
/// api_base, tier; never its api key) and, for identical entries, which of them it is.
fn derived_id(identity: &str, twin: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(identity.as_bytes());
    hasher.update(twin.to_le_bytes());
    hasher.finalize().iter().take(8).map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "
model_list:
  - model_name: gpt-4
    litellm_params:
      model: openai/fake
      api_key: fake-key
      api_base: https://exampleopenaiendpoint-production.up.railway.app/
    model_info:
      tier: free
  - model_name: gpt-4
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
    model_info:
      tier: paid
general_settings:
  master_key: sk-1234
";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn error_of(yaml: &str) -> String {
        parse(yaml, &no_env).unwrap_err().to_string()
    }

    #[test]
    fn seed_config_loads_with_both_tiers() {
        let loaded = parse(SEED, &no_env).unwrap();
        let [free, paid] = &loaded.settings.deployments[..] else { panic!("two deployments expected") };
        assert_eq!(free.tier, Some(Tier::Free));
        assert_eq!(&*free.upstream_model, "fake");
        assert_eq!(
            free.chat_url.to_string(),
            "https://exampleopenaiendpoint-production.up.railway.app/chat/completions"
        );
        assert_eq!(free.api_base_header, "https://exampleopenaiendpoint-production.up.railway.app/");
        assert_eq!(paid.tier, Some(Tier::Paid));
        assert_eq!(paid.chat_url.to_string(), "https://api.openai.com/v1/chat/completions");
        assert_eq!(paid.api_base_header, OPENAI_API_BASE_HEADER);
        assert_eq!(paid.unset_credential(), Some("OPENAI_API_KEY"));
        assert_eq!(loaded.settings.known_tiers(), vec![Tier::Free, Tier::Paid]);
        assert!(loaded.warnings.iter().any(|w| w.contains("OPENAI_API_KEY is not set")));
        assert!(loaded.warnings.iter().any(|w| w.contains("publicly known")));
    }

    #[test]
    fn environment_fills_in_keys_and_overrides_master_key() {
        let env = |var: &str| match var {
            "OPENAI_API_KEY" => Some("sk-upstream".to_owned()),
            "LITELLM_MASTER_KEY" => Some("sk-from-env".to_owned()),
            _ => None,
        };
        let loaded = parse(SEED, &env).unwrap();
        assert_eq!(loaded.settings.master_key.expose(), "sk-from-env");
        assert!(matches!(loaded.settings.deployments[1].credential, UpstreamCredential::Bearer(_)));
        assert!(!format!("{:?}", loaded.settings).contains("sk-upstream"), "secrets must not print");
    }

    #[test]
    fn unknown_sections_and_fields_warn_once_each() {
        let yaml = format!("{SEED}\nrouter_settings:\n  enable_pre_call_checks: true\n  redis_host: localhost\nlitellm_settings:\n  drop_params: true\n");
        let yaml = yaml.replace("      tier: free", "      tier: free\n      mode: chat");
        let warnings = parse(&yaml, &no_env).unwrap().warnings;
        let unknown: Vec<_> = warnings.iter().filter(|w| w.starts_with("ignoring")).collect();
        assert_eq!(unknown.len(), 4, "{unknown:?}");
        assert!(unknown.iter().any(|w| w.contains("`litellm_settings`")));
        assert!(unknown.iter().any(|w| w.contains("mode")));
    }

    #[test]
    fn wrong_type_names_the_entry() {
        let yaml = SEED.replace("tier: paid", "tier: [paid]");
        assert!(error_of(&yaml).contains("model_list[1].model_info.tier"), "{}", error_of(&yaml));
    }

    #[test]
    fn malformed_yaml_is_an_error() {
        let error = error_of("model_list: [\n");
        assert!(error.contains("line 2"), "{error}");
        assert!(error_of("").contains("empty"));
    }

    #[test]
    fn other_providers_are_refused_naming_the_entry() {
        let yaml = SEED.replace("openai/gpt-4o", "anthropic/claude-3");
        let error = error_of(&yaml);
        assert!(error.contains("model_list[1].litellm_params.model") && error.contains("anthropic"), "{error}");
        let bare = parse(&SEED.replace("openai/gpt-4o", "gpt-4o"), &no_env).unwrap();
        assert_eq!(&*bare.settings.deployments[1].upstream_model, "gpt-4o");
    }

    #[test]
    fn missing_master_key_says_how_to_set_one() {
        let error = error_of(&SEED.replace("  master_key: sk-1234", "  store_model_in_db: true"));
        assert!(error.contains("LITELLM_MASTER_KEY") && error.contains("general_settings.master_key"), "{error}");
        let error = error_of(&SEED.replace("sk-1234", "os.environ/TG_MASTER"));
        assert!(error.contains("TG_MASTER is not set"), "{error}");
    }

    #[test]
    fn duplicate_ids_and_bad_values_are_refused() {
        let yaml = SEED
            .replace("tier: free", "tier: free\n      id: same")
            .replace("tier: paid", "tier: paid\n      id: same");
        assert!(error_of(&yaml).contains("model_list[1].model_info.id"));
        assert!(error_of(&SEED.replace("https://example", "ftp://example"))
            .contains("model_list[0].litellm_params.api_base"));
        assert!(
            error_of(&SEED.replace("api_key: fake-key", "api_key: fake-key\n      timeout: -1")).contains("timeout")
        );
    }

    #[test]
    fn router_settings_become_the_routing_policy() {
        let yaml = format!(
            "{SEED}router_settings:\n  routing_strategy: least-busy\n  num_retries: 4\n  retry_after: 0.5\n  \
             allowed_fails: 2\n  cooldown_time: 30\n  fallbacks: [{{\"gpt-4\": [\"gpt-4\"]}}]\n"
        );
        let policy = parse(&yaml, &no_env).unwrap().settings.routing;
        assert_eq!(policy.strategy, RoutingStrategy::LeastBusy);
        assert_eq!((policy.num_retries, policy.allowed_fails), (4, 2));
        assert_eq!((policy.retry_after, policy.cooldown_time), (Duration::from_millis(500), Duration::from_secs(30)));
        assert_eq!(policy.fallbacks["gpt-4"], vec!["gpt-4"]);

        let defaults = parse(SEED, &no_env).unwrap().settings.routing;
        assert_eq!(
            (defaults.num_retries, defaults.allowed_fails, defaults.cooldown_time),
            (2, 3, Duration::from_secs(5))
        );
    }

    #[test]
    fn fallbacks_must_name_configured_models_and_odd_strategies_warn() {
        let yaml = format!("{SEED}router_settings:\n  fallbacks: [{{\"gpt-4\": [\"gpt-3.5-turbo\"]}}]\n");
        let error = error_of(&yaml);
        assert!(error.contains("router_settings.fallbacks[0].gpt-4") && error.contains("gpt-3.5-turbo"), "{error}");
        let yaml = format!("{SEED}router_settings:\n  routing_strategy: usage-based-routing-v2\n");
        assert!(parse(&yaml, &no_env).unwrap().warnings.iter().any(|w| w.contains("usage-based-routing-v2")));
    }

    #[test]
    fn deployment_routing_params_are_read() {
        let yaml = SEED.replace(
            "api_key: fake-key",
            "api_key: fake-key\n      weight: 3\n      rpm: 100\n      stream_timeout: 2\n      max_retries: 1",
        );
        let free = &parse(&yaml, &no_env).unwrap().settings.deployments[0];
        assert_eq!((free.weight, free.rpm, free.max_retries), (Some(3.0), Some(100), Some(1)));
        assert_eq!((free.timeout, free.stream_timeout), (DEFAULT_TIMEOUT, Duration::from_secs(2)));
        assert!(error_of(&SEED.replace("api_key: fake-key", "api_key: fake-key\n      weight: -1")).contains("weight"));
    }

    #[test]
    fn absurd_numbers_are_refused_at_load_naming_the_field() {
        let with_param = |param: &str| SEED.replace("api_key: fake-key", &format!("api_key: fake-key\n      {param}"));
        for (param, field) in [
            ("weight: 1e308", "weight"),
            ("timeout: 1e300", "timeout"),
            ("stream_timeout: 86401", "stream_timeout"),
            ("max_retries: 4000000000", "max_retries"),
        ] {
            assert!(error_of(&with_param(param)).contains(&format!("model_list[0].litellm_params.{field}")), "{param}");
        }
        for (setting, field) in [
            ("cooldown_time: 1e20", "cooldown_time"),
            ("retry_after: 3601", "retry_after"),
            ("num_retries: 1000", "num_retries"),
            ("allowed_fails: 4000000000", "allowed_fails"),
        ] {
            let yaml = format!("{SEED}router_settings:\n  {setting}\n");
            assert!(error_of(&yaml).contains(&format!("router_settings.{field}")), "{setting}");
        }
        let yaml = SEED.replace("master_key: sk-1234", "master_key: sk-1234\n  max_request_size_mb: 1e12");
        assert!(error_of(&yaml).contains("max_request_size_mb"));
    }

    #[test]
    fn openai_api_key_goes_only_to_openai() {
        let env = |var: &str| (var == "OPENAI_API_KEY").then(|| "sk-openai".to_owned());
        let yaml = config_of(&[
            "{model_name: a, litellm_params: {model: openai/x, api_base: 'http://elsewhere:8000/v1'}}",
            "{model_name: b, litellm_params: {model: openai/gpt-4o}}",
        ]);
        let deployments = parse(&yaml, &env).unwrap().settings.deployments;
        assert!(matches!(deployments[0].credential, UpstreamCredential::Anonymous));
        assert!(matches!(deployments[1].credential, UpstreamCredential::Bearer(_)));
    }

    #[test]
    fn credentials_in_an_api_base_are_never_shown() {
        let yaml = config_of(&["{model_name: a, litellm_params: {model: openai/x, api_key: k, api_base: 'https://bob:hunter2@llm.internal:8443/v1'}}"]);
        let deployment = &parse(&yaml, &no_env).unwrap().settings.deployments[0];
        assert_eq!(deployment.api_base_header, "https://llm.internal:8443/v1");
        assert_eq!(without_userinfo("http://h/p@q"), "http://h/p@q");
    }

    #[test]
    fn default_key_tier_must_be_a_configured_tier() {
        let yaml = SEED.replace("master_key: sk-1234", "master_key: sk-1234\n  default_key_tier: free");
        assert_eq!(parse(&yaml, &no_env).unwrap().settings.default_key_tier, Some(Tier::Free));
        let yaml = SEED.replace("master_key: sk-1234", "master_key: sk-1234\n  default_key_tier: gold");
        assert!(error_of(&yaml).contains("general_settings.default_key_tier"));
    }

    fn config_of(entries: &[&str]) -> String {
        format!("model_list: [{}]\ngeneral_settings: {{master_key: sk-m}}\n", entries.join(", "))
    }

    #[test]
    fn derived_ids_survive_reordering_and_tell_twins_apart() {
        let a = "{model_name: m, litellm_params: {model: openai/a, api_key: k1, api_base: 'http://a/'}}";
        let b = "{model_name: m, litellm_params: {model: openai/b, api_key: k, api_base: 'http://b/'}}";
        let ids = |entries: &[&str]| -> Vec<String> {
            parse(&config_of(entries), &no_env).unwrap().settings.deployments.iter().map(|d| d.id.to_string()).collect()
        };
        let forward = ids(&[a, b]);
        let reversed = ids(&[b, a]);
        assert_eq!((&forward[0], &forward[1]), (&reversed[1], &reversed[0]), "ids moved with their entries");
        assert_ne!(forward[0], forward[1]);
        assert_eq!(ids(&[a, b, a])[..2], forward[..], "adding an entry changes no other id");
        let twins = ids(&[a, a]);
        assert_ne!(twins[0], twins[1]);
        let rekeyed = a.replace("k1", "another-key");
        assert_eq!(ids(&[&rekeyed])[0], forward[0], "the api key is not part of the id");
    }
}
