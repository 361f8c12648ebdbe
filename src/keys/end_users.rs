//! End users (LiteLLM's customers): the people a request is made for, named by the OpenAI `user` field or a
//! header, across every key. The KeyRegistry writes their records through the store's one change path (so
//! they are durable, audited and shared by replicas as keys are); [`EndUsers`] reads them on the hot path.

use std::sync::Arc;
use std::time::SystemTime;

use actix::{Context, Handler, Message, ResponseFuture};
use serde::{Deserialize, Serialize};

use super::audit::{record_changes, AuditEntry};
use super::{timestamp, KeyError, KeyRegistry, KeyStore, StoreError};
use crate::config::{LimitChanges, LimitSet};
use crate::meter::Level;

/// The longest end-user id, in characters: an admin's longer one is refused, a request's is cut to it (as
/// its spend-log row is), so no id can grow a row, a log line or an error message.
pub const MAX_END_USER_ID_CHARS: usize = 256;
/// The most ids one `/end_user/delete`, `/block` or `/unblock` may name.
pub const MAX_END_USERS_PER_CALL: usize = 1000;

/// The regions an end user's requests may be confined to (`allowed_model_region`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Eu,
    Us,
}

/// A stored end user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndUserRecord {
    pub user_id: String,
    pub alias: Option<String>,
    pub blocked: bool,
    /// The models the end user may ask for; empty: every model their key may.
    pub models: Vec<String>,
    pub allowed_model_region: Option<Region>,
    pub default_model: Option<String>,
    /// A `/budget/new` tier the end user's limits come from (when `limits` sets none).
    pub budget_id: Option<String>,
    /// The end user's own limits (`max_budget`, `rpm_limit`, `tpm_limit`, `budget_duration`, …).
    pub limits: LimitSet,
    pub created_at: String,
    pub updated_at: String,
}

impl EndUserRecord {
    /// Refuses a request this end user may not make: blocked, a model outside `models` (`permits` says
    /// whether a non-empty list grants it), or any request while a region is set (not enforced yet).
    pub fn check(&self, model: &str, permits: impl FnOnce(&[String]) -> bool) -> Result<(), EndUserError> {
        if self.blocked {
            return Err(EndUserError::Blocked(self.user_id.clone()));
        }
        if !self.models.is_empty() && !permits(&self.models) {
            let (id, model, allowed) = (self.user_id.clone(), model.to_owned(), self.models.clone());
            return Err(EndUserError::ModelNotAllowed { id, model, allowed });
        }
        if let Some(region) = self.allowed_model_region {
            return Err(EndUserError::RegionNotEnforced { id: self.user_id.clone(), region });
        }
        Ok(())
    }
}

/// The fields an admin sends to `/end_user/new` and `/end_user/update`: a missing field is left as it is.
#[derive(Debug, Default)]
pub struct EndUserChanges {
    pub alias: Option<Option<String>>,
    pub blocked: Option<bool>,
    pub models: Option<Vec<String>>,
    pub allowed_model_region: Option<Option<Region>>,
    pub default_model: Option<Option<String>>,
    pub budget_id: Option<Option<String>>,
    pub limits: LimitChanges,
}

/// Why an end-user call or request was refused.
#[derive(Debug, thiserror::Error)]
pub enum EndUserError {
    #[error("Customer already exists, passed user_id={0}. Please pass a new user_id.")]
    Exists(String),
    #[error("End User Id={0} does not exist in db")]
    NotFound(String),
    #[error("`user_id` must be 1 to 256 characters of text without control characters.")]
    InvalidId,
    #[error("Pass `max_budget` or `budget_id`, not both: the budget_id tier already sets the budget.")]
    BudgetTwice,
    #[error("default_model `{0}` is not a model of this proxy; GET /v1/models lists them.")]
    UnknownDefaultModel(String),
    #[error("Name at most 1000 end users per call (got {0}).")]
    TooMany(usize),
    #[error("User blocked from making LLM API Calls. User={0}")]
    Blocked(String),
    #[error("End user {id} is not allowed to access model `{model}`. It can only access models={}.", allowed.join(", "))]
    ModelNotAllowed { id: String, model: String, allowed: Vec<String> },
    #[error("End user {id} has allowed_model_region `{}`, which this gateway stores but does not enforce yet (no deployment carries a region): the request is refused rather than sent to any region. Clear allowed_model_region with /end_user/update to serve this end user.", region_name(*.region))]
    RegionNotEnforced { id: String, region: Region },
}

