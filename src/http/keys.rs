//! Key management endpoints, LiteLLM-compatible in shape: generate, info, update, delete, list, block,
//! unblock, regenerate. All need the master key, except `/key/info` for a virtual key's own record.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

use super::{auth, body, key_scope, AppState};
use crate::config::{dollars, set_or_cleared, LimitChanges, ServerTimeouts};
use crate::error::{ApiError, RequestError};
use crate::keys::orgs::OwnedKeys;
use crate::keys::{
    ignored_names, sort_fields, timestamp, DeleteKeys, GetKey, KeyChanges, KeyError, KeyHash, KeyRecord, KeyRef,
    ListKeys, MintKey, MintedKey, ModelAliases, NewKey, Principal, RegenerateKey, StoreError, UpdateKey,
};
use crate::meter::{Meter, Spend};

/// Management bodies are small; this keeps a runaway script from buffering megabytes.
const MANAGEMENT_BODY_LIMIT: usize = 1024 * 1024;
/// `/key/list` page size: LiteLLM's default and maximum.
const DEFAULT_PAGE_SIZE: usize = 10;
const MAX_PAGE_SIZE: usize = 100;

/// The body of `/key/generate` (where `key` is an optional custom key) and `/key/update` (where it names
/// the key to change). Other LiteLLM fields are stored or refused as `keys/fields.rs` says.
#[derive(Deserialize, Default)]
struct KeyRequest {
    key: Option<String>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    key_alias: Option<Option<String>>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    duration: Option<Option<String>>,
    models: Option<Vec<String>>,
    aliases: Option<ModelAliases>,
    blocked: Option<bool>,
    metadata: Option<UniqueKeys>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    budget_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "dollars")]
    spend: Option<f64>,
    /// The key's owners (a team, a user, an organization): checked against the store by the registry.
    #[serde(default, deserialize_with = "set_or_cleared")]
    team_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    user_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    organization_id: Option<Option<String>>,
    /// Every other field: the limits are taken out of it (see [`limits_of`]), then the LiteLLM fields to store.
    #[serde(flatten)]
    unsupported: Map<String, Value>,
    #[serde(skip)]
    limits: LimitChanges,
    /// Accepted LiteLLM fields tiergate does not act on, stored as sent.
    #[serde(skip)]
    extra: Map<String, Value>,
}

/// Refuses the first field tiergate would not enforce: anything but null, `[]` or `{}`, unless `ignored`
/// (fields a LiteLLM script sends that carry nothing here).
pub(super) fn refuse_unsupported(fields: &Map<String, Value>, ignored: fn(&str) -> bool) -> Result<(), RequestError> {
    let empty = |value: &Value| match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    };
    match fields.iter().find(|(field, value)| !empty(value) && !ignored(field)) {
        Some((field, _)) => Err(RequestError::UnsupportedField(field.clone())),
        None => Ok(()),
    }
}

/// Takes the limit fields out of a request's other fields, each checked by name.
pub(super) fn limits_of(fields: &mut Map<String, Value>) -> Result<LimitChanges, RequestError> {
    LimitChanges::take_from(fields).map_err(|(field, detail)| RequestError::InvalidJson {
        detail: format!("`{field}`: {detail}"),
        param: Some(field.to_owned()),
    })
}

