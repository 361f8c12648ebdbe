//! User endpoints, LiteLLM-compatible: `/user/new` (with a key unless `auto_create_key: false`),
//! `/user/info`, `/user/update`, `/user/delete`, `/user/list`. The master key manages users; a key whose
//! user is the one asked for may read its own `/user/info`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::org_endpoints::{
    delete_each, distinct_ids, edit, level_body, level_body_with_limits, level_spend, new_id, new_limits, now,
    org_admin, proxy_admin, required, row, tier_within,
};
use super::{roles, AppState};
use crate::error::{ApiError, RequestError};
use crate::keys::orgs::{
    check_id, AdminTeams, Apply, GetEntity, ListEntities, Member, OrgError, OrgMember, OrgRecord, OrgRole, OwnedKeys,
    TeamRecord, TeamRole, UserRecord, UserRole,
};
use crate::keys::{KeyChanges, KeyError, MintKey, MintedKey, NewKey, Principal};
use crate::meter::Level;

/// The limit fields a user row shows (null: not set).
const USER_LIMITS: &[&str] = &["max_budget", "budget_duration", "tpm_limit", "rpm_limit", "max_parallel_requests"];
/// `/user/list` page size: LiteLLM's default and maximum.
const DEFAULT_PAGE_SIZE: usize = 25;
const MAX_PAGE_SIZE: usize = 100;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UserRequest {
    user_id: Option<String>,
    user_email: Option<String>,
    user_role: Option<UserRole>,
    models: Option<Vec<String>>,
    metadata: Option<Map<String, Value>>,
    /// `/user/new` only: teams to join (ids, or `{team_id, user_role}`), organizations to join, the team the
    /// new key is for, and the key itself.
    teams: Option<Vec<TeamJoin>>,
    organizations: Option<Vec<String>>,
    team_id: Option<String>,
    auto_create_key: Option<bool>,
    duration: Option<String>,
    key_alias: Option<String>,
    /// Accepted from LiteLLM scripts; tiergate sends no email.
    #[serde(rename = "send_invite_email")]
    _send_invite_email: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TeamJoin {
    Id(String),
    Member { team_id: String, user_role: Option<TeamRole> },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UserIds {
    #[serde(default)]
    user_ids: Vec<String>,
}

#[derive(Deserialize)]
struct UserQuery {
    user_id: Option<String>,
    page: Option<usize>,
    page_size: Option<usize>,
    role: Option<UserRole>,
}

async fn user_row(state: &AppState, user: &UserRecord) -> Result<(Value, Vec<crate::keys::KeyRecord>), ApiError> {
    let keys = state.registry.send(OwnedKeys { user_id: Some(user.user_id.clone()), ..OwnedKeys::default() }).await??;
    Ok((row(user, USER_LIMITS, level_spend(&state.meter, Level::User, &user.user_id).await?)?, keys))
}

async fn existing(state: &AppState, id: &str) -> Result<UserRecord, ApiError> {
    check_id("user_id", id).map_err(KeyError::from)?;
    let user = state.registry.send(GetEntity::<UserRecord>::new(id)).await??;
    Ok(user.ok_or_else(|| KeyError::from(OrgError::UserNotFound(id.to_owned())))?)
}

pub async fn new(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = roles::authorise_admin(&req, &state).await?;
    let (request, limits): (UserRequest, _) = level_body_with_limits(&req, payload, &[]).await?;
    roles::may_grant(&principal, request.user_role)?;
    // An org admin creates users in its organizations (named in `organizations`).
    let orgs: Vec<&str> = request.organizations.iter().flatten().map(String::as_str).collect();
    org_admin(&state, principal.clone(), "/user/new", &orgs).await?;
    // ... on its own key's tier (or none) at most: the key answered inherits the new user's.
    tier_within(principal.tier(), request.metadata.as_ref(), "/user/new")?;
    let id = request.user_id.clone().unwrap_or_else(new_id);
    check_unused(&state, &id).await?;
    let joins = joins_of(&state, request.teams, request.team_id.clone()).await?;
    // ... and joins it to teams of those organizations only: a team elsewhere (or of none) would hand the
    // new user, and the key answered, that team's tier and admin rights.
    if let Principal::Virtual(_) = principal {
        let team_orgs = orgs_of_teams(&state, &joins).await?;
        let team_orgs: Vec<&str> = team_orgs.iter().map(String::as_str).collect();
        if !team_orgs.is_empty() {
            org_admin(&state, principal, "/user/new", &team_orgs).await?;
        }
    }
    let user = UserRecord {
        user_id: id.clone(),
        user_email: request.user_email,
        user_role: request.user_role,
        models: request.models.unwrap_or_default(),
        metadata: request.metadata.unwrap_or_default(),
        limits: new_limits(limits),
        created_at: now(),
        updated_at: now(),
    };
    let apply: Apply<UserRecord> = Box::new(move |current| match current {
        Some(_) => Err(OrgError::UserExists(user.user_id)),
        None => Ok(Some(user)),
    });
    let created = edit(&state, &id, "user_new", apply).await?.ok_or_else(|| OrgError::UserNotFound(id.clone()));
    let created = created.map_err(KeyError::from)?;
    for (team, role) in &joins {
        join_team(&state, team, &id, *role).await?;
    }
    for org in request.organizations.unwrap_or_default() {
        join_org(&state, &org, &id).await?;
    }
    let key = match request.auto_create_key.unwrap_or(true) {
        true => {
            let changes = KeyChanges {
                user_id: Some(Some(id.clone())),
                team_id: request.team_id.map(Some),
                key_alias: request.key_alias.map(Some),
                duration: request.duration.map(Some),
                ..KeyChanges::default()
            };
            Some(mint_or_undo(&state, &id, changes).await?)
        }
        false => None,
    };
    Ok(HttpResponse::Ok().json(new_user_answer(&created, key.as_ref(), &joins)?))
}

/// Refuses a user id that is out of bounds or taken (LiteLLM: 409). An email another user has is refused by the
/// registry, the single writer, inside the write (`UserRecord::check_unique`): a check here would race it.
async fn check_unused(state: &AppState, id: &str) -> Result<(), ApiError> {
    check_id("user_id", id).map_err(KeyError::from)?;
    match state.registry.send(GetEntity::<UserRecord>::new(id)).await?? {
        Some(_) => Err(KeyError::from(OrgError::UserExists(id.to_owned())).into()),
        None => Ok(()),
    }
}

/// The teams a new user joins (`teams`, and `team_id` as a `user`), each checked to exist first.
async fn joins_of(
    state: &AppState,
    teams: Option<Vec<TeamJoin>>,
    team_id: Option<String>,
) -> Result<Vec<(String, TeamRole)>, ApiError> {
    let mut joins: Vec<(String, TeamRole)> = teams
        .unwrap_or_default()
        .into_iter()
        .map(|join| match join {
            TeamJoin::Id(team) => (team, TeamRole::User),
            TeamJoin::Member { team_id, user_role } => (team_id, user_role.unwrap_or(TeamRole::User)),
        })
        .collect();
    joins.extend(team_id.map(|team| (team, TeamRole::User)));
    for (team, _) in &joins {
        check_id("team_id", team).map_err(KeyError::from)?;
        if state.registry.send(GetEntity::<TeamRecord>::new(team.as_str())).await??.is_none() {
            return Err(KeyError::from(OrgError::UnknownTeam(team.clone())).into());
        }
    }
    Ok(joins)
}

/// The organization of each team joined (`""` for a team of none, which no org admin administers).
async fn orgs_of_teams(state: &AppState, joins: &[(String, TeamRole)]) -> Result<Vec<String>, ApiError> {
    let mut orgs = Vec::with_capacity(joins.len());
    for (team, _) in joins {
        let team = state.registry.send(GetEntity::<TeamRecord>::new(team.as_str())).await??;
        orgs.push(team.and_then(|team| team.organization_id).unwrap_or_default());
    }
    Ok(orgs)
}

/// The new user's key, minted last so it inherits the user's (and team's) tier; a key that cannot be minted
/// (for want of a tier, say) takes the new user back out rather than leave half of the answer done.
async fn mint_or_undo(state: &AppState, id: &str, changes: KeyChanges) -> Result<MintedKey, ApiError> {
    match state.registry.send(MintKey(NewKey { key: None, changes })).await? {
        Ok(minted) => Ok(minted),
        Err(err) => {
            let undo: Apply<UserRecord> = Box::new(|_| Ok(None));
            edit::<UserRecord>(state, id, "user_delete", undo).await?;
            Err(err.into())
        }
    }
}

/// LiteLLM's `/user/new` answer: the key's fields and plaintext (`""` without a key), the user's, its teams.
fn new_user_answer(
    user: &UserRecord,
    key: Option<&MintedKey>,
    joins: &[(String, TeamRole)],
) -> Result<Value, ApiError> {
    let mut body = json!({});
    if let Some(minted) = key {
        body = serde_json::to_value(&minted.record).unwrap_or_default();
        body["key"] = json!(minted.key.expose());
        body["token_id"] = json!(minted.record.token);
    }
    if let (Value::Object(fields), Value::Object(user)) = (&mut body, row(user, USER_LIMITS, Default::default())?) {
        fields.extend(user);
        fields.entry("key").or_insert(json!(""));
        fields.insert("teams".into(), json!(joins.iter().map(|(team, _)| team).collect::<Vec<_>>()));
    }
    Ok(body)
}

async fn join_team(state: &AppState, team: &str, user: &str, role: TeamRole) -> Result<(), ApiError> {
    let member = Member { user_id: Some(user.to_owned()), user_email: None, role };
    let missing = team.to_owned();
    edit::<TeamRecord>(
        state,
        team,
        "team_member_add",
        Box::new(move |current| {
            let mut team = current.ok_or(OrgError::UnknownTeam(missing))?;
            if !team.members_with_roles.iter().any(|m| m.is(member.user_id.as_deref(), None)) {
                team.members_with_roles.push(member);
            }
            Ok(Some(team))
        }),
    )
    .await
    .map(drop)
}

async fn join_org(state: &AppState, org: &str, user: &str) -> Result<(), ApiError> {
    let member = OrgMember { user_id: user.to_owned(), user_role: OrgRole::InternalUser };
    let missing = org.to_owned();
    edit::<OrgRecord>(
        state,
        org,
        "organization_member_add",
        Box::new(move |current| {
            let mut org = current.ok_or(OrgError::UnknownOrg(missing))?;
            if !org.members.iter().any(|m| m.user_id == member.user_id) {
                org.members.push(member);
            }
            Ok(Some(org))
        }),
    )
    .await
    .map(drop)
}

/// `GET /user/info?user_id=`: the master key reads any user; a key whose user it is reads its own.
pub async fn info(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let principal = roles::authorise_admin(&req, &state).await?;
    let query: UserQuery = super::body::query(&req)?;
    let id = required(query.user_id, "user_id")?;
    let own = matches!(principal, Principal::Virtual(_));
    if let Principal::Virtual(key) = &principal {
        let caller = state.registry.send(AdminTeams(key.hash)).await??.unwrap_or_default();
        if caller.user_id.as_deref() != Some(id.as_str()) {
            return Err(KeyError::ForeignKey.into());
        }
    }
    let user = existing(&state, &id).await?;
    let (user_info, keys) = user_row(&state, &user).await?;
    let mut teams = Vec::new();
    for team in state.registry.send(ListEntities::<TeamRecord>::all()).await?? {
        if team.members_with_roles.iter().any(|m| m.user_id.as_deref() == Some(id.as_str())) {
            let memberships = super::team_members::memberships(&state, &team, Some(&id)).await?;
            let mut row = match own {
                true => json!(seen_by_member(team, &id)),
                false => json!(team),
            };
            row["team_memberships"] = json!(memberships);
            teams.push(row);
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "user_id": id, "user_info": user_info, "keys": keys, "teams": teams })))
}

