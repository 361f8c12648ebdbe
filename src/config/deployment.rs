//! Deployments: one `model_list` entry, validated into what the hot path needs (URL, credential header,
//! timeouts, weight), so it never re-checks anything.

use std::sync::Arc;
use std::time::Duration;

use awc::http::header::{HeaderName, HeaderValue};
use awc::http::Uri;
use sha2::{Digest, Sha256};

use super::aws::{self, AwsSigner};
use super::metering::{pricing, Price};
use super::model_card::{self, ModelCard};
use super::provider_table::{self, anthropic_urls, azure_urls, gemini_urls, Provider, Shape};
use super::raw::RawDeployment;
use super::router::at_most;
use super::service_account::ServiceAccount;
use super::vertex;
use super::wildcard_prices::{concrete_prices, ConcretePrices};
use super::{invalid, seconds_to_duration, ConfigError, ENV_PREFIX, MAX_RETRIES, MAX_WEIGHT};
use crate::endpoint::Endpoint;
use crate::tier::Tier;

/// Where `openai/` deployments without `api_base` (and without `OPENAI_API_BASE`) are sent.
pub const OPENAI_API_BASE: &str = "https://api.openai.com/v1";
/// The `x-litellm-model-api-base` such deployments report, exactly as LiteLLM does.
pub const OPENAI_API_BASE_HEADER: &str = "https://api.openai.com";
/// How the gateway authenticates to a deployment's upstream.
#[derive(Debug)]
pub enum UpstreamCredential {
    /// `Authorization: Bearer <api_key>`, prepared once at load and marked sensitive.
    Bearer(HeaderValue),
    /// The key in its provider's own header (Azure's `api-key`, Anthropic's `x-api-key`), marked sensitive.
    KeyHeader(HeaderName, HeaderValue),
    /// No `api_key` in the config and no `OPENAI_API_KEY`: requests go without `Authorization`.
    Anonymous,
    /// `api_key: os.environ/VAR` with `VAR` unset at start-up: the deployment cannot be used.
    UnsetEnv(Box<str>),
    /// A Google service account's access token (Vertex AI), fetched and refreshed by the transport.
    ServiceAccount(Arc<ServiceAccount>),
    /// A `bedrock/` deployment: each request is SigV4-signed with these (`proxy::sigv4`).
    Aws(Arc<AwsSigner>),
}

/// `model_info.tier: untiered`: no tier, said on purpose.
pub const UNTIERED: &str = "untiered";

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
    /// `model_info.tier: untiered`: the config says on purpose that every key may reach it (a reload may
    /// then open a model group that was tiered; a tier merely missing may not).
    pub untiered_on_purpose: bool,
    /// `model_info.access_groups`: a key whose `models` names one of them may call this `model_name`.
    pub access_groups: Box<[Box<str>]>,
    /// Its provider's `litellm_params.model` prefix (`openai` for a bare model), for error messages.
    pub provider: &'static str,
    /// The API its provider speaks.
    pub shape: Shape,
    /// Where each endpoint of its provider is called (`<api_base>/chat/completions`, …), by
    /// [`Endpoint::index`]; `None`: the provider does not serve it.
    pub urls: [Option<Uri>; Endpoint::COUNT],
    /// The `x-litellm-model-api-base` response header: the api_base as configured.
    pub api_base_header: HeaderValue,
    /// The same as text, for spend-log rows (`""` if it is not UTF-8): read once, not per row.
    pub api_base_text: Box<str>,
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
    /// USD per token, when the config or the built-in table prices this deployment; `None` costs nothing.
    pub price: Option<Price>,
    /// A wildcard deployment's price per concrete model the built-in table lists (see [`Self::price_for`]).
    pub concrete_prices: Option<Arc<ConcretePrices>>,
    /// What `/model/info` shows of it (no secret in it).
    pub card: ModelCard,
    /// Headers its provider wants on every request (OpenRouter's `HTTP-Referer`, `X-Title`).
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Client request headers its provider is passed (Anthropic's `anthropic-beta`).
    pub client_headers: &'static [HeaderName],
    /// Added at run time (`/model/new`, stored in the data dir), not read from `model_list`: LiteLLM's
    /// `model_info.db_model`.
    pub db_model: bool,
}

impl Deployment {
    /// The environment variable this deployment's api key is missing, if any.
    pub fn unset_credential(&self) -> Option<&str> {
        match &self.credential {
            UpstreamCredential::UnsetEnv(var) => Some(var),
            UpstreamCredential::Bearer(_)
            | UpstreamCredential::KeyHeader(..)
            | UpstreamCredential::Anonymous
            | UpstreamCredential::ServiceAccount(_)
            | UpstreamCredential::Aws(_) => None,
        }
    }