/// A JSON object whose keys each appear once. serde keeps the last of duplicates, and `metadata.tier` decides
/// what a key may reach, so `{"tier": "free", "tier": null}` must be refused rather than guessed at.
struct UniqueKeys(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = UniqueKeys;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueKeys, A::Error> {
                let mut map = Map::new();
                while let Some((key, value)) = access.next_entry::<String, Value>()? {
                    if map.contains_key(&key) {
                        return Err(de::Error::custom(format_args!("`{key}` appears twice; give each field once")));
                    }
                    map.insert(key, value);
                }
                Ok(UniqueKeys(map))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// Reads a key endpoint's JSON body (an empty body is `T::default()`), within the body timeout.
pub(super) async fn management_body<T: DeserializeOwned + Default>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    let timeout = req
        .app_data::<web::Data<AppState>>()
        .map_or(ServerTimeouts::default().body, |state| state.request_body_timeout);
    Ok(body::json_or_default(&body::read(req, payload, MANAGEMENT_BODY_LIMIT, timeout).await?)?)
}

impl KeyRequest {
    async fn read(req: &HttpRequest, payload: web::Payload) -> Result<Self, ApiError> {
        let mut request: Self = management_body(req, payload).await?;
        request.limits = limits_of(&mut request.unsupported)?;
        request.extra = sort_fields(std::mem::take(&mut request.unsupported)).map_err(KeyError::from)?;
        Ok(request)
    }

    /// The one warning line of a management call that stores fields tiergate does not act on (names only,
    /// never values), logged once the call succeeded.
    fn ignored_warning(&self, endpoint: &str) -> Option<String> {
        let ignored = ignored_names(&self.extra);
        (!ignored.is_empty()).then(|| {
            format!(
                "{endpoint}: stored LiteLLM field(s) tiergate does not act on: {} (docs/api.md: Key management API)",
                ignored.join(", ")
            )
        })
    }

    fn changes(&mut self) -> KeyChanges {
        KeyChanges {
            key_alias: self.key_alias.take(),
            metadata: self.metadata.take().map(|UniqueKeys(metadata)| metadata),
            models: self.models.take(),
            aliases: self.aliases.take(),
            blocked: self.blocked.take(),
            duration: self.duration.take(),
            limits: std::mem::take(&mut self.limits),
            budget_id: self.budget_id.take(),
            spend: self.spend.take(),
            extra: std::mem::take(&mut self.extra),
            team_id: self.team_id.take(),
            user_id: self.user_id.take(),
            organization_id: self.organization_id.take(),
        }
    }
}

/// A key in a response: the record, plus the plaintext `key` where the caller may see it.
#[derive(Serialize)]
struct KeyView<'a> {
    key: &'a str,
    #[serde(flatten)]
    record: RecordView<'a>,
    token_id: &'a str,
}

/// A record with its spend (kept by the meter) beside it.
#[derive(Serialize)]
struct RecordView<'a> {
    #[serde(flatten)]
    record: &'a KeyRecord,
    spend: f64,
    budget_reset_at: Option<String>,
}

impl<'a> RecordView<'a> {
    /// Each record beside its spend (one read of every record's spend: with replicas, one Redis pipeline).
    async fn all(records: &'a [KeyRecord], meter: &Meter) -> Result<Vec<Self>, ApiError> {
        let hashes: Vec<[u8; 32]> = records
            .iter()
            .map(|record| KeyHash::from_hex(&record.token).map(|hash| *hash.as_bytes()).unwrap_or_default())
            .collect();
        let spends = meter.spends_of(&hashes).await.map_err(|err| KeyError::from(StoreError::from(err)))?;
        Ok(records.iter().zip(spends).map(|(record, spend)| Self::with(record, spend)).collect())
    }

    async fn one(record: &'a KeyRecord, meter: &Meter) -> Result<Self, ApiError> {
        let hash = KeyHash::from_hex(&record.token).map(|hash| *hash.as_bytes()).unwrap_or_default();
        let mut spends = meter.spends_of(&[hash]).await.map_err(|err| KeyError::from(StoreError::from(err)))?;
        Ok(Self::with(record, spends.pop().unwrap_or_default()))
    }

    fn with(record: &'a KeyRecord, spend: Spend) -> Self {
        let reset_at = spend.reset_at_ms.map(|ms| timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)));
        Self { record, spend: spend.dollars, budget_reset_at: reset_at }
    }
}

impl<'a> KeyView<'a> {
    async fn new(key: &'a str, record: &'a KeyRecord, meter: &Meter) -> Result<Self, ApiError> {
        Ok(Self { key, record: RecordView::one(record, meter).await?, token_id: &record.token })
    }
}

