//! Reading users, teams, organizations and the keys they own, as KeyRegistry messages (point reads and
//! scans of the store; the registry answers them between writes, so a read sees every acknowledged change).

use actix::{Context, Handler, Message};

use super::entity::{Entity, OrgRecord, OrgRole, TeamRecord, UserRecord, UserRole};
use super::index::{in_hash_order, OwnerKind};
use crate::keys::{KeyError, KeyHash, KeyRecord, KeyRegistry};

/// One user, team or organization (`None`: there is none).
pub struct GetEntity<E: Entity>(pub String, std::marker::PhantomData<E>);

impl<E: Entity> GetEntity<E> {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into(), std::marker::PhantomData)
    }
}

impl<E: Entity> Message for GetEntity<E> {
    type Result = Result<Option<E>, KeyError>;
}

impl<E: Entity> Handler<GetEntity<E>> for KeyRegistry {
    type Result = Result<Option<E>, KeyError>;

    fn handle(&mut self, GetEntity(id, _): GetEntity<E>, _: &mut Context<Self>) -> Self::Result {
        Ok(self.store.entity::<E>(&id)?)
    }
}

/// Every user, team or organization, in id order.
pub struct ListEntities<E: Entity>(std::marker::PhantomData<E>);

impl<E: Entity> ListEntities<E> {
    pub fn all() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<E: Entity> Message for ListEntities<E> {
    type Result = Result<Vec<E>, KeyError>;
}

impl<E: Entity> Handler<ListEntities<E>> for KeyRegistry {
    type Result = Result<Vec<E>, KeyError>;

    fn handle(&mut self, _: ListEntities<E>, _: &mut Context<Self>) -> Self::Result {
        Ok(self.store.entities_of::<E>()?)
    }
}

/// The keys owned as every given filter says (ANDed; LiteLLM's `/key/list?team_id=&user_id=&organization_id=`),
/// in hash order. `teams`: the key's team must be one of these (a team admin's scope).
#[derive(Message, Default)]
#[rtype(result = "Result<Vec<KeyRecord>, KeyError>")]
pub struct OwnedKeys {
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
    pub teams: Option<Vec<String>>,
}

impl Handler<OwnedKeys> for KeyRegistry {
    type Result = Result<Vec<KeyRecord>, KeyError>;

    fn handle(&mut self, filter: OwnedKeys, _: &mut Context<Self>) -> Self::Result {
        let matches = |wanted: &Option<String>, owner: &Option<String>| wanted.is_none() || wanted == owner;
        let in_scope = |team: &Option<String>| {
            filter.teams.as_ref().is_none_or(|teams| team.as_ref().is_some_and(|team| teams.contains(team)))
        };
        // The candidates through the owner index (the narrowest filter given), then the records themselves.
        let hashes = {
            let owners = self.store.owners.read();
            let by = [
                (OwnerKind::Team, &filter.team_id),
                (OwnerKind::User, &filter.user_id),
                (OwnerKind::Organization, &filter.organization_id),
            ];
            match (by.iter().find(|(_, id)| id.is_some()), &filter.teams) {
                (Some((kind, Some(id))), _) => in_hash_order(owners.keys_of(*kind, id)),
                (_, Some(teams)) => in_hash_order(teams.iter().flat_map(|team| owners.keys_of(OwnerKind::Team, team))),
                _ => in_hash_order(owners.all()),
            }
        };
        let mut records = Vec::with_capacity(hashes.len());
        for hash in hashes {
            let Some(record) = self.store.get(&hash)? else { continue };
            if matches(&filter.team_id, &record.team_id)
                && matches(&filter.user_id, &record.user_id)
                && matches(&filter.organization_id, &record.organization_id)
                && in_scope(&record.team_id)
            {
                records.push(record);
            }
        }
        Ok(records)
    }
}

/// Who a virtual key speaks for in management calls: its user, the teams that user is an `admin` of, the
/// organizations it is an `org_admin` of, and its proxy-wide `user_role`.
#[derive(Debug, Clone, Default)]
pub struct AdminScope {
    pub user_id: Option<String>,
    pub admin_of: Vec<String>,
    pub org_admin_of: Vec<String>,
    pub role: Option<UserRole>,
}

/// The [`AdminScope`] a virtual key is (`None`: no such key).
#[derive(Message)]
#[rtype(result = "Result<Option<AdminScope>, KeyError>")]
pub struct AdminTeams(pub KeyHash);

impl Handler<AdminTeams> for KeyRegistry {
    type Result = Result<Option<AdminScope>, KeyError>;

    fn handle(&mut self, AdminTeams(hash): AdminTeams, _: &mut Context<Self>) -> Self::Result {
        let Some(record) = self.store.get(&hash)? else { return Ok(None) };
        let Some(user_id) = record.user_id else { return Ok(Some(AdminScope::default())) };
        Ok(Some(self.caller_of(user_id)?))
    }
}

/// The `user_role` of a virtual key's user (`None`: no such key, no user, or no role).
#[derive(Message)]
#[rtype(result = "Result<Option<UserRole>, KeyError>")]
pub struct CallerRole(pub KeyHash);

impl Handler<CallerRole> for KeyRegistry {
    type Result = Result<Option<UserRole>, KeyError>;

    fn handle(&mut self, CallerRole(hash): CallerRole, _: &mut Context<Self>) -> Self::Result {
        let Some(user_id) = self.store.get(&hash)?.and_then(|record| record.user_id) else { return Ok(None) };
        Ok(self.store.entity::<UserRecord>(&user_id)?.and_then(|user| user.user_role))
    }
}

/// The [`AdminScope`] a key of this user would be: what a key made for the user may do in management calls.
#[derive(Message)]
#[rtype(result = "Result<AdminScope, KeyError>")]
pub struct UserAuthority(pub String);

impl Handler<UserAuthority> for KeyRegistry {
    type Result = Result<AdminScope, KeyError>;

    fn handle(&mut self, UserAuthority(user_id): UserAuthority, _: &mut Context<Self>) -> Self::Result {
        self.caller_of(user_id)
    }
}

impl KeyRegistry {
    fn caller_of(&self, user_id: String) -> Result<AdminScope, KeyError> {
        let admin_of = self
            .store
            .entities_of::<TeamRecord>()?
            .into_iter()
            .filter(|team| team.has_admin(&user_id))
            .map(|team| team.team_id)
            .collect();
        let org_admin_of = self
            .store
            .entities_of::<OrgRecord>()?
            .into_iter()
            .filter(|org| org.members.iter().any(|m| m.user_id == user_id && m.user_role == OrgRole::OrgAdmin))
            .map(|org| org.organization_id)
            .collect();
        let role = self.store.entity::<UserRecord>(&user_id)?.and_then(|user| user.user_role);
        Ok(AdminScope { user_id: Some(user_id), admin_of, org_admin_of, role })
    }
}