fn region_name(region: Region) -> &'static str {
    match region {
        Region::Eu => "eu",
        Region::Us => "us",
    }
}

/// Checks an end-user id: 1 to [`MAX_END_USER_ID_CHARS`] characters, no control characters.
pub fn check_end_user_id(id: &str) -> Result<(), EndUserError> {
    let too_long = id.char_indices().nth(MAX_END_USER_ID_CHARS).is_some();
    match id.is_empty() || too_long || id.chars().any(char::is_control) {
        true => Err(EndUserError::InvalidId),
        false => Ok(()),
    }
}

/// Create an end user (`/end_user/new`).
#[derive(Message)]
#[rtype(result = "Result<EndUserRecord, KeyError>")]
pub struct NewEndUser {
    pub user_id: String,
    pub changes: EndUserChanges,
}

/// Change an end user (`/end_user/update`): only the fields sent.
#[derive(Message)]
#[rtype(result = "Result<EndUserRecord, KeyError>")]
pub struct UpdateEndUser {
    pub user_id: String,
    pub changes: EndUserChanges,
}

/// Delete end users (`/end_user/delete`); any unknown id refuses them all. Answers how many went.
#[derive(Message)]
#[rtype(result = "Result<usize, KeyError>")]
pub struct DeleteEndUsers(pub Vec<String>);

/// Block (`true`) or unblock end users; any unknown id refuses them all.
#[derive(Message)]
#[rtype(result = "Result<Vec<EndUserRecord>, KeyError>")]
pub struct BlockEndUsers {
    pub user_ids: Vec<String>,
    pub blocked: bool,
}

impl KeyRegistry {
    fn new_end_user(&self, request: NewEndUser) -> Result<EndUserRecord, KeyError> {
        check_end_user_id(&request.user_id)?;
        if self.store.end_user(&request.user_id)?.is_some() {
            return Err(EndUserError::Exists(request.user_id).into());
        }
        let now = timestamp(SystemTime::now());
        let mut user = EndUserRecord {
            user_id: request.user_id,
            alias: None,
            blocked: false,
            models: Vec::new(),
            allowed_model_region: None,
            default_model: None,
            budget_id: None,
            limits: LimitSet::default(),
            created_at: now.clone(),
            updated_at: now,
        };
        self.apply_end_user_changes(&mut user, request.changes)?;
        let entry = end_user_entry("end_user_new", &user.user_id, None, Some(&user))?;
        self.store.write_end_user(&user, None, &entry)??;
        Ok(user)
    }

    fn update_end_user(&self, request: UpdateEndUser) -> Result<EndUserRecord, KeyError> {
        let (mut user, read) = self.load_end_user(&request.user_id)?;
        let before = user.clone();
        self.apply_end_user_changes(&mut user, request.changes)?;
        user.updated_at = timestamp(SystemTime::now());
        let entry = end_user_entry("end_user_update", &user.user_id, Some(&before), Some(&user))?;
        self.store.write_end_user(&user, Some(&read), &entry)??;
        Ok(user)
    }