/// A team as one of its members reads it with its own key (`/user/info`): its own place in the roster and
/// its own budget in the team, not the other members' (who they are, their budgets): those are for admins.
fn seen_by_member(mut team: TeamRecord, user_id: &str) -> TeamRecord {
    team.members_with_roles.retain(|member| member.user_id.as_deref() == Some(user_id));
    team.member_budgets.retain(|member, _| member == user_id);
    team
}

/// `POST /user/update`: only the fields sent change; a user that does not exist is created (LiteLLM upserts).
pub async fn update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/user/update").await?;
    let (request, limits): (UserRequest, _) = level_body_with_limits(&req, payload, &[]).await?;
    let id = match (request.user_id.clone(), &request.user_email) {
        (Some(id), _) => id,
        (None, Some(email)) => {
            let users = state.registry.send(ListEntities::<UserRecord>::all()).await??;
            let found = users.into_iter().find(|user| user.user_email.as_ref() == Some(email));
            found.map(|user| user.user_id).ok_or_else(|| KeyError::from(OrgError::UserNotFound(email.clone())))?
        }
        (None, None) => return Err(RequestError::MissingField("user_id").into()),
    };
    let upsert_id = id.clone();
    let user = edit::<UserRecord>(
        &state,
        &id,
        "user_update",
        Box::new(move |current| {
            let mut user = current.unwrap_or_else(|| UserRecord {
                user_id: upsert_id,
                user_email: None,
                user_role: None,
                models: Vec::new(),
                metadata: Map::new(),
                limits: Default::default(),
                created_at: now(),
                updated_at: now(),
            });
            user.user_email = request.user_email.or(user.user_email.take());
            user.user_role = request.user_role.or(user.user_role);
            user.models = request.models.unwrap_or(std::mem::take(&mut user.models));
            user.metadata = request.metadata.unwrap_or(std::mem::take(&mut user.metadata));
            user.limits.apply(limits);
            user.updated_at = now();
            Ok(Some(user))
        }),
    )
    .await?
    .ok_or_else(|| KeyError::from(OrgError::UserNotFound(id.clone())))?;
    Ok(HttpResponse::Ok().json(json!({ "user_id": id, "data": user_row(&state, &user).await?.0 })))
}