async fn minted(MintedKey { key, record }: &MintedKey, meter: &Meter) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(KeyView::new(key.expose(), record, meter).await?))
}

pub async fn generate(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let scope = key_scope::scope(&req, &state).await?;
    let mut request = KeyRequest::read(&req, payload).await?;
    // A team admin mints keys of its teams only, for itself unless it names another user.
    scope.allows_team(request.team_id.clone().flatten().as_deref(), "/key/generate")?;
    // `"user_id": null` too (as LiteLLM reads it): a team admin's user-less key would escape its own
    // membership's budget and limits in the team.
    if request.user_id.clone().flatten().is_none() {
        request.user_id = scope.user_id().cloned().map(Some);
    }
    let warning = request.ignored_warning("/key/generate");
    let new_key = NewKey { changes: request.changes(), key: request.key };
    scope.allows_new_key(&state, &new_key.changes, "/key/generate").await?;
    let key = state.registry.send(MintKey(new_key)).await??;
    warning.inspect(|warning| log::warn!("{warning}"));
    minted(&key, &state.meter).await
}

#[derive(Deserialize)]
struct InfoQuery {
    key: Option<String>,
}

/// `GET /key/info?key=`: the master key reads any key; a virtual key reads only its own (`key` optional).
pub async fn info(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let principal = auth::authorise(&req, &state).await?;
    let InfoQuery { key } = body::query(&req)?;
    let target = match (&key, &principal) {
        (Some(text), _) => KeyRef::parse(text),
        (None, Principal::Virtual(grant)) => KeyRef { hash: grant.hash, label: grant.hash.to_hex() },
        (None, Principal::Master) => return Err(RequestError::MissingField("key").into()),
    };
    let foreign = matches!(&principal, Principal::Virtual(grant) if grant.hash != target.hash);
    let shown = key.unwrap_or_else(|| target.label.clone());
    // Looked up before the permission check, as LiteLLM does: an unknown key is a 404 to anyone (it tells a
    // virtual key only that a hash it made up is no key), another key's record a 403.
    let record = state.registry.send(GetKey(target)).await??;
    if foreign {
        // A team admin reads its teams' keys; any other key, only its own.
        let scope = key_scope::scope(&req, &state).await.map_err(|_| KeyError::ForeignKey)?;
        scope.allows_team(record.team_id.as_deref(), "/key/info").map_err(|_| KeyError::ForeignKey)?;
    }
    Ok(HttpResponse::Ok().json(json!({ "key": shown, "info": RecordView::one(&record, &state.meter).await? })))
}