    fn block_end_users(&self, request: BlockEndUsers) -> Result<Vec<EndUserRecord>, KeyError> {
        check_count(request.user_ids.len())?;
        let action = if request.blocked { "end_user_block" } else { "end_user_unblock" };
        // Every id is checked before any is changed: an unknown one refuses them all.
        let loaded = request.user_ids.iter().map(|id| self.load_end_user(id)).collect::<Result<Vec<_>, _>>()?;
        let mut done = Vec::with_capacity(loaded.len());
        for (mut user, read) in loaded {
            let (id, before) = (user.user_id.clone(), user.clone());
            user.blocked = request.blocked;
            user.updated_at = timestamp(SystemTime::now());
            self.store.write_end_user(
                &user,
                Some(&read),
                &end_user_entry(action, &id, Some(&before), Some(&user))?,
            )??;
            done.push(user);
        }
        Ok(done)
    }

    fn delete_end_users(&self, ids: &[String]) -> Result<usize, KeyError> {
        check_count(ids.len())?;
        let doomed = ids.iter().map(|id| self.load_end_user(id)).collect::<Result<Vec<_>, _>>()?;
        let entries =
            ids.iter().map(|id| end_user_entry("end_user_delete", id, None, None)).collect::<Result<_, _>>()?;
        let reads: Vec<(&str, &[u8])> = doomed.iter().map(|(user, read)| (user.user_id.as_str(), &read[..])).collect();
        self.store.delete_end_users(&reads, entries)??;
        // Their spend goes with them: an id used again starts from zero, and is metered again at once (a
        // retired key's hash is never counted again; an end-user id may be).
        for id in ids {
            let account = Level::EndUser.account(id);
            self.meter.retire(&account, None, SystemTime::now());
            self.meter.remember_spend(&account, None);
        }
        Ok(doomed.len())
    }

    /// Applies `changes` to `user`, checking what they name: `models` and `default_model` are the proxy's,
    /// `budget_id` exists (checked again when written), not both a budget tier and an own budget.
    fn apply_end_user_changes(&self, user: &mut EndUserRecord, changes: EndUserChanges) -> Result<(), KeyError> {
        let EndUserChanges { alias, blocked, models, allowed_model_region, default_model, budget_id, limits } = changes;
        let own_budget = limits.max_budget.is_some_and(|budget| budget.is_some());
        if own_budget && budget_id.as_ref().is_some_and(Option::is_some) {
            return Err(EndUserError::BudgetTwice.into());
        }
        if let Some(models) = models {
            self.rules.check_models(&models)?;
            user.models = models;
        }
        if let Some(Some(model)) = &default_model {
            if self.rules.check_models(std::slice::from_ref(model)).is_err() {
                return Err(EndUserError::UnknownDefaultModel(model.clone()).into());
            }
        }
        if let Some(Some(id)) = &budget_id {
            if self.store.budget(id)?.is_none() {
                return Err(KeyError::UnknownBudget(id.clone()));
            }
        }
        // A budget of one kind replaces the other (`budget_id` relinks, LiteLLM's update).
        match (&budget_id, own_budget) {
            (Some(Some(_)), _) => user.limits.max_budget = None,
            (_, true) => user.budget_id = None,
            _ => {}
        }
        user.limits.apply(limits);
        self.rules.check_limit_models(&user.limits)?;
        let set = |field: &mut Option<String>, change: Option<Option<String>>| change.map(|value| *field = value);
        set(&mut user.alias, alias);
        set(&mut user.default_model, default_model);
        set(&mut user.budget_id, budget_id);
        user.blocked = blocked.unwrap_or(user.blocked);
        if let Some(region) = allowed_model_region {
            user.allowed_model_region = region;
        }
        Ok(())
    }

    /// An end user and its stored bytes (what a change to it must find unchanged).
    fn load_end_user(&self, id: &str) -> Result<(EndUserRecord, sled::IVec), KeyError> {
        self.store.end_user_versioned(id)?.ok_or_else(|| EndUserError::NotFound(id.to_owned()).into())
    }
}

fn check_count(count: usize) -> Result<(), KeyError> {
    match count > MAX_END_USERS_PER_CALL {
        true => Err(EndUserError::TooMany(count).into()),
        false => Ok(()),
    }
}

