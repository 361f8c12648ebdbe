//! Which keys a caller may manage through `/key/*`: the master key any; a virtual key whose user is an
//! `admin` of teams, the keys of those teams only (LiteLLM's team admins). Any other virtual key is refused
//! as before (403: the endpoint needs the master key).

use actix_web::HttpRequest;
use serde_json::{Map, Value};

use super::org_endpoints::tier_within;
use super::{roles, AppState};
use crate::error::ApiError;
use crate::keys::orgs::{
    AdminTeams, Entity, GetEntity, OrgError, OrgRecord, OwnedKeys, TeamRecord, UserAuthority, UserRecord, UserRole,
};
use crate::keys::{GetKey, KeyChanges, KeyError, KeyPage, KeyRef, Principal};
use crate::tier::Tier;

pub(super) enum Scope {
    All,
    /// A team admin: its user, the teams it administers (never empty) and the organizations it is an
    /// `org_admin` of.
    Teams {
        user_id: Option<String>,
        teams: Vec<String>,
        orgs: Vec<String>,
        /// The effective tier of the caller's own key (`None`: it reaches every tier).
        tier: Option<Tier>,
    },
}

/// The caller's scope; a virtual key that administers no team is refused.
pub(super) async fn scope(req: &HttpRequest, state: &AppState) -> Result<Scope, ApiError> {
    let key = match roles::authorise_admin(req, state).await? {
        Principal::Master => return Ok(Scope::All),
        Principal::Virtual(key) => key,
    };
    let caller = state.registry.send(AdminTeams(key.hash)).await??.unwrap_or_default();
    match caller.admin_of.is_empty() {
        true => Err(KeyError::AdminOnly.into()),
        false => Ok(Scope::Teams {
            user_id: caller.user_id,
            teams: caller.admin_of,
            orgs: caller.org_admin_of,
            tier: key.grant.tier.clone(),
        }),
    }
}

impl Scope {
    /// Refuses a team outside the scope (a key with no team is outside a team admin's).
    pub(super) fn allows_team(&self, team: Option<&str>, route: &'static str) -> Result<(), ApiError> {
        match self {
            Self::All => Ok(()),
            Self::Teams { teams, .. } if team.is_some_and(|team| teams.iter().any(|t| t == team)) => Ok(()),
            Self::Teams { .. } => {
                Err(KeyError::from(OrgError::NotTeamAdmin { route, team: team.unwrap_or("None").to_owned() }).into())
            }
        }
    }

    /// Refuses a key whose team is outside the scope (an unknown key is a 404, as for the master key).
    pub(super) async fn allows_key(&self, state: &AppState, key: &KeyRef, route: &'static str) -> Result<(), ApiError> {
        if let Self::All = self {
            return Ok(());
        }
        let record = state.registry.send(GetKey(key.clone())).await??;
        self.allows_team(record.team_id.as_deref(), route)
    }

    /// Refuses a key for `user` (named at `/key/generate` or `/key/update`, or the user of a key regenerated
    /// for the caller) when that user administers a team or organization the caller does not: whoever holds
    /// a key acts with its user's admin rights, so a team admin could otherwise make itself another team's
    /// admin key. The caller's own user, no user, and users who administer nothing more pass.
    pub(super) async fn allows_user(
        &self,
        state: &AppState,
        user: Option<&str>,
        route: &'static str,
    ) -> Result<(), ApiError> {
        let Self::Teams { user_id, teams, orgs, .. } = self else { return Ok(()) };
        let Some(user) = user.filter(|user| Some(*user) != user_id.as_deref()) else { return Ok(()) };
        let theirs = state.registry.send(UserAuthority(user.to_owned())).await??;
        // A proxy admin's key acts as the master key, a proxy admin viewer's reads everything: no team
        // admin's scope holds either.
        let admin_role = matches!(theirs.role, Some(UserRole::ProxyAdmin | UserRole::ProxyAdminViewer));
        let within = !admin_role
            && theirs.admin_of.iter().all(|team| teams.contains(team))
            && theirs.org_admin_of.iter().all(|org| orgs.contains(org));
        match within {
            true => Ok(()),
            false => Err(KeyError::from(OrgError::AdminOfMore { route, user: user.to_owned() }).into()),
        }
    }

    /// Refuses a `metadata.tier` a team admin sends other than its own key's (see [`tier_within`]): in a team
    /// without a tier nothing else bounds it, and a free team admin would otherwise mint itself paid keys, or
    /// move its own key to paid.
    pub(super) fn allows_tier(
        &self,
        metadata: Option<&Map<String, Value>>,
        route: &'static str,
    ) -> Result<(), ApiError> {
        match self {
            Self::All => Ok(()),
            Self::Teams { tier, .. } => tier_within(tier.as_ref(), metadata, route),
        }
    }

