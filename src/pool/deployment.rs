//! One upstream deployment of a model group, validated at load so the hot path never re-checks it.

use std::time::Duration;

use awc::http::header::HeaderValue;
use awc::http::Uri;

use super::Tier;

/// How the gateway authenticates to a deployment's upstream.
#[derive(Debug)]
pub enum UpstreamCredential {
    /// `Authorization: Bearer <api_key>`, prepared once at load and marked sensitive.
    Bearer(HeaderValue),
    /// No `api_key` in the config and no `OPENAI_API_KEY`: requests go without `Authorization`.
    Anonymous,
    /// `api_key: os.environ/VAR` with `VAR` unset at start-up: the deployment cannot be used.
    UnsetEnv(Box<str>),
}

/// A deployment: where requests for one `model_name` go, with which credentials, on which tier.
#[derive(Debug)]
pub struct Deployment {
    /// `model_info.id`, or a stable id derived from the entry (never from its api key).
    pub id: Box<str>,
    /// The public name clients ask for (`model_name`).
    pub model_name: Box<str>,
    /// The upstream model, `litellm_params.model` without its `openai/` prefix.
    pub upstream_model: Box<str>,
    /// `upstream_model` as a JSON string literal, spliced into request bodies.
    pub upstream_model_json: Box<str>,
    pub tier: Option<Tier>,
    /// Where chat completions are sent: `<api_base>/chat/completions`.
    pub chat_url: Uri,
    /// The `x-litellm-model-api-base` response header: the api_base as configured.
    pub api_base_header: HeaderValue,
    /// The `x-litellm-model-id` response header.
    pub id_header: HeaderValue,
    pub credential: UpstreamCredential,
    /// How long to wait for the upstream's response head.
    pub timeout: Duration,
    /// The same, for `"stream": true` requests (`stream_timeout`, else `timeout`).
    pub stream_timeout: Duration,
    /// Selection weight for simple-shuffle: `weight`, `rpm`, `tpm`, as LiteLLM reads them.
    pub weight: Option<f64>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Retries allowed after this deployment fails (`litellm_params.max_retries`), instead of `num_retries`.
    pub max_retries: Option<u32>,
}

impl Deployment {
    /// The environment variable this deployment's api key is missing, if any.
    pub fn unset_credential(&self) -> Option<&str> {
        match &self.credential {
            UpstreamCredential::UnsetEnv(var) => Some(var),
            UpstreamCredential::Bearer(_) | UpstreamCredential::Anonymous => None,
        }
    }
}
