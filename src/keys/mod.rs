//! Virtual keys: minting and hashing, records and their lifecycle, the sled store, and two actors: the
//! KeyRegistry (the single writer) and an Authorizer per HTTP worker (the hot-path reader).

mod aliases;
mod audit;
mod authorizer;
mod budgets;
mod change;
mod end_user_view;
mod end_users;
mod fields;
mod follower;
mod grant;
mod grants_version;
mod management;
mod models;
mod open_db;
pub(crate) mod orgs;
mod owned;
mod portable;
mod record;
mod registry;
mod replica;
mod store;
mod token;
mod transaction;
mod worker_keys;

pub use aliases::{ModelAliases, MAX_MODEL_ALIASES, MAX_MODEL_NAME_BYTES};
pub use audit::{AuditEntry, AuditFilter, ListAudit};
pub use authorizer::{Authorize, Authorizer, KeyGrant, Principal};
pub use budgets::{BudgetRecord, DeleteBudget, GetBudgets, NewBudget, UpdateBudget, MAX_BUDGET_ID_BYTES};
pub use end_users::{
    check_end_user_id, BlockEndUsers, DeleteEndUsers, EndUserChanges, EndUserError, EndUserRecord, EndUsers,
    NewEndUser, Region, UpdateEndUser, MAX_END_USERS_PER_CALL, MAX_END_USER_ID_CHARS,
};
pub use fields::{ignored_names, sort_fields, FieldRefusal, Treatment, LITELLM_KEY_FIELDS};
pub use follower::{copy_once, follow};
pub use grant::{CorruptGrant, Grant, Owned, OwnedLevel};
pub use management::{
    DeleteKeys, GetKey, KeyPage, KeyRef, ListKeys, MintKey, MintedKey, NewKey, RegenerateKey, UpdateKey,
    MAX_ALIAS_BYTES,
};
pub use models::{DeleteModel, ModelChangeRefused, SaveModel, StoredModel};
pub use open_db::open_db;
pub use portable::{ImportError, Moved, MovingStore};
pub use record::{parse_duration, timestamp, InvalidDuration, KeyChanges, KeyRecord};
pub use registry::{AddedModels, CheckStore, ConfigReloaded, KeyRegistry, KeyRules};
pub use replica::SharedKeys;
pub use store::{make_private, KeyStore, StoreError};
pub use token::{abbreviate, KeyHash, VirtualKey, KEY_PREFIX};
pub use worker_keys::{Recognised, WorkerKeys};

use crate::tier::Tier;

/// Why a key could not be used, read or changed. Display texts are what clients read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("No api key passed in. Send your key as `Authorization: Bearer sk-...` (or `x-litellm-api-key: sk-...`).")]
    MissingKey,
    #[error("The `{header}` header was sent more than once; send your key in one header, once.")]
    KeyHeaderRepeated { header: &'static str },
    #[error(
        "Invalid api key {key_name}: it is not a key of this gateway. Mint one with POST /key/generate (master key)."
    )]
    UnknownKey { key_name: String },
    #[error("Authentication Error, Key is blocked. Update via `/key/unblock` if you're an admin.")]
    KeyBlocked,
    #[error("Authentication Error - Expired Key. Key expired at {expires}; ask an admin to extend it via `/key/update` with a new `duration`.")]
    KeyExpired { expires: String },
    #[error("This key is not allowed to access model `{model}`. It can only access models={}.", allowed.join(", "))]
    ModelNotAllowed { model: String, allowed: Vec<String> },
    #[error("This endpoint needs the master key; a virtual key cannot call it.")]
    AdminOnly,
    #[error("A virtual key may only read its own info; call /key/info without `key` or with your own key.")]
    ForeignKey,
    #[error("Key {key} not found. Pass the key (sk-...) or its token (the 64-hex hash from /key/generate).")]
    KeyNotFound { key: String },
    #[error("No key has key_alias `{0}`.")]
    AliasNotFound(String),
    #[error("`key_alias` must be 1 to 256 bytes of text without control characters.")]
    InvalidAlias,
    #[error("key_alias `{0}` is already used by another key; aliases are unique. Pick another alias.")]
    AliasTaken(String),
    #[error("That key already exists; choose another `key` value or leave `key` out to get a random one.")]
    KeyTaken,
    #[error("A custom `key` must start with `sk-` followed by 8 to 200 printable ASCII characters.")]
    InvalidCustomKey,
    #[error("{0}")]
    InvalidDuration(#[from] InvalidDuration),
    #[error("No budget has budget_id `{0}`. Create it with POST /budget/new, or list them with GET /budget/list.")]
    UnknownBudget(String),
    #[error("No budget has budget_id `{0}`. GET /budget/list shows the budgets there are.")]
    BudgetNotFound(String),
    #[error("Budget with id '{0}' already exists. Change it with POST /budget/update, or pick another budget_id.")]
    BudgetExists(String),
    #[error("`budget_id` must be 1 to 256 bytes of text without control characters.")]
    InvalidBudgetId,
    #[error("Budget `{budget_id}` is used by {keys} key(s) or end user(s); link them to another budget (or none) with /key/update or /end_user/update before deleting it.")]
    BudgetInUse { budget_id: String, keys: usize },
    #[error("Unknown model(s) in `{field}`: {}. Models in the config: {}.", .unknown.join(", "), .known.join(", "))]
    UnknownLimitModels { field: &'static str, unknown: Vec<String>, known: Vec<String> },
    #[error("Unknown tier `{tier}`: no deployment in the config is on it. Known tiers: {}.", tier_list(.known))]
    UnknownTier { tier: String, known: Vec<Tier> },
    #[error("`metadata.tier` must be a string, e.g. \"free\" or \"paid\".")]
    TierNotAString,
    #[error("`metadata.tier` is required: this gateway has tiers ({}) and no general_settings.default_key_tier. Send the tier the key is for, or `\"tier\": null` for a key that reaches every tier.", tier_list(.known))]
    TierRequired { known: Vec<Tier> },
    #[error("`metadata` replaces the key's metadata, and this one has no `tier`: the key would lose its tier `{tier}` and reach every tier. Send `\"tier\": \"{tier}\"` in it to keep the tier, or `\"tier\": null` to untier the key on purpose.")]
    TierDropped { tier: String },
    #[error("A custom `key` may not be the master key; choose another value.")]
    KeyIsMaster,
    #[error("Unknown model(s) in `models`: {}. Models in the config: {}.", .unknown.join(", "), .known.join(", "))]
    UnknownModels { unknown: Vec<String>, known: Vec<String> },
    #[error("The change was written, but the flush to disk that confirms it failed: it is in effect now and may be lost if the gateway stops. Check the gateway's disk (its log says more), then read the key back with /key/info or /key/list before retrying.")]
    NotDurable,
    #[error("The key or budget was changed by another admin (or replica) at the same time, so this change was not made. Read it again (/key/info, /budget/info) and retry.")]
    ChangedMeanwhile,
    #[error("This gateway has not reached its shared key store (Redis) for longer than redis_cache_ttl ({}s), so it cannot check keys. Retry shortly; the operator can find the cause in the gateway's log.", .0.as_secs())]
    StaleCopy(std::time::Duration),
    #[error(transparent)]
    FieldRefused(#[from] FieldRefusal),
    #[error(transparent)]
    Org(#[from] orgs::OrgError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    EndUser(#[from] EndUserError),
}

fn tier_list(tiers: &[Tier]) -> String {
    match tiers {
        [] => "none (no deployment sets model_info.tier)".to_owned(),
        tiers => tiers.iter().map(Tier::as_str).collect::<Vec<_>>().join(", "),
    }
}
