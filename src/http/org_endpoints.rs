//! What the user, team and organization endpoints share: reading a body (limit fields read by name, unknown
//! fields refused), the proxy-admin gate with LiteLLM's 401, sending an edit to the
//! registry, and the null limit fields LiteLLM shows on every row.

use std::time::{Duration, SystemTime};

use actix_web::HttpRequest;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::keys::{limits_of, management_body};
use super::{roles, AppState};
use crate::config::LimitChanges;
use crate::error::{ApiError, RequestError};
use crate::keys::orgs::{AdminTeams, Apply, Edit, Entity, OrgError};
use crate::keys::{timestamp, KeyError, Principal};
use crate::meter::{Level, Meter, Spend};
use crate::tier::Tier;

/// Reads a level endpoint's JSON body into `T` (whose unknown fields are refused, naming the field).
pub(super) async fn level_body<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: actix_web::web::Payload,
) -> Result<T, ApiError> {
    fields_into(management_body(req, payload).await?)
}

/// Reads a level endpoint's JSON body into `T` and its limit fields (`max_budget`, `rpm_limit`, …, each
/// checked and bounded by name as a key's); `renamed`: LiteLLM's other names of them (`max_budget_in_team`).
pub(super) async fn level_body_with_limits<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: actix_web::web::Payload,
    renamed: &[(&str, &str)],
) -> Result<(T, LimitChanges), ApiError> {
    let mut fields: Map<String, Value> = management_body(req, payload).await?;
    for (from, to) in renamed {
        if let Some(value) = fields.remove(*from) {
            fields.insert((*to).to_owned(), value);
        }
    }
    let limits = limits_of(&mut fields)?;
    Ok((fields_into(fields)?, limits))
}

/// A new level's limits: the fields sent.
pub(super) fn new_limits(changes: LimitChanges) -> crate::config::LimitSet {
    let mut limits = crate::config::LimitSet::default();
    limits.apply(changes);
    limits
}

fn fields_into<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(Value::Object(fields)).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        // serde names an unknown field between backticks: that is the field to point at.
        let unknown = inner.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()).map(str::to_owned);
        RequestError::InvalidJson { detail: inner, param: unknown.or((path != ".").then_some(path)) }.into()
    })
}

/// Only the master key (LiteLLM's proxy admin) passes; a virtual key gets LiteLLM's 401 naming the route.
pub(super) async fn proxy_admin(req: &HttpRequest, state: &AppState, route: &'static str) -> Result<(), ApiError> {
    match roles::authorise_admin(req, state).await? {
        Principal::Master => Ok(()),
        // LiteLLM masks the caller's user id in this message; tiergate shows none at all.
        Principal::Virtual(_) => Err(KeyError::from(OrgError::NotProxyAdmin { route, user: "***".into() }).into()),
    }
}

/// The master key passes; a virtual key passes as an `org_admin` of every organization in `orgs` (which the
/// body names; none named: refused), as LiteLLM lets org admins act for their organization.
pub(super) async fn org_admin(
    state: &AppState,
    principal: Principal,
    route: &'static str,
    orgs: &[&str],
) -> Result<(), ApiError> {
    let Principal::Virtual(key) = principal else { return Ok(()) };
    let caller = state.registry.send(AdminTeams(key.hash)).await??.unwrap_or_default();
    match !orgs.is_empty() && orgs.iter().all(|org| caller.org_admin_of.iter().any(|admin_of| admin_of == org)) {
        true => Ok(()),
        false => Err(KeyError::from(OrgError::NotProxyAdmin { route, user: "***".into() }).into()),
    }
}

