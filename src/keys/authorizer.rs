//! The Authorizer actor: recognises presented keys. One runs in each HTTP worker, on the worker's own
//! thread, so authorising costs no cross-thread hop; it only reads the store, which the KeyRegistry writes.
//!
//! sled gives every reader a consistent view that includes each completed write, so a block, delete or
//! regenerate made through the registry is seen by the next request on every worker. With Redis, the store
//! is the replica's copy, kept by the follower; it is trusted for `redis_cache_ttl` after Redis last answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::{Actor, Context, Handler, Message};

use super::orgs::OrgError;
use super::{timestamp, Grant, KeyError, KeyHash, KeyStore};
use crate::meter::KeyHashing;
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

/// A recognised virtual key: its hash and what it may do, as its stored grant says (read on every request;
/// shared with the worker's cache of decoded grants).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyGrant {
    pub hash: KeyHash,
    pub grant: Arc<Grant>,
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
    /// Grants this worker decoded, each with the stored bytes it was decoded from and the store's grants
    /// version when those bytes were read. While the version is the same, no grant changed and the decoded
    /// one is served without reading the store (a lookup in a large store costs its cache misses); after any
    /// grant write, the bytes are read again and the grant reused only when they are the very bytes decoded
    /// before. Nothing stale is served and nothing needs invalidating. Cleared at [`DECODED_AT_MOST`].
    decoded: HashMap<KeyHash, Decoded, KeyHashing>,
}

struct Decoded {
    version: u64,
    bytes: sled::IVec,
    grant: Arc<Grant>,
}

/// The decoded grants a worker keeps (a few hundred bytes each): the keys in use, not the store.
const DECODED_AT_MOST: usize = 4096;

impl Authorizer {
    pub fn new(store: KeyStore, master: KeyHash) -> Self {
        let shared = store.shared().cloned();
        Self { store, master, shared, decoded: HashMap::default() }
    }

    /// The key's grant as stored now: read from the store only after a grant changed, decoded once per
    /// stored version.
    fn grant(&mut self, hash: &KeyHash) -> Result<Option<Arc<Grant>>, KeyError> {
        // Read before the store: a write committed after this read raises the version past it.
        let version = self.store.grants_version.now();
        if let Some(seen) = self.decoded.get(hash).filter(|seen| seen.version == version) {
            return Ok(Some(Arc::clone(&seen.grant)));
        }
        let stored = self.store.grants.get(hash.as_bytes()).map_err(super::StoreError::from)?;
        let Some(bytes) = stored else {
            self.decoded.remove(hash);
            return Ok(None);
        };
        if let Some(seen) = self.decoded.get_mut(hash).filter(|seen| seen.bytes == bytes) {
            seen.version = version;
            return Ok(Some(Arc::clone(&seen.grant)));
        }
        let grant = Arc::new(Grant::decode(&bytes).map_err(super::StoreError::from)?);
        if self.decoded.len() >= DECODED_AT_MOST {
            self.decoded.clear();
        }
        self.decoded.insert(*hash, Decoded { version, bytes, grant: Arc::clone(&grant) });
        Ok(Some(grant))
    }

    #[cfg(test)]
    fn decoded_for_tests(&self) -> usize {
        self.decoded.len()
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
        let Some(grant) = self.grant(&hash)? else { return Ok(None) };
        if grant.blocked {
            return Err(KeyError::KeyBlocked);
        }
        if grant.is_expired(SystemTime::now()) {
            let expires = SystemTime::UNIX_EPOCH + Duration::from_millis(grant.expires_ms.unwrap_or_default());
            return Err(KeyError::KeyExpired { expires: timestamp(expires) });
        }
        if grant.owned.team_blocked {
            return Err(OrgError::TeamBlocked(grant.owned.team_id.clone().unwrap_or_default()).into());
        }
        Ok(Some(Principal::Virtual(KeyGrant { hash, grant })))
    }
}

