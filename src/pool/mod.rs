//! Deployments at run time: model groups and their per-tier candidates, deployment health, the routing table
//! (a shared snapshot each worker picks from, its health counters atomics), the DeploymentPool actor that
//! reports deployment states and announces cooldowns to other replicas, and the router that runs a
//! request's attempts, retries and fallbacks.

mod actor;
mod group;
mod health;
mod retry;
mod router;
mod routing;
mod shared_cooldowns;

pub use actor::{CooldownStarted, DeploymentPool, DeploymentStates};
pub use health::{now_ms, DeploymentState, Health, InFlight, Outcome};
pub use router::{route, RouteScope, Router, RouterError};
pub use routing::{Listing, Picked, Resolved, RoutingTable, Tried};
pub use shared_cooldowns::SharedCooldowns;

/// The routing table in force: replaced whole by a config reload. A request loads it once and keeps that
/// table (its deployments, health handles and policy) for all its attempts.
pub type LiveTable = arc_swap::ArcSwap<RoutingTable>;

use crate::config::{Deployment, RoutingPolicy, RoutingStrategy};
use crate::tier::{tier_allows, Tier};

/// Why no deployment could be picked.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("unknown model `{model}`")]
    UnknownModel { model: String, available: Vec<String> },
    #[error("model `{model}` has no deployment on tier `{tier}`")]
    NoDeploymentOnTier { model: String, tier: Tier, tiers: Vec<Tier> },
    #[error("model `{model}`: upstream api key variable {var} is unset")]
    CredentialUnset { model: String, var: String },
    #[error("model `{model}` has no deployment on your tier that serves {endpoint}")]
    EndpointUnsupported { model: String, endpoint: crate::endpoint::Endpoint, providers: Vec<&'static str> },
    #[error("every deployment of `{model}` on your tier is cooling down after failures")]
    AllCoolingDown { model: String, retry_in: std::time::Duration },
}
