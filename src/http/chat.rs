//! `POST /v1/chat/completions`: authorise → check the key's model allowlist → attempts on the key's tier.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{auth, body, AppState};
use crate::error::ApiError;
use crate::proxy::{self, ChatRequest, Route};

pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let principal = auth::authorise(&req, &state).await?;
    let chat =
        ChatRequest::parse(body::read(&req, payload, state.max_request_bytes, state.request_body_timeout).await?)?;
    principal.check_model(chat.model())?;
    let route =
        Route { client: &client, pool: &state.pool, policy: &state.policy, incoming: &req, principal: &principal };
    proxy::complete(&chat, route).await
}
