//! Changing one user, team or organization through the KeyRegistry: the record, what its change does to
//! other records (an organization's teams go with it; a deleted user leaves its teams) and to keys (those of
//! a deleted owner or a removed member go; every other owned key's grant is derived again), and its audit
//! entry, all in one transaction, answered once durable.

use std::collections::HashSet;
use std::time::SystemTime;

use actix::{Context, Handler, Message, ResponseFuture};
use serde_json::Value;

use super::super::audit::{record_changes, AuditEntry};
use super::super::change::{Change, Tree};
use super::super::grant::Grant;
use super::super::store::{remove_key, Conflict};
use super::derive::keys_mark;
use super::entity::{check_count, check_id, Entity, OrgRecord, TeamRecord, UserRecord, MAX_MEMBERS, MAX_MODELS};
use super::index::{in_hash_order, Owned, OwnerKind};
use super::OrgError;
use crate::keys::{KeyError, KeyHash, KeyRegistry, KeyStore};
use crate::meter::Level;

/// Turns a level's current record (`None`: there is none) into its new one (`None`: delete it), or refuses.
pub type Apply<E> = Box<dyn FnOnce(Option<E>) -> Result<Option<E>, OrgError> + Send>;

/// Change user, team or organization `id`; answers the new record (`None` once deleted), once durable.
pub struct Edit<E: Entity> {
    pub id: String,
    /// The audit trail's action: `team_new`, `team_update`, `user_delete`, …
    pub action: &'static str,
    pub apply: Apply<E>,
}

impl<E: Entity> Message for Edit<E> {
    type Result = Result<Option<E>, KeyError>;
}

/// What a change of one level takes with it.
#[derive(Debug, Default)]
pub struct Fallout {
    pub teams_gone: Vec<String>,
    pub users_gone: Vec<String>,
    pub orgs_gone: Vec<String>,
    /// (team, user): a member removed from a team; its keys in that team go.
    pub members_gone: Vec<(String, String)>,
}

impl Fallout {
    /// The keys of the levels that go (a removed member's keys are among its team's).
    fn keys<'a>(&'a self, owners: &'a Owned) -> impl Iterator<Item = &'a KeyHash> {
        let teams = self.teams_gone.iter().chain(self.members_gone.iter().map(|(team, _)| team));
        (teams.flat_map(|id| owners.keys_of(OwnerKind::Team, id)))
            .chain(self.users_gone.iter().flat_map(|id| owners.keys_of(OwnerKind::User, id)))
            .chain(self.orgs_gone.iter().flat_map(|id| owners.keys_of(OwnerKind::Organization, id)))
    }
}

/// What deleting or changing each kind of level takes with it.
pub trait Falls: Entity {
    fn fallout(id: &str, before: Option<&Self>, after: Option<&Self>) -> Fallout;

    /// The keys whose grants a change of level `id` may change: those naming it, and for an organization
    /// also its teams' keys (which take it from their team). Found through the owner index: an owner change
    /// costs its own keys, not every key.
    fn own_keys(store: &KeyStore, owners: &Owned, id: &str) -> Result<Vec<KeyHash>, KeyError>;

    /// Refuses a record that takes what must be unique among its kind (a user's email). Checked by the
    /// registry, the one writer, so two concurrent requests cannot both pass.
    fn check_unique(_store: &KeyStore, _before: Option<&Self>, _after: &Self) -> Result<(), OrgError> {
        Ok(())
    }
}

impl Falls for TeamRecord {
    fn fallout(id: &str, before: Option<&Self>, after: Option<&Self>) -> Fallout {
        let mut fallout = Fallout::default();
        match (before, after) {
            (Some(_), None) => fallout.teams_gone.push(id.to_owned()),
            (Some(before), Some(after)) => {
                for member in &before.members_with_roles {
                    let stays =
                        after.members_with_roles.iter().any(|m| m.user_id.is_some() && m.user_id == member.user_id);
                    if let (false, Some(user)) = (stays, &member.user_id) {
                        fallout.members_gone.push((id.to_owned(), user.clone()));
                    }
                }
            }
            _ => {}
        }
        fallout
    }

    fn own_keys(_: &KeyStore, owners: &Owned, id: &str) -> Result<Vec<KeyHash>, KeyError> {
        Ok(owners.keys_of(OwnerKind::Team, id).copied().collect())
    }
}

impl Falls for UserRecord {
    fn fallout(id: &str, before: Option<&Self>, after: Option<&Self>) -> Fallout {
        let users_gone = match (before, after) {
            (Some(_), None) => vec![id.to_owned()],
            _ => Vec::new(),
        };
        Fallout { users_gone, ..Fallout::default() }
    }