/// `POST /user/delete`: the users, all their keys (team keys too) and their places in teams and orgs go.
pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/user/delete").await?;
    let UserIds { user_ids } = level_body(&req, payload).await?;
    let user_ids = distinct_ids(user_ids, "user_ids")?;
    for id in &user_ids {
        existing(&state, id).await?;
    }
    delete_each::<UserRecord>(&state, &user_ids, "user_delete", OrgError::UserNotFound).await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted_users": user_ids.len() })))
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/user/list").await?;
    let query: UserQuery = super::body::query(&req)?;
    let page = query.page.unwrap_or(1);
    let size = query.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page == 0 || !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(
            RequestError::InvalidQuery(format!("`page` starts at 1 and `page_size` is 1 to {MAX_PAGE_SIZE}")).into()
        );
    }
    let users: Vec<UserRecord> = state
        .registry
        .send(ListEntities::<UserRecord>::all())
        .await??
        .into_iter()
        .filter(|user| query.role.is_none_or(|role| user.user_role == Some(role)))
        .collect();
    let total = users.len();
    let mut rows = Vec::new();
    for user in users.iter().skip((page - 1).saturating_mul(size)).take(size) {
        let (mut row, keys) = user_row(&state, user).await?;
        row["key_count"] = json!(keys.len());
        rows.push(row);
    }
    Ok(HttpResponse::Ok().json(json!({
        "users": rows, "total": total, "page": page, "page_size": size, "total_pages": total.div_ceil(size),
    })))
}