/// What a delegated admin (a team or org admin's virtual key, on tier `own`) may name as `metadata.tier` in
/// what it makes or changes: its own tier, or none (to inherit); not another, nor `null` (every tier). A key
/// without a tier, and the master key (`own` is `None` for both), are not bounded.
pub(super) fn tier_within(
    own: Option<&Tier>,
    metadata: Option<&Map<String, Value>>,
    route: &'static str,
) -> Result<(), ApiError> {
    let Some(own) = own else { return Ok(()) };
    match metadata.and_then(|metadata| metadata.get("tier")) {
        None => Ok(()),
        Some(Value::String(named)) if named == own.as_str() => Ok(()),
        Some(named) => {
            Err(KeyError::from(OrgError::TierBeyondCaller { route, tier: named.to_string(), own: own.to_string() })
                .into())
        }
    }
}

/// Sends an edit of level `id` to the registry; answers its new record (`None`: deleted).
pub(super) async fn edit<E>(
    state: &AppState,
    id: &str,
    action: &'static str,
    apply: Apply<E>,
) -> Result<Option<E>, ApiError>
where
    E: crate::keys::orgs::Falls,
{
    Ok(state.registry.send(Edit::<E> { id: id.to_owned(), action, apply }).await??)
}

/// Deletes every level of `ids` in one transaction: an unknown one (`not_found` names it) deletes none.
pub(super) async fn delete_each<E>(
    state: &AppState,
    ids: &[String],
    action: &'static str,
    not_found: fn(String) -> OrgError,
) -> Result<(), ApiError>
where
    E: crate::keys::orgs::Falls,
{
    Ok(state.registry.send(crate::keys::orgs::DeleteAll::<E>::new(ids.to_vec(), action, not_found)).await??)
}

/// At most this many ids in one delete call (as `/end_user/delete`): one transaction stays small.
pub(super) const MAX_IDS_PER_CALL: usize = 1000;

/// A delete call's ids, each once in the order given: a repeated id deletes (and is listed) once. None, or
/// more than [`MAX_IDS_PER_CALL`], is a 400 naming `field`.
pub(super) fn distinct_ids(ids: Vec<String>, field: &'static str) -> Result<Vec<String>, ApiError> {
    if ids.is_empty() {
        return Err(crate::error::RequestError::MissingField(field).into());
    }
    if ids.len() > MAX_IDS_PER_CALL {
        return Err(crate::error::RequestError::WrongType { field, expected: "a list of at most 1000 ids" }.into());
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    Ok(ids.into_iter().filter(|id| seen.insert(id.clone())).collect())
}

/// A new random id (LiteLLM's uuid4) for a level created without one.
pub(super) fn new_id() -> String {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string()
}

pub(super) fn now() -> String {
    timestamp(SystemTime::now())
}

/// A level's row as LiteLLM shows it: its record, its limit fields (null: not set), its `spend` and
/// `budget_reset_at` (its level account's, see [`level_spend`]).
pub(super) fn row<E: Entity>(entity: &E, limits: &[&str], spend: Spend) -> Result<Value, ApiError> {
    let mut row = serde_json::to_value(entity).map_err(|err| KeyError::from(crate::keys::StoreError::from(err)))?;
    if let Value::Object(fields) = &mut row {
        for field in limits {
            fields.entry(*field).or_insert(Value::Null);
        }
        fields.insert("spend".into(), spend.dollars.into());
        let reset_at = spend.reset_at_ms.map(|ms| timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)));
        fields.insert("budget_reset_at".into(), reset_at.into());
    }
    Ok(row)
}

/// What a level has spent (every answer of its keys and requests since its budget last reset), read from its
/// meter account: memory, ledger and, with replicas, Redis's sum.
pub(super) async fn level_spend(meter: &Meter, level: Level, id: &str) -> Result<Spend, ApiError> {
    let mut spends = meter
        .spends_of(&[level.account(id)])
        .await
        .map_err(|err| KeyError::from(crate::keys::StoreError::from(err)))?;
    Ok(spends.pop().unwrap_or_default())
}

/// An `id` field that must be there, for update and member calls.
pub(super) fn required(value: Option<String>, field: &'static str) -> Result<String, ApiError> {
    value.ok_or(RequestError::MissingField(field).into())
}
