//! The LiteLLM `config.yaml` schema as serde reads it, before validation; unknown fields become warnings.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::deployment::without_userinfo;
use super::limits::LimitSet;
use super::ConfigError;

#[derive(Deserialize)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) model_list: Vec<RawDeployment>,
    #[serde(default)]
    pub(super) general_settings: RawGeneralSettings,
    #[serde(default)]
    pub(super) router_settings: RawRouterSettings,
    #[serde(default)]
    pub(super) litellm_settings: RawLitellmSettings,
    /// tiergate's own section: the limits and budget every key on a tier gets.
    #[serde(default)]
    pub(super) tier_limits: BTreeMap<String, LimitSet>,
}

#[derive(Deserialize)]
pub(super) struct RawDeployment {
    pub(super) model_name: String,
    pub(super) litellm_params: RawLitellmParams,
    #[serde(default)]
    pub(super) model_info: RawModelInfo,
}

impl RawDeployment {
    /// What identifies an entry for a derived id: never its api key.
    pub(super) fn identity(&self) -> String {
        let params = &self.litellm_params;
        // Without `user:password@`: the id is shown to clients, and must not change with a password.
        let api_base = params.api_base.as_deref().map(without_userinfo).unwrap_or_default();
        let parts = [&*self.model_name, &params.model, &api_base, self.model_info.tier.as_deref().unwrap_or("")];
        parts.join("\0")
    }

    /// Whether `api_base` has `user:password@` in it (never sent upstream, never shown).
    pub(super) fn api_base_has_userinfo(&self) -> bool {
        self.litellm_params.api_base.as_deref().is_some_and(|base| without_userinfo(base) != base)
    }
}

