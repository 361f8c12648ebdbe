//! `GET /v1/models`: the model names the caller's key can call (tier and allowlist), in OpenAI's list format;
//! LiteLLM's `return_wildcard_routes`, `include_model_access_groups` and `only_model_access_groups` say what
//! else to list.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{auth, body, AppState};
use crate::error::ApiError;
use crate::pool::Listing;

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

/// LiteLLM's query parameters; each is off unless `true`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ListQuery {
    return_wildcard_routes: bool,
    include_model_access_groups: bool,
    only_model_access_groups: bool,
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let principal = auth::authorise(&req, &state).await?;
    let query: ListQuery = body::query(&req)?;
    let listing = Listing {
        wildcards: query.return_wildcard_routes,
        access_groups: query.include_model_access_groups,
        only_access_groups: query.only_model_access_groups,
    };
    let names = state.routing.load().listed(principal.tier(), principal.models(), listing);
    let data = names
        .into_iter()
        .map(|id| ModelEntry { id, object: "model", created: MODEL_CREATED_AT, owned_by: "openai" })
        .collect();
    Ok(HttpResponse::Ok().json(ModelList { object: "list", data }))
}
