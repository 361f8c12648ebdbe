//! The one HTTP-facing error: every module error converts into [`ApiError`], and only this file decides its
//! status and its OpenAI-style body `{"error": {"message", "type", "param", "code"}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::catalog::ModelError;
use crate::keys::orgs::OrgError;
use crate::keys::{EndUserError, KeyError, StoreError};
use crate::meter::{LevelRefusal, MeterError};
use crate::pool::{PoolError, RouterError};
use crate::providers::{anthropic_error_type, ProviderError};
use crate::proxy::ProxyError;
use crate::redis_link::ClusterError;
use crate::tier::Tier;

/// A request the client sent that cannot be processed as sent.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("Request body is larger than {limit} bytes; send a smaller request (the operator sets the limit with general_settings.max_request_size_mb).")]
    BodyTooLarge { limit: usize },
    #[error("The request body did not arrive within {}s; send it faster (the operator sets the limit with general_settings.request_body_timeout).", .after.as_secs_f64())]
    BodyTimeout { after: std::time::Duration },
    #[error("Invalid JSON payload: {detail}")]
    InvalidJson { detail: String, param: Option<String> },
    #[error("The request body must be a JSON object.")]
    NotAnObject,
    #[error("`{0}` is required.")]
    MissingField(&'static str),
    #[error("`{field}` must be {expected}.")]
    WrongType { field: &'static str, expected: &'static str },
    #[error("Invalid query string: {0}")]
    InvalidQuery(String),
    #[error("tiergate does not support `{0}` yet, so it would not be enforced; remove it (null or empty values are accepted).")]
    UnsupportedField(String),
    #[error("`{0}` is one of LiteLLM's test switches, which tiergate refuses (as LiteLLM does unless general_settings.dangerously_allow_mock_testing_request_params); remove it.")]
    MockRefused(&'static str),
    #[error("Fallback `{0}` is not a model your key can reach on its tier; list in `fallbacks` only models from GET /v1/models.")]
    FallbackUnreachable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Meter(#[from] MeterError),
    /// A level the request belongs to (its end user, …) refused it; the message names the level.
    #[error(transparent)]
    Level(#[from] LevelRefusal),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A config reload was refused; the message says why (the old config stays in force).
    #[error("{0}")]
    ConfigRefused(String),
    #[error("Unknown route {method} {path}. See docs/api.md (Endpoints) for the endpoints tiergate serves.")]
    RouteNotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}.")]
    MethodNotAllowed { method: String, path: String },
    /// `/model/info?litellm_model_id=`: no deployment the caller may see has that id.
    #[error("Model id = {id} not found on litellm proxy. Call /model/info without litellm_model_id to list the deployments your key can see.")]
    UnknownModelId { id: String },
    /// An actor did not answer: it has stopped, which happens only while the gateway shuts down (a panic
    /// anywhere exits the process, see `main.rs`, so no actor is ever left dead in a running gateway).
    #[error("The gateway is shutting down ({0}); retry in a moment, against another instance if you run several.")]
    Unavailable(#[from] actix::MailboxError),
    /// The spend log's files could not be read (the message says which error the disk gave).
    #[error("The spend log could not be read ({0}); check the disk and the permissions of <data-dir>/spend_logs.")]
    SpendLogUnreadable(std::io::Error),
    /// A reload turned spend logs on and the log could not be opened (the message names its path and the
    /// disk's error); the old config stays in force.
    #[error("The config was not reloaded, the old one stays in force: it turns spend logs on, and the spend log cannot be opened ({0}); check the disk and the permissions of that path, then reload again.")]
    SpendLogUnopened(std::io::Error),
    /// Too many reads of the spend log are running or waiting (the message says how many).
    #[error("The spend log is busy: {0}.")]
    SpendLogBusy(std::io::Error),
}

/// The body of every error response.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: String,
    r#type: &'a str,
    param: Option<&'a str>,
    /// The HTTP status as a string, as LiteLLM sends it.
    code: String,
}

impl ApiError {
    /// Status, OpenAI/LiteLLM error `type` and `param` for every variant; no catch-all arm on purpose.
    fn classify(&self) -> (StatusCode, &'static str, Option<&str>) {
        use StatusCode as S;
        match self {
            Self::Request(err) => match err {
                RequestError::BodyTooLarge { .. } => {
                    (S::PAYLOAD_TOO_LARGE, "invalid_request_error", Some("request_body"))
                }
                RequestError::BodyTimeout { .. } => (S::REQUEST_TIMEOUT, "timeout_error", Some("request_body")),
                RequestError::InvalidJson { param, .. } => {
                    (S::BAD_REQUEST, "invalid_request_error", Some(param.as_deref().unwrap_or("request_body")))
                }
                RequestError::NotAnObject => (S::BAD_REQUEST, "invalid_request_error", Some("request_body")),
                RequestError::MissingField(field) | RequestError::WrongType { field, .. } => {
                    (S::BAD_REQUEST, "invalid_request_error", Some(field))
                }
                RequestError::InvalidQuery(_) => (S::BAD_REQUEST, "invalid_request_error", Some("query")),
                RequestError::UnsupportedField(field) => (S::BAD_REQUEST, "invalid_request_error", Some(field)),
                RequestError::MockRefused(field) => (S::BAD_REQUEST, "invalid_request_error", Some(field)),
                RequestError::FallbackUnreachable(_) => (S::BAD_REQUEST, "invalid_request_error", Some("fallbacks")),
            },
            Self::Key(err) => match err {
                KeyError::MissingKey | KeyError::KeyBlocked => (S::UNAUTHORIZED, "auth_error", None),
                KeyError::KeyHeaderRepeated { .. } => (S::BAD_REQUEST, "invalid_request_error", Some("authorization")),
                KeyError::UnknownKey { .. } => (S::UNAUTHORIZED, "token_not_found_in_db", Some("key")),
                KeyError::KeyExpired { .. } => (S::UNAUTHORIZED, "expired_key", Some("key")),
                KeyError::ModelNotAllowed { .. } => (S::FORBIDDEN, "key_model_access_denied", Some("model")),
                KeyError::AdminOnly | KeyError::ForeignKey => (S::FORBIDDEN, "auth_error", None),
                KeyError::KeyNotFound { .. } => (S::NOT_FOUND, "not_found_error", Some("key")),
                KeyError::AliasNotFound(_) => (S::NOT_FOUND, "not_found_error", Some("key_aliases")),
                KeyError::AliasTaken(_) | KeyError::InvalidAlias => {
                    (S::BAD_REQUEST, "invalid_request_error", Some("key_alias"))
                }
                KeyError::KeyTaken | KeyError::InvalidCustomKey | KeyError::KeyIsMaster => {
                    (S::BAD_REQUEST, "invalid_request_error", Some("key"))
                }
                KeyError::InvalidDuration(_) => (S::BAD_REQUEST, "invalid_request_error", Some("duration")),
                KeyError::UnknownTier { .. } | KeyError::TierNotAString | KeyError::TierRequired { .. } => {
                    (S::BAD_REQUEST, "invalid_request_error", Some("metadata.tier"))
                }
                KeyError::TierDropped { .. } => (S::BAD_REQUEST, "invalid_request_error", Some("metadata.tier")),
                KeyError::FieldRefused(refusal) => (S::BAD_REQUEST, "invalid_request_error", Some(refusal.field())),
                KeyError::UnknownModels { .. } => (S::BAD_REQUEST, "invalid_request_error", Some("models")),
                KeyError::UnknownBudget(_) => (S::BAD_REQUEST, "invalid_request_error", Some("budget_id")),
                KeyError::BudgetNotFound(_) => (S::NOT_FOUND, "not_found_error", Some("budget_id")),
                KeyError::BudgetExists(_) => (S::BAD_REQUEST, "invalid_request_error", Some("budget_id")),
                KeyError::InvalidBudgetId => (S::BAD_REQUEST, "invalid_request_error", Some("budget_id")),
                KeyError::BudgetInUse { .. } => (S::BAD_REQUEST, "invalid_request_error", Some("budget_id")),
                KeyError::UnknownLimitModels { field, .. } => (S::BAD_REQUEST, "invalid_request_error", Some(*field)),
                KeyError::NotDurable => (S::SERVICE_UNAVAILABLE, "db_write_unconfirmed", None),
                KeyError::Store(_) | KeyError::StaleCopy(_) => (S::SERVICE_UNAVAILABLE, "no_db_connection", None),
                KeyError::ChangedMeanwhile => (S::CONFLICT, "conflict_error", None),
                KeyError::EndUser(err) => match err {
                    EndUserError::Exists(_) | EndUserError::InvalidId => {
                        (S::BAD_REQUEST, "invalid_request_error", Some("user_id"))
                    }
                    EndUserError::NotFound(_) => (S::NOT_FOUND, "not_found_error", Some("user_id")),
                    EndUserError::TooMany(_) => (S::BAD_REQUEST, "invalid_request_error", Some("user_ids")),
                    // 422, as LiteLLM's validation of these fields.
                    EndUserError::BudgetTwice => (S::UNPROCESSABLE_ENTITY, "invalid_request_error", Some("budget_id")),
                    EndUserError::UnknownDefaultModel(_) => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_request_error", Some("default_model"))
                    }
                    // LiteLLM Enterprise's blocked-user check answers 400; tiergate always checks.
                    EndUserError::Blocked(_) => (S::BAD_REQUEST, "invalid_request_error", Some("user")),
                    EndUserError::ModelNotAllowed { .. } => {
                        (S::FORBIDDEN, "end_user_model_access_denied", Some("model"))
                    }
                    EndUserError::RegionNotEnforced { .. } => {
                        (S::BAD_REQUEST, "invalid_request_error", Some("allowed_model_region"))
                    }
                },
                KeyError::Org(err) => org_class(err),
            },
            Self::Pool(err) => match err {
                PoolError::UnknownModel { .. } => (S::BAD_REQUEST, "invalid_request_error", Some("model")),
                PoolError::NoDeploymentOnTier { .. } => (S::FORBIDDEN, "tier_model_access_denied", Some("model")),
                PoolError::CredentialUnset { .. } => (S::SERVICE_UNAVAILABLE, "deployment_misconfigured", None),
                PoolError::AllCoolingDown { .. } => (S::TOO_MANY_REQUESTS, "rate_limit_error", Some("model")),
                PoolError::EndpointUnsupported { .. } => (S::BAD_REQUEST, "invalid_request_error", Some("model")),
            },
            Self::ConfigRefused(_) => (S::BAD_REQUEST, "invalid_config", Some("config")),
            Self::SpendLogUnreadable(_) => (S::SERVICE_UNAVAILABLE, "spend_log_unreadable", None),
            Self::SpendLogBusy(_) => (S::SERVICE_UNAVAILABLE, "spend_log_busy", None),
            Self::SpendLogUnopened(_) => (S::SERVICE_UNAVAILABLE, "spend_log_unavailable", Some("config")),
            Self::Model(err) => match err {
                ModelError::Invalid(_) => (S::BAD_REQUEST, "invalid_request_error", Some("litellm_params")),
                ModelError::IdTaken(_) | ModelError::SameId(_) => {
                    (S::BAD_REQUEST, "invalid_request_error", Some("model_info.id"))
                }
                ModelError::InConfig(_) | ModelError::NotFound(_) => {
                    (S::BAD_REQUEST, "invalid_request_error", Some("id"))
                }
                ModelError::TierMix { .. } => (S::BAD_REQUEST, "invalid_request_error", Some("model_info.tier")),
                ModelError::Unsealable => (S::SERVICE_UNAVAILABLE, "service_unavailable", None),
                ModelError::Store(_) => (S::SERVICE_UNAVAILABLE, "no_db_connection", None),
            },
            Self::Provider(err) => match err {
                ProviderError::Unsupported { .. } => (S::BAD_REQUEST, "invalid_request_error", Some("model")),
                ProviderError::Untranslatable(err) => (S::BAD_REQUEST, "invalid_request_error", Some(&err.param)),
            },
            Self::Meter(err) => match err {
                MeterError::Requests { .. }
                | MeterError::Tokens { .. }
                | MeterError::ModelRequests { .. }
                | MeterError::ModelTokens { .. }
                | MeterError::Parallel { .. }
                | MeterError::BudgetHeld { .. } => (S::TOO_MANY_REQUESTS, "rate_limit_error", None),
                // 429, as the newest LiteLLM (older ones answered 400).
                MeterError::BudgetExceeded { .. } => (S::TOO_MANY_REQUESTS, "budget_exceeded", None),
            },
            // A level's refusal has the status of the same refusal of a key (429).
            Self::Level(refusal) => match refusal.refusal {
                MeterError::BudgetExceeded { .. } => (S::TOO_MANY_REQUESTS, "budget_exceeded", None),
                MeterError::Requests { .. }
                | MeterError::Tokens { .. }
                | MeterError::ModelRequests { .. }
                | MeterError::ModelTokens { .. }
                | MeterError::Parallel { .. }
                | MeterError::BudgetHeld { .. } => (S::TOO_MANY_REQUESTS, "rate_limit_error", None),
            },
            Self::Proxy(err) => match err {
                ProxyError::Unreachable { .. } => (S::BAD_GATEWAY, "api_connection_error", None),
                ProxyError::Timeout { .. } => (S::GATEWAY_TIMEOUT, "timeout_error", None),
                // LiteLLM answers a request's own timeout running out with 408.
                ProxyError::ClientTimeout { .. } => (S::REQUEST_TIMEOUT, "timeout_error", Some("timeout")),
                ProxyError::CredentialsRejected { .. } => (S::BAD_GATEWAY, "upstream_auth_error", None),
                ProxyError::Untranslatable { .. } => (S::BAD_GATEWAY, "api_error", None),
                ProxyError::NoAccessToken { .. } => (S::BAD_GATEWAY, "upstream_auth_error", None),
            },
            Self::RouteNotFound { .. } => (S::NOT_FOUND, "not_found_error", None),
            Self::MethodNotAllowed { .. } => (S::METHOD_NOT_ALLOWED, "invalid_request_error", None),
            Self::UnknownModelId { .. } => (S::BAD_REQUEST, "invalid_request_error", Some("litellm_model_id")),
            Self::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "service_unavailable", None),
        }
    }

    /// What the client reads. Store failures carry internals (paths, OS errors), so they get a fixed text.
    fn message(&self) -> String {
        match self {
            Self::Key(KeyError::Store(StoreError::Shared(ClusterError::Emptied))) => {
                "The shared key store (Redis) has lost its data, so keys cannot be created or changed until an admin \
                 restores it from a replica's copy (see the gateway's log). Keys keep working meanwhile."
                    .into()
            }
            Self::Key(KeyError::Store(StoreError::Shared(ClusterError::Replaced))) => {
                "The shared key store (Redis) was replaced by another one, which this gateway is copying now; retry \
                 shortly."
                    .into()
            }
            Self::Key(KeyError::Store(StoreError::Shared(ClusterError::Protocol(_)))) => {
                "The shared key store (Redis) answered unexpectedly, so the change was not made; retry shortly. The \
                 operator can find the cause in the gateway's log."
                    .into()
            }
            Self::Key(KeyError::Store(StoreError::Shared(_))) => {
                "The shared key store (Redis) is unreachable, so keys cannot be created or changed now; retry shortly. \
                 If a change may have gone through, read the key back with /key/info before retrying."
                    .into()
            }
            Self::Key(KeyError::Store(_)) | Self::Model(ModelError::Store(_)) => {
                "The key store is unavailable; retry shortly. The operator can find the cause in the gateway's log.".into()
            }
            Self::Pool(PoolError::UnknownModel { model, available }) => format!(
                "Invalid model name passed in model={model}. Models available to your key: {}. Call /v1/models to list them.",
                list_or_none(available)
            ),
            Self::Pool(PoolError::NoDeploymentOnTier { model, tier, tiers }) => format!(
                "Model `{model}` has no deployment on your key's tier `{tier}` (it is served on: {}). \
                 Use a model your tier can reach (GET /v1/models) or a key on another tier.",
                list_or_none(&tiers.iter().map(Tier::to_string).collect::<Vec<_>>())
            ),
            Self::Pool(PoolError::CredentialUnset { model, var }) => format!(
                "Model `{model}` cannot be called: its upstream api key comes from the environment variable {var}, \
                 which is not set on the gateway. The operator must set {var} and restart tiergate."
            ),
            Self::Pool(PoolError::EndpointUnsupported { model, endpoint, providers }) => format!(
                "Model `{model}` cannot serve {endpoint}: its deployments on your key's tier use provider {}, which \
                 has no such endpoint. Use a model whose provider serves {endpoint} (an OpenAI-compatible one).",
                providers.iter().map(|provider| format!("`{provider}`")).collect::<Vec<_>>().join(", ")
            ),
            Self::Pool(PoolError::AllCoolingDown { model, retry_in }) => format!(
                "No deployments available for model `{model}` on your tier: every one is cooling down after failures. \
                 Try again in {} seconds.",
                retry_in.as_secs().max(1)
            ),
            other => other.to_string(),
        }
    }

    /// Seconds a client should wait before retrying, for the `Retry-After` header.
    fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            Self::Pool(PoolError::AllCoolingDown { retry_in, .. }) => Some(retry_in.as_secs().max(1)),
            Self::Meter(err) => err.retry_after_seconds(),
            Self::Level(refusal) => refusal.refusal.retry_after_seconds(),
            _ => None,
        }
    }
}

