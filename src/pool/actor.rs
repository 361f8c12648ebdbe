//! The DeploymentPool actor: one runs in each HTTP worker, over the routing table all workers share. It no
//! longer stands between a request and its pick: the router picks from the request's table and records each
//! attempt's outcome in the deployment's health itself (atomics), with no message per request. The actor
//! reports every deployment's state (`/health`, `/metrics`) and announces the cooldowns this replica starts.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Context, Handler, Message};

use super::{Deployment, DeploymentState, LiveTable, SharedCooldowns};

pub struct DeploymentPool {
    table: Arc<LiveTable>,
    /// With replicas: where the cooldowns this replica starts are announced to the others.
    cooldowns: Option<SharedCooldowns>,
}

impl DeploymentPool {
    pub fn new(table: Arc<LiveTable>, cooldowns: Option<SharedCooldowns>) -> Self {
        Self { table, cooldowns }
    }
}

impl Actor for DeploymentPool {
    type Context = Context<Self>;
}

/// A deployment's cooldown started on this replica (the worker recorded the failure that started it): with
/// replicas, announce it to the others. Rare (a cooldown's start), so a message is cheap here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CooldownStarted {
    pub deployment: Arc<Deployment>,
    pub left: Duration,
}

impl Handler<CooldownStarted> for DeploymentPool {
    type Result = ();

    fn handle(&mut self, msg: CooldownStarted, _: &mut Context<Self>) {
        if let Some(cooldowns) = &self.cooldowns {
            cooldowns.announce(&msg.deployment.id, msg.left);
        }
    }
}

/// Every deployment and its current state, for `GET /health`.
#[derive(Message)]
#[rtype(result = "Vec<(Arc<Deployment>, DeploymentState)>")]
pub struct DeploymentStates;

impl Handler<DeploymentStates> for DeploymentPool {
    type Result = Vec<(Arc<Deployment>, DeploymentState)>;

    fn handle(&mut self, _: DeploymentStates, _: &mut Context<Self>) -> Self::Result {
        self.table.load().states()
    }
}
