//! Team membership endpoints, LiteLLM-compatible: `/team/member_add|member_delete|member_update`, with a
//! member's budget and limits in the team (`max_budget_in_team`, `budget_duration`, `tpm_limit`,
//! `rpm_limit`), a level of its own that the member's keys in the team are admitted on.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::org_endpoints::{level_body, level_body_with_limits, proxy_admin, required};
use super::teams::{answer, change_team, team_row};
use super::AppState;
use crate::config::LimitChanges;
use crate::error::ApiError;
use crate::keys::orgs::{check_id, check_members, member_level_id, Member, OrgError, TeamRecord, TeamRole};
use crate::keys::KeyError;
use crate::meter::Level;

/// LiteLLM names a member's budget in a team `max_budget_in_team`; it is that level's `max_budget`.
const MEMBER_BUDGET: &[(&str, &str)] = &[("max_budget_in_team", "max_budget")];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MemberRequest {
    team_id: Option<String>,
    member: Option<Members>,
    user_id: Option<String>,
    user_email: Option<String>,
    role: Option<TeamRole>,
}

/// One member or a list of them. Not `untagged`: its error ("data did not match any variant") would hide
/// what is wrong with the member (an unknown `role`, a missing field), which this one names.
#[derive(Deserialize)]
#[serde(try_from = "serde_json::Value")]
enum Members {
    One(Member),
    Many(Vec<Member>),
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

/// Refuses a member named by neither id nor email, or with an id out of bounds.
pub(super) fn check_member(member: &Member) -> Result<(), OrgError> {
    if member.user_id.is_none() && member.user_email.is_none() {
        return Err(OrgError::MemberUnnamed);
    }
    member.user_id.as_deref().map_or(Ok(()), |id| check_id("user_id", id))
}

/// Applies `changes` to the budget of member `user_id` in `team`; one left with no limit is dropped.
fn set_member_limits(team: &mut TeamRecord, user_id: &str, changes: LimitChanges) {
    let limits = team.member_budgets.entry(user_id.to_owned()).or_default();
    limits.apply(changes);
    if limits.is_empty() {
        team.member_budgets.remove(user_id);
    }
}

/// The member's budget row as LiteLLM shows it in `team_memberships[].litellm_budget_table`.
pub(super) fn budget_table(team: &TeamRecord, user_id: &str) -> serde_json::Value {
    match team.member_budgets.get(user_id) {
        Some(limits) => json!({
            "max_budget": limits.max_budget, "budget_duration": limits.budget_duration,
            "tpm_limit": limits.tpm_limit, "rpm_limit": limits.rpm_limit,
            "max_parallel_requests": limits.max_parallel_requests, "soft_budget": limits.soft_budget,
        }),
        None => serde_json::Value::Null,
    }
}

/// The team's memberships as LiteLLM shows them (`team_memberships`): each member with a user id (`only`: that
/// one), its spend in the team (its member level's account) and its `litellm_budget_table` (null: none).
pub(super) async fn memberships(
    state: &AppState,
    team: &TeamRecord,
    only: Option<&str>,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let users: Vec<&str> = team
        .members_with_roles
        .iter()
        .filter_map(|m| m.user_id.as_deref())
        .filter(|user| only.is_none_or(|only| only == *user))
        .collect();
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let accounts: Vec<[u8; 32]> =
        users.iter().map(|user| Level::TeamMember.account(&member_level_id(&team.team_id, user))).collect();
    let spends = state.meter.spends_of(&accounts).await.map_err(|err| KeyError::Store(err.into()))?;
    Ok(users
        .iter()
        .zip(spends)
        .map(|(user, spend)| {
            json!({
                "user_id": user, "team_id": team.team_id, "budget_id": null, "spend": spend.dollars,
                "litellm_budget_table": budget_table(team, user),
            })
        })
        .collect())
}

pub async fn member_add(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/team/member_add").await?;
    let (request, limits): (MemberRequest, _) = level_body_with_limits(&req, payload, MEMBER_BUDGET).await?;
    let id = required(request.team_id, "team_id")?;
    let added = match request.member.ok_or(crate::error::RequestError::MissingField("member"))? {
        Members::One(member) => vec![member],
        Members::Many(members) => members,
    };
    check_members(added.len()).and_then(|()| added.iter().try_for_each(check_member)).map_err(KeyError::from)?;
    let shown = added.clone();
    let team = change_team(&state, &id, "team_member_add", move |team| {
        for member in added {
            if team.members_with_roles.iter().any(|m| m.is(member.user_id.as_deref(), member.user_email.as_deref())) {
                let named = member.user_id.or(member.user_email).unwrap_or_default();
                return Err(OrgError::MemberExists { team: team.team_id.clone(), member: named });
            }
            if let Some(user_id) = &member.user_id {
                set_member_limits(team, user_id, limits.clone());
            }
            team.members_with_roles.push(member);
        }
        check_members(team.members_with_roles.len())
    })
    .await?;
    let team = team.ok_or_else(|| KeyError::from(OrgError::TeamNotFound(id.clone())))?;
    let mut body = team_row(&state, &team).await?.0;
    body["updated_users"] = json!(shown);
    let membership = |m: &Member| {
        let budget = m.user_id.as_deref().map(|user| budget_table(&team, user));
        json!({"user_id": m.user_id, "team_id": id, "litellm_budget_table": budget})
    };
    body["updated_team_memberships"] = json!(shown.iter().map(membership).collect::<Vec<_>>());
    Ok(HttpResponse::Ok().json(body))
}

/// Removes a member; its keys in the team are deleted with it (in the same transaction), and its budget.
pub async fn member_delete(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/team/member_delete").await?;
    let request: MemberRequest = level_body(&req, payload).await?;
    let id = required(request.team_id, "team_id")?;
    let (user_id, user_email) = (request.user_id, request.user_email);
    if user_id.is_none() && user_email.is_none() {
        return Err(KeyError::from(OrgError::MemberUnnamed).into());
    }
    let team = change_team(&state, &id, "team_member_delete", move |team| {
        let (gone, kept) = std::mem::take(&mut team.members_with_roles)
            .into_iter()
            .partition::<Vec<_>, _>(|m| m.is(user_id.as_deref(), user_email.as_deref()));
        team.members_with_roles = kept;
        for user in gone.iter().filter_map(|m| m.user_id.as_deref()) {
            team.member_budgets.remove(user);
        }
        match gone.is_empty() {
            false => Ok(()),
            true => Err(OrgError::NotAMember(team.team_id.clone())),
        }
    })
    .await?;
    answer(&state, team).await
}

pub async fn member_update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    proxy_admin(&req, &state, "/team/member_update").await?;
    let (request, limits): (MemberRequest, _) = level_body_with_limits(&req, payload, MEMBER_BUDGET).await?;
    let id = required(request.team_id, "team_id")?;
    let (user_id, user_email, role) = (request.user_id.clone(), request.user_email.clone(), request.role);
    if user_id.is_none() && user_email.is_none() {
        return Err(KeyError::from(OrgError::MemberUnnamed).into());
    }
    let team = change_team(&state, &id, "team_member_update", move |team| {
        let id = team.team_id.clone();
        let member = team.members_with_roles.iter_mut().find(|m| m.is(user_id.as_deref(), user_email.as_deref()));
        let member = member.ok_or(OrgError::NotAMember(id))?;
        member.role = role.unwrap_or(member.role);
        // A member known by email only has no user id to meter under: its limits wait for one.
        if let Some(user) = member.user_id.clone() {
            set_member_limits(team, &user, limits);
        }
        Ok(())
    })
    .await?;
    let team = team.ok_or_else(|| KeyError::from(OrgError::TeamNotFound(id.clone())))?;
    let member =
        team.members_with_roles.iter().find(|m| m.is(request.user_id.as_deref(), request.user_email.as_deref()));
    let limits = member.and_then(|m| m.user_id.as_deref()).and_then(|user| team.member_budgets.get(user));
    let limits = limits.cloned().unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({
        "team_id": id, "user_id": request.user_id, "user_email": request.user_email, "role": request.role,
        "max_budget_in_team": limits.max_budget, "tpm_limit": limits.tpm_limit, "rpm_limit": limits.rpm_limit,
        "budget_duration": limits.budget_duration,
    })))
}
