//! The providers tiergate knows, as data: those that speak the OpenAI API (Azure OpenAI with its own URLs
//! and key header) and Anthropic's Messages API; each `litellm_params.model` prefix with its default
//! api_base, the environment variables its key and base may come from, its key header, any headers it wants,
//! and its cache prices as ratios of its input price.
//! A prefix not in the table is a start-up error that lists the ones that are.

use actix_web::http::header::HeaderName;

use super::metering::CacheRatios;
use super::{invalid, ConfigError};
use crate::endpoint::Endpoint;

/// One OpenAI-compatible provider.
#[derive(Debug)]
pub struct Provider {
    /// The `litellm_params.model` prefix, e.g. `groq` in `groq/llama-3.1-8b-instant`.
    pub prefix: &'static str,
    /// Where its requests go without an `api_base` or base env var; `None`: an api_base is required.
    pub default_base: Option<&'static str>,
    /// Environment variables its api key is read from, in order, when the entry has no `api_key`.
    pub key_env: &'static [&'static str],
    /// Environment variables its api base is read from, in order, when the entry has no `api_base`.
    pub base_env: &'static [&'static str],
    /// Extra request headers: (name, environment variable that overrides it or "", default value).
    pub headers: &'static [(&'static str, &'static str, &'static str)],
    /// Client request headers passed on to it (Anthropic's `anthropic-beta`: the client's opt-in features).
    pub client_headers: &'static [HeaderName],
    /// The header its api key goes in, as is; `None`: `Authorization: Bearer <key>`.
    pub key_header: Option<&'static str>,
    /// How requests are addressed and which API they speak.
    pub shape: Shape,
    /// Its cache prices, as ratios of the input price, for a deployment that states only that.
    pub cache_ratios: CacheRatios,
}

/// The API a provider serves, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The OpenAI API: `<api_base>/chat/completions`, `/completions`, `/embeddings`, `/responses`.
    OpenAi,
    /// Azure OpenAI: `<api_base>/openai/deployments/<deployment>/chat/completions?api-version=<version>` (and
    /// `completions`, `embeddings`), `<api_base>/openai/responses?api-version=<version>`.
    Azure,
    /// Anthropic's Messages API at `<api_base>/v1/messages`; chat completions are translated to it.
    Anthropic,
    /// Google's Gemini API (AI Studio): `<api_base>/v1beta/models/<model>:generateContent` (and
    /// `:streamGenerateContent?alt=sse`, `:embedContent`, `:batchEmbedContents`); chat completions, Messages
    /// API requests and embeddings are translated to it.
    Gemini,
    /// Gemini models on Vertex AI: Gemini's API at `<base>/v1/projects/<project>/locations/<location>/
    /// publishers/google/models/<model>:generateContent` (embedding models: `:predict`), with a service
    /// account's access token.
    VertexGemini,
    /// Claude models on Vertex AI: Anthropic's Messages API at `…/publishers/anthropic/models/<model>:rawPredict`
    /// (`:streamRawPredict`), `anthropic_version` in the body instead of `model`.
    VertexAnthropic,
    /// AWS Bedrock's Converse API: `<base>/model/<model id>/converse` (and `/converse-stream`, an
    /// `application/vnd.amazon.eventstream`), embeddings at `/model/<model id>/invoke`; every request SigV4-signed
    /// (`config::aws`); chat completions, Messages API requests and embeddings are translated to it.
    Bedrock,
}

impl Shape {
    /// Whether the provider speaks the OpenAI wire format (Azure does; Anthropic does not).
    pub fn speaks_openai(self) -> bool {
        matches!(self, Self::OpenAi | Self::Azure)
    }
}

const fn provider(
    prefix: &'static str,
    default_base: Option<&'static str>,
    key_env: &'static [&'static str],
    base_env: &'static [&'static str],
) -> Provider {
    Provider {
        prefix,
        default_base,
        key_env,
        base_env,
        headers: &[],
        client_headers: &[],
        key_header: None,
        shape: Shape::OpenAi,
        cache_ratios: CacheRatios::FULL_PRICE,
    }
}

