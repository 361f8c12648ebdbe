//! A model group: the deployments sharing one `model_name`, their health, and, per key tier, the candidates
//! that tier may reach (precomputed with the tier rule), chosen among by the routing strategy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;

use super::health::{now_ms, Health};
use super::{tier_allows, Deployment, RoutingStrategy, Tier};
use crate::tier::reachable_by_unlisted_tier;

#[derive(Debug)]
pub(super) struct ModelGroup {
    pub(super) deployments: Vec<Arc<Deployment>>,
    pub(super) health: Vec<Arc<Health>>,
    /// How simple-shuffle weighs this group's deployments (LiteLLM: `weight`, else `rpm`, else `tpm`).
    weighting: Weighting,
    /// The tiers this group's deployments are on, sorted (for error messages).
    pub(super) tiers: Vec<Tier>,
    /// Candidates for untiered keys and the master key: every deployment.
    any_tier: Candidates,
    /// Candidates for each tier in `tiers`: that tier's deployments plus untiered ones.
    per_tier: Vec<(Tier, Candidates)>,
    /// Candidates for keys on a tier none of this group's deployments has: untiered deployments only.
    other_tiers: Candidates,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Weighting {
    InTurn,
    Weight,
    Rpm,
    Tpm,
}

#[derive(Debug, Default)]
pub(super) struct Candidates {
    /// Indexes into `ModelGroup::deployments` of deployments that can be called.
    pub(super) usable: Box<[usize]>,
    /// Set when some candidate cannot be called because its `os.environ/VAR` api key is unset.
    pub(super) unset_env: Option<Box<str>>,
    next: AtomicUsize,
}

impl Candidates {
    /// The deployments a key reaches when `reaches(deployment's tier)` holds.
    fn new(deployments: &[Arc<Deployment>], reaches: impl Fn(Option<&Tier>) -> bool) -> Self {
        let mut candidates = Candidates::default();
        let mut usable = Vec::new();
        for (index, deployment) in deployments.iter().enumerate() {
            if !reaches(deployment.tier.as_ref()) {
                continue;
            }
            match deployment.unset_credential() {
                None => usable.push(index),
                Some(var) => candidates.unset_env = Some(var.into()),
            }
        }
        candidates.usable = usable.into_boxed_slice();
        candidates
    }

    pub(super) fn has_candidates(&self) -> bool {
        !self.usable.is_empty() || self.unset_env.is_some()
    }
}

impl ModelGroup {
    /// A group of `deployments`; each keeps the health `kept` has for its id (a reload carries cooldowns and
    /// latency over for deployments that did not change), else starts healthy.
    pub(super) fn new(deployments: Vec<Arc<Deployment>>, kept: &dyn Fn(&str) -> Option<Arc<Health>>) -> Self {
        let mut tiers: Vec<Tier> = deployments.iter().filter_map(|d| d.tier.clone()).collect();
        tiers.sort();
        tiers.dedup();
        let per_tier = tiers
            .iter()
            .map(|tier| (tier.clone(), Candidates::new(&deployments, |of| tier_allows(Some(tier), of))))
            .collect();
        let other_tiers = Candidates::new(&deployments, reachable_by_unlisted_tier);
        let any_tier = Candidates::new(&deployments, |of| tier_allows(None, of));
        let weighting = if deployments.iter().any(|d| d.weight.is_some()) {
            Weighting::Weight
        } else if deployments.iter().any(|d| d.rpm.is_some()) {
            Weighting::Rpm
        } else if deployments.iter().any(|d| d.tpm.is_some()) {
            Weighting::Tpm
        } else {
            Weighting::InTurn
        };
        let health = deployments.iter().map(|d| kept(&d.id).unwrap_or_default()).collect();
        Self { deployments, health, weighting, tiers, any_tier, per_tier, other_tiers }
    }

    pub(super) fn candidates_for(&self, key_tier: Option<&Tier>) -> &Candidates {
        match key_tier {
            None => &self.any_tier,
            Some(tier) => self.per_tier.iter().find(|(t, _)| t == tier).map_or(&self.other_tiers, |(_, r)| r),
        }
    }

    fn weight(&self, index: usize) -> f64 {
        let deployment = &self.deployments[index];
        match self.weighting {
            Weighting::InTurn => 1.0,
            Weighting::Weight => deployment.weight.unwrap_or(0.0),
            Weighting::Rpm => deployment.rpm.unwrap_or(0) as f64,
            Weighting::Tpm => deployment.tpm.unwrap_or(0) as f64,
        }
    }

    /// Chooses among the candidates for which `eligible` holds, by `strategy`.
    pub(super) fn choose(
        &self,
        candidates: &Candidates,
        strategy: RoutingStrategy,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let count = candidates.usable.iter().filter(|&&i| eligible(i)).count();
        if count == 0 {
            return None;
        }
        let turn = candidates.next.fetch_add(1, Ordering::Relaxed);
        let nth = |n: usize| candidates.usable.iter().copied().filter(|&i| eligible(i)).nth(n);
        // Ties (and a first pick among equals) go round the candidates, starting at the next turn.
        let rotated = || (0..count).filter_map(move |k| nth((turn + k) % count));
        match strategy {
            RoutingStrategy::SimpleShuffle if self.weighting == Weighting::InTurn => nth(turn % count),
            RoutingStrategy::SimpleShuffle => {
                let total: f64 = candidates.usable.iter().filter(|&&i| eligible(i)).map(|&i| self.weight(i)).sum();
                // Weights are bounded at load; a non-finite sum would still panic `gen_range`, so go in turn.
                if !(total.is_finite() && total > 0.0) {
                    return nth(turn % count);
                }
                let mut point = rand::thread_rng().gen_range(0.0..total);
                for index in candidates.usable.iter().copied().filter(|&i| eligible(i)) {
                    point -= self.weight(index);
                    if point < 0.0 {
                        return Some(index);
                    }
                }
                nth(count - 1)
            }
            RoutingStrategy::LeastBusy => rotated().min_by_key(|&i| self.health[i].in_flight()),
            // A deployment that failed within the minute ranks after every one that did not, whatever its
            // latency (an untried one has none yet); it is back in the running once the minute is over.
            RoutingStrategy::LatencyBased => {
                let now = now_ms();
                rotated().min_by_key(|&i| (self.health[i].recently_failed(now), self.health[i].latency_us()))
            }
        }
    }
}
