//! What a key's owners decide for it, derived into its grant: the effective tier (its own, else its team's,
//! else its user's, else its organization's), a blocked team, and the owner's model allowlist. The store
//! derives it whenever it writes a key, and again for every owned key whenever an owner changes, in the same
//! transaction, reading the owners as that transaction leaves them.

use super::super::change::{Change, Tree};
use super::super::grant::{Grant, OwnedLevel};
use super::super::store::Conflict;
use super::entity::{Entity, OrgRecord, TeamRecord, UserRecord};
use crate::config::LimitSet;
use crate::keys::{KeyRecord, KeyStore, StoreError};
use crate::meter::Level;

/// Beside each user, team and organization in the entities tree: a mark every write of one of its keys
/// changes, which a change of the owner must find unchanged. With replicas, a key minted on one replica while
/// its team changes on another is then never missed by the team change's scan of keys: one of the two is
/// refused (409) and retried from a copy that holds the other.
const KEYS_MARK: &str = "keys-of:";

/// The mark of the entity stored under `entity` (see [`KEYS_MARK`]).
pub(in crate::keys) fn keys_mark(entity: &[u8]) -> Vec<u8> {
    [KEYS_MARK.as_bytes(), entity].concat()
}

/// Whether an entities-tree key is a mark rather than a user, team or organization.
pub(in crate::keys) fn is_mark(key: &[u8]) -> bool {
    key.starts_with(KEYS_MARK.as_bytes())
}

/// The levels a key's requests are admitted on after the key, in LiteLLM's budget check order: team,
/// organization (the key's, else its team's), user, team member. Every existing owner is a level, so the
/// answer's spend lands on each; the user's limits bind its personal keys only (LiteLLM without
/// `apply_user_budget_to_team_keys`): on a team key the user only counts spend.
fn levels(
    record: &KeyRecord,
    team: Option<&TeamRecord>,
    user: Option<&UserRecord>,
    org: Option<&OrgRecord>,
) -> Vec<OwnedLevel> {
    let mut levels = Vec::new();
    if let Some(team) = team {
        levels.push(OwnedLevel::new(Level::Team, &team.team_id, team.limits.clone(), None));
    }
    if let Some(org) = org {
        levels.push(OwnedLevel::new(
            Level::Organization,
            &org.organization_id,
            org.limits.clone(),
            org.budget_id.clone(),
        ));
    }
    if let Some(user) = user {
        let limits = match team {
            None => user.limits.clone(),
            Some(_) => LimitSet::default(),
        };
        levels.push(OwnedLevel::new(Level::User, &user.user_id, limits, None));
    }
    if let (Some(team), Some(user_id)) = (team, &record.user_id) {
        if let Some(limits) = team.member_budgets.get(user_id) {
            levels.push(OwnedLevel::new(
                Level::TeamMember,
                member_level_id(&team.team_id, user_id),
                limits.clone(),
                None,
            ));
        }
    }
    levels
}

/// The level id of `user` as a member of `team` (neither id holds a `/`: see `check_id`).
pub fn member_level_id(team: &str, user: &str) -> String {
    format!("{team}/{user}")
}

impl KeyStore {
    /// A user, team or organization, and its stored bytes.
    pub(in crate::keys) fn entity_versioned<E: Entity>(&self, id: &str) -> Result<Option<(E, sled::IVec)>, StoreError> {
        match self.entities.get(E::key_of(id))? {
            Some(bytes) => Ok(Some((serde_json::from_slice(&bytes)?, bytes))),
            None => Ok(None),
        }
    }

    pub fn entity<E: Entity>(&self, id: &str) -> Result<Option<E>, StoreError> {
        Ok(self.entity_versioned::<E>(id)?.map(|(entity, _)| entity))
    }

    /// Every user, team or organization, in id order.
    pub fn entities_of<E: Entity>(&self) -> Result<Vec<E>, StoreError> {
        self.entities.scan_prefix(E::PREFIX).map(|entry| Ok(serde_json::from_slice(&entry?.1)?)).collect()
    }

    /// Entity `id` as `change` leaves it. Read from the store, it is also checked unchanged when the change
    /// commits (with replicas, another one may change it meanwhile: the change is then refused, not made
    /// from a stale owner).
    pub(in crate::keys) fn entity_after<E: Entity>(
        &self,
        change: &mut Change,
        id: &str,
    ) -> Result<Option<E>, StoreError> {
        self.owner_after(change, id, false)
    }

    /// [`Self::entity_after`], and with `mark`, a new mark of the owner's keys (a key of it is written).
    fn owner_after<E: Entity>(&self, change: &mut Change, id: &str, mark: bool) -> Result<Option<E>, StoreError> {
        let key = E::key_of(id);
        if mark {
            change.put(Tree::Entities, &keys_mark(&key), rand::random::<u64>().to_le_bytes().to_vec());
        }
        if let Some(write) = change.writes.iter().rev().find(|write| write.tree == Tree::Entities && write.key == key) {
            return Ok(write.value.as_deref().map(serde_json::from_slice).transpose()?);
        }
        let stored = self.entities.get(&key)?;
        if !change.checks.iter().any(|check| check.tree == Tree::Entities && check.key == key) {
            match &stored {
                Some(bytes) => change.check_unchanged(Tree::Entities, &key, bytes),
                None => change.check(Tree::Entities, &key, &[], Conflict::ChangedMeanwhile),
            }
        }
        Ok(stored.as_deref().map(serde_json::from_slice).transpose()?)
    }

