//! The Authorizer actor: recognises presented keys. One runs in each HTTP worker, on the worker's own
//! thread, so authorising costs no cross-thread hop; it only reads the store, which the KeyRegistry writes.
//!
//! sled gives every reader a consistent view that includes each completed write, so a block, delete or
//! regenerate made through the registry is seen by the next request on every worker. With Redis, the store
//! is the replica's copy, kept by the follower; it is trusted for `redis_cache_ttl` after Redis last answered.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::{Actor, Context, Handler, Message};

use super::orgs::OrgError;
use super::{timestamp, Grant, KeyError, KeyHash, KeyStore};
use crate::proxy::ApiRequest;
use crate::redis_link::Redis;
use crate::tier::Tier;

/// Who is calling, once a presented key has been recognised.
// One per request, moved a few times, never stored in bulk: boxing the grant would cost an allocation per
// request to save a copy of a few hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// The master key: admin endpoints, and every model on every tier.
    Master,
    Virtual(KeyGrant),
}

/// A recognised virtual key: its hash and what it may do, as its stored grant says (read on every request).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyGrant {
    pub hash: KeyHash,
    pub grant: Grant,
}

impl Principal {
    pub fn tier(&self) -> Option<&Tier> {
        match self {
            Self::Master => None,
            Self::Virtual(key) => key.grant.tier.as_ref(),
        }
    }

    /// The key's `models` allowlist; empty (and for the master key): every model.
    pub fn models(&self) -> &[String] {
        match self {
            Self::Master => &[],
            Self::Virtual(key) => &key.grant.models,
        }
    }

    /// Refuses a model outside the key's `models` allowlist (its own, or its owner's when it has none), then
    /// outside its owner's when it has both: `permits` says whether a non-empty list grants `model` (names,
    /// patterns and access groups are the routing table's to resolve).
    pub fn check_model(&self, model: &str, permits: impl Fn(&[String]) -> bool) -> Result<(), KeyError> {
        let Self::Virtual(key) = self else { return Ok(()) };
        let grant = &key.grant;
        if !grant.models.is_empty() && !permits(&grant.models) {
            return Err(KeyError::ModelNotAllowed { model: model.to_owned(), allowed: grant.models.clone() });
        }
        if !grant.owned.models.is_empty() && !permits(&grant.owned.models) {
            let team = grant.owned.team_id.clone().unwrap_or_default();
            let allowed = grant.owned.models.clone();
            return Err(OrgError::OwnerModelNotAllowed { team, model: model.to_owned(), allowed }.into());
        }
        Ok(())
    }

    /// The request as the key means it: a `model` that is one of the key's `aliases` (exact match) becomes its
    /// target, so the allowlist, the tier rule and routing all see the target (LiteLLM's newest behaviour).
    /// Costs nothing for a key without aliases; an aliased request allocates its target's name once.
    pub fn resolve_alias(&self, request: ApiRequest) -> ApiRequest {
        let Self::Virtual(key) = self else { return request };
        match key.grant.alias_target(request.model()) {
            Some(target) => request.with_model(Arc::from(target)),
            None => request,
        }
    }
}

pub struct Authorizer {
    store: KeyStore,
    master: KeyHash,
    /// Set when the store is a replica's copy of a shared store: keys are served from it only while Redis
    /// answered within its cache TTL.
    shared: Option<Arc<Redis>>,
}

impl Authorizer {
    pub fn new(store: KeyStore, master: KeyHash) -> Self {
        let shared = store.shared().cloned();
        Self { store, master, shared }
    }
}

impl Actor for Authorizer {
    type Context = Context<Self>;
}

/// Recognise a presented key by its hash: `Ok(None)` when it is neither the master key nor a stored key;
/// an error when the key is blocked or expired.
#[derive(Message)]
#[rtype(result = "Result<Option<Principal>, KeyError>")]
pub struct Authorize(pub KeyHash);

impl Handler<Authorize> for Authorizer {
    type Result = Result<Option<Principal>, KeyError>;

    fn handle(&mut self, Authorize(hash): Authorize, _: &mut Context<Self>) -> Self::Result {
        // Comparing hashes (not plaintexts) leaks nothing useful through timing.
        if hash == self.master {
            return Ok(Some(Principal::Master));
        }
        if let Some(redis) = self.shared.as_ref().filter(|redis| !redis.copy_is_fresh()) {
            return Err(KeyError::StaleCopy(redis.cache_ttl));
        }
        let Some(grant) = self.store.grant(&hash)? else { return Ok(None) };
        if grant.blocked {
            return Err(KeyError::KeyBlocked);
        }
        if grant.is_expired(SystemTime::now()) {
            let expires = SystemTime::UNIX_EPOCH + Duration::from_millis(grant.expires_ms.unwrap_or_default());
            return Err(KeyError::KeyExpired { expires: timestamp(expires) });
        }
        if grant.owned.team_blocked {
            return Err(OrgError::TeamBlocked(grant.owned.team_id.unwrap_or_default()).into());
        }
        Ok(Some(Principal::Virtual(KeyGrant { hash, grant })))
    }
}
