//! What one HTTP worker knows of keys without reading the store: the master key's hash, the grants its
//! Authorizer decoded (each with the grants version it was read under), and whether a replica's copy may be
//! trusted. The Authorizer fills it; the worker's handlers read it (same thread), so a request whose key's
//! grant was decoded under the current version is recognised without a message to the actor, which costs
//! the connection's task two more wake-ups. Any grant write raises the version, and the next request of
//! every key goes to the Authorizer again, which reads the store.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::authorizer::{KeyGrant, Principal};
use super::grants_version::GrantsVersion;
use super::orgs::OrgError;
use super::{timestamp, Grant, KeyError, KeyHash};
use crate::meter::KeyHashing;
use crate::redis_link::Redis;

pub struct WorkerKeys {
    master: KeyHash,
    /// Set when the store is a replica's copy of a shared store: keys are served from it only while Redis
    /// answered within its cache TTL.
    shared: Option<Arc<Redis>>,
    version: Arc<GrantsVersion>,
    /// Cleared when it reaches [`DECODED_AT_MOST`].
    decoded: RefCell<HashMap<KeyHash, Decoded, KeyHashing>>,
}

/// A grant as the Authorizer decoded it: from `bytes`, which the store held at grants `version`.
pub(super) struct Decoded {
    pub(super) version: u64,
    pub(super) bytes: sled::IVec,
    pub(super) grant: Arc<Grant>,
}

/// The decoded grants a worker keeps (a few hundred bytes each): the keys in use, not the store.
const DECODED_AT_MOST: usize = 4096;

/// What recognising a presented key gives: `Ok(None)` when it is neither the master key nor a stored key;
/// an error when the key is blocked or expired, or the replica's copy is too old to trust.
pub type Recognised = Result<Option<Principal>, KeyError>;

impl WorkerKeys {
    pub(super) fn new(master: KeyHash, shared: Option<Arc<Redis>>, version: Arc<GrantsVersion>) -> Self {
        Self { master, shared, version, decoded: RefCell::default() }
    }

    /// Recognises `hash` from what this worker knows: `None` when the Authorizer must read the store (a key
    /// not decoded here, or not since the last grant write).
    pub fn recognise_known(&self, hash: &KeyHash) -> Option<Recognised> {
        if self.is_master(hash) {
            return Some(Ok(Some(Principal::Master)));
        }
        let grant = self.fresh(hash, self.version.now())?;
        Some(self.trusted_copy().and_then(|()| admitted(*hash, grant)))
    }

    /// Comparing hashes (not plaintexts) leaks nothing useful through timing.
    pub(super) fn is_master(&self, hash: &KeyHash) -> bool {
        *hash == self.master
    }

    pub(super) fn version(&self) -> u64 {
        self.version.now()
    }

    /// The grant decoded for `hash` under `version`, if any.
    pub(super) fn fresh(&self, hash: &KeyHash, version: u64) -> Option<Arc<Grant>> {
        let decoded = self.decoded.borrow();
        decoded.get(hash).filter(|seen| seen.version == version).map(|seen| Arc::clone(&seen.grant))
    }

    /// The grant decoded from `bytes` before, now known to be current at `version`.
    pub(super) fn still(&self, hash: &KeyHash, bytes: &[u8], version: u64) -> Option<Arc<Grant>> {
        let mut decoded = self.decoded.borrow_mut();
        let seen = decoded.get_mut(hash).filter(|seen| seen.bytes == bytes)?;
        seen.version = version;
        Some(Arc::clone(&seen.grant))
    }

    pub(super) fn keep(&self, hash: KeyHash, decoded: Decoded) {
        let mut kept = self.decoded.borrow_mut();
        if kept.len() >= DECODED_AT_MOST {
            kept.clear();
        }
        kept.insert(hash, decoded);
    }

    pub(super) fn forget(&self, hash: &KeyHash) {
        self.decoded.borrow_mut().remove(hash);
    }

    /// Refuses every key while a replica's copy has not heard from Redis within its cache TTL.
    pub(super) fn trusted_copy(&self) -> Result<(), KeyError> {
        match self.shared.as_ref().filter(|redis| !redis.copy_is_fresh()) {
            Some(redis) => Err(KeyError::StaleCopy(redis.cache_ttl)),
            None => Ok(()),
        }
    }

    #[cfg(test)]
    pub(super) fn decoded_for_tests(&self) -> usize {
        self.decoded.borrow().len()
    }
}

/// A stored key with `grant`, unless the grant refuses it now (blocked, expired, its team blocked).
pub(super) fn admitted(hash: KeyHash, grant: Arc<Grant>) -> Recognised {
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
