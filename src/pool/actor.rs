//! The DeploymentPool actor: answers picks from the routing table, from memory. One runs in each HTTP worker
//! (on the worker's thread, so a pick costs no cross-thread hop), over the table all workers share.

use std::sync::Arc;

use actix::{Actor, Context, Handler, Message};

use super::{
    now_ms, Deployment, DeploymentState, Health, LiveTable, Outcome, Picked, PoolError, RoutingTable, SharedCooldowns,
    Tier, Tried,
};
use crate::endpoint::Endpoint;
use crate::metrics::Metrics;

pub struct DeploymentPool {
    table: Arc<LiveTable>,
    metrics: Arc<Metrics>,
    /// With replicas: where the cooldowns this replica starts are announced to the others.
    cooldowns: Option<SharedCooldowns>,
}

impl DeploymentPool {
    pub fn new(table: Arc<LiveTable>, metrics: Arc<Metrics>, cooldowns: Option<SharedCooldowns>) -> Self {
        Self { table, metrics, cooldowns }
    }
}

impl Actor for DeploymentPool {
    type Context = Context<Self>;
}

/// Pick a deployment of `model` that a key on `tier` may use (`None`: untiered key or master key), avoiding
/// the slots this request already tried while others remain, and never one that timed out for it.
#[derive(Message)]
#[rtype(result = "Result<Picked, PoolError>")]
pub struct PickDeployment {
    /// The table the request started with (a reload does not move a request to another config).
    pub table: Arc<RoutingTable>,
    /// Shared with the request (and the policy, for fallbacks): naming the model allocates nothing.
    pub model: Arc<str>,
    pub tier: Option<Tier>,
    pub avoid: Tried,
    /// Only deployments whose provider serves this endpoint are picked.
    pub endpoint: Endpoint,
}

impl Handler<PickDeployment> for DeploymentPool {
    type Result = Result<Picked, PoolError>;

    fn handle(&mut self, msg: PickDeployment, _: &mut Context<Self>) -> Self::Result {
        msg.table.pick(&msg.model, msg.tier.as_ref(), msg.avoid, msg.endpoint)
    }
}

/// How an attempt on a picked deployment went (fire-and-forget).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportOutcome {
    pub health: Arc<Health>,
    pub deployment: Arc<Deployment>,
    pub outcome: Outcome,
}

impl Handler<ReportOutcome> for DeploymentPool {
    type Result = ();

    fn handle(&mut self, msg: ReportOutcome, _: &mut Context<Self>) {
        let now = now_ms();
        let cooled_down = msg.health.record(msg.outcome, self.table.load().policy(), now);
        if let (true, Outcome::Failure { status, .. }) = (cooled_down, msg.outcome) {
            self.metrics.cooled_down(&msg.deployment, status);
            if let (Some(cooldowns), Some(left)) = (&self.cooldowns, msg.health.cooldown_left(now)) {
                cooldowns.announce(&msg.deployment.id, left);
            }
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
