//! Built-in prices and context windows of the common models of each provider tiergate knows, so a deployment
//! without `input_cost_per_token` is still priced and a budget works with no price in the config. The table
//! is one data file (`builtin_prices.json`, LiteLLM's cost-map field names, with its "as of" date), embedded
//! in the binary, parsed and checked once at start-up.

use std::sync::LazyLock;

use serde::Deserialize;

use super::metering::MAX_PRICE_PER_TOKEN;
use super::provider_table::PROVIDERS;

/// The largest context window or output length a row may state (ten million tokens).
const MAX_TOKENS: u64 = 10_000_000;

/// The `mode`s LiteLLM's cost map uses that a row may have.
const MODES: &[&str] = &["chat", "completion", "embedding", "responses"];

/// One model's published prices (USD per token) and limits, under the provider prefix it is served by.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BuiltinModel {
    /// The `litellm_params.model` prefix of its provider (`openai`, `azure`, `anthropic`, `groq`, …).
    pub litellm_provider: Box<str>,
    /// The upstream model name, without the provider prefix (`gpt-4o`, `llama-3.1-8b-instant`).
    pub model: Box<str>,
    pub input_cost_per_token: f64,
    pub output_cost_per_token: f64,
    /// A prompt token read from the provider's cache; unset: the provider's ratio of the input price.
    pub cache_read_input_token_cost: Option<f64>,
    /// A prompt token written to the provider's cache; unset: the provider's ratio of the input price.
    pub cache_creation_input_token_cost: Option<f64>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub mode: Box<str>,
    /// Capabilities the provider documents for the model (absent from the row: not known to).
    #[serde(default)]
    pub supports_function_calling: bool,
    #[serde(default)]
    pub supports_vision: bool,
    #[serde(default)]
    pub supports_reasoning: bool,
}

/// The data file as read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinTable {
    /// The date the prices were read from the providers' price lists.
    pub as_of: Box<str>,
    #[allow(dead_code)]
    about: Box<str>,
    models: Vec<BuiltinModel>,
}

static TABLE: LazyLock<Result<BuiltinTable, String>> = LazyLock::new(|| parse(include_str!("builtin_prices.json")));

/// The built-in table, or what is wrong with it. Config loading calls this first, so a broken table stops the
/// gateway at start-up with the row named, not at the first request.
pub fn table() -> Result<&'static BuiltinTable, &'static str> {
    TABLE.as_ref().map_err(String::as_str)
}

/// The row for `model` served by `provider` (a prefix of [`PROVIDERS`]). `model` may carry its provider's
/// prefix (`azure/gpt-4o`, as `model_info.base_model` is written). Names match exactly: a dated snapshot
/// (`gpt-4o-2024-08-06`) has a price only if the table lists it. An Azure model the table has no Azure row
/// for is priced as OpenAI's model of the same name (Azure's global prices are OpenAI's).
pub fn lookup(provider: &str, model: &str) -> Option<&'static BuiltinModel> {
    let table = table().ok()?;
    let model = model.strip_prefix(provider).and_then(|rest| rest.strip_prefix('/')).unwrap_or(model);
    let find =
        |provider: &str| table.models.iter().find(|row| &*row.litellm_provider == provider && &*row.model == model);
    find(provider).or_else(|| (provider == "azure").then(|| find("openai")).flatten())
}

/// Every row `provider` serves a model by: its own, then, for Azure, OpenAI's (as [`lookup`] falls back).
pub fn rows_of(provider: &str) -> impl Iterator<Item = &'static BuiltinModel> + '_ {
    let models = table().map_or(&[][..], |table| &table.models[..]);
    let own = models.iter().filter(move |row| &*row.litellm_provider == provider);
    let openai = models.iter().filter(move |row| provider == "azure" && &*row.litellm_provider == "openai");
    own.chain(openai)
}

