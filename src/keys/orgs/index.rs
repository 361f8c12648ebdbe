//! The owner → keys index: which keys name each team, user and organization, kept in memory beside the
//! store so an owner change derives again only its own keys, and `/team/info`, `/user/info` and the lists
//! read an owner's keys without scanning every key. Built from the keys tree at open (and after a whole copy
//! from Redis), then changed with every applied change's key writes, under the same lock as the sled
//! transaction that makes them, so a reader holding it sees the index and the store agree.

use std::collections::{HashMap, HashSet};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Deserialize;

use super::super::change::{Tree, Write};
use crate::keys::{KeyHash, StoreError};

/// What a key record's stored JSON holds when it names an owner (a cheap filter before decoding it).
const OWNER_MARKS: [&[u8]; 3] = [b"\"team_id\":\"", b"\"user_id\":\"", b"\"organization_id\":\""];

/// The owners a stored key record names: only these fields are decoded.
#[derive(Deserialize, Default)]
struct Owners {
    team_id: Option<String>,
    user_id: Option<String>,
    organization_id: Option<String>,
}

/// The owners of a stored key record, `None` when it names none (or is not a record).
fn owners_of(bytes: &[u8]) -> Option<Owners> {
    if !OWNER_MARKS.iter().any(|mark| bytes.windows(mark.len()).any(|window| window == *mark)) {
        return None;
    }
    let owners: Owners = serde_json::from_slice(bytes).ok()?;
    let named = owners.team_id.is_some() || owners.user_id.is_some() || owners.organization_id.is_some();
    named.then_some(owners)
}

/// The index behind its lock; shared by every clone of the store.
#[derive(Default)]
pub(in crate::keys) struct OwnerIndex {
    owned: RwLock<Owned>,
}

impl OwnerIndex {
    /// Reading: while held, no change is applied to the store (nor to the index).
    pub(in crate::keys) fn read(&self) -> RwLockReadGuard<'_, Owned> {
        self.owned.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held across a change's sled transaction and its [`Owned::apply`].
    pub(in crate::keys) fn write(&self) -> RwLockWriteGuard<'_, Owned> {
        self.owned.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds the index again from every stored key (at open, after a bulk load or a whole copy).
    pub(in crate::keys) fn rebuild(&self, keys: &sled::Tree) -> Result<(), StoreError> {
        let mut owned = Owned::default();
        for entry in keys.iter() {
            let (hash, bytes) = entry?;
            if let (Some(hash), Some(owners)) = (KeyHash::from_bytes(&hash), owners_of(&bytes)) {
                owned.add(hash, owners);
            }
        }
        *self.write() = owned;
        Ok(())
    }
}

/// Keys by owner, and each owned key's owners (to find its entries again when it changes or goes).
#[derive(Default)]
pub struct Owned {
    of_key: HashMap<KeyHash, Owners>,
    teams: HashMap<String, HashSet<KeyHash>>,
    users: HashMap<String, HashSet<KeyHash>>,
    orgs: HashMap<String, HashSet<KeyHash>>,
}

/// Which of a key's owners an index lookup is by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    Team,
    User,
    Organization,
}

impl Owned {
    /// Follows a change's writes to the keys tree, in order (other trees are not indexed).
    pub(in crate::keys) fn apply(&mut self, writes: &[Write]) {
        for write in writes.iter().filter(|write| write.tree == Tree::Keys) {
            let Some(hash) = KeyHash::from_bytes(&write.key) else { continue };
            self.forget(&hash);
            if let Some(owners) = write.value.as_deref().and_then(owners_of) {
                self.add(hash, owners);
            }
        }
    }

    /// The keys naming `id` as their `kind` of owner (a key's own `organization_id`, not its team's).
    pub(in crate::keys) fn keys_of(&self, kind: OwnerKind, id: &str) -> impl Iterator<Item = &KeyHash> {
        let map = match kind {
            OwnerKind::Team => &self.teams,
            OwnerKind::User => &self.users,
            OwnerKind::Organization => &self.orgs,
        };
        map.get(id).into_iter().flatten()
    }

    /// Every key that names an owner.
    pub(in crate::keys) fn all(&self) -> impl Iterator<Item = &KeyHash> {
        self.of_key.keys()
    }

    fn add(&mut self, hash: KeyHash, owners: Owners) {
        let entries = [(&mut self.teams, &owners.team_id), (&mut self.users, &owners.user_id)];
        for (map, id) in entries.into_iter().chain([(&mut self.orgs, &owners.organization_id)]) {
            if let Some(id) = id {
                map.entry(id.clone()).or_default().insert(hash);
            }
        }
        self.of_key.insert(hash, owners);
    }

    fn forget(&mut self, hash: &KeyHash) {
        let Some(owners) = self.of_key.remove(hash) else { return };
        let entries = [(&mut self.teams, owners.team_id), (&mut self.users, owners.user_id)];
        for (map, id) in entries.into_iter().chain([(&mut self.orgs, owners.organization_id)]) {
            let Some(id) = id else { continue };
            if let Some(keys) = map.get_mut(&id) {
                keys.remove(hash);
                if keys.is_empty() {
                    map.remove(&id);
                }
            }
        }
    }
}

/// Hashes in hash order (the order `/key/list` pages in), each once.
pub(in crate::keys) fn in_hash_order<'a>(hashes: impl IntoIterator<Item = &'a KeyHash>) -> Vec<KeyHash> {
    let mut hashes: Vec<KeyHash> = hashes.into_iter().copied().collect();
    hashes.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    hashes.dedup();
    hashes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(hash: &KeyHash, json: &str) -> Write {
        Write { tree: Tree::Keys, key: hash.as_bytes().to_vec(), value: Some(json.as_bytes().to_vec()) }
    }

    #[test]
    fn a_key_moved_to_another_team_or_deleted_leaves_its_old_owners() {
        let mut owned = Owned::default();
        let (a, b) = (KeyHash::of("sk-a"), KeyHash::of("sk-b"));
        owned.apply(&[put(&a, r#"{"team_id":"t1","user_id":"u"}"#), put(&b, r#"{"team_id":"t1"}"#)]);
        let of = |owned: &Owned, kind, id| in_hash_order(owned.keys_of(kind, id));
        assert_eq!(of(&owned, OwnerKind::Team, "t1"), in_hash_order([&a, &b]));
        assert_eq!(of(&owned, OwnerKind::User, "u"), vec![a]);
        owned.apply(&[put(&a, r#"{"team_id":"t2","organization_id":"o"}"#)]);
        assert_eq!(of(&owned, OwnerKind::Team, "t1"), vec![b]);
        assert_eq!(of(&owned, OwnerKind::Team, "t2"), vec![a]);
        assert!(of(&owned, OwnerKind::User, "u").is_empty());
        assert_eq!(of(&owned, OwnerKind::Organization, "o"), vec![a]);
        let gone = Write { tree: Tree::Keys, key: b.as_bytes().to_vec(), value: None };
        let grant = Write { tree: Tree::Grants, key: a.as_bytes().to_vec(), value: None };
        owned.apply(&[gone, grant, put(&a, r#"{"key_alias":"no owner"}"#)]);
        assert!(of(&owned, OwnerKind::Team, "t1").is_empty() && of(&owned, OwnerKind::Team, "t2").is_empty());
        assert_eq!(owned.all().count(), 0);
        assert!(owned.teams.is_empty() && owned.orgs.is_empty(), "no empty sets left behind");
    }
}
