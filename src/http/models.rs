//! `GET /v1/models`: the model names the caller's key can call (tier and allowlist), in OpenAI's list format.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::{auth, AppState};
use crate::error::ApiError;
use crate::pool::ListModels;

/// LiteLLM reports this fixed creation time for every configured model.
const MODEL_CREATED_AT: u64 = 1_677_610_602;

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelEntry>,
}

#[derive(Serialize)]
struct ModelEntry {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let principal = auth::authorise(&req, &state).await?;
    let names = state.pool.send(ListModels { tier: principal.tier().cloned() }).await?;
    let data = names
        .into_iter()
        .filter(|name| principal.may_use(name))
        .map(|id| ModelEntry { id, object: "model", created: MODEL_CREATED_AT, owned_by: "openai" })
        .collect();
    Ok(HttpResponse::Ok().json(ModelList { object: "list", data }))
}