    fn own_keys(_: &KeyStore, owners: &Owned, id: &str) -> Result<Vec<KeyHash>, KeyError> {
        Ok(owners.keys_of(OwnerKind::User, id).copied().collect())
    }

    fn check_unique(store: &KeyStore, before: Option<&Self>, after: &Self) -> Result<(), OrgError> {
        let Some(email) =
            after.user_email.as_ref().filter(|email| before.and_then(|b| b.user_email.as_ref()) != Some(*email))
        else {
            return Ok(());
        };
        let users = store.entities_of::<UserRecord>().map_err(|_| OrgError::EmailTaken(email.clone()))?;
        match users.iter().any(|user| user.user_id != after.user_id && user.user_email.as_ref() == Some(email)) {
            true => Err(OrgError::EmailTaken(email.clone())),
            false => Ok(()),
        }
    }
}

impl Falls for OrgRecord {
    fn fallout(id: &str, before: Option<&Self>, after: Option<&Self>) -> Fallout {
        let orgs_gone = match (before, after) {
            (Some(_), None) => vec![id.to_owned()],
            _ => Vec::new(),
        };
        Fallout { orgs_gone, ..Fallout::default() }
    }

    fn own_keys(store: &KeyStore, owners: &Owned, id: &str) -> Result<Vec<KeyHash>, KeyError> {
        let mut keys: Vec<KeyHash> = owners.keys_of(OwnerKind::Organization, id).copied().collect();
        for team in store.entities_of::<TeamRecord>()? {
            if team.organization_id.as_deref() == Some(id) {
                keys.extend(owners.keys_of(OwnerKind::Team, &team.team_id));
            }
        }
        Ok(keys)
    }
}

impl<E: Falls> Handler<Edit<E>> for KeyRegistry {
    type Result = ResponseFuture<Result<Option<E>, KeyError>>;

    fn handle(&mut self, msg: Edit<E>, ctx: &mut Context<Self>) -> Self::Result {
        let (id, action) = (msg.id.clone(), msg.action);
        let outcome = self.edit::<E>(msg);
        if let Err(err) = &outcome {
            let mut entry = AuditEntry::new(action);
            entry.changed.insert(E::ID_FIELD.into(), Value::String(id));
            self.refused(entry, err);
        }
        self.when_durable(ctx, outcome)
    }
}

/// One level's change staged into a [`Change`]: its record after it, what went with it, the keys deleted.
pub(super) struct Staged<E> {
    pub after: Option<E>,
    pub fallout: Fallout,
    pub gone: Vec<KeyHash>,
}

impl KeyRegistry {
    fn edit<E: Falls>(&mut self, Edit { id, action, apply }: Edit<E>) -> Result<Option<E>, KeyError> {
        let mut change = Change::new();
        // The owner index is held until the change is built (not while it commits, which a replica's
        // follower must apply): the index and the marks read are of the same copy.
        let staged = self.stage(&mut change, &self.store.owners.read(), id, action, apply, &HashSet::new())?;
        self.commit_staged(change, &[staged.fallout], &staged.gone)?;
        Ok(staged.after)
    }

