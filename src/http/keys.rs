//! Key management endpoints (master key only): `POST /key/generate`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{auth, body, AppState};
use crate::error::ApiError;
use crate::keys::{MintKey, MintedKey, NewKey};

/// Management bodies are small; this keeps a runaway script from buffering megabytes.
const MANAGEMENT_BODY_LIMIT: usize = 1024 * 1024;

/// The `/key/generate` fields tiergate supports; others are refused rather than silently not enforced.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GenerateRequest {
    key_alias: Option<String>,
    metadata: Option<Map<String, Value>>,
}

/// LiteLLM's `GenerateKeyResponse`, limited to what tiergate has.
#[derive(Serialize)]
struct GenerateResponse<'a> {
    key: &'a str,
    key_name: &'a str,
    key_alias: Option<&'a str>,
    metadata: &'a Map<String, Value>,
    token: &'a str,
    token_id: &'a str,
    expires: Option<&'a str>,
    created_at: &'a str,
}

pub async fn generate(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state.keys).await?;
    let request: GenerateRequest = body::json_or_default(&body::read(&req, payload, MANAGEMENT_BODY_LIMIT).await?)?;
    let new_key = NewKey { key_alias: request.key_alias, metadata: request.metadata.unwrap_or_default() };
    let MintedKey { key, record } = state.keys.send(MintKey(new_key)).await??;
    Ok(HttpResponse::Ok().json(GenerateResponse {
        key: key.expose(),
        key_name: &record.key_name,
        key_alias: record.key_alias.as_deref(),
        metadata: &record.metadata,
        token: &record.token,
        token_id: &record.token,
        expires: record.expires.as_deref(),
        created_at: &record.created_at,
    }))
}
