//! Budget tier endpoints, LiteLLM-compatible in shape: `/budget/new`, `/budget/update`, `/budget/delete`,
//! `/budget/info`, `/budget/list`. All need the master key.

use std::time::{Duration, SystemTime};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::keys::{limits_of, management_body, refuse_unsupported};
use super::{auth, AppState};
use crate::config::LimitChanges;
use crate::error::{ApiError, RequestError};
use crate::keys::{timestamp, BudgetRecord, DeleteBudget, GetBudgets, NewBudget, UpdateBudget};

/// The body of `/budget/new` and `/budget/update`: a budget id and the limits to set.
#[derive(Deserialize, Default)]
struct BudgetRequest {
    budget_id: Option<String>,
    #[serde(flatten)]
    unsupported: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    limits: LimitChanges,
}

/// A budget as answered: the row, and `budget_reset_at` (LiteLLM's field), computed when asked.
#[derive(Serialize)]
struct BudgetView<'a> {
    #[serde(flatten)]
    budget: &'a BudgetRecord,
    budget_reset_at: Option<String>,
}

impl<'a> BudgetView<'a> {
    fn of(budget: &'a BudgetRecord, now: SystemTime) -> Self {
        let reset_at =
            budget.next_reset_ms(now).map(|ms| timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)));
        Self { budget, budget_reset_at: reset_at }
    }
}

fn answer(budget: &BudgetRecord) -> HttpResponse {
    HttpResponse::Ok().json(BudgetView::of(budget, SystemTime::now()))
}

fn answer_all(budgets: &[BudgetRecord]) -> HttpResponse {
    let now = SystemTime::now();
    HttpResponse::Ok().json(budgets.iter().map(|budget| BudgetView::of(budget, now)).collect::<Vec<_>>())
}

impl BudgetRequest {
    async fn read(req: &HttpRequest, payload: web::Payload) -> Result<Self, ApiError> {
        let mut request: Self = management_body(req, payload).await?;
        request.limits = limits_of(&mut request.unsupported)?;
        // The dates the server sets are sent back by scripts that copy a row: ignored, not refused.
        let server_set = |field: &str| {
            matches!(field, "budget_reset_at" | "created_at" | "updated_at" | "created_by" | "updated_by")
        };
        refuse_unsupported(&request.unsupported, server_set)?;
        Ok(request)
    }
}

pub async fn new(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let request = BudgetRequest::read(&req, payload).await?;
    let budget = state.registry.send(NewBudget { budget_id: request.budget_id, limits: request.limits }).await??;
    Ok(answer(&budget))
}

pub async fn update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let request = BudgetRequest::read(&req, payload).await?;
    let budget_id = request.budget_id.ok_or(RequestError::MissingField("budget_id"))?;
    let budget = state.registry.send(UpdateBudget { budget_id, limits: request.limits }).await??;
    Ok(answer(&budget))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeleteRequest {
    id: Option<String>,
}

pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let request: DeleteRequest = management_body(&req, payload).await?;
    let id = request.id.ok_or(RequestError::MissingField("id"))?;
    Ok(answer(&state.registry.send(DeleteBudget(id)).await??))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InfoRequest {
    #[serde(default)]
    budgets: Vec<String>,
}

pub async fn info(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let request: InfoRequest = management_body(&req, payload).await?;
    if request.budgets.is_empty() {
        return Err(RequestError::MissingField("budgets").into());
    }
    Ok(answer_all(&state.registry.send(GetBudgets(Some(request.budgets))).await??))
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    Ok(answer_all(&state.registry.send(GetBudgets(None)).await??))
}
