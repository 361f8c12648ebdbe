//! Users, teams and organizations (LiteLLM's `/user/*`, `/team/*`, `/organization/*`): records in the key
//! store's `entities` tree, changed through the KeyRegistry in the same transactions as the keys they own,
//! audited, replicated and exported with them. A key's grant carries what its owners decide (effective tier,
//! blocked team, inherited models), derived again whenever an owner changes, so authorising reads nothing more.
//! Their limits and budgets are levels the meter admits a key's requests on (see `derive.rs`).

mod delete;
mod derive;
mod edit;
mod entity;
mod index;
mod keys;
mod read;

pub use delete::DeleteAll;
pub(in crate::keys) use derive::is_mark;
pub use derive::member_level_id;
pub use edit::{check_members, Apply, Edit, Falls};
pub use entity::{
    check_count, check_id, Entity, Member, OrgMember, OrgRecord, OrgRole, TeamRecord, TeamRole, UserRecord, UserRole,
    MAX_MEMBERS,
};
pub(in crate::keys) use index::OwnerIndex;
pub use read::{AdminTeams, CallerRole, GetEntity, ListEntities, OwnedKeys, UserAuthority};

/// Why a user, team or organization change (or a key's owner) was refused. Display texts are what clients
/// read; LiteLLM's wording where clients may match on it.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("`{field}` must be 1 to 128 characters: letters, digits and - _ . @ : +")]
    InvalidId { field: &'static str },
    #[error("`{field}` may hold at most {max} entries.")]
    TooMany { field: &'static str, max: usize },
    #[error("Team id = {0} already exists. Please use a different team id.")]
    TeamExists(String),
    #[error("User with id {0} already exists")]
    UserExists(String),
    #[error("Another user already has user_email {0}; use a different email, or update that user.")]
    EmailTaken(String),
    #[error("Organization id = {0} already exists. Please use a different organization id.")]
    OrgExists(String),
    #[error("Team not found, passed team_id={0}")]
    TeamNotFound(String),
    #[error("Team not found for team_id={0}. Create it with POST /team/new, or list teams with GET /team/list.")]
    UnknownTeam(String),
    #[error("User not found, passed user_id={0}")]
    UserNotFound(String),
    #[error("Organization not found for organization_id={0}")]
    OrgNotFound(String),
    #[error("Organization not found for organization_id={0}. Create it with POST /organization/new.")]
    UnknownOrg(String),
    #[error("Authentication Error, Team={0} is blocked. Update via `/team/unblock` if you're an admin.")]
    TeamBlocked(String),
    #[error("User is already a member of team {team}: {member}. Change its role with /team/member_update.")]
    MemberExists { team: String, member: String },
    #[error("User not found in team {0}. GET /team/info lists its members.")]
    NotAMember(String),
    #[error("User {user} is not a member of organization {org}.")]
    NotAnOrgMember { org: String, user: String },
    #[error("A member needs a `user_id` or a `user_email`.")]
    MemberUnnamed,
    #[error("Team not allowed to access model. Team={team}, Model={model}. Allowed team models = {}", .allowed.join(", "))]
    OwnerModelNotAllowed { team: String, model: String, allowed: Vec<String> },
    #[error("The key's `metadata.tier` `{key_tier}` contradicts its team {team}'s tier `{team_tier}`: a team key is on its team's tier. Leave `tier` out (the key inherits `{team_tier}`) or use another team.")]
    TierContradicted { team: String, key_tier: String, team_tier: String },
    #[error("Team {team} has {keys} key(s) whose own `metadata.tier` is not `{tier}`; change or delete them first (GET /key/list?team_id={team}), so no key of the team reaches another tier.")]
    TeamKeysDisagree { team: String, tier: String, keys: usize },
    #[error("This change would leave {keys} key(s) that take their tier from it with no tier at all, reaching every tier. Give those keys a tier of their own first (/key/update with metadata.tier), or keep the tier here (`metadata` replaces the whole metadata: send `tier` in it).")]
    TierWouldDrop { keys: usize },
    #[error("The key takes its tier `{tier}` from its team, user or organization; after this change it would have no tier at all, reaching every tier. Send `metadata.tier` with the change: the tier to keep, or null to untier the key on purpose.")]
    InheritedTierDropped { tier: String },
    #[error("Authentication Error, Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route={route}. Your role=internal_user. Your user_id={user}")]
    NotProxyAdmin { route: &'static str, user: String },
    #[error("Call not allowed. User not proxy admin OR team admin. route={route}, team_id={team}")]
    NotTeamAdmin { route: &'static str, team: String },
    #[error("Call not allowed: user {user} is a proxy admin (or viewer), or an admin of a team or organization you do not administer, and a key of theirs acts with their rights. Only the master key makes or regenerates keys for them. route={route}")]
    AdminOfMore { route: &'static str, user: String },
    #[error("Call not allowed: your admin key is on tier `{own}`, so what it makes or changes may name that tier only (or none, to inherit one), not {tier}. Ask an admin with the master key. route={route}")]
    TierBeyondCaller { route: &'static str, tier: String, own: String },
    #[error("Call not allowed: a team admin makes keys for itself or for members of the key's team, and {user} is not one. Add them with /team/member_add (master key) first. route={route}")]
    NotTeamMember { route: &'static str, user: String },
    #[error("Call not allowed: a team admin's key belongs to its team's organization ({team_org}), so it may name that one as `organization_id` or none, not {org}: the key's spend and budget would land on another organization, and its own organization's budget would no longer bind it. Ask an admin with the master key. route={route}")]
    OrgBeyondTeam { route: &'static str, org: String, team_org: String },
    #[error("Call not allowed: a team admin cannot take a key's user away (`user_id: null`): the key would escape its membership's budget and limits in the team. Name a member of the key's team, or ask an admin with the master key. route={route}")]
    UserCleared { route: &'static str },
    #[error("`{field}` must be one of: {allowed}.")]
    InvalidRole { field: &'static str, allowed: &'static str },
    #[error("Call not allowed: your key's user is a {role}, which reads and changes nothing here. route={route}")]
    ReadOnlyRole { role: &'static str, route: String },
    #[error("Call not allowed: only the master key or a proxy_admin may give a user `user_role` {role}.")]
    RoleBeyondCaller { role: &'static str },
}

impl OrgError {
    /// The request field the error is about, for the error body's `param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::InvalidId { field } | Self::TooMany { field, .. } | Self::InvalidRole { field, .. } => Some(field),
            Self::TeamExists(_) | Self::TeamNotFound(_) | Self::UnknownTeam(_) | Self::NotAMember(_) => Some("team_id"),
            Self::EmailTaken(_) => Some("user_email"),
            Self::UserExists(_)
            | Self::UserNotFound(_)
            | Self::MemberExists { .. }
            | Self::NotAnOrgMember { .. }
            | Self::AdminOfMore { .. }
            | Self::NotTeamMember { .. }
            | Self::UserCleared { .. } => Some("user_id"),
            Self::RoleBeyondCaller { .. } => Some("user_role"),
            Self::OrgExists(_) | Self::OrgNotFound(_) | Self::UnknownOrg(_) | Self::OrgBeyondTeam { .. } => {
                Some("organization_id")
            }
            Self::MemberUnnamed => Some("member"),
            Self::OwnerModelNotAllowed { .. } => Some("model"),
            Self::TierContradicted { .. }
            | Self::TeamKeysDisagree { .. }
            | Self::TierWouldDrop { .. }
            | Self::InheritedTierDropped { .. }
            | Self::TierBeyondCaller { .. } => Some("metadata.tier"),
            Self::TeamBlocked(_)
            | Self::NotProxyAdmin { .. }
            | Self::NotTeamAdmin { .. }
            | Self::ReadOnlyRole { .. } => None,
        }
    }
}