    /// The grant `record` gives once `change` is made: the record's own, plus what its owners decide. `mark`:
    /// the key itself is written, so its owners' marks change.
    pub(in crate::keys) fn grant_after(
        &self,
        change: &mut Change,
        record: &KeyRecord,
        mark: bool,
    ) -> Result<Grant, StoreError> {
        let mut grant = Grant::of(record);
        if record.team_id.is_none() && record.user_id.is_none() && record.organization_id.is_none() {
            return Ok(grant);
        }
        let team: Option<TeamRecord> = match &record.team_id {
            Some(id) => self.owner_after(change, id, mark)?,
            None => None,
        };
        let user: Option<UserRecord> = match &record.user_id {
            Some(id) => self.owner_after(change, id, mark)?,
            None => None,
        };
        let org_id =
            record.organization_id.as_deref().or(team.as_ref().and_then(|team| team.organization_id.as_deref()));
        let org: Option<OrgRecord> = match org_id {
            Some(id) => self.owner_after(change, id, mark)?,
            None => None,
        };
        if grant.tier.is_none() {
            grant.tier = team
                .as_ref()
                .and_then(Entity::tier)
                .or_else(|| user.as_ref().and_then(Entity::tier))
                .or_else(|| org.as_ref().and_then(Entity::tier));
        }
        // LiteLLM: a team key answers to its team's models, a personal key to its user's; an org's bound both.
        let personal = record.team_id.is_none();
        let owner_models =
            [team.as_ref().map(TeamRecord::models), user.as_ref().filter(|_| personal).map(UserRecord::models)]
                .into_iter()
                .flatten()
                .chain(org.as_ref().map(OrgRecord::models))
                .find(|models| !models.is_empty())
                .unwrap_or_default();
        match grant.models.is_empty() {
            true => grant.models = owner_models.to_vec(),
            false => grant.owned.models = owner_models.to_vec(),
        }
        grant.owned.levels = levels(record, team.as_ref(), user.as_ref(), org.as_ref());
        grant.owned.team_id = record.team_id.clone();
        grant.owned.team_blocked = team.is_some_and(|team| team.blocked);
        Ok(grant)
    }

    /// Why an exported user, team or organization line cannot be stored as it is: its tree key must be
    /// `team:`, `user:` or `org:` and the record's own id, and the record must read as that kind. One that
    /// does not would make every read of its kind fail (503 on `/team/list` until it is removed by hand).
    pub(in crate::keys) fn check_entity_line(key: &str, record: &serde_json::Value) -> Result<(), String> {
        fn check<E: Entity>(key: &str, record: &serde_json::Value) -> Result<(), String> {
            let entity: E = serde_json::from_value(record.clone()).map_err(|err| {
                format!("the record of `{key}` is not a {} record: {err}", E::PREFIX.trim_end_matches(':'))
            })?;
            match E::key_of(entity.id()) == key.as_bytes() {
                true => Ok(()),
                false => Err(format!("the record's {} does not match the line's key `{key}`", E::ID_FIELD)),
            }
        }
        match key.split_once(':').map(|(kind, _)| kind) {
            Some("team") => check::<TeamRecord>(key, record),
            Some("user") => check::<UserRecord>(key, record),
            Some("org") => check::<OrgRecord>(key, record),
            _ => Err(format!("`{key}` is not a user, team or organization (team:, user: or org: and its id)")),
        }
    }

    /// Writes an exported user, team or organization (its tree key and record as stored) unless one is there
    /// already (never overwritten), audited as `entity_import`.
    pub(in crate::keys) fn insert_entity(
        &self,
        key: &[u8],
        record: Vec<u8>,
    ) -> Result<Result<(), Conflict>, StoreError> {
        let mut change = Change::new();
        change.check(Tree::Entities, key, &[], Conflict::ChangedMeanwhile);
        change.put(Tree::Entities, key, record);
        let mut entry = super::super::audit::AuditEntry::new("entity_import");
        entry.changed.insert("entity".into(), String::from_utf8_lossy(key).into_owned().into());
        change.audit.push(entry);
        self.commit(change)
    }

    /// Derives every owned key's grant again from its owners as stored, one transaction per key whose grant
    /// changes. For an import, whose lines may name a key before its user (a hand-made or reordered file):
    /// the key's grant must not keep "no tier" once the user that gives it one is in.
    pub(in crate::keys) fn derive_owned_grants(&self) -> Result<(), StoreError> {
        let owned = super::index::in_hash_order(self.owners.read().all());
        for hash in owned {
            let Some((record, read)) = self.get_versioned(&hash)? else { continue };
            let mut change = Change::new();
            let encoded = self.grant_after(&mut change, &record, false)?.encode();
            if self.grants.get(hash.as_bytes())?.as_deref() == Some(&encoded[..]) {
                continue;
            }
            change.check_unchanged(Tree::Keys, hash.as_bytes(), &read);
            change.put(Tree::Grants, hash.as_bytes(), encoded);
            // A conflict: another writer (a replica, with a shared store) changed the key meanwhile, and
            // derived its grant as it wrote it.
            let _changed_meanwhile = self.commit(change)?;
        }
        Ok(())
    }

    /// The team or organization `record` names that is not in the store, as `team_id=X` or
    /// `organization_id=X` (a key's grant would miss the tier it takes from it).
    pub(in crate::keys) fn missing_owner(&self, record: &KeyRecord) -> Result<Option<String>, StoreError> {
        if let Some(id) = &record.team_id {
            if self.entity::<TeamRecord>(id)?.is_none() {
                return Ok(Some(format!("team_id={id}")));
            }
        }
        if let Some(id) = &record.organization_id {
            if self.entity::<OrgRecord>(id)?.is_none() {
                return Ok(Some(format!("organization_id={id}")));
            }
        }
        Ok(None)
    }
}