/// Users, teams and organizations (`keys/orgs`): LiteLLM's statuses.
fn org_class(err: &OrgError) -> (StatusCode, &'static str, Option<&str>) {
    use StatusCode as S;
    let param = err.param();
    match err {
        OrgError::InvalidId { .. }
        | OrgError::TooMany { .. }
        | OrgError::TeamExists(_)
        | OrgError::OrgExists(_)
        | OrgError::UnknownTeam(_)
        | OrgError::UnknownOrg(_)
        | OrgError::NotAMember(_)
        | OrgError::MemberUnnamed
        | OrgError::TierContradicted { .. }
        | OrgError::TeamKeysDisagree { .. }
        | OrgError::TierWouldDrop { .. }
        | OrgError::InheritedTierDropped { .. }
        | OrgError::InvalidRole { .. } => (S::BAD_REQUEST, "invalid_request_error", param),
        OrgError::MemberExists { .. } => (S::BAD_REQUEST, "team_member_already_in_team", param),
        OrgError::UserExists(_) | OrgError::EmailTaken(_) => (S::CONFLICT, "invalid_request_error", param),
        OrgError::TeamNotFound(_) | OrgError::UserNotFound(_) | OrgError::OrgNotFound(_) => {
            (S::NOT_FOUND, "not_found_error", param)
        }
        OrgError::NotAnOrgMember { .. } => (S::NOT_FOUND, "not_found_error", param),
        OrgError::TeamBlocked(_) | OrgError::NotProxyAdmin { .. } => (S::UNAUTHORIZED, "auth_error", param),
        OrgError::NotTeamAdmin { .. }
        | OrgError::AdminOfMore { .. }
        | OrgError::TierBeyondCaller { .. }
        | OrgError::NotTeamMember { .. }
        | OrgError::OrgBeyondTeam { .. }
        | OrgError::UserCleared { .. }
        | OrgError::ReadOnlyRole { .. }
        | OrgError::RoleBeyondCaller { .. } => (S::FORBIDDEN, "auth_error", param),
        OrgError::OwnerModelNotAllowed { .. } => (S::FORBIDDEN, "team_model_access_denied", param),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// The body of an error on Anthropic's API (`/v1/messages`).
#[derive(Serialize)]
struct AnthropicErrorBody<'a> {
    r#type: &'static str,
    error: AnthropicErrorDetail<'a>,
}

#[derive(Serialize)]
struct AnthropicErrorDetail<'a> {
    r#type: &'a str,
    message: String,
}