    /// Where `endpoint` is called on this deployment's upstream, if its provider serves it.
    pub fn url(&self, endpoint: Endpoint) -> Option<&Uri> {
        self.urls[endpoint.index()].as_ref()
    }
}

/// `entry`: how errors name it (`model_list[3]`, or `model id=…` for one added at run time).
pub(super) fn validate_deployment(
    entry: String,
    twin: usize,
    raw: RawDeployment,
    default_timeout: Duration,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Deployment, ConfigError> {
    let identity = raw.identity();
    if raw.api_base_has_userinfo() {
        warnings.push(format!(
            "{entry}.litellm_params.api_base has user:password@ in it, which is not sent upstream (the HTTP \
             client does not send URL credentials) and never shown; put the upstream's key in api_key"
        ));
    }
    if raw.model_name.trim().is_empty() {
        return Err(invalid(format!("{entry}.model_name"), "must not be empty"));
    }
    let params = raw.litellm_params;
    let info = &raw.model_info;
    let (provider, upstream_model) = provider_table::resolve(&params.model)
        .map_err(|problem| invalid(format!("{entry}.litellm_params.model"), problem))?;
    let pricing = pricing(&entry, &params, info, provider, upstream_model)?;
    let concrete_prices = concrete_prices(&entry, &params, info, provider, upstream_model)?;
    let card = model_card::card(&params, info, &pricing, provider);
    let aws = aws::bedrock(&entry, &raw.model_name, &params, provider.shape, env)?;
    let configured = aws.as_ref().map(|(_, base)| base.as_str()).or(params.api_base.as_deref());
    let (base, mut api_base_header) = api_base(&entry, configured, provider, env)?;
    let configured_base = params.api_base.is_some().then_some(base.as_str());
    let vertex = match provider.shape {
        Shape::VertexGemini => {
            Some(vertex::setup(&entry, &raw.model_name, &params, configured_base, upstream_model, env)?)
        }
        _ => None,
    };
    let urls = match provider.shape {
        Shape::OpenAi => Endpoint::ALL.map(|endpoint| match endpoint {
            Endpoint::Messages => None,
            _ => Some(format!("{base}{}", endpoint.path())),
        }),
        Shape::Azure => azure_urls(&entry, &base, upstream_model, params.api_version.as_deref(), env)?,
        Shape::Anthropic => anthropic_urls(&base),
        Shape::Gemini => gemini_urls(&base, upstream_model),
        Shape::VertexGemini | Shape::VertexAnthropic => {
            vertex.as_ref().map(|setup| setup.urls.clone()).unwrap_or_default()
        }
        Shape::Bedrock => aws::bedrock_urls(&base, upstream_model),
    };
    let mut parsed: [Option<Uri>; Endpoint::COUNT] = Default::default();
    for (slot, url) in parsed.iter_mut().zip(urls) {
        let Some(url) = url else { continue };
        *slot = Some(url.parse::<Uri>().map_err(|err| {
            invalid(format!("{entry}.litellm_params.api_base"), format!("is not a valid URL ({err})"))
        })?);
    }
    // A key from the provider's environment goes only to the provider's own base, never to a configured one.
    let env_key = match params.api_base.is_none() {
        true => provider.key_env,
        false => &[],
    };
    let credential = match aws {
        Some((signer, _)) => UpstreamCredential::Aws(Arc::new(signer)),
        None => credential(&entry, &raw.model_name, params.api_key.as_deref(), env_key, env, warnings)?,
    };
    // Azure and Anthropic take the key in a header of their own, not as a bearer token.
    let credential = match (provider.key_header, credential) {
        (Some(name), UpstreamCredential::Bearer(bearer)) => {
            let key = bearer.as_bytes().strip_prefix(b"Bearer ").unwrap_or_default();
            let mut value = HeaderValue::from_bytes(key).map_err(|_| {
                invalid(
                    format!("{entry}.litellm_params.api_key"),
                    "contains characters that cannot be sent in a header",
                )
            })?;
            value.set_sensitive(true);
            UpstreamCredential::KeyHeader(HeaderName::from_static(name), value)
        }
        (_, credential) => credential,
    };
    // A Vertex deployment authenticates as its service account, at the base its location names.
    let credential = match &vertex {
        Some(setup) => {
            api_base_header = HeaderValue::from_str(&setup.base).unwrap_or(api_base_header);
            UpstreamCredential::ServiceAccount(Arc::clone(&setup.account))
        }
        None => credential,
    };
    let extra_headers = provider
        .headers
        .iter()
        .filter_map(|(name, var, default)| {
            let from_env = Some(var).filter(|var| !var.is_empty()).and_then(|var| env(var));
            let value = from_env.filter(|value| !value.is_empty()).unwrap_or_else(|| (*default).to_owned());
            Some((HeaderName::from_static(name), HeaderValue::from_str(&value).ok()?))
        })
        .collect();
    let tier = match raw.model_info.tier.as_deref() {
        None | Some(UNTIERED) => None,
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
    let untiered_on_purpose = raw.model_info.tier.as_deref() == Some(UNTIERED);
    let card = card.with_id(&id);
    Ok(Deployment {
        id: id.into_boxed_str(),
        model_name: raw.model_name.into_boxed_str(),
        upstream_model: upstream_model.into(),
        upstream_model_json,
        tier,
        untiered_on_purpose,
        access_groups: raw.model_info.access_groups.unwrap_or_default().into_iter().map(Into::into).collect(),
        provider: provider.prefix,
        shape: vertex.as_ref().map_or(provider.shape, |setup| setup.shape),
        urls: parsed,
        api_base_text: std::str::from_utf8(api_base_header.as_bytes()).unwrap_or_default().into(),
        api_base_header,
        id_header,
        credential,
        timeout,
        stream_timeout,
        weight: params.weight,
        rpm: params.rpm,
        tpm: params.tpm,
        max_retries: params.max_retries,
        price: pricing.price,
        concrete_prices,
        card,
        extra_headers,
        client_headers: provider.client_headers,
        db_model: false,
    })
}

/// The base URL (no trailing slash) and the `x-litellm-model-api-base` header value for an entry. Without
/// `api_base`: the provider's base env vars, then its default base (OpenAI's default reports
/// `https://api.openai.com`, as LiteLLM does); a provider without a default needs one.
fn api_base(
    entry: &str,
    configured: Option<&str>,
    provider: &Provider,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, HeaderValue), ConfigError> {
    let field = format!("{entry}.litellm_params.api_base");
    let from_env = || provider.base_env.iter().find_map(|var| env(var).filter(|base| !base.is_empty()));
    let (base, header) = match configured {
        Some(value) => {
            let base = resolve_env(value, env)
                .map_err(|var| invalid(&field, format!("is os.environ/{var} but {var} is not set")))?;
            (base.clone(), base)
        }
        None => match (from_env(), provider.default_base) {
            (Some(base), _) => (base.clone(), base),
            (None, Some(OPENAI_API_BASE)) => (OPENAI_API_BASE.to_owned(), OPENAI_API_BASE_HEADER.to_owned()),
            (None, Some(default)) => (default.to_owned(), default.to_owned()),
            (None, None) => {
                let vars = match provider.base_env {
                    [] => String::new(),
                    vars => format!(" (or set {})", vars.join(" or ")),
                };
                return Err(invalid(
                    field,
                    format!("is required for `{}/` deployments: the URL of the server{vars}", provider.prefix),
                ));
            }
        },
    };
    if base.contains(['?', '#']) {
        return Err(invalid(
            field,
            "must not have a query or fragment: requests go to <api_base>/chat/completions etc.",
        ));
    }
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(invalid(field, "must be an http:// or https:// URL, e.g. http://localhost:8000/v1"));
    }
    if has_dot_segment(&base) {
        return Err(invalid(
            field,
            "must not have `.` or `..` path segments (also written %2e): say the path the server is at",
        ));
    }
    let header =
        HeaderValue::from_str(&without_userinfo(&header)).map_err(|_| invalid(&field, "must be printable ASCII"))?;
    Ok((base.trim_end_matches('/').to_owned(), header))
}

/// Whether a URL's path has a `.` or `..` segment, plainly or percent-encoded: a server or a proxy on the
/// way may resolve it to a path other than the one the config seems to name.
fn has_dot_segment(url: &str) -> bool {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let Some((_, path)) = after_scheme.split_once('/') else { return false };
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// `https://user:password@host/v1` → `https://host/v1`: what the gateway may show of a base URL.
pub(super) fn without_userinfo(url: &str) -> String {
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
    env_key: &[&str],
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
        // A provider's key variable (OPENAI_API_KEY, GROQ_API_KEY, …) belongs to its own base: `env_key` is
        // empty when the entry names another api_base.
        None => match env_key.iter().find_map(|var| env(var).filter(|key| !key.is_empty())) {
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

/// A stable id for entries without `model_info.id`: a hash of what identifies the entry (model name, model,
/// api_base, tier; never its api key) and, for identical entries, which of them it is.
fn derived_id(identity: &str, twin: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(identity.as_bytes());
    hasher.update(twin.to_le_bytes());
    hex::encode(&hasher.finalize()[..8])
}