    /// Refuses a key a team admin makes (or moves) for another user who is not a member of the key's team
    /// `team`: otherwise it could hold a key for a user id not given out yet, which gains that user's admin
    /// rights the day an admin makes them another team's admin (LiteLLM: team admins make keys for members).
    pub(super) async fn allows_member(
        &self,
        state: &AppState,
        user: Option<&str>,
        team: Option<&str>,
        route: &'static str,
    ) -> Result<(), ApiError> {
        let Self::Teams { user_id, .. } = self else { return Ok(()) };
        let Some(user) = user.filter(|user| Some(*user) != user_id.as_deref()) else { return Ok(()) };
        let team = match team {
            Some(team) => state.registry.send(GetEntity::<TeamRecord>::new(team)).await??,
            None => None,
        };
        let member =
            team.is_some_and(|team| team.members_with_roles.iter().any(|m| m.user_id.as_deref() == Some(user)));
        match member {
            true => Ok(()),
            false => Err(KeyError::from(OrgError::NotTeamMember { route, user: user.to_owned() }).into()),
        }
    }

    /// What a team admin may mint (beyond its teams): a key for itself or a member who administers nothing
    /// more than it does, naming its own key's tier at most.
    pub(super) async fn allows_new_key(
        &self,
        state: &AppState,
        changes: &KeyChanges,
        route: &'static str,
    ) -> Result<(), ApiError> {
        let (user, team) = (changes.user_id.clone().flatten(), changes.team_id.clone().flatten());
        self.allows_user(state, user.as_deref(), route).await?;
        self.allows_member(state, user.as_deref(), team.as_deref(), route).await?;
        let org = changes.organization_id.clone().flatten();
        self.allows_org(state, org.as_deref(), team.as_deref(), route).await?;
        self.allows_tier(changes.metadata.as_ref(), route)?;
        if !names_tier(changes) {
            self.allows_inherited_tier(state, [team.as_deref(), user.as_deref(), org.as_deref()], route).await?;
        }
        Ok(())
    }

    /// Refuses owners (team, user, organization) that would give a key without a tier of its own a tier
    /// other than the team admin's own key's: a free team admin would otherwise mint (and hold) a paid key
    /// for a member whose user is paid, in a team without a tier.
    async fn allows_inherited_tier(
        &self,
        state: &AppState,
        [team, user, org]: [Option<&str>; 3],
        route: &'static str,
    ) -> Result<(), ApiError> {
        let Self::Teams { tier: Some(own), .. } = self else { return Ok(()) };
        let team = match team {
            Some(id) => state.registry.send(GetEntity::<TeamRecord>::new(id)).await??,
            None => None,
        };
        let user = match user {
            Some(id) => state.registry.send(GetEntity::<UserRecord>::new(id)).await??,
            None => None,
        };
        let org_id = org.map(str::to_owned).or_else(|| team.as_ref().and_then(|team| team.organization_id.clone()));
        let org = match org_id {
            Some(id) => state.registry.send(GetEntity::<OrgRecord>::new(id)).await??,
            None => None,
        };
        let inherited = (team.as_ref().and_then(Entity::tier))
            .or_else(|| user.as_ref().and_then(Entity::tier))
            .or_else(|| org.as_ref().and_then(Entity::tier));
        match inherited {
            Some(tier) if tier.as_str() != own.as_str() => Err(KeyError::from(OrgError::TierBeyondCaller {
                route,
                tier: format!("`{tier}` (inherited from the key's team, user or organization)"),
                own: own.to_string(),
            })
            .into()),
            _ => Ok(()),
        }
    }

    /// Refuses an `organization_id` a team admin names on a key of team `team` other than that team's own
    /// organization: a key's organization is its own before its team's, so another one would put the key's
    /// spend on an organization the caller does not administer and free it from its team's organization's
    /// budget and limits.
    async fn allows_org(
        &self,
        state: &AppState,
        org: Option<&str>,
        team: Option<&str>,
        route: &'static str,
    ) -> Result<(), ApiError> {
        let (Self::Teams { .. }, Some(org)) = (self, org) else { return Ok(()) };
        let team_org = match team {
            Some(team) => {
                state.registry.send(GetEntity::<TeamRecord>::new(team)).await??.and_then(|t| t.organization_id)
            }
            None => None,
        };
        match team_org.as_deref() == Some(org) {
            true => Ok(()),
            false => Err(KeyError::from(OrgError::OrgBeyondTeam {
                route,
                org: org.to_owned(),
                team_org: team_org.unwrap_or_else(|| "none".to_owned()),
            })
            .into()),
        }
    }

