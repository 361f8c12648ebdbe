//! LiteLLM's batch completion: a chat completion whose `model` names several models (`"gpt-4,claude"`) is
//! asked of each, in parallel, each name checked against the key and each answer counted as its own request;
//! the answer is a JSON array of the completions in model order, or with `fastest_response: true` the first
//! to succeed. Never streamed.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::to_bytes_limited;
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::inference::{admit, check_served, holding_the_slot, Seen};
use super::watch::{self, ForRow, RequestTally, Watchers};
use super::{parse_request, AppState};
use crate::access_log::Watched;
use crate::endpoint::Endpoint;
use crate::error::{ApiError, RequestError};
use crate::keys::Principal;
use crate::meter::UsageCell;
use crate::metrics;
use crate::pool::{self, RouteScope, Router, RoutingTable, Tried};
use crate::proxy::ApiRequest;

/// The most models one batch completion may name (each is a full request against the key's limits).
pub const MAX_MODELS: usize = 8;
/// The largest answer of one model read into the batch's array.
const ANSWER_LIMIT: usize = 4 * 1024 * 1024;

const FASTEST_HEADER: HeaderName = HeaderName::from_static("x-litellm-fastest_response_batch_completion");

/// The models of a batch completion (a chat completion whose `model` holds a comma), else `None`; refuses a
/// streamed one (400 naming `stream`), an empty name and more than [`MAX_MODELS`].
pub fn models(request: &ApiRequest) -> Result<Option<Vec<&str>>, RequestError> {
    if request.endpoint() != Endpoint::ChatCompletions || !request.model().contains(',') {
        return Ok(None);
    }
    if request.is_stream() {
        return Err(RequestError::WrongType {
            field: "stream",
            expected: "false for a batch completion (a list of models)",
        });
    }
    let models: Vec<&str> = request.model().split(',').map(str::trim).collect();
    if models.len() > MAX_MODELS || models.iter().any(|model| model.is_empty()) {
        let expected = "at most 8 comma-separated model names for a batch completion";
        return Err(RequestError::WrongType { field: "model", expected });
    }
    Ok(Some(models))
}

/// Answers a batch completion of `models`: every name passes the key's checks before any is called.
pub async fn answer(
    models: Vec<&str>,
    request: &ApiRequest,
    req: &HttpRequest,
    principal: &Principal,
    state: &AppState,
    client: &web::Data<awc::Client>,
    seen: &mut Seen,
) -> Result<HttpResponse, ApiError> {
    let table = state.routing.load_full();
    let mut requests = Vec::with_capacity(models.len());
    for model in models {
        let name = serde_json::to_string(model).unwrap_or_default();
        let sub = parse_request(Endpoint::ChatCompletions, request.rewritten_body(&name, false))?;
        let sub = sub.with_options(request.options().cloned().map(Box::new));
        let sub = check_served(&table, principal.resolve_alias(sub), principal, seen)?;
        // The tier rule too, before any model is called: the error a request for this model alone would get.
        table.pick(sub.model(), principal.tier(), Tried::default(), Endpoint::ChatCompletions).map(drop)?;
        super::request_fields::check_fallbacks(&table, &sub, principal)?;
        requests.push(sub);
    }
    // Each model's request leaves its own spend-log row (its tokens and cost, as /key/info counts them),
    // so the batch as a whole leaves none.
    let spend_log = state.spend_logs.opened().filter(|_| seen.leaves_row());
    seen.without_spend_row();
    let caller = seen.caller().clone();
    let times: Vec<Cell<Duration>> = requests.iter().map(|_| Cell::default()).collect();
    let one = |(index, sub)| {
        let shared = Shared { req, principal, state, client, table: &table, caller: &caller, spend_log };
        one_model(shared, index, sub, &times[index])
    };
    let mut pending: FuturesUnordered<_> = requests.iter().enumerate().map(one).collect();
    let fastest = request.options().is_some_and(|options| options.fastest_response);
    let mut answers: Vec<Option<HttpResponse>> = requests.iter().map(|_| None).collect();
    while let Some((index, response)) = pending.next().await {
        if fastest && response.status().is_success() {
            seen.upstream_time().set(times[index].get());
            let mut response = response;
            response.headers_mut().insert(FASTEST_HEADER, HeaderValue::from_static("True"));
            return Ok(response);
        }
        answers[index] = Some(response);
    }
    seen.upstream_time().set(times.iter().map(Cell::get).max().unwrap_or_default());
    let answers = answers.into_iter().flatten();
    if fastest {
        // None succeeded: the first model's failure is the answer.
        return Ok(answers.into_iter().next().unwrap_or_else(|| HttpResponse::InternalServerError().finish()));
    }
    Ok(HttpResponse::Ok().insert_header((CONTENT_TYPE, "application/json")).body(array_of(answers).await))
}

