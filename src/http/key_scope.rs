//! Which keys a caller may manage through `/key/*`: the master key any; a virtual key whose user is an
//! `admin` of teams, the keys of those teams only (LiteLLM's team admins). Any other virtual key is refused
//! as before (403: the endpoint needs the master key).

use actix_web::HttpRequest;

use super::{auth, AppState};
use crate::error::ApiError;
use crate::keys::orgs::{AdminTeams, OrgError};
use crate::keys::{GetKey, KeyError, KeyRef, Principal};

pub(super) enum Scope {
    All,
    /// A team admin: its user, and the teams it administers (never empty).
    Teams {
        user_id: Option<String>,
        teams: Vec<String>,
    },
}

/// The caller's scope; a virtual key that administers no team is refused.
pub(super) async fn scope(req: &HttpRequest, state: &AppState) -> Result<Scope, ApiError> {
    let key = match auth::authorise(req, state).await? {
        Principal::Master => return Ok(Scope::All),
        Principal::Virtual(key) => key,
    };
    let caller = state.registry.send(AdminTeams(key.hash)).await??.unwrap_or_default();
    match caller.admin_of.is_empty() {
        true => Err(KeyError::AdminOnly.into()),
        false => Ok(Scope::Teams { user_id: caller.user_id, teams: caller.admin_of }),
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

    /// The teams a team admin may see; `None`: every key.
    pub(super) fn teams(&self) -> Option<Vec<String>> {
        match self {
            Self::All => None,
            Self::Teams { teams, .. } => Some(teams.clone()),
        }
    }

    pub(super) fn user_id(&self) -> Option<&String> {
        match self {
            Self::All => None,
            Self::Teams { user_id, .. } => user_id.as_ref(),
        }
    }
}