#[derive(Deserialize)]
pub(super) struct RawLitellmParams {
    pub(super) model: String,
    pub(super) api_key: Option<String>,
    pub(super) api_base: Option<String>,
    pub(super) timeout: Option<f64>,
    pub(super) stream_timeout: Option<f64>,
    pub(super) weight: Option<f64>,
    pub(super) rpm: Option<u64>,
    pub(super) tpm: Option<u64>,
    pub(super) max_retries: Option<u32>,
    /// Azure's `api-version`.
    pub(super) api_version: Option<String>,
    /// Vertex AI's project and location (else `VERTEXAI_PROJECT`, `VERTEXAI_LOCATION`), and its
    /// service-account key file: a path or the JSON itself (else `GOOGLE_APPLICATION_CREDENTIALS`).
    pub(super) vertex_project: Option<String>,
    pub(super) vertex_location: Option<String>,
    pub(super) vertex_credentials: Option<String>,
    pub(super) input_cost_per_token: Option<f64>,
    pub(super) output_cost_per_token: Option<f64>,
    pub(super) cache_read_input_token_cost: Option<f64>,
    pub(super) cache_creation_input_token_cost: Option<f64>,
    pub(super) cache_creation_input_token_cost_above_1hr: Option<f64>,
    /// The media endpoints' prices (not flattened: `serde_ignored` could no longer warn of unknown fields).
    pub(super) output_cost_per_image: Option<f64>,
    pub(super) input_cost_per_pixel: Option<f64>,
    pub(super) input_cost_per_second: Option<f64>,
    pub(super) input_cost_per_character: Option<f64>,
    /// A `bedrock/` deployment's AWS credentials, region and endpoint (LiteLLM's names).
    pub(super) aws_access_key_id: Option<String>,
    pub(super) aws_secret_access_key: Option<String>,
    pub(super) aws_session_token: Option<String>,
    pub(super) aws_region_name: Option<String>,
    pub(super) aws_bedrock_runtime_endpoint: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawModelInfo {
    pub(super) tier: Option<String>,
    pub(super) id: Option<String>,
    /// LiteLLM's model access groups: a key whose `models` names one may call this deployment's model_name.
    pub(super) access_groups: Option<Vec<String>>,
    pub(super) input_cost_per_token: Option<f64>,
    pub(super) output_cost_per_token: Option<f64>,
    pub(super) cache_read_input_token_cost: Option<f64>,
    pub(super) cache_creation_input_token_cost: Option<f64>,
    pub(super) cache_creation_input_token_cost_above_1hr: Option<f64>,
    /// The model an Azure (or any) deployment is priced as, e.g. `azure/gpt-4o` (LiteLLM's field).
    pub(super) base_model: Option<String>,
    /// Cost-map fields the config may state over the built-in table (shown by `/model/info`).
    pub(super) max_input_tokens: Option<u64>,
    pub(super) max_output_tokens: Option<u64>,
    pub(super) mode: Option<String>,
    pub(super) supports_function_calling: Option<bool>,
    pub(super) supports_vision: Option<bool>,
    pub(super) supports_reasoning: Option<bool>,
    /// The media endpoints' prices (not flattened: `serde_ignored` could no longer warn of unknown fields).
    pub(super) output_cost_per_image: Option<f64>,
    pub(super) input_cost_per_pixel: Option<f64>,
    pub(super) input_cost_per_second: Option<f64>,
    pub(super) input_cost_per_character: Option<f64>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawGeneralSettings {
    pub(super) master_key: Option<String>,
    pub(super) max_request_size_mb: Option<f64>,
    pub(super) default_key_tier: Option<String>,
    pub(super) request_header_timeout: Option<f64>,
    pub(super) request_body_timeout: Option<f64>,
    pub(super) shutdown_grace_period: Option<f64>,
    pub(super) token_rate_limit_type: Option<String>,
    pub(super) redis_url: Option<String>,
    pub(super) redis_cache_ttl: Option<f64>,
    /// LiteLLM's switch: `true` writes no spend-log rows.
    pub(super) disable_spend_logs: Option<bool>,
    /// LiteLLM's: how long spend-log rows are kept (`30d`).
    pub(super) maximum_spend_logs_retention_period: Option<String>,
    /// tiergate's: the most spend-log rows kept.
    pub(super) maximum_spend_logs_rows: Option<u64>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawLitellmSettings {
    /// LiteLLM ≥ 1.85: `/metrics` needs a key unless this is `false`.
    pub(super) require_auth_for_metrics_endpoint: Option<bool>,
    /// tiergate's: `false` records no metrics at all (`/metrics` then shows only deployment states).
    pub(super) prometheus_metrics: Option<bool>,
    /// tiergate's: how many keys get their own `hashed_api_key` series in `/metrics`.
    pub(super) prometheus_max_key_series: Option<usize>,
    /// The budget (USD) of an end user without one of their own (enforced here; LiteLLM stopped doing so).
    pub(super) max_end_user_budget: Option<f64>,
    /// A `/budget/new` id whose limits an end user without a budget of their own gets (wins over the amount).
    pub(super) max_end_user_budget_id: Option<String>,
    /// LiteLLM's switch for its Prometheus callback; tiergate always counts, so it is read and ignored.
    #[allow(dead_code)]
    pub(super) callbacks: Option<serde_yaml::Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawRouterSettings {
    pub(super) timeout: Option<f64>,
    pub(super) routing_strategy: Option<String>,
    pub(super) num_retries: Option<u32>,
    pub(super) retry_after: Option<f64>,
    pub(super) allowed_fails: Option<u32>,
    pub(super) cooldown_time: Option<f64>,
    pub(super) fallbacks: Option<Vec<BTreeMap<String, Vec<String>>>>,
    pub(super) context_window_fallbacks: Option<Vec<BTreeMap<String, Vec<String>>>>,
    /// `{"alias": "target"}` or `{"alias": {"model": "target", "hidden": true}}`.
    pub(super) model_group_alias: Option<BTreeMap<String, RawGroupAlias>>,
    pub(super) redis_host: Option<String>,
    pub(super) redis_port: Option<u16>,
    pub(super) redis_password: Option<String>,
}

/// One `model_group_alias` entry: the target alone, or with `hidden` (left out of `/v1/models`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawGroupAlias {
    Target(String),
    Full { model: String, hidden: Option<bool> },
}

pub(super) fn parse_raw(yaml: &str, warnings: &mut Vec<String>) -> Result<RawConfig, ConfigError> {
    if yaml.trim().is_empty() {
        return Err(ConfigError::Malformed(
            "the file is empty; it needs at least model_list and general_settings.master_key".into(),
        ));
    }
    let deserializer = serde_yaml::Deserializer::from_str(yaml);
    let mut on_unknown = |path: String| {
        warnings.push(format!("ignoring config field `{path}`: tiergate does not use it"));
    };
    let mut limits_typo = None;
    let mut on_unknown = |path: serde_ignored::Path<'_>| {
        let path = path.to_string();
        // A misspelt limit would silently leave a tier unlimited: refused, not warned about.
        match path.starts_with("tier_limits.") {
            true => limits_typo = limits_typo.take().or(Some(path)),
            false => on_unknown(path),
        }
    };
    let raw = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(deserializer, &mut on_unknown))
        .map_err(|err| {
            let path = err.path().to_string();
            match path.as_str() {
                "." => ConfigError::Malformed(err.into_inner().to_string()),
                _ => ConfigError::Invalid { entry: path, problem: err.into_inner().to_string() },
            }
        })?;
    match limits_typo {
        Some(path) => Err(ConfigError::Invalid {
            entry: path,
            problem: "is not a limit tiergate knows; use rpm_limit, tpm_limit, max_parallel_requests, max_budget, \
                      soft_budget, budget_duration, model_rpm_limit or model_tpm_limit"
                .into(),
        }),
        None => Ok(raw),
    }
}