pub async fn update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let scope = key_scope::scope(&req, &state).await?;
    let mut request = KeyRequest::read(&req, payload).await?;
    let warning = request.ignored_warning("/key/update");
    let changes = request.changes();
    let key = request.key.ok_or(RequestError::MissingField("key"))?;
    scope.allows_key(&state, &KeyRef::parse(&key), "/key/update").await?;
    if let Some(team) = &changes.team_id {
        scope.allows_team(team.as_deref(), "/key/update")?;
    }
    scope.allows_change(&state, &KeyRef::parse(&key), &changes, "/key/update").await?;
    let record = state.registry.send(UpdateKey { key: KeyRef::parse(&key), changes }).await??;
    warning.inspect(|warning| log::warn!("{warning}"));
    Ok(HttpResponse::Ok().json(KeyView::new(&key, &record, &state.meter).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeleteRequest {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    key_aliases: Vec<String>,
}

pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let scope = key_scope::scope(&req, &state).await?;
    let request: DeleteRequest = management_body(&req, payload).await?;
    if request.keys.is_empty() && request.key_aliases.is_empty() {
        return Err(RequestError::MissingField("keys").into());
    }
    // Each key once (a repeated one is deleted and listed once), at most a thousand a call.
    let named = match request.keys.is_empty() {
        true => Vec::new(),
        false => super::org_endpoints::distinct_ids(request.keys, "keys")?,
    };
    let keys: Vec<KeyRef> = named.iter().map(|key| KeyRef::parse(key)).collect();
    for key in &keys {
        scope.allows_key(&state, key, "/key/delete").await?;
    }
    if !request.key_aliases.is_empty() {
        // Aliases name keys of any team: a team admin names its keys by key.
        scope.allows_team(None, "/key/delete")?;
    }
    let deleted = state.registry.send(DeleteKeys { keys, aliases: request.key_aliases }).await??;
    Ok(HttpResponse::Ok().json(json!({ "deleted_keys": deleted })))
}

#[derive(Deserialize)]
struct ListQuery {
    page: Option<usize>,
    size: Option<usize>,
    key_alias: Option<String>,
    return_full_object: Option<bool>,
    team_id: Option<String>,
    user_id: Option<String>,
    organization_id: Option<String>,
}

/// `GET /key/list`: key hashes (or full records), one page at a time, in a stable (hash) order.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let scope = key_scope::scope(&req, &state).await?;
    let query: ListQuery = body::query(&req)?;
    let page = query.page.unwrap_or(1);
    let size = query.size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page == 0 || !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(RequestError::InvalidQuery(format!("`page` starts at 1 and `size` is 1 to {MAX_PAGE_SIZE}")).into());
    }
    let filter = OwnedKeys {
        team_id: query.team_id,
        user_id: query.user_id,
        organization_id: query.organization_id,
        teams: None,
    };
    let result = match scope.owned_page(&state, filter, page, size).await? {
        Some(owned) => owned,
        None => state.registry.send(ListKeys { page, size, alias: query.key_alias }).await??,
    };
    let keys: Vec<Value> = match query.return_full_object.unwrap_or(false) {
        true => RecordView::all(&result.records, &state.meter).await?.iter().map(|view| json!(view)).collect(),
        false => result.records.iter().map(|record| json!(record.token)).collect(),
    };
    Ok(HttpResponse::Ok().json(json!({
        "keys": keys,
        "total_count": result.total,
        "current_page": page,
        "total_pages": result.total.div_ceil(size),
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BlockRequest {
    key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RegenerateRequest {
    key: Option<String>,
    new_key: Option<String>,
}

/// `/…/block` (`BLOCKED`) and `/…/unblock`: the route table names which.
pub async fn set_blocked<const BLOCKED: bool>(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let blocked = BLOCKED;
    let scope = key_scope::scope(&req, &state).await?;
    let request: BlockRequest = management_body(&req, payload).await?;
    let key = request.key.ok_or(RequestError::MissingField("key"))?;
    let route = if blocked { "/key/block" } else { "/key/unblock" };
    scope.allows_key(&state, &KeyRef::parse(&key), route).await?;
    let changes = KeyChanges { blocked: Some(blocked), ..KeyChanges::default() };
    let record = state.registry.send(UpdateKey { key: KeyRef::parse(&key), changes }).await??;
    Ok(HttpResponse::Ok().json(KeyView::new(&key, &record, &state.meter).await?))
}

/// `POST /key/{key}/regenerate` and `POST /key/regenerate {"key"}`: a new plaintext for the same record.
pub async fn regenerate(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let scope = key_scope::scope(&req, &state).await?;
    let request: RegenerateRequest = management_body(&req, payload).await?;
    let key = match req.match_info().get("key") {
        Some(in_path) => in_path.to_owned(),
        None => request.key.ok_or(RequestError::MissingField("key"))?,
    };
    scope.allows_key(&state, &KeyRef::parse(&key), "/key/regenerate").await?;
    scope.allows_key_user(&state, &KeyRef::parse(&key), "/key/regenerate").await?;
    let regenerate = RegenerateKey { key: KeyRef::parse(&key), new_key: request.new_key };
    minted(&state.registry.send(regenerate).await??, &state.meter).await
}
