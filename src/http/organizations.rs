//! Organization endpoints, LiteLLM-compatible (methods included): `POST /organization/new`,
//! `PATCH /organization/update`, `DELETE /organization/delete`, `GET /organization/info|list`,
//! `POST /organization/member_add`, `PATCH …/member_update`, `DELETE …/member_delete`. Master key only.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::org_endpoints::{
    delete_each, distinct_ids, edit, level_body, level_body_with_limits, level_spend, new_id, new_limits, now,
    org_admin, proxy_admin, required, row,
};
use super::{roles, AppState};
use crate::error::{ApiError, RequestError};
use crate::keys::orgs::{
    check_count, check_id, GetEntity, ListEntities, OrgError, OrgMember, OrgRecord, OrgRole, TeamRecord, MAX_MEMBERS,
};
use crate::keys::KeyError;
use crate::meter::Level;

/// The budget fields of an organization's `litellm_budget_table` (its own limits; null: not set).
const ORG_LIMITS: &[&str] = &["max_budget", "tpm_limit", "rpm_limit", "budget_duration"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OrgRequest {
    organization_id: Option<String>,
    organization_alias: Option<String>,
    models: Option<Vec<String>>,
    metadata: Option<Map<String, Value>>,
    /// A `/budget/new` tier the organization's limits come from (LiteLLM's org `budget_id`); `null` unlinks.
    #[serde(default, deserialize_with = "crate::config::set_or_cleared")]
    budget_id: Option<Option<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OrgIds {
    #[serde(default)]
    organization_ids: Vec<String>,
}

#[derive(Deserialize)]
struct NewMember {
    user_id: Option<String>,
    #[allow(dead_code)]
    user_email: Option<String>,
    role: OrgRole,
}

/// One member or a list of them. Not `untagged`: its error ("data did not match any variant") would hide
/// what is wrong with the member (an unknown `role`, a missing field), which this one names.
#[derive(Deserialize)]
#[serde(try_from = "serde_json::Value")]
enum Members {
    One(NewMember),
    Many(Vec<NewMember>),
}

impl TryFrom<serde_json::Value> for Members {
    type Error = serde_json::Error;

    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        match value {
            serde_json::Value::Array(_) => serde_json::from_value(value).map(Self::Many),
            one => serde_json::from_value(one).map(Self::One),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MemberRequest {
    organization_id: Option<String>,
    member: Option<Members>,
    user_id: Option<String>,
    user_email: Option<String>,
    role: Option<OrgRole>,
}

#[derive(Deserialize)]
struct OrgQuery {
    organization_id: Option<String>,
    org_id: Option<String>,
    org_alias: Option<String>,
}

/// The org object: its row, `litellm_budget_table` (never null), `members` and `teams`.
async fn org_object(state: &AppState, org: &OrgRecord) -> Result<Value, ApiError> {
    let mut object = row(org, &[], level_spend(&state.meter, Level::Organization, &org.organization_id).await?)?;
    let budget: Map<String, Value> =
        ORG_LIMITS.iter().map(|field| ((*field).to_owned(), object[*field].clone())).collect();
    let teams: Vec<TeamRecord> = state
        .registry
        .send(ListEntities::<TeamRecord>::all())
        .await??
        .into_iter()
        .filter(|team| team.organization_id.as_ref() == Some(&org.organization_id))
        .collect();
    object["budget_id"] = json!(org.budget_id);
    object["litellm_budget_table"] = Value::Object(budget);
    object["members"] = json!(org
        .members
        .iter()
        .map(|m| json!({"user_id": m.user_id, "user_role": m.user_role, "spend": 0.0}))
        .collect::<Vec<_>>());
    object["teams"] = json!(teams);
    Ok(object)
}

/// The org object of a change's answer (`None` only after a delete, which answers otherwise).
async fn answer(state: &AppState, org: Option<OrgRecord>) -> Result<HttpResponse, ApiError> {
    let org = org.ok_or_else(|| KeyError::from(OrgError::OrgNotFound("(deleted)".into())))?;
    Ok(HttpResponse::Ok().json(org_object(state, &org).await?))
}

async fn change_org(
    state: &AppState,
    id: &str,
    action: &'static str,
    change: impl FnOnce(&mut OrgRecord) -> Result<(), OrgError> + Send + 'static,
) -> Result<Option<OrgRecord>, ApiError> {
    let missing = id.to_owned();
    edit::<OrgRecord>(
        state,
        id,
        action,
        Box::new(move |current| {
            let mut org = current.ok_or(OrgError::OrgNotFound(missing))?;
            change(&mut org)?;
            org.updated_at = now();
            Ok(Some(org))
        }),
    )
    .await
}

/// A budget tier an organization links to must exist (404 naming it otherwise, as `/key/generate`).
async fn check_budget(state: &AppState, budget_id: &Option<Option<String>>) -> Result<(), ApiError> {
    if let Some(Some(id)) = budget_id {
        state.registry.send(crate::keys::GetBudgets(Some(vec![id.clone()]))).await??;
    }
    Ok(())
}

pub async fn new(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/organization/new").await?;
    let (request, limits): (OrgRequest, _) = level_body_with_limits(&req, payload, &[]).await?;
    check_budget(&state, &request.budget_id).await?;
    let alias = required(request.organization_alias, "organization_alias")?;
    let id = request.organization_id.unwrap_or_else(new_id);
    let org = OrgRecord {
        organization_id: id.clone(),
        organization_alias: alias,
        models: request.models.unwrap_or_default(),
        metadata: request.metadata.unwrap_or_default(),
        members: Vec::new(),
        limits: new_limits(limits),
        budget_id: request.budget_id.flatten(),
        created_at: now(),
        updated_at: now(),
    };
    let created = edit::<OrgRecord>(
        &state,
        &id,
        "organization_new",
        Box::new(move |current| match current {
            Some(_) => Err(OrgError::OrgExists(org.organization_id)),
            None => Ok(Some(org)),
        }),
    )
    .await?;
    answer(&state, created).await
}

pub async fn update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/organization/update").await?;
    let (request, limits): (OrgRequest, _) = level_body_with_limits(&req, payload, &[]).await?;
    check_budget(&state, &request.budget_id).await?;
    let id = required(request.organization_id, "organization_id")?;
    let org = change_org(&state, &id, "organization_update", move |org| {
        org.organization_alias = request.organization_alias.unwrap_or(std::mem::take(&mut org.organization_alias));
        org.models = request.models.unwrap_or(std::mem::take(&mut org.models));
        org.metadata = request.metadata.unwrap_or(std::mem::take(&mut org.metadata));
        org.limits.apply(limits);
        if let Some(budget_id) = request.budget_id {
            org.budget_id = budget_id;
        }
        Ok(())
    })
    .await?;
    answer(&state, org).await
}

/// `DELETE /organization/delete`: the organizations, their teams, and the keys of both go.
pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/organization/delete").await?;
    let OrgIds { organization_ids } = level_body(&req, payload).await?;
    let organization_ids = distinct_ids(organization_ids, "organization_ids")?;
    let mut deleted = Vec::new();
    for id in &organization_ids {
        check_id("organization_id", id).map_err(KeyError::from)?;
        match state.registry.send(GetEntity::<OrgRecord>::new(id.as_str())).await?? {
            Some(org) => deleted.push(org_object(&state, &org).await?),
            None => return Err(KeyError::from(OrgError::OrgNotFound(id.clone())).into()),
        }
    }
    delete_each::<OrgRecord>(&state, &organization_ids, "organization_delete", OrgError::OrgNotFound).await?;
    Ok(HttpResponse::Ok().json(deleted))
}

pub async fn info(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let principal = roles::authorise_admin(&req, &state).await?;
    let query: OrgQuery = super::body::query(&req)?;
    let id = required(query.organization_id, "organization_id")?;
    org_admin(&state, principal, "/organization/info", &[id.as_str()]).await?;
    check_id("organization_id", &id).map_err(KeyError::from)?;
    let org = state.registry.send(GetEntity::<OrgRecord>::new(id.as_str())).await??;
    let org = org.ok_or_else(|| KeyError::from(OrgError::OrgNotFound(id.clone())))?;
    Ok(HttpResponse::Ok().json(org_object(&state, &org).await?))
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/organization/list").await?;
    let query: OrgQuery = super::body::query(&req)?;
    let mut objects = Vec::new();
    for org in state.registry.send(ListEntities::<OrgRecord>::all()).await?? {
        if query.org_id.as_ref().is_some_and(|id| *id != org.organization_id)
            || query.org_alias.as_ref().is_some_and(|alias| *alias != org.organization_alias)
        {
            continue;
        }
        objects.push(org_object(&state, &org).await?);
    }
    Ok(HttpResponse::Ok().json(objects))
}

pub async fn member_add(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = roles::authorise_admin(&req, &state).await?;
    let request: MemberRequest = level_body(&req, payload).await?;
    let id = required(request.organization_id, "organization_id")?;
    org_admin(&state, principal, "/organization/member_add", &[id.as_str()]).await?;
    let added = match request.member.ok_or(RequestError::MissingField("member"))? {
        Members::One(member) => vec![member],
        Members::Many(members) => members,
    };
    let mut members = Vec::with_capacity(added.len());
    for member in added {
        let user_id = member.user_id.ok_or(KeyError::from(OrgError::MemberUnnamed))?;
        check_id("user_id", &user_id).map_err(KeyError::from)?;
        members.push(OrgMember { user_id, user_role: member.role });
    }
    check_count("member", members.len(), MAX_MEMBERS).map_err(KeyError::from)?;
    let shown = members.clone();
    change_org(&state, &id, "organization_member_add", move |org| {
        for member in members {
            org.members.retain(|m| m.user_id != member.user_id);
            org.members.push(member);
        }
        check_count("member", org.members.len(), MAX_MEMBERS)
    })
    .await?;
    let memberships: Vec<Value> =
        shown.iter().map(|m| json!({"user_id": m.user_id, "organization_id": id, "user_role": m.user_role})).collect();
    Ok(HttpResponse::Ok().json(json!({
        "organization_id": id,
        "updated_users": shown.iter().map(|m| json!({"user_id": m.user_id})).collect::<Vec<_>>(),
        "updated_organization_memberships": memberships,
    })))
}

pub async fn member_update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    member_change(req, payload, state, false).await
}

pub async fn member_delete(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    member_change(req, payload, state, true).await
}

/// Changes a member's role, or removes it; a user not in the organization is a 404.
async fn member_change(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    remove: bool,
) -> Result<HttpResponse, ApiError> {
    let (route, action) = match remove {
        true => ("/organization/member_delete", "organization_member_delete"),
        false => ("/organization/member_update", "organization_member_update"),
    };
    let principal = roles::authorise_admin(&req, &state).await?;
    let request: MemberRequest = level_body(&req, payload).await?;
    let id = required(request.organization_id, "organization_id")?;
    org_admin(&state, principal, route, &[id.as_str()]).await?;
    let user = required(request.user_id.or(request.user_email), "user_id")?;
    let role = request.role;
    let (org_id, user_id) = (id.clone(), user.clone());
    change_org(&state, &id, action, move |org| {
        let at = org.members.iter().position(|m| m.user_id == user_id);
        let at = at.ok_or(OrgError::NotAnOrgMember { org: org_id, user: user_id })?;
        match remove {
            true => drop(org.members.remove(at)),
            false => org.members[at].user_role = role.unwrap_or(org.members[at].user_role),
        }
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "organization_id": id, "user_id": user, "user_role": role })))
}
