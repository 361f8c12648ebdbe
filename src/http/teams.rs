//! Team endpoints, LiteLLM-compatible: `/team/new|info|update|delete|list|block|unblock`,
//! `/team/member_add|member_delete|member_update`, `/team/model/add|delete`. All need the master key; a
//! team's admins manage the team's keys through `/key/*` (see `keys.rs`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::org_endpoints::{
    delete_each, distinct_ids, edit, level_body, level_body_with_limits, level_spend, new_id, new_limits, now,
    org_admin, proxy_admin, required, row, tier_within,
};
use super::team_members::check_member;
pub use super::team_members::{member_add, member_delete, member_update};
use super::{roles, AppState};
use crate::error::ApiError;
use crate::keys::orgs::{
    check_id, check_members, GetEntity, ListEntities, Member, OrgError, OrgRecord, OwnedKeys, TeamRecord,
};
use crate::keys::{KeyError, KeyRecord};
use crate::meter::Level;

/// The limit fields a team row shows (null: not set).
const TEAM_LIMITS: &[&str] = &["max_budget", "budget_duration", "tpm_limit", "rpm_limit", "budget_reset_at"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TeamRequest {
    team_id: Option<String>,
    team_alias: Option<String>,
    organization_id: Option<String>,
    models: Option<Vec<String>>,
    metadata: Option<Map<String, Value>>,
    blocked: Option<bool>,
    members_with_roles: Option<Vec<Member>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TeamIds {
    #[serde(default)]
    team_ids: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ModelsRequest {
    team_id: Option<String>,
    #[serde(default)]
    models: Vec<String>,
}

#[derive(Deserialize)]
struct TeamQuery {
    team_id: Option<String>,
    user_id: Option<String>,
    organization_id: Option<String>,
    page: Option<usize>,
    page_size: Option<usize>,
}

/// `/team/list` page size at most (LiteLLM's `page_size` bound); without `page`/`page_size`, every team.
const MAX_PAGE_SIZE: usize = 100;

/// An organization a team is put in must exist.
async fn check_org(state: &AppState, org: &Option<String>) -> Result<(), ApiError> {
    let Some(id) = org.as_deref().filter(|id| !id.is_empty()) else { return Ok(()) };
    check_id("organization_id", id).map_err(KeyError::from)?;
    match state.registry.send(GetEntity::<OrgRecord>::new(id)).await?? {
        Some(_) => Ok(()),
        None => Err(KeyError::from(OrgError::UnknownOrg(id.to_owned())).into()),
    }
}

pub(super) async fn team_row(state: &AppState, team: &TeamRecord) -> Result<(Value, Vec<KeyRecord>), ApiError> {
    let filter = OwnedKeys { team_id: Some(team.team_id.clone()), ..OwnedKeys::default() };
    let keys = state.registry.send(filter).await??;
    Ok((row(team, TEAM_LIMITS, level_spend(&state.meter, Level::Team, &team.team_id).await?)?, keys))
}

/// The team row of a change's answer (`None` only after a delete, which answers otherwise).
pub(super) async fn answer(state: &AppState, team: Option<TeamRecord>) -> Result<HttpResponse, ApiError> {
    let team = team.ok_or_else(|| KeyError::from(OrgError::TeamNotFound("(deleted)".into())))?;
    Ok(HttpResponse::Ok().json(team_row(state, &team).await?.0))
}

pub async fn new(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = roles::authorise_admin(&req, &state).await?;
    let (request, limits): (TeamRequest, _) = level_body_with_limits(&req, payload, &[]).await?;
    // An org admin creates teams in its organization, on its own key's tier (or none) at most.
    let own_tier = principal.tier().cloned();
    org_admin(
        &state,
        principal,
        "/team/new",
        request.organization_id.as_slice().iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
    )
    .await?;
    tier_within(own_tier.as_ref(), request.metadata.as_ref(), "/team/new")?;
    check_org(&state, &request.organization_id).await?;
    let members = request.members_with_roles.unwrap_or_default();
    check_members(members.len()).and_then(|()| members.iter().try_for_each(check_member)).map_err(KeyError::from)?;
    let id = request.team_id.unwrap_or_else(new_id);
    let team = TeamRecord {
        team_id: id.clone(),
        team_alias: request.team_alias,
        organization_id: request.organization_id.filter(|org| !org.is_empty()),
        models: request.models.unwrap_or_default(),
        metadata: request.metadata.unwrap_or_default(),
        blocked: request.blocked.unwrap_or(false),
        members_with_roles: members,
        limits: new_limits(limits),
        member_budgets: Default::default(),
        created_at: now(),
        updated_at: now(),
    };
    let created = edit::<TeamRecord>(
        &state,
        &id,
        "team_new",
        Box::new(move |current| match current {
            Some(_) => Err(OrgError::TeamExists(team.team_id)),
            None => Ok(Some(team)),
        }),
    )
    .await?;
    answer(&state, created).await
}

/// Applies `change` to an existing team (404 when there is none), as `action`.
pub(super) async fn change_team(
    state: &AppState,
    id: &str,
    action: &'static str,
    change: impl FnOnce(&mut TeamRecord) -> Result<(), OrgError> + Send + 'static,
) -> Result<Option<TeamRecord>, ApiError> {
    let missing = id.to_owned();
    edit::<TeamRecord>(
        state,
        id,
        action,
        Box::new(move |current| {
            let mut team = current.ok_or(OrgError::TeamNotFound(missing))?;
            change(&mut team)?;
            team.updated_at = now();
            Ok(Some(team))
        }),
    )
    .await
}

pub async fn update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/team/update").await?;
    let (request, limits): (TeamRequest, _) = level_body_with_limits(&req, payload, &[]).await?;
    let id = required(request.team_id, "team_id")?;
    check_org(&state, &request.organization_id).await?;
    if request.members_with_roles.is_some() {
        return Err(crate::error::RequestError::UnsupportedField("members_with_roles".into()).into());
    }
    let team = change_team(&state, &id, "team_update", move |team| {
        team.team_alias = request.team_alias.or(team.team_alias.take());
        if let Some(org) = request.organization_id {
            // LiteLLM: `""` takes the team out of its organization.
            team.organization_id = Some(org).filter(|org| !org.is_empty());
        }
        team.models = request.models.unwrap_or(std::mem::take(&mut team.models));
        team.metadata = request.metadata.unwrap_or(std::mem::take(&mut team.metadata));
        team.blocked = request.blocked.unwrap_or(team.blocked);
        team.limits.apply(limits);
        Ok(())
    })
    .await?;
    let team = team.ok_or_else(|| KeyError::from(OrgError::TeamNotFound(id.clone())))?;
    Ok(HttpResponse::Ok().json(json!({ "team_id": id, "data": team_row(&state, &team).await?.0 })))
}

pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/team/delete").await?;
    let TeamIds { team_ids } = level_body(&req, payload).await?;
    let team_ids = distinct_ids(team_ids, "team_ids")?;
    // Every team is looked up first: an unknown one deletes nothing.
    for id in &team_ids {
        check_id("team_id", id).map_err(KeyError::from)?;
        if state.registry.send(GetEntity::<TeamRecord>::new(id.as_str())).await??.is_none() {
            return Err(KeyError::from(OrgError::TeamNotFound(id.clone())).into());
        }
    }
    delete_each::<TeamRecord>(&state, &team_ids, "team_delete", OrgError::TeamNotFound).await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted_teams": team_ids })))
}

pub async fn info(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/team/info").await?;
    let query: TeamQuery = super::body::query(&req)?;
    let id = required(query.team_id, "team_id")?;
    check_id("team_id", &id).map_err(KeyError::from)?;
    let team = state.registry.send(GetEntity::<TeamRecord>::new(id.as_str())).await??;
    let team = team.ok_or_else(|| KeyError::from(OrgError::TeamNotFound(id.clone())))?;
    let (team_info, keys) = team_row(&state, &team).await?;
    let memberships = super::team_members::memberships(&state, &team, None).await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "team_id": id, "team_info": team_info, "keys": keys, "team_memberships": memberships })))
}

