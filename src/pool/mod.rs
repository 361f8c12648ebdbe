//! Deployments and tiers: the routing table and the DeploymentPool actor that picks a tier-matched deployment.

mod actor;
mod deployment;
mod routing;
mod tier;

pub use actor::{DeploymentPool, ListModels, PickDeployment};
pub use deployment::{Deployment, UpstreamCredential};
pub use routing::RoutingTable;
pub use tier::{tier_allows, Tier};

/// Why no deployment could be picked.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("unknown model `{model}`")]
    UnknownModel { model: String, available: Vec<String> },
    #[error("model `{model}` has no deployment on tier `{tier}`")]
    NoDeploymentOnTier { model: String, tier: Tier, tiers: Vec<Tier> },
    #[error("model `{model}`: upstream api key variable {var} is unset")]
    CredentialUnset { model: String, var: String },
}