/// Azure's `api-version` when neither `litellm_params.api_version` nor `AZURE_API_VERSION` sets one (the
/// newest LiteLLM default observed).
pub const AZURE_DEFAULT_API_VERSION: &str = "2025-02-01-preview";

/// The `anthropic-version` header sent to Anthropic (the one LiteLLM sends).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The client headers an Anthropic deployment passes on (its opt-in features, as Claude Code sends them).
static ANTHROPIC_CLIENT_HEADERS: [HeaderName; 1] = [HeaderName::from_static("anthropic-beta")];

/// Google AI Studio's Gemini API, where `gemini/` deployments go without an `api_base`.
pub const GEMINI_API_BASE: &str = "https://generativelanguage.googleapis.com";

/// LiteLLM's OpenAI-compatible prefixes (its provider notes, §2), Azure (§3) and Anthropic (§4).
pub const PROVIDERS: &[Provider] = &[
    provider("openai", Some("https://api.openai.com/v1"), &["OPENAI_API_KEY"], &["OPENAI_API_BASE", "OPENAI_BASE_URL"]),
    provider("hosted_vllm", None, &["HOSTED_VLLM_API_KEY"], &["HOSTED_VLLM_API_BASE"]),
    provider("lm_studio", None, &["LM_STUDIO_API_KEY"], &["LM_STUDIO_API_BASE"]),
    provider("custom_openai", None, &[], &[]),
    provider("openai_like", None, &[], &[]),
    provider("groq", Some("https://api.groq.com/openai/v1"), &["GROQ_API_KEY"], &["GROQ_API_BASE"]),
    provider(
        "together_ai",
        Some("https://api.together.xyz/v1"),
        &["TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN"],
        &["TOGETHER_AI_API_BASE"],
    ),
    provider("deepseek", Some("https://api.deepseek.com/beta"), &["DEEPSEEK_API_KEY"], &["DEEPSEEK_API_BASE"]),
    provider("mistral", Some("https://api.mistral.ai/v1"), &["MISTRAL_API_KEY"], &["MISTRAL_API_BASE"]),
    provider(
        "fireworks_ai",
        Some("https://api.fireworks.ai/inference/v1"),
        &["FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"],
        &["FIREWORKS_API_BASE"],
    ),
    provider("xai", Some("https://api.x.ai/v1"), &["XAI_API_KEY"], &["XAI_API_BASE"]),
    provider(
        "perplexity",
        Some("https://api.perplexity.ai"),
        &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
        &["PERPLEXITY_API_BASE"],
    ),
    provider("deepinfra", Some("https://api.deepinfra.com/v1/openai"), &["DEEPINFRA_API_KEY"], &["DEEPINFRA_API_BASE"]),
    provider("cerebras", Some("https://api.cerebras.ai/v1"), &["CEREBRAS_API_KEY"], &["CEREBRAS_API_BASE"]),
    provider(
        "nvidia_nim",
        Some("https://integrate.api.nvidia.com/v1"),
        &["NVIDIA_NIM_API_KEY"],
        &["NVIDIA_NIM_API_BASE"],
    ),
    Provider {
        prefix: "openrouter",
        default_base: Some("https://openrouter.ai/api/v1"),
        key_env: &["OPENROUTER_API_KEY", "OR_API_KEY"],
        base_env: &["OPENROUTER_API_BASE"],
        headers: &[("http-referer", "OR_SITE_URL", "https://litellm.ai"), ("x-title", "OR_APP_NAME", "liteLLM")],
        client_headers: &[],
        key_header: None,
        shape: Shape::OpenAi,
        cache_ratios: CacheRatios::FULL_PRICE,
    },
    Provider {
        prefix: "azure",
        default_base: None,
        key_env: &["AZURE_API_KEY", "AZURE_OPENAI_API_KEY"],
        base_env: &["AZURE_API_BASE"],
        headers: &[],
        client_headers: &[],
        key_header: Some("api-key"),
        shape: Shape::Azure,
        cache_ratios: CacheRatios::FULL_PRICE,
    },
    Provider {
        prefix: "anthropic",
        default_base: Some("https://api.anthropic.com"),
        key_env: &["ANTHROPIC_API_KEY"],
        base_env: &["ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"],
        headers: &[("anthropic-version", "", ANTHROPIC_VERSION)],
        client_headers: &ANTHROPIC_CLIENT_HEADERS,
        key_header: Some("x-api-key"),
        shape: Shape::Anthropic,
        cache_ratios: CacheRatios::ANTHROPIC,
    },
    // LiteLLM's `gemini/` (Google AI Studio): the key goes in `x-goog-api-key`, never in the URL's query.
    Provider {
        prefix: "gemini",
        default_base: Some(GEMINI_API_BASE),
        key_env: &["GEMINI_API_KEY"],
        base_env: &["GEMINI_API_BASE"],
        headers: &[],
        client_headers: &[],
        key_header: Some("x-goog-api-key"),
        shape: Shape::Gemini,
        cache_ratios: CacheRatios::FULL_PRICE,
    },
    // LiteLLM's `vertex_ai/`: the base is per location (`config::vertex`); a service account's token, never a key.
    Provider {
        prefix: "vertex_ai",
        default_base: Some("https://aiplatform.googleapis.com"),
        key_env: &[],
        base_env: &[],
        headers: &[],
        client_headers: &[],
        key_header: None,
        shape: Shape::VertexGemini,
        cache_ratios: CacheRatios::FULL_PRICE,
    },
    // LiteLLM's `bedrock/`: no key header; the base and the signer come from the aws_* settings (`config::aws`).
    Provider {
        prefix: "bedrock",
        default_base: None,
        key_env: &[],
        base_env: &[],
        headers: &[],
        client_headers: &[],
        key_header: None,
        shape: Shape::Bedrock,
        cache_ratios: CacheRatios::FULL_PRICE,
    },
    provider("litellm_proxy", None, &["LITELLM_PROXY_API_KEY"], &["LITELLM_PROXY_API_BASE"]),
    provider("sambanova", Some("https://api.sambanova.ai/v1"), &["SAMBANOVA_API_KEY"], &["SAMBANOVA_API_BASE"]),
    provider("codestral", Some("https://codestral.mistral.ai/v1"), &["CODESTRAL_API_KEY"], &["CODESTRAL_API_BASE"]),
    provider("github", Some("https://models.inference.ai.azure.com"), &["GITHUB_API_KEY"], &["GITHUB_API_BASE"]),
    provider("meta_llama", Some("https://api.llama.com/compat/v1"), &["LLAMA_API_KEY"], &["LLAMA_API_BASE"]),
    provider(
        "volcengine",
        Some("https://ark.cn-beijing.volces.com/api/v3"),
        &["VOLCENGINE_API_KEY"],
        &["VOLCENGINE_API_BASE"],
    ),
    provider(
        "friendliai",
        Some("https://api.friendli.ai/serverless/v1"),
        &["FRIENDLIAI_API_KEY"],
        &["FRIENDLIAI_API_BASE"],
    ),
];