#[cfg(test)]
mod tests {
    use super::super::change::{Change, Tree, Write};
    use super::*;
    use crate::config::LimitSet;
    use crate::keys::{Owned, OwnedLevel};
    use crate::meter::Level;

    fn put(store: &KeyStore, hash: &KeyHash, grant: &Grant) {
        let mut change = Change::new();
        let key = hash.as_bytes().to_vec();
        change.writes.push(Write { tree: Tree::Grants, key, value: Some(grant.encode()) });
        store.apply(&change).unwrap().unwrap();
    }

    /// #21 speed: a key's grant is decoded once per stored version on a worker (the same grant is handed
    /// out while its bytes stay the same), and any change to it (a block, a team's new limits) is read by
    /// the very next request.
    #[test]
    fn a_grant_is_decoded_once_per_stored_version_and_a_change_is_read_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let hash = KeyHash::from_bytes(&[7; 32]).unwrap();
        let team = OwnedLevel::new(Level::Team, "t1", LimitSet { rpm_limit: Some(5), ..LimitSet::default() }, None);
        let owned = Owned { team_id: Some("t1".into()), levels: vec![team], ..Owned::default() };
        let mut grant = Grant { owned, ..Grant::unlimited_for_tests() };
        put(&store, &hash, &grant);
        let mut authorizer = Authorizer::new(store.clone(), KeyHash::from_bytes(&[1; 32]).unwrap());
        let first = authorizer.grant(&hash).unwrap().unwrap();
        let again = authorizer.grant(&hash).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "unchanged bytes: the grant decoded before");
        assert_eq!(*first, grant);

        grant.owned.levels[0].limits.rpm_limit = Some(6);
        put(&store, &hash, &grant);
        let changed = authorizer.grant(&hash).unwrap().unwrap();
        assert_eq!(changed.owned.levels[0].limits.rpm_limit, Some(6), "the team's new limit, at once");
        grant.blocked = true;
        put(&store, &hash, &grant);
        assert!(authorizer.grant(&hash).unwrap().unwrap().blocked, "the block, at once");

        let mut remove = Change::new();
        remove.writes.push(Write { tree: Tree::Grants, key: hash.as_bytes().to_vec(), value: None });
        store.apply(&remove).unwrap().unwrap();
        assert!(authorizer.grant(&hash).unwrap().is_none(), "a deleted key is gone at once");
        assert_eq!(authorizer.decoded_for_tests(), 0, "and its decoded grant with it");
    }

    /// #22: while no grant is written, a decoded grant is served without reading the store (a write that
    /// went around the version, as no writer may, is not seen); another key's write makes the next request
    /// read the store again, and the unchanged bytes give the grant decoded before.
    #[test]
    fn the_store_is_read_again_only_after_a_grant_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let (hash, other) = (KeyHash::from_bytes(&[7; 32]).unwrap(), KeyHash::from_bytes(&[8; 32]).unwrap());
        put(&store, &hash, &Grant::unlimited_for_tests());
        let mut authorizer = Authorizer::new(store.clone(), KeyHash::from_bytes(&[1; 32]).unwrap());
        let first = authorizer.grant(&hash).unwrap().unwrap();

        let blocked = Grant { blocked: true, ..Grant::unlimited_for_tests() };
        store.grants.insert(hash.as_bytes(), blocked.encode()).unwrap();
        assert!(Arc::ptr_eq(&first, &authorizer.grant(&hash).unwrap().unwrap()), "the store was not read");

        put(&store, &other, &Grant::unlimited_for_tests());
        assert!(authorizer.grant(&hash).unwrap().unwrap().blocked, "read again after a grant write");
        store.grants.insert(hash.as_bytes(), Grant::unlimited_for_tests().encode()).unwrap();
        put(&store, &other, &blocked);
        let reread = authorizer.grant(&hash).unwrap().unwrap();
        assert!(!reread.blocked);
        put(&store, &other, &Grant::unlimited_for_tests());
        let same = authorizer.grant(&hash).unwrap().unwrap();
        assert!(Arc::ptr_eq(&reread, &same), "unchanged bytes: not decoded again");
    }
}
