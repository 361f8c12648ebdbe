//! What `/model/info` shows of a deployment, fixed at load: `litellm_params` as configured with its api key
//! removed and any other key, secret or token masked, and `model_info` with the configured fields, the
//! cost-map fields in force (prices, context window, mode) and where the price came from.

use serde_json::{json, Map, Value};

use super::builtin_prices;
use super::deployment::without_userinfo;
use super::metering::{PriceSource, Pricing};
use super::provider_table::{Provider, Shape};
use super::raw::{RawLitellmParams, RawModelInfo};

/// A deployment as `/model/info` shows it. Holds no secret: built once from the config with the api key
/// left out, so answering never has to remember to strip one.
#[derive(Debug)]
pub struct ModelCard {
    /// `litellm_params` as configured, without `api_key`; other credential-like fields masked.
    pub litellm_params: Map<String, Value>,
    /// `model_info`: configured fields, `id`, `db_model`, the cost-map fields in force and `price_source`.
    pub model_info: Map<String, Value>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// `chat`, `embedding`, … (LiteLLM's cost-map `mode`); `None` when neither config nor table says.
    pub mode: Option<Box<str>>,
    pub price_source: PriceSource,
    pub supports: Capabilities,
}

/// LiteLLM's `supports_*` flags: `model_info`'s, else the built-in row's, else false (as LiteLLM shows them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub supports_function_calling: bool,
    pub supports_vision: bool,
    pub supports_reasoning: bool,
    /// The price table has a cache price for it (or it is Anthropic's, whose every model caches prompts).
    pub supports_prompt_caching: bool,
}

impl Capabilities {
    /// What any of a group's deployments supports.
    pub fn or(self, other: Self) -> Self {
        Self {
            supports_function_calling: self.supports_function_calling || other.supports_function_calling,
            supports_vision: self.supports_vision || other.supports_vision,
            supports_reasoning: self.supports_reasoning || other.supports_reasoning,
            supports_prompt_caching: self.supports_prompt_caching || other.supports_prompt_caching,
        }
    }
}

impl ModelCard {
    /// The card with the deployment's id, which is settled after the rest.
    pub(super) fn with_id(mut self, id: &str) -> Self {
        self.model_info.insert("id".into(), json!(id));
        self
    }

    /// The chat parameters its provider takes (OpenAI's, or those tiergate translates for Anthropic).
    pub fn supported_openai_params(shape: Shape) -> &'static [&'static str] {
        match shape {
            Shape::OpenAi | Shape::Azure => OPENAI_PARAMS,
            Shape::Anthropic | Shape::VertexAnthropic => ANTHROPIC_PARAMS,
            Shape::Gemini | Shape::VertexGemini => GEMINI_PARAMS,
            Shape::Bedrock => BEDROCK_PARAMS,
        }
    }
}

const OPENAI_PARAMS: &[&str] = &[
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "modalities",
    "n",
    "parallel_tool_calls",
    "presence_penalty",
    "reasoning_effort",
    "response_format",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
];

/// What `providers::chat_to_anthropic` translates.
const ANTHROPIC_PARAMS: &[&str] = &[
    "max_completion_tokens",
    "max_tokens",
    "n",
    "parallel_tool_calls",
    "stop",
    "stream",
    "temperature",
    "tool_choice",
    "tools",
    "top_k",
    "top_p",
    "user",
];

/// What tiergate translates for Gemini (`providers::chat_to_gemini`).
/// What the Converse translation carries (`providers::chat_to_bedrock`).
const BEDROCK_PARAMS: &[&str] = &[
    "max_completion_tokens",
    "max_tokens",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_p",
];

const GEMINI_PARAMS: &[&str] = &[
    "frequency_penalty",
    "max_completion_tokens",
    "max_tokens",
    "n",
    "parallel_tool_calls",
    "presence_penalty",
    "reasoning_effort",
    "response_format",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_k",
    "top_p",
    "user",
];