impl ApiError {
    /// The error as Anthropic's API writes one (`{"type":"error","error":{"type","message"}}`), same status
    /// and headers: what Messages API clients (Claude Code) read.
    pub fn anthropic_response(&self) -> HttpResponse {
        let mut response = self.error_response();
        let status = response.status();
        let error = AnthropicErrorDetail { r#type: anthropic_error_type(status.as_u16()), message: self.message() };
        let body = serde_json::to_vec(&AnthropicErrorBody { r#type: "error", error }).unwrap_or_default();
        response = response.set_body(actix_web::body::BoxBody::new(body));
        response
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.classify().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, r#type, param) = self.classify();
        // Variants' Display never holds a secret; store errors hold paths the operator needs. A shared store
        // out of reach is logged once where it is noticed (`redis_link`), not once per refused request.
        let logged_already = matches!(self, Self::Key(KeyError::StaleCopy(_) | KeyError::Store(StoreError::Shared(_))));
        if status.is_server_error() && !logged_already {
            log::warn!("{} {}: {self}", status.as_u16(), r#type);
        }
        let body = ErrorBody {
            error: ErrorDetail { message: self.message(), r#type, param, code: status.as_u16().to_string() },
        };
        let mut response = HttpResponse::build(status);
        if let Some(seconds) = self.retry_after_seconds() {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds));
        }
        response.json(body)
    }
}

impl From<RouterError> for ApiError {
    fn from(err: RouterError) -> Self {
        match err {
            RouterError::NoDeployment(err) => Self::Pool(err),
            RouterError::Upstream(err) => Self::Proxy(err),
            RouterError::Provider(err) => Self::Provider(err),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::Key(KeyError::Store(err))
    }
}
