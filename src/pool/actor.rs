//! The DeploymentPool actor: owns the routing table and its rotation state; answers picks from memory.

use std::sync::Arc;

use actix::{Actor, Context, Handler, Message};

use super::{Deployment, PoolError, RoutingTable, Tier};

pub struct DeploymentPool {
    table: RoutingTable,
}

impl DeploymentPool {
    pub fn new(table: RoutingTable) -> Self {
        Self { table }
    }
}

impl Actor for DeploymentPool {
    type Context = Context<Self>;
}

/// Pick a deployment of `model` that a key on `tier` may use (`None`: untiered key or master key).
#[derive(Message)]
#[rtype(result = "Result<Arc<Deployment>, PoolError>")]
pub struct PickDeployment {
    pub model: Box<str>,
    pub tier: Option<Tier>,
}

impl Handler<PickDeployment> for DeploymentPool {
    type Result = Result<Arc<Deployment>, PoolError>;

    fn handle(&mut self, msg: PickDeployment, _: &mut Context<Self>) -> Self::Result {
        self.table.pick(&msg.model, msg.tier.as_ref())
    }
}

/// The model names a key on `tier` can reach, sorted.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ListModels {
    pub tier: Option<Tier>,
}

impl Handler<ListModels> for DeploymentPool {
    type Result = Vec<String>;

    fn handle(&mut self, msg: ListModels, _: &mut Context<Self>) -> Self::Result {
        self.table.model_names(msg.tier.as_ref())
    }
}
