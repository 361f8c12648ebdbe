//! What the user, team and organization endpoints share: reading a body (limit fields refused by name until
//! they stack, unknown fields refused), the proxy-admin gate with LiteLLM's 401, sending an edit to the
//! registry, and the null limit fields LiteLLM shows on every row.

use std::time::SystemTime;

use actix_web::HttpRequest;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::keys::management_body;
use super::{auth, AppState};
use crate::error::{ApiError, RequestError};
use crate::keys::orgs::{refuse_level_limits, AdminTeams, Apply, Edit, Entity, OrgError, LEVEL_LIMIT_FIELDS};
use crate::keys::{timestamp, KeyError, Principal};
use crate::tier::Tier;

/// Reads a level endpoint's JSON body into `T` (whose unknown fields are refused, naming the field). A
/// limit or budget field with a value is refused first, saying it arrives with budget stacking.
pub(super) async fn level_body<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: actix_web::web::Payload,
) -> Result<T, ApiError> {
    let mut fields: Map<String, Value> = management_body(req, payload).await?;
    refuse_level_limits(&fields).map_err(KeyError::from)?;
    for field in LEVEL_LIMIT_FIELDS {
        fields.remove(*field);
    }
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
    match auth::authorise(req, state).await? {
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

/// Deletes each level of `ids` (the caller has looked every one up first: an unknown one deletes nothing),
/// one edit each; one gone meanwhile is `not_found`.
pub(super) async fn delete_each<E>(
    state: &AppState,
    ids: &[String],
    action: &'static str,
    not_found: fn(String) -> OrgError,
) -> Result<(), ApiError>
where
    E: crate::keys::orgs::Falls,
{
    for id in ids {
        let missing = id.clone();
        let apply: Apply<E> = Box::new(move |current| match current {
            Some(_) => Ok(None),
            None => Err(not_found(missing)),
        });
        edit::<E>(state, id, action, apply).await?;
    }
    Ok(())
}

/// A new random id (LiteLLM's uuid4) for a level created without one.
pub(super) fn new_id() -> String {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string()
}

pub(super) fn now() -> String {
    timestamp(SystemTime::now())
}

/// A level's row as LiteLLM shows it: its record, its limit fields (null: not set, see `LEVEL_LIMIT_FIELDS`)
/// and its `spend` (its keys' spend, summed by the caller).
pub(super) fn row<E: Entity>(entity: &E, limits: &[&str], spend: f64) -> Result<Value, ApiError> {
    let mut row = serde_json::to_value(entity).map_err(|err| KeyError::from(crate::keys::StoreError::from(err)))?;
    if let Value::Object(fields) = &mut row {
        for field in limits {
            fields.entry(*field).or_insert(Value::Null);
        }
        fields.insert("spend".into(), spend.into());
    }
    Ok(row)
}

/// An `id` field that must be there, for update and member calls.
pub(super) fn required(value: Option<String>, field: &'static str) -> Result<String, ApiError> {
    value.ok_or(RequestError::MissingField(field).into())
}

/// The summed spend of `keys` (one read of every key's spend: with replicas, one Redis pipeline).
pub(super) async fn spend_of(keys: &[crate::keys::KeyRecord], meter: &crate::meter::Meter) -> Result<f64, ApiError> {
    let hashes: Vec<[u8; 32]> = keys
        .iter()
        .filter_map(|record| crate::keys::KeyHash::from_hex(&record.token).map(|hash| *hash.as_bytes()))
        .collect();
    let spends = meter.spends_of(&hashes).await.map_err(|err| KeyError::from(crate::keys::StoreError::from(err)))?;
    Ok(spends.iter().map(|spend| spend.dollars).sum())
}