/// The card of one config entry (its id is added by [`ModelCard::with_id`]).
pub(super) fn card(
    params: &RawLitellmParams,
    info: &RawModelInfo,
    pricing: &Pricing,
    provider: &Provider,
) -> ModelCard {
    let mut litellm_params = object(json!({
        "model": params.model,
        "api_key": params.api_key,
        "api_base": params.api_base.as_deref().map(without_userinfo),
        "api_version": params.api_version,
        "vertex_project": params.vertex_project,
        "vertex_location": params.vertex_location,
        "timeout": params.timeout,
        "stream_timeout": params.stream_timeout,
        "weight": params.weight,
        "rpm": params.rpm,
        "tpm": params.tpm,
        "max_retries": params.max_retries,
        "input_cost_per_token": params.input_cost_per_token,
        "output_cost_per_token": params.output_cost_per_token,
        "cache_read_input_token_cost": params.cache_read_input_token_cost,
        "cache_creation_input_token_cost": params.cache_creation_input_token_cost,
        "cache_creation_input_token_cost_above_1hr": params.cache_creation_input_token_cost_above_1hr,
    }));
    without_secrets(&mut litellm_params);
    let builtin = pricing.builtin;
    let max_input_tokens = info.max_input_tokens.or_else(|| builtin.and_then(|row| row.max_input_tokens));
    let max_output_tokens = info.max_output_tokens.or_else(|| builtin.and_then(|row| row.max_output_tokens));
    let mode: Option<Box<str>> = info.mode.as_deref().or_else(|| builtin.map(|row| &*row.mode)).map(Into::into);
    let flag = |stated: Option<bool>, row: fn(&builtin_prices::BuiltinModel) -> bool| {
        stated.unwrap_or_else(|| builtin.is_some_and(row))
    };
    let caches = builtin.is_some_and(|row| row.cache_read_input_token_cost.is_some()) || provider.prefix == "anthropic";
    let supports = Capabilities {
        supports_function_calling: flag(info.supports_function_calling, |row| row.supports_function_calling),
        supports_vision: flag(info.supports_vision, |row| row.supports_vision),
        supports_reasoning: flag(info.supports_reasoning, |row| row.supports_reasoning),
        supports_prompt_caching: caches,
    };
    let price = pricing.price;
    let as_of = match pricing.source {
        PriceSource::Builtin | PriceSource::ConfigAndBuiltin => builtin_prices::table().ok().map(|t| &*t.as_of),
        PriceSource::Config | PriceSource::None => None,
    };
    let mut model_info = object(json!({
        "tier": info.tier,
        "base_model": info.base_model,
        "db_model": false,
        "litellm_provider": provider.prefix,
        "mode": mode,
        "max_input_tokens": max_input_tokens,
        "max_output_tokens": max_output_tokens,
        "input_cost_per_token": price.map(|p| p.input),
        "output_cost_per_token": price.map(|p| p.output),
        "cache_read_input_token_cost": price.map(|p| p.cache_read),
        "cache_creation_input_token_cost": price.map(|p| p.cache_write),
        "price_source": pricing.source.as_str(),
        "builtin_prices_as_of": as_of,
    }));
    if let Value::Object(flags) = json!(supports) {
        model_info.extend(flags);
    }
    // LiteLLM shows unknown cost-map fields as null; a configured field left unset is simply absent.
    for field in ["tier", "base_model", "builtin_prices_as_of"] {
        if model_info.get(field).is_some_and(Value::is_null) {
            model_info.remove(field);
        }
    }
    let price_source = pricing.source;
    ModelCard { litellm_params, model_info, max_input_tokens, max_output_tokens, mode, price_source, supports }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `litellm_params` as sent to `/model/new|update`, as its answers and the audit trail may show them: what
/// `/model/info` would show of them ([`without_secrets`]) and `api_base` without `user:password@`. An admin's
/// credential never lands in the audit trail in the clear.
pub fn shown_params(params: &Map<String, Value>) -> Map<String, Value> {
    let mut params = params.clone();
    without_secrets(&mut params);
    if let Some(Value::String(base)) = params.get_mut("api_base") {
        *base = super::deployment::without_userinfo(base);
    }
    params
}

/// Drops unset fields and `api_key`, and masks every other field whose name says it holds a credential
/// (`…key…`, `…secret…`, `…token…`, `…password…`, `…credential…`, `…header…`: headers carry
/// `Authorization`) to its first and last four characters, as LiteLLM shows them. Prices and token limits
/// (`…cost…`, `…tokens`) are not credentials.
pub(super) fn without_secrets(params: &mut Map<String, Value>) {
    params.retain(|name, value| !value.is_null() && name != "api_key");
    for (name, value) in params.iter_mut() {
        let name = name.to_ascii_lowercase();
        let priced_or_counted = name.contains("cost") || name.ends_with("tokens");
        let secret =
            ["key", "secret", "token", "password", "credential", "header"].iter().any(|word| name.contains(word));
        if secret && !priced_or_counted {
            let text = match &*value {
                Value::String(text) => masked(text),
                other => masked(&other.to_string()),
            };
            *value = Value::String(text);
        }
    }
}

/// `abcd****wxyz`; a value of 12 characters or fewer is masked whole, since 8 of them would show most of it.
fn masked(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    match chars.len() {
        0..=12 => "*".repeat(chars.len().max(4)),
        n => format!("{}****{}", chars[..4].iter().collect::<String>(), chars[n - 4..].iter().collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// #20 /model/info: no api key is ever shown, other credentials only masked, prices and limits as they are.
    #[test]
    fn credentials_are_removed_or_masked() {
        let mut params = object(json!({
            "model": "azure/gpt-4o",
            "api_key": "sk-live-0123456789abcdef",
            "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "azure_ad_token": "eyJhbGciOiJIUzI1NiJ9.payload.signature",
            "vertex_credentials": {"private_key": "-----BEGIN PRIVATE KEY-----abc"},
            "password": "short",
            "input_cost_per_token": 0.000001,
            "max_tokens": 100,
            "api_version": null,
        }));
        without_secrets(&mut params);
        assert!(!params.contains_key("api_key") && !params.contains_key("api_version"));
        assert_eq!(params["aws_secret_access_key"], "wJal****EKEY");
        assert_eq!(params["azure_ad_token"], "eyJh****ture");
        assert_eq!(params["password"], "*****");
        let credentials = params["vertex_credentials"].as_str().unwrap();
        assert!(!credentials.contains("PRIVATE"), "{credentials}");
        let mut sent = object(json!({"api_base": "https://u:hunter2@example.com/v1",
            "extra_headers": {"Authorization": "Bearer sk-upstream-secret"}, "api_key": "sk-live"}));
        sent = shown_params(&sent);
        assert_eq!(sent["api_base"], "https://example.com/v1");
        assert!(!sent.contains_key("api_key") && !sent["extra_headers"].to_string().contains("upstream"), "{sent:?}");
        assert_eq!(params["input_cost_per_token"], 0.000001);
        assert_eq!(params["max_tokens"], 100);
        assert_eq!(params["model"], "azure/gpt-4o");
    }
}
