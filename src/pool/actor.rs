//! The DeploymentPool actor: answers picks from the routing table, from memory. One runs in each HTTP worker
//! (on the worker's thread, so a pick costs no cross-thread hop), over the table all workers share.

use std::sync::Arc;

use actix::{Actor, Context, Handler, Message};

use super::{Deployment, PoolError, RoutingTable, Tier};

pub struct DeploymentPool {
    table: Arc<RoutingTable>,
}

impl DeploymentPool {
    pub fn new(table: Arc<RoutingTable>) -> Self {
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