    /// What a team admin may change of a key of its teams (beyond its team): its user, as for a new key, and
    /// its tier.
    pub(super) async fn allows_change(
        &self,
        state: &AppState,
        key: &KeyRef,
        changes: &KeyChanges,
        route: &'static str,
    ) -> Result<(), ApiError> {
        if let (Self::Teams { .. }, Some(None)) = (self, &changes.user_id) {
            return Err(KeyError::from(OrgError::UserCleared { route }).into());
        }
        if let Some(user) = &changes.user_id {
            self.allows_user(state, user.as_deref(), route).await?;
            let team = match &changes.team_id {
                Some(team) => team.clone(),
                None => self.team_of(state, key).await?,
            };
            self.allows_member(state, user.as_deref(), team.as_deref(), route).await?;
        }
        if changes.organization_id.is_some() || changes.team_id.is_some() {
            let record = match self {
                Self::All => return Ok(()),
                Self::Teams { .. } => state.registry.send(GetKey(key.clone())).await??,
            };
            let org = changes.organization_id.clone().unwrap_or(record.organization_id);
            let team = changes.team_id.clone().unwrap_or(record.team_id);
            self.allows_org(state, org.as_deref(), team.as_deref(), route).await?;
        }
        if changes.user_id.is_some() || changes.organization_id.is_some() || changes.team_id.is_some() {
            let record = match self {
                Self::All => return Ok(()),
                Self::Teams { .. } => state.registry.send(GetKey(key.clone())).await??,
            };
            if !names_tier(changes) && record.tier().is_none() {
                let user = changes.user_id.clone().unwrap_or(record.user_id);
                let org = changes.organization_id.clone().unwrap_or(record.organization_id);
                let team = changes.team_id.clone().unwrap_or(record.team_id);
                self.allows_inherited_tier(state, [team.as_deref(), user.as_deref(), org.as_deref()], route).await?;
            }
        }
        self.allows_tier(changes.metadata.as_ref(), route)
    }

    /// The team of an existing key (for a team admin's checks; the master key needs none).
    pub(super) async fn team_of(&self, state: &AppState, key: &KeyRef) -> Result<Option<String>, ApiError> {
        match self {
            Self::All => Ok(None),
            Self::Teams { .. } => Ok(state.registry.send(GetKey(key.clone())).await??.team_id),
        }
    }

    /// [`Self::allows_user`] for the user of an existing key (a regenerated key's plaintext goes to the caller).
    pub(super) async fn allows_key_user(
        &self,
        state: &AppState,
        key: &KeyRef,
        route: &'static str,
    ) -> Result<(), ApiError> {
        if let Self::All = self {
            return Ok(());
        }
        let record = state.registry.send(GetKey(key.clone())).await??;
        self.allows_user(state, record.user_id.as_deref(), route).await
    }

    /// One page of `/key/list` when it filters by owner (`?team_id=&user_id=&organization_id=`, ANDed) or the
    /// caller is a team admin (its teams' keys only); `None`: neither, every key is listed as before.
    pub(super) async fn owned_page(
        &self,
        state: &AppState,
        mut filter: OwnedKeys,
        page: usize,
        size: usize,
    ) -> Result<Option<KeyPage>, ApiError> {
        if let Some(team) = &filter.team_id {
            self.allows_team(Some(team), "/key/list")?;
        }
        let filtered = filter.team_id.is_some() || filter.user_id.is_some() || filter.organization_id.is_some();
        if let Self::Teams { teams, .. } = self {
            filter.teams = Some(teams.clone());
        } else if !filtered {
            return Ok(None);
        }
        let records = state.registry.send(filter).await??;
        let total = records.len();
        let records = records.into_iter().skip((page - 1).saturating_mul(size)).take(size).collect();
        Ok(Some(KeyPage { records, total }))
    }

    pub(super) fn user_id(&self) -> Option<&String> {
        match self {
            Self::All => None,
            Self::Teams { user_id, .. } => user_id.as_ref(),
        }
    }
}

/// Whether a key change names `metadata.tier` itself (checked by [`Scope::allows_tier`]).
fn names_tier(changes: &KeyChanges) -> bool {
    changes.metadata.as_ref().is_some_and(|metadata| metadata.contains_key("tier"))
}
