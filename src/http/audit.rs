//! `GET /audit` (master key): the audit trail of key and budget changes, newest first, a page at a time,
//! filtered by key (plaintext, hash or alias), action and time.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{auth, body, AppState};
use crate::error::{ApiError, RequestError};
use crate::keys::{AuditFilter, KeyHash, ListAudit};

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    key: Option<String>,
    action: Option<String>,
    /// Unix seconds, inclusive.
    since: Option<u64>,
    until: Option<u64>,
    page: Option<usize>,
    size: Option<usize>,
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let query: AuditQuery = body::query(&req)?;
    let (page, size) = (query.page.unwrap_or(1), query.size.unwrap_or(DEFAULT_PAGE_SIZE));
    if page == 0 || !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(RequestError::InvalidQuery(format!("`page` starts at 1 and `size` is 1 to {MAX_PAGE_SIZE}")).into());
    }
    let seconds_to_ms = |seconds: u64| seconds.saturating_mul(1000);
    let filter = AuditFilter {
        // A plaintext key is looked up by its hash: entries never hold the plaintext.
        key: query
            .key
            .map(|key| match KeyHash::from_hex(&key) {
                Some(hash) => vec![hash.to_hex(), key],
                None => vec![KeyHash::of(&key).to_hex(), key],
            })
            .unwrap_or_default(),
        action: query.action,
        since_ms: query.since.map(seconds_to_ms),
        until_ms: query.until.map(|until| seconds_to_ms(until).saturating_add(999)),
    };
    let (entries, total) = state.registry.send(ListAudit { filter, page, size }).await??;
    Ok(HttpResponse::Ok().json(json!({"entries": entries, "total": total, "page": page, "size": size})))
}