/// Anthropic's URL: `<base>/v1/messages` (a base that already ends in `/v1` or `/v1/messages` keeps it).
pub(super) fn anthropic_urls(base: &str) -> [Option<String>; Endpoint::COUNT] {
    Endpoint::ALL.map(|endpoint| {
        (endpoint == Endpoint::Messages).then(|| match base.ends_with("/v1") {
            true => format!("{base}/messages"),
            false if base.ends_with("/v1/messages") => base.to_owned(),
            false => format!("{base}/v1/messages"),
        })
    })
}

/// Gemini's URLs: `<base>/v1beta/models/<model>:generateContent` for chat (and Messages API requests, which
/// are translated through chat), `:embedContent` for embeddings; a base that already ends in a version
/// (`/v1beta`, `/v1`) keeps it. The stream and batch methods are derived per request (`providers`).
pub(super) fn gemini_urls(base: &str, model: &str) -> [Option<String>; Endpoint::COUNT] {
    let models = match base.ends_with("/v1beta") || base.ends_with("/v1") {
        true => format!("{base}/models/{model}"),
        false => format!("{base}/v1beta/models/{model}"),
    };
    Endpoint::ALL.map(|endpoint| match endpoint {
        Endpoint::ChatCompletions => Some(format!("{models}:generateContent")),
        Endpoint::Embeddings => Some(format!("{models}:embedContent")),
        _ => None,
    })
}

