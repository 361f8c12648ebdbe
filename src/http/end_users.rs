//! End-user (customer) endpoints, LiteLLM-compatible in shape: `/end_user/new|update|delete|block|unblock`
//! (POST), `/end_user/info?end_user_id=` and `/end_user/list` (GET), each also under `/customer/*`. All need
//! the master key. Answers carry the end user's spend (across every key) and the limits in force.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::keys::{limits_of, management_body, refuse_unsupported};
use super::{auth, body, AppState};
use crate::config::{set_or_cleared, BudgetPeriod};
use crate::error::{ApiError, RequestError};
use crate::keys::{
    check_end_user_id, BlockEndUsers, DeleteEndUsers, EndUserChanges, EndUserError, EndUserRecord, KeyError,
    NewEndUser, Region, UpdateEndUser, MAX_END_USERS_PER_CALL,
};
use crate::meter::{Level, LevelUse};

/// The largest `page_size` of `/end_user/list`.
const MAX_PAGE_SIZE: usize = 1000;

/// The body of `/end_user/new` and `/end_user/update`.
#[derive(Deserialize, Default)]
struct EndUserRequest {
    user_id: Option<String>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    alias: Option<Option<String>>,
    blocked: Option<bool>,
    models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    allowed_model_region: Option<Option<Region>>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    default_model: Option<Option<String>>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    budget_id: Option<Option<String>>,
    #[serde(flatten)]
    unsupported: serde_json::Map<String, serde_json::Value>,
}

impl EndUserRequest {
    async fn read(req: &HttpRequest, payload: web::Payload) -> Result<(String, EndUserChanges), ApiError> {
        let mut request: Self = management_body(req, payload).await?;
        let limits = limits_of(&mut request.unsupported)?;
        let server_set = |field: &str| matches!(field, "spend" | "litellm_budget_table" | "created_at" | "updated_at");
        refuse_unsupported(&request.unsupported, server_set)?;
        let user_id = request.user_id.ok_or(RequestError::MissingField("user_id"))?;
        let changes = EndUserChanges {
            alias: request.alias,
            blocked: request.blocked,
            models: request.models,
            allowed_model_region: request.allowed_model_region,
            default_model: request.default_model,
            budget_id: request.budget_id,
            limits,
        };
        Ok((user_id, changes))
    }
}

/// An end user as LiteLLM answers one: the row, its spend, and its budget row (the limits in force: its own,
/// its `budget_id` tier's, or the `max_end_user_budget*` default), `null` when nothing limits it.
#[derive(Serialize)]
struct EndUserView<'a> {
    user_id: &'a str,
    alias: Option<&'a str>,
    spend: f64,
    blocked: bool,
    allowed_model_region: Option<Region>,
    default_model: Option<&'a str>,
    models: &'a [String],
    budget_id: Option<&'a str>,
    litellm_budget_table: Option<serde_json::Value>,
    created_at: Option<&'a str>,
    updated_at: Option<&'a str>,
}

/// Answers `users` with their spend read (memory, ledger and, with replicas, Redis's sums).
async fn views(state: &AppState, users: &[EndUserRecord]) -> Result<Vec<serde_json::Value>, ApiError> {
    let accounts: Vec<[u8; 32]> = users.iter().map(|user| Level::EndUser.account(&user.user_id)).collect();
    let spends = state.meter.spends_of(&accounts).await.map_err(|err| KeyError::Store(err.into()))?;
    let view = |(user, spend): (&EndUserRecord, crate::meter::Spend)| {
        let level = LevelUse {
            level: Level::EndUser,
            id: &user.user_id,
            account: Level::EndUser.account(&user.user_id),
            own: &user.limits,
            budget_id: user.budget_id.as_deref(),
        };
        let limits = state.meter.level_limits(level);
        let period = limits.budget_duration.as_ref().map(BudgetPeriod::to_string);
        let limited = limits.max_budget.is_some() || limits.rpm.is_some() || limits.tpm.is_some();
        let table = limited.then(|| {
            json!({
                "budget_id": user.budget_id,
                "max_budget": limits.max_budget,
                "soft_budget": limits.soft_budget,
                "rpm_limit": limits.rpm,
                "tpm_limit": limits.tpm,
                "max_parallel_requests": limits.parallel,
                "budget_duration": period,
            })
        });
        serde_json::to_value(EndUserView {
            user_id: &user.user_id,
            alias: user.alias.as_deref(),
            spend: spend.dollars,
            blocked: user.blocked,
            allowed_model_region: user.allowed_model_region,
            default_model: user.default_model.as_deref(),
            models: &user.models,
            budget_id: user.budget_id.as_deref(),
            litellm_budget_table: table,
            created_at: Some(user.created_at.as_str()).filter(|at| !at.is_empty()),
            updated_at: Some(user.updated_at.as_str()).filter(|at| !at.is_empty()),
        })
        .unwrap_or_default()
    };
    Ok(users.iter().zip(spends).map(view).collect())
}