/// Reads the table and checks every row: prices finite and within 0 ..= [`MAX_PRICE_PER_TOKEN`], a known
/// provider, a mode LiteLLM uses, token limits within [`MAX_TOKENS`], no provider and model twice.
fn parse(json: &str) -> Result<BuiltinTable, String> {
    let table: BuiltinTable = serde_json::from_str(json).map_err(|err| format!("builtin_prices.json: {err}"))?;
    for (index, row) in table.models.iter().enumerate() {
        let name = format!("builtin_prices.json models[{index}] ({}/{})", row.litellm_provider, row.model);
        let prices = [
            Some(row.input_cost_per_token),
            Some(row.output_cost_per_token),
            row.cache_read_input_token_cost,
            row.cache_creation_input_token_cost,
        ];
        if !prices.into_iter().flatten().all(|price| price.is_finite() && (0.0..=MAX_PRICE_PER_TOKEN).contains(&price))
        {
            return Err(format!("{name}: a price is not from 0 to {MAX_PRICE_PER_TOKEN} USD per token"));
        }
        if !PROVIDERS.iter().any(|provider| provider.prefix == &*row.litellm_provider) {
            return Err(format!("{name}: litellm_provider is not a provider tiergate knows"));
        }
        if !MODES.contains(&&*row.mode) {
            return Err(format!("{name}: mode must be one of {}", MODES.join(", ")));
        }
        if [row.max_input_tokens, row.max_output_tokens].into_iter().flatten().any(|n| n == 0 || n > MAX_TOKENS) {
            return Err(format!("{name}: a token limit is not from 1 to {MAX_TOKENS}"));
        }
        if row.model.trim().is_empty() {
            return Err(format!("{name}: model is empty"));
        }
        let twin = |other: &BuiltinModel| other.litellm_provider == row.litellm_provider && other.model == row.model;
        if table.models[..index].iter().any(twin) {
            return Err(format!("{name}: listed twice"));
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// #20 item "built-in prices": every row of the shipped table is sane (checked by `parse`).
    #[test]
    fn the_shipped_table_is_sane_and_dated() {
        let table = table().unwrap();
        assert!(table.as_of.len() == 10 && table.as_of.starts_with("20"), "{}", table.as_of);
        assert!(table.models.len() > 50);
        for provider in ["openai", "azure", "anthropic", "groq", "together_ai", "deepseek", "mistral", "xai"] {
            assert!(table.models.iter().any(|row| &*row.litellm_provider == provider), "no row for {provider}");
        }
    }

    #[test]
    fn lookup_matches_provider_and_exact_model() {
        let gpt4o = lookup("openai", "gpt-4o").unwrap();
        assert_eq!((gpt4o.input_cost_per_token, gpt4o.output_cost_per_token), (2.5e-6, 1e-5));
        assert_eq!(gpt4o.max_input_tokens, Some(128_000));
        assert!(lookup("openai", "gpt-4o-2024-08-06").is_some(), "a listed snapshot");
        assert!(lookup("openai", "gpt-4o-2099-01-01").is_none(), "an unlisted snapshot is not guessed");
        assert!(lookup("groq", "gpt-4o").is_none(), "another provider's model");
        assert!(lookup("hosted_vllm", "gpt-4o").is_none());
        assert_eq!(lookup("groq", "llama-3.1-8b-instant").unwrap().input_cost_per_token, 5e-8);
        assert_eq!(lookup("groq", "openai/gpt-oss-120b").unwrap().model.as_ref(), "openai/gpt-oss-120b");
        // A base_model as LiteLLM writes it, and an Azure model priced as OpenAI's.
        assert_eq!(lookup("azure", "azure/gpt-4o-mini").unwrap().input_cost_per_token, 1.65e-7);
        assert_eq!(lookup("azure", "o1").unwrap().litellm_provider.as_ref(), "openai");
        let sonnet = lookup("anthropic", "claude-sonnet-4-5-20250929").unwrap();
        assert!(
            sonnet.cache_creation_input_token_cost.is_some() && sonnet.supports_vision && sonnet.supports_reasoning
        );
        assert!(!lookup("openai", "gpt-3.5-turbo").unwrap().supports_vision);
    }

    #[test]
    fn bad_rows_are_refused_by_name() {
        let row = |fields: &str| {
            format!(
                r#"{{"as_of": "2025-01-01", "about": "", "models": [{{"litellm_provider": "openai", "model": "m", "input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6, "mode": "chat"{fields}}}]}}"#
            )
        };
        assert!(parse(&row("")).is_ok());
        let negative = row("").replace("\"input_cost_per_token\": 1e-6", "\"input_cost_per_token\": -1e-6");
        assert!(parse(&negative).unwrap_err().contains("openai/m"));
        let unknown = row("").replace("\"openai\"", "\"sagemaker\"");
        assert!(parse(&unknown).unwrap_err().contains("not a provider"));
        assert!(parse(&row(r#", "max_input_tokens": 0"#)).is_err());
        assert!(parse(&row(r#", "mode": "image""#)).is_err(), "duplicate field");
        assert!(parse(&row(r#", "price": 1"#)).is_err(), "unknown field");
        let twice = row("").replace("]}", r#", {"litellm_provider": "openai", "model": "m", "input_cost_per_token": 0, "output_cost_per_token": 0, "mode": "chat"}]}"#);
        assert!(parse(&twice).unwrap_err().contains("listed twice"));
    }
}
