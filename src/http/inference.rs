//! The inference endpoints (`POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/responses`, `/v1/messages`, and the media ones: `/v1/images/generations`, `/v1/moderations`,
//! `/v1/audio/transcriptions`, `/v1/audio/speech`): authorise → parse → check the key's model allowlist and
//! limits → route on the key's tier → count the answer's usage. One handler serves them all.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use super::api_request::parse_request;
use super::connections::Holding;
use super::watch::{self, ForRow, Watchers};
use super::{auth, azure, batch, body, levels, limit_headers, multipart, request_fields, AppState};
use crate::access_log;
use crate::config::Deployment;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::keys::{KeyHash, Principal};
use crate::meter::{Admitted, KeyTally, KeyUse, Moment, UsageCell, Worst};
use crate::metrics;
use crate::pool::{self, PoolError, RouteScope, Router, RoutingTable};
use crate::proxy::{self, ApiRequest};

/// Serves one request to `endpoint`; a Messages API client gets errors in Anthropic's shape. Every request
/// is counted in the metrics, by the status it got.
pub async fn serve(
    endpoint: Endpoint,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let started = Instant::now();
    // Read once: a reload turning spend logs on or off mid-request leaves this request as it began.
    let leaves_row = state.spend_logs.recording().is_some();
    let mut seen = Seen {
        caller: metrics::CallerLabels::default(),
        model: state.metrics.other(),
        key: None,
        usage: (state.access_log.is_some() || leaves_row).then(UsageCell::default),
        upstream_time: Cell::default(),
        answered_by: Cell::default(),
        spend: None,
        leaves_row,
        started,
    };
    let mut response = match answer(endpoint, req, payload, &state, client, &mut seen).await {
        Ok(response) => response,
        Err(err) if endpoint == Endpoint::Messages => err.anthropic_response(),
        Err(err) => err.error_response(),
    };
    let (status, elapsed) = (response.status().as_u16(), started.elapsed());
    let group = (!Arc::ptr_eq(&seen.model, &state.metrics.other())).then_some(&*seen.model);
    proxy::add_timing_headers(response.headers_mut(), elapsed, seen.upstream_time.get(), group);
    let line = state.access_log.as_ref().map(|_| {
        let request =
            access_log::Request { key: seen.key, tier: seen.caller.tier.clone(), model: Arc::clone(&seen.model) };
        access_log::Line::of(request, endpoint.public_path(), &response, elapsed)
    });
    state.metrics.request(seen.caller, seen.model, endpoint.public_path(), status, elapsed);
    let line = line
        .zip(state.access_log.as_ref())
        .map(|(line, log)| Box::new(access_log::LogLine { line, log: Arc::clone(log) }));
    let spend = state.spend_logs.opened().zip(seen.spend);
    match Watchers::of(line, spend, &response, elapsed, seen.answered_by.take()) {
        Some(watchers) => watchers.watch(response, started, seen.usage),
        None => response,
    }
}

/// What a request said about itself before it was answered, for its metrics and access log line.
pub(super) struct Seen {
    caller: metrics::CallerLabels,
    /// The requested model if the config has it, else `other`.
    model: Arc<str>,
    key: Option<KeyHash>,
    /// Where the meter leaves the answer's usage (only with an access or spend log).
    usage: Option<UsageCell>,
    /// Time spent in upstream attempts.
    upstream_time: Cell<Duration>,
    /// The deployment whose answer is relayed, if an upstream answered.
    answered_by: Cell<Option<Arc<Deployment>>>,
    /// The request's spend-log row, once it is authorised (only when it `leaves_row`).
    spend: Option<crate::spend_logs::Pending>,
    /// Whether spend logs were on when the request came.
    leaves_row: bool,
    started: Instant,
}

impl Seen {
    pub(super) fn caller(&self) -> &metrics::CallerLabels {
        &self.caller
    }

    pub(super) fn upstream_time(&self) -> &Cell<Duration> {
        &self.upstream_time
    }