/// What every model's request of a batch shares.
#[derive(Clone, Copy)]
struct Shared<'a> {
    req: &'a HttpRequest,
    principal: &'a Principal,
    state: &'a AppState,
    client: &'a web::Data<awc::Client>,
    table: &'a Arc<RoutingTable>,
    caller: &'a metrics::CallerLabels,
    /// The spend log, if spend logs were on when the batch came.
    spend_log: Option<&'a Arc<crate::spend_logs::SpendLog>>,
}

/// One model's answer: counted against the key's limits (a refusal is its answer), routed on the key's tier,
/// and with a spend log, its own row (as a request for that model alone would leave).
async fn one_model(shared: Shared<'_>, index: usize, sub: &ApiRequest, time: &Cell<Duration>) -> (usize, HttpResponse) {
    let Shared { req, principal, state, client, table, caller, spend_log } = shared;
    let started = Instant::now();
    let usage = spend_log.is_some().then(UsageCell::default);
    let answered_by = Cell::default();
    let answer = async {
        let (admitted, tally) = admit(principal, state, table, sub, caller).await?.unzip();
        let master = matches!(principal, Principal::Master);
        // Its body goes through a wrapper: the answer is read on the worker, never left to the row.
        let for_row = ForRow::of(spend_log.is_some(), true);
        let tally = RequestTally::of(tally, master, usage.as_ref(), for_row, sub);
        let (metrics, answered_by) = (&state.metrics, &answered_by);
        let router = Router { client, pool: &state.pool, table, metrics, upstream_time: time, answered_by };
        let caller = RouteScope { tier: principal.tier(), models: principal.models() };
        let response = pool::route(router, sub, req, caller, tally).await?;
        Ok::<_, ApiError>(holding_the_slot(response, admitted))
    };
    let response = answer.await.unwrap_or_else(|err| err.error_response());
    let pending = spend_log.map(|log| {
        let mut pending = watch::pending_row(log, principal, Endpoint::ChatCompletions, started);
        watch::asked(&mut pending, sub);
        (log, pending)
    });
    let response = match Watchers::of(None, pending, &response, started.elapsed(), answered_by.take()) {
        Some(watchers) => {
            response.map_body(|_, body| Watched::new(body, watchers, started, usage)).map_into_boxed_body()
        }
        None => response,
    };
    (index, response)
}

/// The answers as one JSON array, in model order: each completion as the model gave it, each failure as its
/// OpenAI-style error object (`{"error": {...}}`).
async fn array_of(answers: impl Iterator<Item = HttpResponse>) -> Bytes {
    let mut out = BytesMut::from(&b"["[..]);
    for (index, response) in answers.enumerate() {
        if index > 0 {
            out.extend_from_slice(b",");
        }
        let status = response.status();
        let body = match to_bytes_limited(response.into_body(), ANSWER_LIMIT).await {
            Ok(Ok(body)) if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() => body,
            _ => unreadable(status.as_u16()),
        };
        out.extend_from_slice(&body);
    }
    out.extend_from_slice(b"]");
    out.freeze()
}

/// The slot of an answer that could not be read whole (too large, broken off, not JSON).
fn unreadable(status: u16) -> Bytes {
    let error = serde_json::json!({"error": {
        "message": format!("This model's answer (HTTP {status}) could not be read into the batch; ask it alone."),
        "type": "api_error", "param": null, "code": "502",
    }});
    Bytes::from(error.to_string())
}
