//! Spend-log endpoints (master key), as LiteLLM serves them: `GET /spend/logs`, `/global/spend/report`,
//! `/global/spend/keys`, `/global/spend/models`. Each replica answers from its own rows, and says so in the
//! `x-tiergate-spend-logs-scope` header (`replica`; `gateway` when there is one process).

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{auth, body, AppState};
use crate::error::{ApiError, RequestError};
use crate::keys::KeyHash;
use crate::spend_logs::{self, Grouping, SpendLog, SpendRow};

/// LiteLLM's cap on the rows one `/spend/logs` answer holds (more: `x-litellm-spend-logs-truncated: true`).
const MAX_PAGE_SIZE: usize = 10_000;
/// The most days a date range may span (a summary lists every day).
const MAX_DAYS: u64 = 3_660;
/// The most entries `/global/spend/keys` and `/global/spend/models` list.
const MAX_LIMIT: usize = 10_000;
const DAY_MS: u64 = 86_400_000;

#[derive(Deserialize)]
pub(super) struct LogsQuery {
    request_id: Option<String>,
    api_key: Option<String>,
    user_id: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    summarize: Option<String>,
    page: Option<usize>,
    page_size: Option<usize>,
}

#[derive(Deserialize)]
pub(super) struct ReportQuery {
    start_date: Option<String>,
    end_date: Option<String>,
    group_by: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct LimitQuery {
    limit: Option<usize>,
}

/// `GET /spend/logs`: rows newest first, filters ANDed; with `start_date` and `end_date` (start 00:00 to end
/// 00:00, UTC) a per-day summary unless `summarize=false`.
pub(super) async fn logs(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let query: LogsQuery = body::query(&req)?;
    let dates = date_range(query.start_date.as_deref(), query.end_date.as_deref())?;
    let summarize = !matches!(query.summarize.as_deref().map(str::to_ascii_lowercase).as_deref(), Some("false"));
    let (page, size) = (query.page.unwrap_or(1), query.page_size.unwrap_or(MAX_PAGE_SIZE));
    if page == 0 || !(1..=MAX_PAGE_SIZE).contains(&size) {
        let problem = format!("`page` starts at 1 and `page_size` is 1 to {MAX_PAGE_SIZE}");
        return Err(RequestError::InvalidQuery(problem).into());
    }
    let api_key = query.api_key.as_deref().map(key_hex);
    let Some(log) = state.spend_logs.opened().cloned() else { return Ok(answer(&state, json!([]), false)) };
    if let (Some((from, to)), true) = (dates, summarize) {
        let days = days_of(from, to);
        let summary = read(log, move |log| spend_logs::by_day(log.store(), (from, to), &days)).await?;
        return Ok(answer(&state, summary, false));
    }
    let (request_id, user) = (query.request_id, query.user_id);
    let (rows, truncated) = read(log, move |log| {
        let keep = |row: &SpendRow| {
            api_key.as_ref().is_none_or(|key| &row.api_key == key) && user.as_ref().is_none_or(|user| &row.user == user)
        };
        let range = dates.unwrap_or((0, u64::MAX));
        let mut found = match &request_id {
            Some(id) => {
                let row = log.store().by_request_id(id)?.filter(|row| keep(row) && in_range(row, range));
                spend_logs::Page { rows: row.into_iter().collect(), truncated: false }
            }
            None => log.store().page(range, keep, (page - 1).saturating_mul(size), size)?,
        };
        log.join_aliases(&mut found.rows);
        Ok((found.rows, found.truncated))
    })
    .await?;
    Ok(answer(&state, json!(rows), truncated))
}

/// `GET /global/spend/report`: spend from `start_date` to `end_date` (both needed, end inclusive), grouped
/// by `team` (the default), `customer`, `user`, `organization`, `api_key`, `model` or `tier`.
pub(super) async fn report(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let query: ReportQuery = body::query(&req)?;
    let required = |value: Option<String>, name: &str| {
        value.ok_or_else(|| RequestError::InvalidQuery(format!("`{name}` is required (YYYY-MM-DD)")))
    };
    let (start, end) = (required(query.start_date, "start_date")?, required(query.end_date, "end_date")?);
    let (from, to) = date_range(Some(&start), Some(&end))?.unwrap_or_default();
    let grouping = query.group_by.as_deref().unwrap_or("team");
    let grouping = Grouping::parse(grouping).ok_or_else(|| {
        RequestError::InvalidQuery(
            "`group_by` must be team, customer, user, organization, api_key, model or tier".to_owned(),
        )
    })?;
    let Some(log) = state.spend_logs.opened().cloned() else { return Ok(answer(&state, json!([]), false)) };
    let to = to.saturating_add(DAY_MS);
    let report = read(log, move |log| log.report((from, to), grouping)).await?;
    Ok(answer(&state, report, false))
}

/// `GET /global/spend/keys?limit=`: the keys that spent most in the last 30 days, with alias and name.
pub(super) async fn keys(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let limit = limit(&req, MAX_LIMIT)?;
    let Some(log) = state.spend_logs.opened().cloned() else { return Ok(answer(&state, json!([]), false)) };
    let keys = read(log, move |log| {
        let top = spend_logs::top_keys(log.store(), last_30_days(), limit)?;
        Ok(top
            .into_iter()
            .map(|(key, spend)| {
                let (alias, name) = log.key_names(&key);
                json!({"api_key": key, "key_alias": alias, "key_name": name, "total_spend": spend})
            })
            .collect::<Value>())
    })
    .await?;
    Ok(answer(&state, keys, false))
}

/// `GET /global/spend/models?limit=` (default 10): the models that cost most in the last 30 days.
pub(super) async fn models(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let limit = limit(&req, 10)?;
    let Some(log) = state.spend_logs.opened().cloned() else { return Ok(answer(&state, json!([]), false)) };
    let models = read(log, move |log| spend_logs::top_models(log.store(), last_30_days(), limit)).await?;
    Ok(answer(&state, models, false))
}

fn limit(req: &HttpRequest, default: usize) -> Result<usize, ApiError> {
    let query: LimitQuery = body::query(req)?;
    match query.limit.unwrap_or(default) {
        limit @ 1..=MAX_LIMIT => Ok(limit),
        _ => Err(RequestError::InvalidQuery(format!("`limit` must be from 1 to {MAX_LIMIT}")).into()),
    }
}

/// Reads the spend log off the worker thread (a scan may take a while).
async fn read<T: Send + 'static>(
    log: Arc<SpendLog>,
    reading: impl FnOnce(&SpendLog) -> std::io::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let stopped = || std::io::Error::other("the spend-log reader stopped");
    let read = web::block(move || reading(&log)).await.unwrap_or_else(|_| Err(stopped()));
    read.map_err(|err| match crate::spend_logs::is_busy(&err) {
        true => ApiError::SpendLogBusy(err),
        false => ApiError::SpendLogUnreadable(err),
    })
}