    /// Whether spend logs were on when the request came (read once: a reload mid-request leaves it as it began).
    pub(super) fn leaves_row(&self) -> bool {
        self.leaves_row
    }

    /// Leaves this request no spend-log row of its own: its parts leave theirs (a batch completion's models).
    pub(super) fn without_spend_row(&mut self) {
        self.spend = None;
    }
}

async fn answer(
    endpoint: Endpoint,
    req: HttpRequest,
    payload: web::Payload,
    state: &AppState,
    client: web::Data<awc::Client>,
    seen: &mut Seen,
) -> Result<HttpResponse, ApiError> {
    let principal = auth::authorise(&req, state).await?;
    if let Some(log) = state.spend_logs.opened().filter(|_| seen.leaves_row) {
        seen.spend = Some(watch::pending_row(log, &principal, endpoint, seen.started));
    }
    seen.caller = match &principal {
        Principal::Master => state.metrics.caller(None, None),
        Principal::Virtual(key) => {
            seen.key = Some(key.hash);
            state.metrics.caller(Some(key.hash.as_bytes()), key.grant.tier.as_ref())
        }
    };
    // A request refused before it is parsed: its row still names the end user and tags of its headers.
    let (request, cutoff) = read_request(endpoint, &req, payload, state, &principal).await.inspect_err(|_| {
        if let Some(pending) = &mut seen.spend {
            watch::named_by_headers(pending, &req);
        }
    })?;
    // Before a batch is split too: a batch refused as a whole leaves this row.
    if let Some(pending) = &mut seen.spend {
        watch::asked(pending, &request);
    }
    if let Some(models) = batch::models(&request)? {
        // Boxed, as the rare path it is: inline, its futures would make every request's future larger.
        return Box::pin(batch::answer(models, &request, &req, &principal, state, &client, seen)).await;
    }
    let table = state.routing.load_full();
    let request = check_served(&table, request, &principal, seen)?;
    request_fields::check_fallbacks(&table, &request, &principal)?;
    // The end user is checked before the key counts the request, and counted after it (the key refuses first).
    let end_user = levels::find(state, &table, &request)?;
    let (admitted, tally) = admit(&principal, state, &table, &request, &seen.caller).await?.unzip();
    let levels = levels::admit(state, &table, &request, &principal, end_user, endpoint).await?;
    let tally = match endpoint.is_media() {
        true => {
            tally.map(|tally| tally.with_media(request.media(), request.upload().map(|u| Arc::clone(u.received()))))
        }
        false => tally,
    };
    let master = matches!(principal, Principal::Master);
    let holds_slot = admitted.as_ref().is_some_and(Admitted::holds_slot);
    let for_row = ForRow::of(seen.leaves_row, state.access_log.is_some() || holds_slot);
    let tally = watch::RequestTally::of(tally, master, seen.usage.as_ref(), for_row, &request);
    let tally = levels::with_levels(tally, levels);
    let (upstream_time, answered_by) = (&seen.upstream_time, &seen.answered_by);
    let router = Router {
        client: &client,
        pool: &state.pool,
        table: &table,
        metrics: &state.metrics,
        upstream_time,
        answered_by,
    };
    let caller = RouteScope { tier: principal.tier(), models: principal.models() };
    let response = pool::route(router, &request, &req, caller, tally).await;
    // An upload cut off on its way: why, rather than what the upstream made of the broken body (and, as any
    // error the gateway answers itself, naming no deployment).
    if let Some(reason) = cutoff.as_ref().and_then(multipart::Cutoff::take) {
        seen.answered_by.set(None);
        return Err(reason.into());
    }
    Ok(holding_the_slot(response?, admitted))
}