async fn answer(state: &AppState, user: EndUserRecord) -> Result<HttpResponse, ApiError> {
    let mut views = views(state, std::slice::from_ref(&user)).await?;
    Ok(HttpResponse::Ok().json(views.pop().unwrap_or_default()))
}

pub async fn new(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let (user_id, changes) = EndUserRequest::read(&req, payload).await?;
    let user = state.registry.send(NewEndUser { user_id, changes }).await??;
    answer(&state, user).await
}

pub async fn update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let (user_id, changes) = EndUserRequest::read(&req, payload).await?;
    let user = state.registry.send(UpdateEndUser { user_id, changes }).await??;
    answer(&state, user).await
}

/// The body of `/end_user/delete`, `/block` and `/unblock`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IdsRequest {
    user_ids: Option<Vec<String>>,
}

impl IdsRequest {
    async fn read(req: &HttpRequest, payload: web::Payload) -> Result<Vec<String>, ApiError> {
        let request: Self = management_body(req, payload).await?;
        let ids = request.user_ids.filter(|ids| !ids.is_empty()).ok_or(RequestError::MissingField("user_ids"))?;
        if ids.len() > MAX_END_USERS_PER_CALL {
            return Err(KeyError::from(EndUserError::TooMany(ids.len())).into());
        }
        // A repeated id is one end user: deleted, blocked and counted once.
        super::org_endpoints::distinct_ids(ids, "user_ids")
    }
}

pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let ids = IdsRequest::read(&req, payload).await?;
    let deleted = state.registry.send(DeleteEndUsers(ids)).await??;
    Ok(HttpResponse::Ok().json(json!({"deleted_customers": deleted, "message": "Successfully deleted customers"})))
}

/// `/…/block` (`BLOCKED`) and `/…/unblock`: the route table names which.
pub async fn set_blocked<const BLOCKED: bool>(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let blocked = BLOCKED;
    auth::authorise_master(&req, &state).await?;
    let user_ids = IdsRequest::read(&req, payload).await?;
    let users = state.registry.send(BlockEndUsers { user_ids, blocked }).await??;
    let ids: Vec<&str> = users.iter().map(|user| user.user_id.as_str()).collect();
    let field = if blocked { "blocked_users" } else { "unblocked_users" };
    Ok(HttpResponse::Ok().json(json!({ field: ids })))
}

#[derive(Deserialize)]
struct InfoQuery {
    end_user_id: Option<String>,
}

pub async fn info(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let query: InfoQuery = body::query(&req)?;
    let id = query.end_user_id.ok_or(RequestError::MissingField("end_user_id"))?;
    check_end_user_id(&id).map_err(KeyError::from)?;
    let user = match state.end_users.find(&id) {
        Some(user) => EndUserRecord::clone(&user),
        // An id seen on requests but never created has no row (see docs/api.md, End users): its spend is shown
        // when it has any.
        None => unrecorded(&state, &id).await?.ok_or_else(|| KeyError::from(EndUserError::NotFound(id)))?,
    };
    answer(&state, user).await
}

/// The row of an end user that was never created but has spent (metered from requests), if it has.
async fn unrecorded(state: &AppState, id: &str) -> Result<Option<EndUserRecord>, ApiError> {
    let spends =
        state.meter.spends_of(&[Level::EndUser.account(id)]).await.map_err(|err| KeyError::Store(err.into()))?;
    let spent = spends.first().is_some_and(|spend| spend.dollars > 0.0);
    Ok(spent.then(|| EndUserRecord {
        user_id: id.to_owned(),
        alias: None,
        blocked: false,
        models: Vec::new(),
        allowed_model_region: None,
        default_model: None,
        budget_id: None,
        limits: Default::default(),
        created_at: String::new(),
        updated_at: String::new(),
    }))
}

#[derive(Deserialize)]
struct ListQuery {
    page: Option<usize>,
    page_size: Option<usize>,
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let query: ListQuery = body::query(&req)?;
    let (page, size) = (query.page.unwrap_or(1), query.page_size.unwrap_or(MAX_PAGE_SIZE));
    if page == 0 || size == 0 || size > MAX_PAGE_SIZE {
        let problem = format!("`page` starts at 1 and `page_size` is 1 to {MAX_PAGE_SIZE}");
        return Err(RequestError::InvalidQuery(problem).into());
    }
    let skip = (page - 1).saturating_mul(size);
    let users = state.end_users.page(skip, size).map_err(KeyError::from)?;
    Ok(HttpResponse::Ok().json(views(&state, &users).await?))
}
