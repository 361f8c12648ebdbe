//! `POST /v1/chat/completions`: authorise → parse → check the key's model allowlist → route on the key's tier.

use actix_web::{web, HttpRequest, HttpResponse};

use super::chat_request::parse_chat;
use super::{auth, body, AppState};
use crate::error::ApiError;
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
    let router = Router { client: &client, pool: &state.pool, policy: &state.policy };
    let caller = Caller { tier: principal.tier(), models: principal.models() };
    Ok(pool::route(router, &chat, &req, caller).await?)
}