/// The audit entry of an end-user change: its id, and the fields that changed (timestamps left out).
fn end_user_entry(
    action: &'static str,
    id: &str,
    before: Option<&EndUserRecord>,
    after: Option<&EndUserRecord>,
) -> Result<AuditEntry, StoreError> {
    let mut changed = record_changes(before, after, &["user_id", "created_at", "updated_at"])?;
    changed.insert("end_user_id".into(), id.into());
    Ok(AuditEntry { changed, ..AuditEntry::new(action) })
}

/// The end users as the hot path reads them: this process's store, or this replica's copy (kept by the
/// follower, so a change made on any replica is read here within its push latency).
#[derive(Clone)]
pub struct EndUsers {
    store: KeyStore,
}

impl EndUsers {
    pub fn new(store: KeyStore) -> Self {
        Self { store }
    }

    /// The end user `id`, if one was created: from memory (see `end_user_view.rs`), never from sled.
    pub fn find(&self, id: &str) -> Option<Arc<EndUserRecord>> {
        self.store.end_user_view.find(id)
    }

    /// [`EndUsers::find`], with the end user's meter account (worked out when the record was loaded).
    pub fn find_metered(&self, id: &str) -> Option<(Arc<EndUserRecord>, [u8; 32])> {
        self.store.end_user_view.find_metered(id)
    }

    /// Every end user, in id order, `skip`ped and `take`n (`/end_user/list`).
    pub fn page(&self, skip: usize, take: usize) -> Result<Vec<EndUserRecord>, StoreError> {
        self.store.end_users(skip, take)
    }
}

/// Audits a refused end-user change under `action`.
fn refused_entry(action: &'static str, id: Option<&str>) -> AuditEntry {
    let mut entry = AuditEntry::new(action);
    if let Some(id) = id {
        entry.changed.insert("end_user_id".into(), id.into());
    }
    entry
}

impl Handler<NewEndUser> for KeyRegistry {
    type Result = ResponseFuture<Result<EndUserRecord, KeyError>>;

    fn handle(&mut self, msg: NewEndUser, ctx: &mut Context<Self>) -> Self::Result {
        let entry = refused_entry(
            "end_user_new",
            Some(&msg.user_id).filter(|id| check_end_user_id(id).is_ok()).map(|id| id.as_str()),
        );
        let outcome = self.new_end_user(msg);
        if let Err(err) = &outcome {
            self.refused(entry, err);
        }
        self.when_durable(ctx, outcome)
    }
}

impl Handler<UpdateEndUser> for KeyRegistry {
    type Result = ResponseFuture<Result<EndUserRecord, KeyError>>;

    fn handle(&mut self, msg: UpdateEndUser, ctx: &mut Context<Self>) -> Self::Result {
        let entry = refused_entry(
            "end_user_update",
            Some(&msg.user_id).filter(|id| check_end_user_id(id).is_ok()).map(|id| id.as_str()),
        );
        let outcome = self.update_end_user(msg);
        if let Err(err) = &outcome {
            self.refused(entry, err);
        }
        self.when_durable(ctx, outcome)
    }
}

impl Handler<DeleteEndUsers> for KeyRegistry {
    type Result = ResponseFuture<Result<usize, KeyError>>;

    fn handle(&mut self, DeleteEndUsers(ids): DeleteEndUsers, ctx: &mut Context<Self>) -> Self::Result {
        let outcome = self.delete_end_users(&ids);
        if let Err(err) = &outcome {
            self.refused(refused_entry("end_user_delete", None), err);
        }
        self.when_durable(ctx, outcome)
    }
}

impl Handler<BlockEndUsers> for KeyRegistry {
    type Result = ResponseFuture<Result<Vec<EndUserRecord>, KeyError>>;

    fn handle(&mut self, msg: BlockEndUsers, ctx: &mut Context<Self>) -> Self::Result {
        let action = if msg.blocked { "end_user_block" } else { "end_user_unblock" };
        let outcome = self.block_end_users(msg);
        if let Err(err) = &outcome {
            self.refused(refused_entry(action, None), err);
        }
        self.when_durable(ctx, outcome)
    }
}