/// `GET /team/list?user_id=&organization_id=&page=&page_size=`: teams (with their keys and memberships), those
/// with the member or in the org; a page of them when `page` or `page_size` is given.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/team/list").await?;
    let query: TeamQuery = super::body::query(&req)?;
    // Paged, each team's keys are read for the page's teams only.
    let (skip, take) = match (query.page, query.page_size) {
        (None, None) => (0, usize::MAX),
        (page, size) => {
            let (page, size) = (page.unwrap_or(1), size.unwrap_or(MAX_PAGE_SIZE));
            if page == 0 || !(1..=MAX_PAGE_SIZE).contains(&size) {
                let problem = format!("`page` starts at 1 and `page_size` is 1 to {MAX_PAGE_SIZE}");
                return Err(crate::error::RequestError::InvalidQuery(problem).into());
            }
            ((page - 1).saturating_mul(size), size)
        }
    };
    let teams = state.registry.send(ListEntities::<TeamRecord>::all()).await??;
    let selected = teams.iter().filter(|team| {
        let has_member = |user: &String| team.members_with_roles.iter().any(|m| m.user_id.as_ref() == Some(user));
        query.user_id.as_ref().is_none_or(has_member)
            && query.organization_id.as_ref().is_none_or(|org| team.organization_id.as_ref() == Some(org))
    });
    let mut rows = Vec::new();
    for team in selected.skip(skip).take(take) {
        let (mut row, keys) = team_row(&state, team).await?;
        row["keys"] = json!(keys);
        row["team_memberships"] = json!(super::team_members::memberships(&state, team, None).await?);
        rows.push(row);
    }
    Ok(HttpResponse::Ok().json(rows))
}

/// `/team/block` (`BLOCKED`) and `/team/unblock`, as the route table says: a blocked team's keys are kept and
/// refused (401) until it is unblocked.
pub async fn set_blocked<const BLOCKED: bool>(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let blocked = BLOCKED;
    let (route, action) = if blocked { ("/team/block", "team_block") } else { ("/team/unblock", "team_unblock") };
    proxy_admin(&req, &state, route).await?;
    let request: ModelsRequest = level_body(&req, payload).await?;
    let id = required(request.team_id, "team_id")?;
    let team = change_team(&state, &id, action, move |team| {
        team.blocked = blocked;
        Ok(())
    })
    .await?;
    answer(&state, team).await
}

pub async fn model_add(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    team_models(req, payload, state, true).await
}

pub async fn model_delete(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    team_models(req, payload, state, false).await
}

async fn team_models(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    add: bool,
) -> Result<HttpResponse, ApiError> {
    let (route, action) =
        if add { ("/team/model/add", "team_model_add") } else { ("/team/model/delete", "team_model_delete") };
    proxy_admin(&req, &state, route).await?;
    let request: ModelsRequest = level_body(&req, payload).await?;
    let id = required(request.team_id, "team_id")?;
    let models = request.models;
    let team = change_team(&state, &id, action, move |team| {
        match add {
            true => {
                team.models.extend(models.into_iter().filter(|model| !team.models.contains(model)).collect::<Vec<_>>())
            }
            false => team.models.retain(|model| !models.contains(model)),
        }
        Ok(())
    })
    .await?;
    answer(&state, team).await
}
