//! Keys with owners: what `/key/generate` and `/key/update` check when a key names a team, user or
//! organization (LiteLLM's checks), and the tier a new key inherits instead of the default one.

use serde_json::{Map, Value};

use super::entity::{check_id, Entity, OrgRecord, TeamRecord, UserRecord};
use super::OrgError;
use crate::keys::{KeyChanges, KeyError, KeyRecord, KeyRegistry};
use crate::tier::Tier;

impl KeyRegistry {
    /// Refuses a key whose team or organization does not exist, or whose own tier contradicts its team's
    /// (the key would reach a tier its team is not on). An unknown `user_id` is allowed, as LiteLLM's newest
    /// allows it: the key works, and the user's tier and models apply once the user is created.
    pub(in crate::keys) fn check_owners(&self, record: &KeyRecord) -> Result<(), KeyError> {
        if let Some(id) = &record.user_id {
            check_id("user_id", id)?;
        }
        if let Some(id) = &record.organization_id {
            check_id("organization_id", id)?;
            if self.store.entity::<OrgRecord>(id)?.is_none() {
                return Err(OrgError::UnknownOrg(id.clone()).into());
            }
        }
        let Some(team_id) = &record.team_id else { return Ok(()) };
        check_id("team_id", team_id)?;
        let team = self.store.entity::<TeamRecord>(team_id)?.ok_or_else(|| OrgError::UnknownTeam(team_id.clone()))?;
        match (record.tier(), team.tier()) {
            (Some(own), Some(team_tier)) if own != team_tier => Err(OrgError::TierContradicted {
                team: team_id.clone(),
                key_tier: own.to_string(),
                team_tier: team_tier.to_string(),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// The tier a new key would inherit from the owners `changes` name (team, else user, else organization,
    /// else the team's organization); `None` when they give none. A team or organization named that does not
    /// exist is refused here already, so the answer names it rather than the tier.
    fn inherited_tier(&self, changes: &KeyChanges) -> Result<Option<Tier>, KeyError> {
        let named = |owner: &Option<Option<String>>| owner.clone().flatten();
        let team = named(&changes.team_id);
        if let Some(id) = &team {
            self.store.entity::<TeamRecord>(id)?.ok_or_else(|| OrgError::UnknownTeam(id.clone()))?;
        }
        let org = named(&changes.organization_id);
        if let Some(id) = &org {
            self.store.entity::<OrgRecord>(id)?.ok_or_else(|| OrgError::UnknownOrg(id.clone()))?;
        }
        self.owners_tier(team.as_deref(), named(&changes.user_id).as_deref(), org.as_deref())
    }

    /// The tier these owners give a key without one of its own: its team's, else its user's, else its
    /// organization's (the key's, else its team's). An owner that does not exist gives none.
    fn owners_tier(&self, team: Option<&str>, user: Option<&str>, org: Option<&str>) -> Result<Option<Tier>, KeyError> {
        let team = match team {
            Some(id) => self.store.entity::<TeamRecord>(id)?,
            None => None,
        };
        let user = match user {
            Some(id) => self.store.entity::<UserRecord>(id)?,
            None => None,
        };
        let org_id = org.map(str::to_owned).or_else(|| team.as_ref().and_then(|t| t.organization_id.clone()));
        let org = match org_id {
            Some(id) => self.store.entity::<OrgRecord>(&id)?,
            None => None,
        };
        Ok(team
            .as_ref()
            .and_then(Entity::tier)
            .or_else(|| user.as_ref().and_then(Entity::tier))
            .or_else(|| org.as_ref().and_then(Entity::tier)))
    }

    /// Fails closed on `/key/update`: a key without a tier of its own that takes one from its owners keeps a
    /// tier through an owner change (`team_id: null`, a team or user without a tier, a user not created yet)
    /// unless the update names `metadata.tier` itself (`"tier": null`: untiered on purpose), as a metadata
    /// replacement must (`check_tier_kept`). Otherwise the key would silently reach every tier.
    pub(in crate::keys) fn check_inherited_tier_kept(
        &self,
        before: &KeyRecord,
        after: &KeyRecord,
        changes: &KeyChanges,
    ) -> Result<(), KeyError> {
        let names_tier = changes.metadata.as_ref().is_some_and(|metadata| metadata.contains_key("tier"));
        if names_tier || after.tier().is_some() {
            return Ok(());
        }
        let owners = |record: &KeyRecord| {
            self.owners_tier(record.team_id.as_deref(), record.user_id.as_deref(), record.organization_id.as_deref())
        };
        match (owners(before)?, owners(after)?) {
            (Some(tier), None) => Err(OrgError::InheritedTierDropped { tier: tier.to_string() }.into()),
            _ => Ok(()),
        }
    }

    /// The new key's tier as `settle_new_tier` would settle it, except that a key whose owners give a tier
    /// and that names none itself inherits theirs (it is not given the default tier, which could contradict
    /// its team's).
    pub(in crate::keys) fn settle_owned_tier(&self, changes: &mut KeyChanges) -> Result<(), KeyError> {
        let names_tier =
            changes.metadata.as_ref().is_some_and(|metadata: &Map<String, Value>| metadata.contains_key("tier"));
        if !names_tier && self.inherited_tier(changes)?.is_some() {
            return Ok(());
        }
        self.rules.settle_new_tier(&mut changes.metadata)
    }
}
