//! `POST /v1/chat/completions`: authorise → parse → check the key's model allowlist and limits → route on the
//! key's tier.

use std::time::SystemTime;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use super::chat_request::parse_chat;
use super::connections::Holding;
use super::{auth, body, AppState};
use crate::error::ApiError;
use crate::keys::Principal;
use crate::meter::{Admitted, Limits};
use crate::pool::{self, Caller, Router};

const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-api_key-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-api_key-remaining-requests");
const KEY_RPM_LIMIT: HeaderName = HeaderName::from_static("x-litellm-key-rpm-limit");

pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let principal = auth::authorise(&req, &state).await?;
    let chat = parse_chat(body::read(&req, payload, state.max_request_bytes, state.request_body_timeout).await?)?;
    principal.check_model(chat.model())?;
    let admitted = admit(&principal, &state)?;
    let router = Router { client: &client, pool: &state.pool, policy: &state.policy };
    let caller = Caller { tier: principal.tier(), models: principal.models() };
    let response = pool::route(router, &chat, &req, caller).await?;
    Ok(holding_the_slot(response, admitted))
}

/// Counts the request against the key's limits (the master key has none), or refuses it with a 429.
fn admit(principal: &Principal, state: &AppState) -> Result<Option<Admitted>, ApiError> {
    let Principal::Virtual(key) = principal else { return Ok(None) };
    let limits = Limits { rpm: key.grant.rpm_limit, parallel: key.grant.max_parallel_requests };
    Ok(Some(state.meter.admit(*key.hash.as_bytes(), limits, SystemTime::now())?))
}

/// The answer with the key's request-window headers, its body holding the key's parallel slot until sent.
fn holding_the_slot(mut response: HttpResponse, admitted: Option<Admitted>) -> HttpResponse {
    let Some(admitted) = admitted else { return response };
    if let Some((limit, remaining)) = admitted.requests {
        let headers = response.headers_mut();
        headers.insert(LIMIT_REQUESTS, HeaderValue::from(limit));
        headers.insert(REMAINING_REQUESTS, HeaderValue::from(remaining));
        headers.insert(KEY_RPM_LIMIT, HeaderValue::from(limit));
    }
    response.map_body(|_, body| Holding { body, guard: admitted }).map_into_boxed_body()
}