fn answer(state: &AppState, body: Value, truncated: bool) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.insert_header(("x-tiergate-spend-logs-scope", if state.shared.is_some() { "replica" } else { "gateway" }));
    if truncated {
        response.insert_header(("x-litellm-spend-logs-truncated", "true"));
    }
    response.json(body)
}

/// `sk-…` hashed; a 64-hex token as it is (lower case); anything else hashed, as LiteLLM hashes it.
fn key_hex(key: &str) -> String {
    match KeyHash::from_hex(key) {
        Some(hash) => hash.to_hex(),
        None => KeyHash::of(key).to_hex(),
    }
}

/// `start_date`..`end_date` as ms since the epoch (each at 00:00 UTC), or `None` when neither is given.
fn date_range(start: Option<&str>, end: Option<&str>) -> Result<Option<(u64, u64)>, RequestError> {
    let (start, end) = match (start, end) {
        (None, None) => return Ok(None),
        (Some(start), Some(end)) => (day_ms("start_date", start)?, day_ms("end_date", end)?),
        (Some(_), None) => return Err(RequestError::InvalidQuery("`end_date` is needed with `start_date`".into())),
        (None, Some(_)) => return Err(RequestError::InvalidQuery("`start_date` is needed with `end_date`".into())),
    };
    if end < start || (end - start) / DAY_MS > MAX_DAYS {
        let problem = format!("`end_date` must be on or after `start_date`, at most {MAX_DAYS} days later");
        return Err(RequestError::InvalidQuery(problem));
    }
    Ok(Some((start, end)))
}

fn day_ms(name: &str, date: &str) -> Result<u64, RequestError> {
    let invalid = || RequestError::InvalidQuery(format!("`{name}` must be a date as YYYY-MM-DD, e.g. 2024-05-10"));
    if date.len() != 10 || !date.is_ascii() {
        return Err(invalid());
    }
    let at = humantime::parse_rfc3339(&format!("{date}T00:00:00Z")).map_err(|_| invalid())?;
    let since = at.duration_since(std::time::UNIX_EPOCH).map_err(|_| invalid())?;
    u64::try_from(since.as_millis()).map_err(|_| invalid())
}

/// Every day from `from` to `to` (ms at 00:00), as YYYY-MM-DD.
fn days_of(from: u64, to: u64) -> Vec<String> {
    (0..=(to - from) / DAY_MS)
        .map(|day| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(from + day * DAY_MS);
            crate::keys::timestamp(at)[..10].to_owned()
        })
        .collect()
}

fn in_range(row: &SpendRow, (from, to): (u64, u64)) -> bool {
    let start = humantime::parse_rfc3339(&row.start_time).ok();
    let ms = start.and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |since| since.as_millis());
    (u128::from(from)..u128::from(to)).contains(&ms)
}

fn last_30_days() -> (u64, u64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let now = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
    (now.saturating_sub(30 * DAY_MS), u64::MAX)
}
