//! Budget tiers (LiteLLM's `/budget/*`): named sets of limits keys link to with `budget_id`. The KeyRegistry
//! writes them (durably, like keys) and hands each change to the meter, so every linked key follows at once.

use std::time::SystemTime;

use actix::{Context, Handler, Message, ResponseFuture};
use serde::{Deserialize, Serialize};

use super::audit::{record_changes, AuditEntry};
use super::StoreError;
use super::{timestamp, KeyError, KeyRegistry};
use crate::config::{LimitChanges, LimitSet};

/// The longest `budget_id`.
pub const MAX_BUDGET_ID_BYTES: usize = 256;

/// A stored budget tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRecord {
    pub budget_id: String,
    #[serde(flatten)]
    pub limits: LimitSet,
    pub created_at: String,
    pub updated_at: String,
}

impl BudgetRecord {
    /// When the spend of the keys on this budget's period next starts from zero: the period's next boundary,
    /// the very instant the meter resets each of them at (it schedules every key on those boundaries).
    /// `None` without a period, or for a period whose boundaries start at each key's first request (`3d`):
    /// no single instant is true then, and each key's own `budget_reset_at` (`/key/info`) says when.
    pub fn next_reset_ms(&self, now: SystemTime) -> Option<u64> {
        let period = self.limits.budget_duration.filter(|period| period.is_aligned())?;
        let now_ms = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        Some(period.next_reset(now_ms))
    }
}

/// Create a budget (`/budget/new`); a missing id gets a random one.
#[derive(Message)]
#[rtype(result = "Result<BudgetRecord, KeyError>")]
pub struct NewBudget {
    pub budget_id: Option<String>,
    pub limits: LimitChanges,
}

/// Change a budget's limits (`/budget/update`): only the fields sent.
#[derive(Message)]
#[rtype(result = "Result<BudgetRecord, KeyError>")]
pub struct UpdateBudget {
    pub budget_id: String,
    pub limits: LimitChanges,
}

/// Delete a budget no key links to (`/budget/delete`); answers the deleted row.
#[derive(Message)]
#[rtype(result = "Result<BudgetRecord, KeyError>")]
pub struct DeleteBudget(pub String);

/// Budgets by id (`/budget/info`), or every budget (`None`: `/budget/list`).
#[derive(Message)]
#[rtype(result = "Result<Vec<BudgetRecord>, KeyError>")]
pub struct GetBudgets(pub Option<Vec<String>>);

impl KeyRegistry {
    fn new_budget(&self, request: NewBudget) -> Result<BudgetRecord, KeyError> {
        let budget_id = request
            .budget_id
            .unwrap_or_else(|| uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string());
        let printable = budget_id.chars().all(|c| !c.is_control());
        if budget_id.is_empty() || budget_id.len() > MAX_BUDGET_ID_BYTES || !printable {
            return Err(KeyError::InvalidBudgetId);
        }
        if self.store.budget(&budget_id)?.is_some() {
            return Err(KeyError::BudgetExists(budget_id));
        }
        let mut limits = LimitSet::default();
        limits.apply(request.limits);
        self.rules.check_limit_models(&limits)?;
        let now = timestamp(SystemTime::now());
        let budget = BudgetRecord { budget_id, limits, created_at: now.clone(), updated_at: now };
        let entry = budget_entry("budget_new", &budget.budget_id, None, Some(&budget))?;
        self.store.write_budget(&budget.budget_id, Some(&budget), None, &entry)??;
        self.meter.set_budget(&budget.budget_id, Some(budget.limits.clone()));
        Ok(budget)
    }

    fn update_budget(&self, request: UpdateBudget) -> Result<BudgetRecord, KeyError> {
        let (mut budget, read) = self.load_budget(&request.budget_id)?;
        let before = budget.clone();
        budget.limits.apply(request.limits);
        self.rules.check_limit_models(&budget.limits)?;
        budget.updated_at = timestamp(SystemTime::now());
        let entry = budget_entry("budget_update", &budget.budget_id, Some(&before), Some(&budget))?;
        self.store.write_budget(&budget.budget_id, Some(&budget), Some(&read), &entry)??;
        self.meter.set_budget(&budget.budget_id, Some(budget.limits.clone()));
        Ok(budget)
    }

    fn delete_budget(&self, id: &str) -> Result<BudgetRecord, KeyError> {
        let (budget, read) = self.load_budget(id)?;
        // A key left pointing at nothing would lose its limits without anyone deciding so.
        self.store.delete_unlinked_budget(id, &read, &budget_entry("budget_delete", id, Some(&budget), None)?)??;
        self.meter.set_budget(id, None);
        Ok(budget)
    }

    /// A budget and its stored bytes (what a change to it must find unchanged).
    fn load_budget(&self, id: &str) -> Result<(BudgetRecord, sled::IVec), KeyError> {
        self.store.budget_versioned(id)?.ok_or_else(|| KeyError::BudgetNotFound(id.to_owned()))
    }
}

/// The audit entry of a budget change: the fields of the budget that changed (all of a new one, none of a
/// deleted one), timestamps left out.
fn budget_entry(
    action: &'static str,
    id: &str,
    before: Option<&BudgetRecord>,
    after: Option<&BudgetRecord>,
) -> Result<AuditEntry, StoreError> {
    let changed = record_changes(before, after, &["budget_id", "created_at", "updated_at"])?;
    Ok(AuditEntry { budget_id: Some(id.to_owned()), changed, ..AuditEntry::new(action) })
}

impl Handler<NewBudget> for KeyRegistry {
    type Result = ResponseFuture<Result<BudgetRecord, KeyError>>;

    fn handle(&mut self, msg: NewBudget, ctx: &mut Context<Self>) -> Self::Result {
        let id = msg.budget_id.clone();
        let outcome = self.new_budget(msg);
        if let Err(err) = &outcome {
            self.refused(AuditEntry { budget_id: id, ..AuditEntry::new("budget_new") }, err);
        }
        self.when_durable(ctx, outcome)
    }
}

impl Handler<UpdateBudget> for KeyRegistry {
    type Result = ResponseFuture<Result<BudgetRecord, KeyError>>;

    fn handle(&mut self, msg: UpdateBudget, ctx: &mut Context<Self>) -> Self::Result {
        let id = Some(msg.budget_id.clone());
        let outcome = self.update_budget(msg);
        if let Err(err) = &outcome {
            self.refused(AuditEntry { budget_id: id, ..AuditEntry::new("budget_update") }, err);
        }
        self.when_durable(ctx, outcome)
    }
}

impl Handler<DeleteBudget> for KeyRegistry {
    type Result = ResponseFuture<Result<BudgetRecord, KeyError>>;

    fn handle(&mut self, DeleteBudget(id): DeleteBudget, ctx: &mut Context<Self>) -> Self::Result {
        let outcome = self.delete_budget(&id);
        if let Err(err) = &outcome {
            self.refused(AuditEntry { budget_id: Some(id), ..AuditEntry::new("budget_delete") }, err);
        }
        self.when_durable(ctx, outcome)
    }
}

impl Handler<GetBudgets> for KeyRegistry {
    type Result = Result<Vec<BudgetRecord>, KeyError>;

    fn handle(&mut self, GetBudgets(ids): GetBudgets, _: &mut Context<Self>) -> Self::Result {
        match ids {
            None => Ok(self.store.budgets()?),
            Some(ids) => ids.iter().map(|id| self.load_budget(id).map(|(budget, _)| budget)).collect(),
        }
    }
}
