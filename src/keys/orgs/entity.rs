//! The records of users, teams and organizations as the key store keeps them (JSON, in the `entities` tree,
//! keyed `team:<id>`, `user:<id>`, `org:<id>`), and what every kind has in common: an id, metadata (whose
//! `tier` is the level's tier) and a model allowlist.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::OrgError;
use crate::config::LimitSet;
use crate::tier::Tier;

/// The longest id of a user, team or organization; ids are also sent back in query strings and messages.
pub const MAX_ID_BYTES: usize = 128;
/// The most members a team or organization holds, and the most models a level's allowlist names.
pub const MAX_MEMBERS: usize = 1_000;
pub const MAX_MODELS: usize = 256;

/// What a user, team or organization record has in common.
pub trait Entity: Serialize + DeserializeOwned + Clone + Send + 'static {
    /// The prefix of its keys in the `entities` tree.
    const PREFIX: &'static str;
    /// The id field's name (for errors and audit entries).
    const ID_FIELD: &'static str;
    fn id(&self) -> &str;
    fn metadata(&self) -> &Map<String, Value>;
    fn models(&self) -> &[String];

    /// The level's tier: `metadata.tier` (validated as a key's is, before it is stored).
    fn tier(&self) -> Option<Tier> {
        self.metadata().get("tier").and_then(Value::as_str).map(Tier::parse)
    }

    /// Its key in the `entities` tree.
    fn key_of(id: &str) -> Vec<u8> {
        [Self::PREFIX.as_bytes(), id.as_bytes()].concat()
    }
}

/// A member's role in a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamRole {
    Admin,
    User,
}

/// A team member: named by user id and/or email (LiteLLM's `Member`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub user_email: Option<String>,
    pub role: TeamRole,
}

impl Member {
    /// Whether this member is the one named by `user_id` or `user_email`.
    pub fn is(&self, user_id: Option<&str>, user_email: Option<&str>) -> bool {
        (user_id.is_some() && self.user_id.as_deref() == user_id)
            || (user_email.is_some() && self.user_email.as_deref() == user_email)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRecord {
    pub team_id: String,
    #[serde(default)]
    pub team_alias: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub members_with_roles: Vec<Member>,
    /// The team's own limits and budget, shared by all its keys (`max_budget`, `rpm_limit`, …).
    #[serde(flatten)]
    pub limits: LimitSet,
    /// Members' budgets and limits in this team (`max_budget_in_team`, …), by user id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub member_budgets: BTreeMap<String, LimitSet>,
    pub created_at: String,
    pub updated_at: String,
}

impl TeamRecord {
    /// Whether `user_id` is an `admin` of this team.
    pub fn has_admin(&self, user_id: &str) -> bool {
        self.members_with_roles.iter().any(|m| m.role == TeamRole::Admin && m.user_id.as_deref() == Some(user_id))
    }
}

impl Entity for TeamRecord {
    const PREFIX: &'static str = "team:";
    const ID_FIELD: &'static str = "team_id";
    fn id(&self) -> &str {
        &self.team_id
    }
    fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }
    fn models(&self) -> &[String] {
        &self.models
    }
}

/// A user's proxy-wide role (LiteLLM's `user_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    ProxyAdmin,
    ProxyAdminViewer,
    InternalUser,
    InternalUserViewer,
}

impl UserRole {
    /// The role as LiteLLM names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProxyAdmin => "proxy_admin",
            Self::ProxyAdminViewer => "proxy_admin_viewer",
            Self::InternalUser => "internal_user",
            Self::InternalUserViewer => "internal_user_viewer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub user_id: String,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default)]
    pub user_role: Option<UserRole>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// The user's own limits and budget, across its personal keys.
    #[serde(flatten)]
    pub limits: LimitSet,
    pub created_at: String,
    pub updated_at: String,
}

impl Entity for UserRecord {
    const PREFIX: &'static str = "user:";
    const ID_FIELD: &'static str = "user_id";
    fn id(&self) -> &str {
        &self.user_id
    }
    fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }
    fn models(&self) -> &[String] {
        &self.models
    }
}

/// A member's role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgRole {
    OrgAdmin,
    InternalUser,
    InternalUserViewer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgMember {
    pub user_id: String,
    pub user_role: OrgRole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub organization_id: String,
    pub organization_alias: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub members: Vec<OrgMember>,
    /// The organization's own limits and budget, across its teams' keys and its own.
    #[serde(flatten)]
    pub limits: LimitSet,
    /// A `/budget/new` tier whose limits fill the ones `limits` leaves unset (LiteLLM's org `budget_id`).
    #[serde(default)]
    pub budget_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Entity for OrgRecord {
    const PREFIX: &'static str = "org:";
    const ID_FIELD: &'static str = "organization_id";
    fn id(&self) -> &str {
        &self.organization_id
    }
    fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }
    fn models(&self) -> &[String] {
        &self.models
    }
}

/// Refuses an id that is empty, longer than [`MAX_ID_BYTES`] or holds other than letters, digits and
/// `- _ . @ : +` (ids travel in query strings, logs and messages unescaped).
pub fn check_id(field: &'static str, id: &str) -> Result<(), OrgError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.@:+".contains(c);
    match !id.is_empty() && id.len() <= MAX_ID_BYTES && id.chars().all(allowed) {
        true => Ok(()),
        false => Err(OrgError::InvalidId { field }),
    }
}

/// Refuses more than `max` entries in `field`.
pub fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), OrgError> {
    match count <= max {
        true => Ok(()),
        false => Err(OrgError::TooMany { field, max }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_charset_checked() {
        for good in ["t1", "team-a_b.c", "ana@example.com", "org:1+x"] {
            assert!(check_id("team_id", good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_ID_BYTES + 1);
        for bad in ["", "a b", "a/b", "a\nb", "é", long.as_str(), "x?y=1"] {
            assert!(check_id("team_id", bad).is_err(), "{bad}");
        }
        assert!(check_id("team_id", &"a".repeat(MAX_ID_BYTES)).is_ok());
    }
}