    /// Adds the change of level `id` to `change`: the record, its mark, what its change takes from other
    /// levels, its keys (deleted, or derived again) and its audit entry. `gone`: keys `change` deletes
    /// already (another level of the same change took them).
    pub(super) fn stage<E: Falls>(
        &self,
        change: &mut Change,
        owners: &Owned,
        id: String,
        action: &'static str,
        apply: Apply<E>,
        gone: &HashSet<KeyHash>,
    ) -> Result<Staged<E>, KeyError> {
        check_id(E::ID_FIELD, &id)?;
        let (before, read) = self.store.entity_versioned::<E>(&id)?.unzip();
        let after = apply(before.clone())?;
        if let Some(after) = &after {
            self.rules.check_tier(after.metadata())?;
            check_count("models", after.models().len(), MAX_MODELS)?;
            self.rules.check_models(after.models())?;
            E::check_unique(&self.store, before.as_ref(), after)?;
        }
        let key = E::key_of(&id);
        match &read {
            Some(read) => change.check_unchanged(Tree::Entities, &key, read),
            None => change.check(Tree::Entities, &key, &[], Conflict::ChangedMeanwhile),
        }
        // Refused if a key of this level was written meanwhile (on another replica): the index would not
        // hold it.
        let mark = keys_mark(&key);
        match self.store.entities.get(&mark).map_err(crate::keys::StoreError::from)? {
            Some(read) => change.check_unchanged(Tree::Entities, &mark, &read),
            None => change.check(Tree::Entities, &mark, &[], Conflict::ChangedMeanwhile),
        }
        if after.is_none() {
            change.remove(Tree::Entities, &mark);
        }
        match &after {
            Some(after) => {
                change.put(Tree::Entities, &key, serde_json::to_vec(after).map_err(crate::keys::StoreError::from)?)
            }
            None => change.remove(Tree::Entities, &key),
        }
        let mut fallout = E::fallout(&id, before.as_ref(), after.as_ref());
        self.store.spread(change, &mut fallout)?;
        let mut affected = E::own_keys(&self.store, owners, &id)?;
        affected.extend(fallout.keys(owners));
        let affected: Vec<KeyHash> = in_hash_order(&affected).into_iter().filter(|hash| !gone.contains(hash)).collect();
        let gone = self.store.settle_keys(change, &fallout, &affected)?;
        // Their spend entries go in the same change: with replicas, Redis then drops the spend it summed for
        // them, and every replica their accounts (keys::follower), so an id created again starts from zero.
        for account in level_accounts(&fallout) {
            change.remove(Tree::Spend, &account);
        }
        let mut entry = AuditEntry::new(action);
        entry.changed = record_changes(before.as_ref(), after.as_ref(), &["created_at", "updated_at"])
            .map_err(crate::keys::StoreError::from)?;
        entry.changed.insert(E::ID_FIELD.into(), Value::String(id));
        change.audit.push(entry);
        Ok(Staged { after, fallout, gone })
    }

    /// Commits staged changes as one (with a `delete` entry per key deleted), then retires the keys and the
    /// levels that went.
    pub(super) fn commit_staged(
        &self,
        mut change: Change,
        fallouts: &[Fallout],
        gone: &[KeyHash],
    ) -> Result<(), KeyError> {
        change
            .audit
            .extend(gone.iter().map(|hash| AuditEntry { token: Some(hash.to_hex()), ..AuditEntry::new("delete") }));
        self.store.commit(change)??;
        for hash in gone {
            self.meter.retire(hash.as_bytes(), None, SystemTime::now());
        }
        for fallout in fallouts {
            self.forget_levels(fallout);
        }
        Ok(())
    }

    /// Deletes the spend of the levels that went (as an end user's goes with them): a team, user,
    /// organization or membership created again under the same id starts from zero, not with its budget
    /// partly used by its deleted namesake.
    fn forget_levels(&self, fallout: &Fallout) {
        for account in level_accounts(fallout) {
            self.meter.retire(&account, None, SystemTime::now());
            self.meter.remember_spend(&account, None);
        }
    }
}

/// The meter accounts of the levels that go with a change.
fn level_accounts(fallout: &Fallout) -> impl Iterator<Item = [u8; 32]> + '_ {
    let members = fallout.members_gone.iter().map(|(team, user)| super::derive::member_level_id(team, user));
    (fallout.teams_gone.iter().map(|id| Level::Team.account(id)))
        .chain(fallout.users_gone.iter().map(|id| Level::User.account(id)))
        .chain(fallout.orgs_gone.iter().map(|id| Level::Organization.account(id)))
        .chain(members.map(|id| Level::TeamMember.account(&id)))
}

impl KeyStore {
    /// Takes what goes with the levels in `fallout` from other levels: an organization's teams, a deleted
    /// user's places in teams and organizations.
    fn spread(&self, change: &mut Change, fallout: &mut Fallout) -> Result<(), KeyError> {
        if fallout.orgs_gone.is_empty() && fallout.users_gone.is_empty() {
            return Ok(());
        }
        for (team, read) in self.entities_versioned::<TeamRecord>(change)? {
            let key = TeamRecord::key_of(&team.team_id);
            if team.organization_id.as_ref().is_some_and(|org| fallout.orgs_gone.contains(org)) {
                change.check_unchanged(Tree::Entities, &key, &read);
                change.remove(Tree::Entities, &key);
                fallout.teams_gone.push(team.team_id);
                continue;
            }
            let mut kept = team.clone();
            kept.members_with_roles
                .retain(|member| !member.user_id.as_ref().is_some_and(|user| fallout.users_gone.contains(user)));
            if kept != team {
                change.check_unchanged(Tree::Entities, &key, &read);
                change.put(Tree::Entities, &key, serde_json::to_vec(&kept).map_err(crate::keys::StoreError::from)?);
            }
        }
        for (mut org, read) in self.entities_versioned::<OrgRecord>(change)? {
            let before = org.members.len();
            org.members.retain(|member| !fallout.users_gone.contains(&member.user_id));
            if org.members.len() != before && !fallout.orgs_gone.contains(&org.organization_id) {
                let key = OrgRecord::key_of(&org.organization_id);
                change.check_unchanged(Tree::Entities, &key, &read);
                change.put(Tree::Entities, &key, serde_json::to_vec(&org).map_err(crate::keys::StoreError::from)?);
            }
        }
        Ok(())
    }