/// Azure's URLs: `<base>/openai/deployments/<deployment>/chat/completions?api-version=<version>` (and
/// `/completions`, `/embeddings`; a base that already names its deployment is used as given), and
/// `<base>/openai/responses?api-version=<version>` (not for a base that names a deployment). The version:
/// `api_version`, else `AZURE_API_VERSION`, else [`AZURE_DEFAULT_API_VERSION`].
pub(super) fn azure_urls(
    entry: &str,
    base: &str,
    deployment: &str,
    api_version: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<[Option<String>; Endpoint::COUNT], ConfigError> {
    let plain = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    // `.` and `..` are plain characters but path segments of their own: `azure/..` would leave the path.
    if !plain(deployment) || deployment == "." || deployment == ".." {
        return Err(invalid(
            format!("{entry}.litellm_params.model"),
            "`azure/<deployment>`: the deployment name may have letters, digits, `-`, `.` and `_` only, and is not `.` or `..`",
        ));
    }
    let version = match api_version {
        Some(version) => version.to_owned(),
        None => env("AZURE_API_VERSION").filter(|v| !v.is_empty()).unwrap_or_else(|| AZURE_DEFAULT_API_VERSION.into()),
    };
    if !plain(&version) {
        return Err(invalid(
            format!("{entry}.litellm_params.api_version"),
            "must look like 2024-10-21 or 2025-02-01-preview",
        ));
    }
    let named = base.contains("/openai/deployments");
    Ok(Endpoint::ALL.map(|endpoint| match endpoint {
        Endpoint::Messages => None,
        Endpoint::Responses if named => None,
        Endpoint::Responses => Some(format!("{base}/openai/responses?api-version={version}")),
        _ if named => Some(format!("{base}{}?api-version={version}", endpoint.path())),
        _ => Some(format!("{base}/openai/deployments/{deployment}{}?api-version={version}", endpoint.path())),
    }))
}

/// The provider of a `litellm_params.model` and the model sent upstream (the prefix stripped once): a bare
/// model is OpenAI's. An error says what is wrong and lists the supported prefixes.
pub fn resolve(model: &str) -> Result<(&'static Provider, &str), String> {
    let openai = &PROVIDERS[0];
    match model.split_once('/') {
        None if model.trim().is_empty() => Err("must not be empty; use e.g. `openai/<model>`".into()),
        None => Ok((openai, model)),
        Some((prefix, rest)) => {
            let Some(provider) = PROVIDERS.iter().find(|provider| provider.prefix == prefix) else {
                return Err(format!(
                    "provider `{prefix}` is not supported; tiergate speaks the OpenAI API (and Azure's), Anthropic's, Gemini's, Vertex AI's and Bedrock's. Supported prefixes: {}. \
                     Any other OpenAI-compatible server works as `openai/<model>` with its api_base",
                    supported()
                ));
            };
            match rest.trim().is_empty() {
                true => Err(format!("`{prefix}/` needs a model name after it, e.g. `{prefix}/<model>`")),
                false => Ok((provider, rest)),
            }
        }
    }
}

fn supported() -> String {
    PROVIDERS.iter().map(|provider| format!("{}/", provider.prefix)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_stripped_once() {
        let (provider, model) = resolve("hosted_vllm/meta-llama/Llama-3.1-8B-Instruct").unwrap();
        assert_eq!((provider.prefix, model), ("hosted_vllm", "meta-llama/Llama-3.1-8B-Instruct"));
        assert_eq!(resolve("gpt-4o").unwrap().0.prefix, "openai");
        assert_eq!(resolve("openai/openai/x").unwrap().1, "openai/x");
    }

    #[test]
    fn unknown_prefixes_list_the_supported_ones() {
        let error = resolve("sagemaker/claude").unwrap_err();
        assert!(error.contains("`sagemaker`") && error.contains("groq/") && error.contains("openrouter/"), "{error}");
        assert!(resolve("groq/").is_err());
        assert!(resolve("").is_err());
    }

    #[test]
    fn prefixes_are_unique() {
        for (index, provider) in PROVIDERS.iter().enumerate() {
            assert!(PROVIDERS[index + 1..].iter().all(|other| other.prefix != provider.prefix), "{}", provider.prefix);
        }
    }
}