/// The request's body read and parsed (a transcription's upload as it streams in, with what cuts it off),
/// the key's alias applied and the `x-litellm-*` headers read into it.
async fn read_request(
    endpoint: Endpoint,
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    principal: &Principal,
) -> Result<(ApiRequest, Option<multipart::Cutoff>), ApiError> {
    let (limit, timeout) = (state.max_request_bytes, state.request_body_timeout);
    let (request, cutoff) = match endpoint {
        Endpoint::AudioTranscriptions => {
            multipart::read(req, payload, limit, timeout).await.map(|(r, c)| (r, Some(c)))?
        }
        _ => {
            let body = azure::with_path_model(req, body::read(req, payload, limit, timeout).await?)?;
            (parse_request(endpoint, body)?, None)
        }
    };
    Ok((request_fields::with_headers(principal.resolve_alias(request), req.headers())?, cutoff))
}

/// Resolves the requested name to the model group that serves it (`model_group_alias`, exact name, wildcard)
/// and refuses a model the key may not ask for, or the gateway does not serve, before the key's limits count
/// the request. From here on the request goes by its group, which also names it in the request's metrics and
/// log line (a client cannot grow their labels with made-up names: a wildcard group is named by its pattern).
pub(super) fn check_served(
    table: &RoutingTable,
    request: ApiRequest,
    principal: &Principal,
    seen: &mut Seen,
) -> Result<ApiRequest, ApiError> {
    let resolved = table.resolve(request.model());
    if let Some(resolved) = &resolved {
        seen.model = Arc::clone(&resolved.group);
    }
    principal.check_model(request.model(), |models| table.permits(models, request.model(), resolved.as_ref()))?;
    let Some(resolved) = resolved else {
        let available = table.model_names(principal.tier());
        return Err(PoolError::UnknownModel { model: request.model().to_string(), available }.into());
    };
    Ok(match resolved.wildcard_name.is_some() || resolved.alias_target.is_some() {
        true => request.routed_to(resolved.group, resolved.wildcard_name),
        false => request,
    })
}

/// Counts the request against the key's limits and budget (the master key has none), or refuses it (429,
/// counted in the metrics by the limit that refused it): on its model, on the fallbacks it may go on to,
/// reserving its worst case. With replicas, they are counted in Redis with every replica.
pub(super) async fn admit(
    principal: &Principal,
    state: &AppState,
    table: &RoutingTable,
    request: &ApiRequest,
    caller: &metrics::CallerLabels,
) -> Result<Option<(Admitted, KeyTally)>, ApiError> {
    let Principal::Virtual(key) = principal else { return Ok(None) };
    let grant = &key.grant;
    let worst = || {
        let price = table.worst_price(request.model(), request.wildcard_name(), principal.tier());
        Worst::new(request.len(), request.max_output_tokens(), request.choices(), price).with_media(request.media())
    };
    let policy = table.policy();
    let [ordinary, context] = [&policy.fallbacks, &policy.context_window_fallbacks]
        .map(|fallbacks| fallbacks.get(&**request.model()).map_or(&[][..], Vec::as_slice));
    // The client's own fallbacks replace the config's ordinary ones (see `pool::router`).
    let fallbacks = [request.fallbacks().unwrap_or(ordinary), context];
    let key_use = KeyUse {
        key: *key.hash.as_bytes(),
        own: &grant.limits,
        budget_id: grant.budget_id.as_deref(),
        tier: grant.tier.as_ref(),
        model: request.model(),
        fallbacks: &fallbacks,
        worst: &worst,
    };
    match state.meter.admit_across(key_use, Moment::now()).await {
        Ok((admitted, tally)) => {
            let tally = tally.with_metrics(Arc::clone(&state.metrics), caller.clone());
            Ok(Some((admitted, tally.priced_as(request.shared_wildcard_name()))))
        }
        Err(err) => {
            state.metrics.refused(err.limit());
            Err(err.into())
        }
    }
}

/// The answer with the key's limit headers, its body holding the key's parallel slot until sent (a key
/// without one: the body as it is, not boxed once more).
pub(super) fn holding_the_slot(mut response: HttpResponse, admitted: Option<Admitted>) -> HttpResponse {
    let Some(admitted) = admitted else { return response };
    limit_headers::add_limit_headers(response.headers_mut(), &admitted);
    if !admitted.holds_slot() {
        return response;
    }
    response.map_body(|_, body| Holding { body, guard: admitted }).map_into_boxed_body()
}
