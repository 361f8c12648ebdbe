//! `POST /v1/chat/completions`: authorise → check the key's model allowlist → pick on the key's tier → forward.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{auth, body, AppState};
use crate::error::ApiError;
use crate::pool::PickDeployment;
use crate::proxy::{self, ChatRequest};

pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let principal = auth::authorise(&req, &state).await?;
    let chat = ChatRequest::parse(body::read(&req, payload, state.max_request_bytes).await?)?;
    principal.check_model(chat.model())?;
    let pick = PickDeployment { model: chat.model().into(), tier: principal.tier().cloned() };
    let deployment = state.pool.send(pick).await??;
    Ok(proxy::forward(&client, &deployment, &chat, &req).await?)
}
