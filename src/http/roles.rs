//! LiteLLM's proxy-wide `user_role` on the admin routes: a key whose user is a `proxy_admin` acts as the
//! master key there; a `proxy_admin_viewer`'s key reads what the master key reads (GET) and writes nothing;
//! an `internal_user_viewer`'s key writes nothing either. Inference never asks: a role changes what a key may
//! administer, never the tier its requests route on.

use actix_web::http::Method;
use actix_web::HttpRequest;

use super::{auth, AppState};
use crate::error::ApiError;
use crate::keys::orgs::{CallerRole, OrgError, UserRole};
use crate::keys::{KeyError, Principal};

/// The caller of an admin route as its role makes it: the master key for a proxy admin (and a proxy admin
/// viewer reading); a viewer's write is refused (403).
pub(super) async fn authorise_admin(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    let principal = auth::authorise(req, state).await?;
    let Principal::Virtual(key) = &principal else { return Ok(principal) };
    let role = state.registry.send(CallerRole(key.hash)).await??;
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    match role {
        Some(UserRole::ProxyAdmin) => Ok(Principal::Master),
        Some(UserRole::ProxyAdminViewer) if reads => Ok(Principal::Master),
        Some(role @ (UserRole::ProxyAdminViewer | UserRole::InternalUserViewer)) if !reads => {
            Err(KeyError::from(OrgError::ReadOnlyRole { role: role.as_str(), route: req.path().to_owned() }).into())
        }
        Some(UserRole::ProxyAdminViewer | UserRole::InternalUser | UserRole::InternalUserViewer) | None => {
            Ok(principal)
        }
    }
}

/// Only the master key (or a proxy admin's key, which acts as it) may give a user an admin role: another
/// caller (an org admin making users) would otherwise make a key that administers everything.
pub(super) fn may_grant(principal: &Principal, role: Option<UserRole>) -> Result<(), ApiError> {
    match (principal, role) {
        (Principal::Virtual(_), Some(role @ (UserRole::ProxyAdmin | UserRole::ProxyAdminViewer))) => {
            Err(KeyError::from(OrgError::RoleBeyondCaller { role: role.as_str() }).into())
        }
        _ => Ok(()),
    }
}
