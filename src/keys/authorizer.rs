//! The Authorizer actor: recognises presented keys. One runs in each HTTP worker, on the worker's own
//! thread, so authorising costs no cross-thread hop; it only reads the store, which the KeyRegistry writes.
//! What it decoded it shares with the worker's handlers (`worker_keys.rs`), which ask it only about keys
//! not decoded since the last grant write.
//!
//! Every grant write raises the store's grants version once committed and before it is acknowledged, and a
//! grant decoded under an older version is read again, so a block, delete or regenerate made through the
//! registry is seen by the next request on every worker. With Redis, the store
//! is the replica's copy, kept by the follower; it is trusted for `redis_cache_ttl` after Redis last answered.

use std::rc::Rc;
use std::sync::Arc;

use actix::{Actor, Context, Handler, Message};

use super::orgs::OrgError;
use super::worker_keys::{admitted, Decoded, Recognised, WorkerKeys};
use super::{Grant, KeyError, KeyHash, KeyStore};
use crate::proxy::ApiRequest;
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

/// A recognised virtual key: its hash and what it may do, as its stored grant says (shared with the
/// worker's decoded grants).
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
    /// Shared with the worker's handlers: they recognise a key whose grant was decoded here under the
    /// current grants version without messaging this actor.
    keys: Rc<WorkerKeys>,
}

impl Authorizer {
    pub fn new(store: KeyStore, master: KeyHash) -> Self {
        let shared = store.shared().cloned();
        let keys = Rc::new(WorkerKeys::new(master, shared, Arc::clone(&store.grants_version)));
        Self { store, keys }
    }

    /// What the worker's handlers read (see [`WorkerKeys::recognise_known`]).
    pub fn worker_keys(&self) -> Rc<WorkerKeys> {
        Rc::clone(&self.keys)
    }

    /// The key's grant as stored now. While no grant was written since it was decoded, it is served without
    /// reading the store (a lookup in a large store costs its cache misses); after a grant write the bytes are
    /// read again, and the grant decoded before is reused when they are the very bytes it was decoded from.
    fn grant(&mut self, hash: &KeyHash) -> Result<Option<Arc<Grant>>, KeyError> {
        // Read before the store: a write committed after this read raises the version past it.
        let version = self.keys.version();
        if let Some(grant) = self.keys.fresh(hash, version) {
            return Ok(Some(grant));
        }
        let stored = self.store.grants.get(hash.as_bytes()).map_err(super::StoreError::from)?;
        let Some(bytes) = stored else {
            self.keys.forget(hash);
            return Ok(None);
        };
        if let Some(grant) = self.keys.still(hash, &bytes, version) {
            return Ok(Some(grant));
        }
        let grant = Arc::new(Grant::decode(&bytes).map_err(super::StoreError::from)?);
        self.keys.keep(*hash, Decoded { version, bytes, grant: Arc::clone(&grant) });
        Ok(Some(grant))
    }
}

impl Actor for Authorizer {
    type Context = Context<Self>;
}

/// Recognise a presented key by its hash (see [`Recognised`]).
#[derive(Message)]
#[rtype(result = "Recognised")]
pub struct Authorize(pub KeyHash);

impl Handler<Authorize> for Authorizer {
    type Result = Recognised;

    fn handle(&mut self, Authorize(hash): Authorize, _: &mut Context<Self>) -> Self::Result {
        if self.keys.is_master(&hash) {
            return Ok(Some(Principal::Master));
        }
        self.keys.trusted_copy()?;
        match self.grant(&hash)? {
            Some(grant) => admitted(hash, grant),
            None => Ok(None),
        }
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

    /// A store holding `grant` for the key hashed `[7; 32]`, and a worker's Authorizer over it (the master
    /// key hashed `[1; 32]`). Keep the directory for as long as the store.
    fn authorizer_with(grant: &Grant) -> (tempfile::TempDir, KeyStore, KeyHash, Authorizer) {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let hash = KeyHash::from_bytes(&[7; 32]).unwrap();
        put(&store, &hash, grant);
        let authorizer = Authorizer::new(store.clone(), KeyHash::from_bytes(&[1; 32]).unwrap());
        (dir, store, hash, authorizer)
    }

    /// #21 speed: a key's grant is decoded once per stored version on a worker (the same grant is handed
    /// out while its bytes stay the same), and any change to it (a block, a team's new limits) is read by
    /// the very next request.
    #[test]
    fn a_grant_is_decoded_once_per_stored_version_and_a_change_is_read_at_once() {
        let team = OwnedLevel::new(Level::Team, "t1", LimitSet { rpm_limit: Some(5), ..LimitSet::default() }, None);
        let owned = Owned { team_id: Some("t1".into()), levels: vec![team], ..Owned::default() };
        let mut grant = Grant { owned, ..Grant::unlimited_for_tests() };
        let (_dir, store, hash, mut authorizer) = authorizer_with(&grant);
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
        assert_eq!(authorizer.keys.decoded_for_tests(), 0, "and its decoded grant with it");
    }

    /// #22: while no grant is written, a decoded grant is served without reading the store (a write that
    /// went around the version, as no writer may, is not seen); another key's write makes the next request
    /// read the store again, and the unchanged bytes give the grant decoded before.
    #[test]
    fn the_store_is_read_again_only_after_a_grant_write() {
        let (_dir, store, hash, mut authorizer) = authorizer_with(&Grant::unlimited_for_tests());
        let other = KeyHash::from_bytes(&[8; 32]).unwrap();
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

    /// #22: the worker's handlers recognise a key the Authorizer decoded, without messaging it, only while no
    /// grant was written since; the master key always; never a key it has not decoded.
    #[test]
    fn handlers_recognise_only_keys_decoded_since_the_last_grant_write() {
        let (_dir, store, hash, mut authorizer) = authorizer_with(&Grant::unlimited_for_tests());
        let master = KeyHash::from_bytes(&[1; 32]).unwrap();
        let keys = authorizer.worker_keys();
        assert!(matches!(keys.recognise_known(&master), Some(Ok(Some(Principal::Master)))));
        assert!(keys.recognise_known(&hash).is_none(), "not decoded yet: the actor reads the store");

        authorizer.grant(&hash).unwrap();
        let Some(Ok(Some(Principal::Virtual(known)))) = keys.recognise_known(&hash) else { panic!("not known") };
        assert_eq!(known.hash, hash);

        put(&store, &hash, &Grant { blocked: true, ..Grant::unlimited_for_tests() });
        assert!(keys.recognise_known(&hash).is_none(), "a grant was written: the actor reads the store again");
        authorizer.grant(&hash).unwrap();
        assert!(matches!(keys.recognise_known(&hash), Some(Err(KeyError::KeyBlocked))));
    }
}
