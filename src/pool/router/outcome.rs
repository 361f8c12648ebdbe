//! How an attempt went, recorded by the request on its worker: the deployment's health (atomics; a
//! failure also takes the failure window's lock) and the metrics, with no message to the pool actor per
//! request. Only a cooldown an outcome starts goes to the actor, to be announced to the other replicas.

use std::sync::Arc;
use std::time::Duration;

use super::Routing;
use crate::config::Deployment;
use crate::metrics::AttemptEnd;
use crate::pool::{now_ms, CooldownStarted, Health, Outcome, Picked};
use crate::proxy::Tally;

impl<T: Tally> Routing<'_, T> {
    pub(super) fn report(&self, picked: &Picked, outcome: Outcome) {
        self.report_to(&picked.health, &picked.deployment, outcome);
    }

    /// Records how an attempt went in the deployment's health (atomics; a failure also takes the failure
    /// window's lock) and the metrics, here on the worker. Only a cooldown this outcome starts goes to the
    /// pool actor, which announces it to the other replicas: a rare message, not one per request.
    pub(super) fn report_to(&self, health: &Health, deployment: &Arc<Deployment>, outcome: Outcome) {
        let (end, latency) = match outcome {
            Outcome::Success { latency } => (AttemptEnd::Success, latency),
            Outcome::Failure { status, .. } => (AttemptEnd::Failure(status), Duration::ZERO),
        };
        self.router.metrics.attempt(deployment, self.request.model(), end, latency);
        let now = now_ms();
        let cooled_down = health.record(outcome, self.router.policy(), now);
        if let (true, Outcome::Failure { status, .. }) = (cooled_down, outcome) {
            self.router.metrics.cooled_down(deployment, status);
            if let Some(left) = health.cooldown_left(now) {
                self.router.pool.do_send(CooldownStarted { deployment: Arc::clone(deployment), left });
            }
        }
    }
}