    /// Every user, team or organization as `change` leaves it (one it removes is left out), with its stored
    /// bytes (what the change must find unchanged).
    fn entities_versioned<E: Entity>(&self, change: &Change) -> Result<Vec<(E, sled::IVec)>, KeyError> {
        let mut all = Vec::new();
        for entry in self.entities.scan_prefix(E::PREFIX) {
            let (key, bytes) = entry.map_err(crate::keys::StoreError::from)?;
            let written = change.writes.iter().rev().find(|write| write.tree == Tree::Entities && write.key == key[..]);
            let current = match written {
                Some(write) => match &write.value {
                    Some(value) => value.as_slice(),
                    None => continue,
                },
                None => &bytes[..],
            };
            all.push((serde_json::from_slice(current).map_err(crate::keys::StoreError::from)?, bytes));
        }
        Ok(all)
    }

    /// Deletes the keys `fallout` takes and derives the grant of every other key in `affected` again; a team
    /// key whose own tier its team's (new) tier contradicts refuses the change. Answers the keys deleted.
    fn settle_keys(
        &self,
        change: &mut Change,
        fallout: &Fallout,
        affected: &[KeyHash],
    ) -> Result<Vec<KeyHash>, KeyError> {
        let mut gone = Vec::new();
        let mut disagree: Option<(String, String, usize)> = None;
        let mut untiered = 0;
        for hash in affected {
            let hash = *hash;
            // The index and the store agree (the caller holds the index): a key missing here was never owned.
            let Some((record, read)) = self.get_versioned(&hash)? else { continue };
            let named = |owner: &Option<String>, gone: &[String]| owner.as_ref().is_some_and(|id| gone.contains(id));
            let member_gone = fallout.members_gone.iter().any(|(team, user)| {
                record.team_id.as_deref() == Some(team.as_str()) && record.user_id.as_deref() == Some(user.as_str())
            });
            if named(&record.team_id, &fallout.teams_gone)
                || named(&record.user_id, &fallout.users_gone)
                || named(&record.organization_id, &fallout.orgs_gone)
                || member_gone
            {
                change.check_unchanged(Tree::Keys, hash.as_bytes(), &read);
                remove_key(change, &hash, record.key_alias.as_deref());
                gone.push(hash);
                continue;
            }
            let grant = self.grant_after(change, &record, false)?;
            if let (Some(own), Some(team)) = (record.tier(), &record.team_id) {
                let team_tier = self.entity_after::<TeamRecord>(change, team)?.and_then(|team| team.tier());
                if let Some(tier) = team_tier.filter(|tier| *tier != own) {
                    let count = disagree.as_ref().map_or(0, |(_, _, count)| *count) + 1;
                    disagree = Some((team.clone(), tier.to_string(), count));
                }
            }
            let encoded = grant.encode();
            let stored = self.grants.get(hash.as_bytes()).map_err(crate::keys::StoreError::from)?;
            if stored.as_deref() != Some(&encoded[..]) {
                // Fails closed: a key that inherited a tier never silently becomes a key of every tier.
                let had_tier =
                    stored.as_deref().and_then(|bytes| Grant::decode(bytes).ok()).is_some_and(|g| g.tier.is_some());
                if had_tier && grant.tier.is_none() {
                    untiered += 1;
                }
                change.check_unchanged(Tree::Keys, hash.as_bytes(), &read);
                change.put(Tree::Grants, hash.as_bytes(), encoded);
            }
        }
        if untiered > 0 {
            return Err(OrgError::TierWouldDrop { keys: untiered }.into());
        }
        if let Some((team, tier, keys)) = disagree {
            return Err(OrgError::TeamKeysDisagree { team, tier, keys }.into());
        }
        Ok(gone)
    }
}

/// Refuses more than [`MAX_MEMBERS`] members.
pub fn check_members(count: usize) -> Result<(), OrgError> {
    check_count("members_with_roles", count, MAX_MEMBERS)
}

#[cfg(test)]
mod tests;
