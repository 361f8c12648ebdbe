//! `POST /v1/chat/completions`: authorise → parse → check the key's model allowlist and limits → route on the
//! key's tier → count the answer's usage.

use std::time::SystemTime;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use super::chat_request::parse_chat;
use super::connections::Holding;
use super::{auth, body, AppState};
use crate::error::ApiError;
use crate::keys::Principal;
use crate::meter::{Admitted, KeyTally, KeyUse, Quota};
use crate::pool::{self, Caller, Router};

pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let principal = auth::authorise(&req, &state).await?;
    let chat = parse_chat(body::read(&req, payload, state.max_request_bytes, state.request_body_timeout).await?)?;
    principal.check_model(chat.model())?;
    let (admitted, tally) = admit(&principal, &state, chat.model())?.unzip();
    let router = Router { client: &client, pool: &state.pool, policy: &state.policy };
    let caller = Caller { tier: principal.tier(), models: principal.models() };
    let response = pool::route(router, &chat, &req, caller, tally).await?;
    Ok(holding_the_slot(response, admitted))
}

/// Counts the request against the key's limits and budget (the master key has none), or refuses it (429).
fn admit(
    principal: &Principal,
    state: &AppState,
    model: &std::sync::Arc<str>,
) -> Result<Option<(Admitted, KeyTally)>, ApiError> {
    let Principal::Virtual(key) = principal else { return Ok(None) };
    let grant = &key.grant;
    let key_use = KeyUse {
        key: *key.hash.as_bytes(),
        own: &grant.limits,
        budget_id: grant.budget_id.as_deref(),
        tier: grant.tier.as_ref(),
        model,
    };
    Ok(Some(state.meter.admit(key_use, SystemTime::now())?))
}

/// The answer with the key's limit headers, its body holding the key's parallel slot until sent.
fn holding_the_slot(mut response: HttpResponse, admitted: Option<Admitted>) -> HttpResponse {
    let Some(admitted) = admitted else { return response };
    limit_headers(response.headers_mut(), &admitted);
    response.map_body(|_, body| Holding { body, guard: admitted }).map_into_boxed_body()
}

/// LiteLLM's headers for a key's limits: `x-ratelimit-{api_key,model_per_key}-{limit,remaining}-{requests,
/// tokens}` and `x-litellm-key-{rpm-limit,tpm-limit,max-budget,spend}`, as of the admission check.
fn limit_headers(headers: &mut HeaderMap, admitted: &Admitted) {
    let quotas = [
        (admitted.requests, ["x-ratelimit-api_key-limit-requests", "x-ratelimit-api_key-remaining-requests"]),
        (admitted.tokens, ["x-ratelimit-api_key-limit-tokens", "x-ratelimit-api_key-remaining-tokens"]),
        (
            admitted.model_requests,
            ["x-ratelimit-model_per_key-limit-requests", "x-ratelimit-model_per_key-remaining-requests"],
        ),
        (
            admitted.model_tokens,
            ["x-ratelimit-model_per_key-limit-tokens", "x-ratelimit-model_per_key-remaining-tokens"],
        ),
    ];
    for (quota, [limit_name, remaining_name]) in quotas {
        let Some(Quota { limit, remaining }) = quota else { continue };
        headers.insert(HeaderName::from_static(limit_name), HeaderValue::from(limit));
        headers.insert(HeaderName::from_static(remaining_name), HeaderValue::from(remaining));
    }
    if let Some(Quota { limit, .. }) = admitted.requests {
        headers.insert(HeaderName::from_static("x-litellm-key-rpm-limit"), HeaderValue::from(limit));
    }
    if let Some(Quota { limit, .. }) = admitted.tokens {
        headers.insert(HeaderName::from_static("x-litellm-key-tpm-limit"), HeaderValue::from(limit));
    }
    let amount = |amount: f64| HeaderValue::try_from(amount.to_string()).ok();
    if let Some(value) = admitted.max_budget.and_then(amount) {
        headers.insert(HeaderName::from_static("x-litellm-key-max-budget"), value);
    }
    // The proxy sets it for an answer it counted before answering (the spend just before it); else this.
    let spend = HeaderName::from_static("x-litellm-key-spend");
    if let Some(value) = admitted.spend.filter(|_| !headers.contains_key(&spend)).and_then(amount) {
        headers.insert(spend, value);
    }
    if admitted.soft_budget_exceeded {
        headers.insert(HeaderName::from_static("x-litellm-soft-budget-exceeded"), HeaderValue::from_static("true"));
    }
}
