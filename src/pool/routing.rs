//! The routing table: model groups and, per key tier, the deployments that tier may reach.
//!
//! Built once from the validated config and shared by every worker, which picks from it. Candidate lists are
//! precomputed per tier, so every pick (first try, retry or fallback) chooses only among deployments the tier
//! rule allows. A pick skips deployments cooling down, prefers ones the request has not tried, applies the
//! routing strategy, and allocates nothing. Rotation counters and health are shared across workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::group::ModelGroup;
use super::health::{now_ms, Health, InFlight};
use super::{Deployment, DeploymentState, PoolError, RoutingPolicy, Tier};
use crate::config::{is_pattern, pattern_precedence, Price};
use crate::endpoint::Endpoint;
use crate::providers;

/// The slots of a model group a request has tried, as a bitset: `Copy`, so a pick message carries it without
/// allocating. Slots from 64 on are not remembered (a retry may then pick one of them again; groups that
/// large are not expected), but any attempt at all is: a pick after one is a retry. Slots that sent no
/// answer in time are `silent`: never picked again by this request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tried {
    slots: u64,
    silent: u64,
    any: bool,
}

impl Tried {
    pub fn insert(&mut self, slot: usize) {
        self.any = true;
        if slot < 64 {
            self.slots |= 1 << slot;
        }
    }

    pub fn contains(self, slot: usize) -> bool {
        slot < 64 && self.slots & (1 << slot) != 0
    }

    /// Marks `slot` tried and silent: it timed out, so retrying it would most likely cost the caller the
    /// whole timeout again. The request goes on to another candidate or to the fallbacks instead.
    pub fn insert_silent(&mut self, slot: usize) {
        self.insert(slot);
        if slot < 64 {
            self.silent |= 1 << slot;
        }
    }

    fn is_silent(self, slot: usize) -> bool {
        slot < 64 && self.silent & (1 << slot) != 0
    }

    /// No attempt yet: the next pick is a first one.
    pub fn is_empty(self) -> bool {
        !self.any
    }

    #[cfg(test)]
    fn of(slots: &[usize]) -> Self {
        let mut tried = Self::default();
        slots.iter().for_each(|&slot| tried.insert(slot));
        tried
    }
}

/// Deployments grouped by `model_name`, with their shared health and rotation state.
#[derive(Debug)]
pub struct RoutingTable {
    /// foldhash, not SipHash: every request looks its model up here twice (resolve, pick); the table's keys
    /// are the config's names, never grown by a client.
    groups: HashMap<Arc<str>, ModelGroup, foldhash::fast::RandomState>,
    /// The wildcard `model_name`s (each also a group), in the order a name is tried against them.
    patterns: Box<[Arc<str>]>,
    policy: Arc<RoutingPolicy>,
}

/// A picked deployment: what to call, which slot of its group it is (to avoid on retry), and its health
/// (to report the outcome to). It counts as in flight until `in_flight` is dropped.
#[derive(Debug)]
pub struct Picked {
    pub deployment: Arc<Deployment>,
    pub slot: usize,
    pub health: Arc<Health>,
    pub in_flight: InFlight,
}

impl RoutingTable {
    /// A table over `deployments`, which every worker's pool shares.
    pub fn new(deployments: &[Arc<Deployment>], policy: Arc<RoutingPolicy>) -> Self {
        Self::succeeding(deployments, policy, None)
    }

    /// A table over `deployments` that takes over `previous`' health (cooldowns, latency, in-flight counts)
    /// for every deployment whose id it still has: a config reload forgets nothing about those.
    pub fn succeeding(
        deployments: &[Arc<Deployment>],
        policy: Arc<RoutingPolicy>,
        previous: Option<&RoutingTable>,
    ) -> Self {
        let mut kept: HashMap<&str, Arc<Health>> = HashMap::new();
        for group in previous.iter().flat_map(|table| table.groups.values()) {
            for (deployment, health) in group.deployments.iter().zip(&group.health) {
                kept.insert(&deployment.id, Arc::clone(health));
            }
        }
        let kept = |id: &str| kept.get(id).cloned();
        let mut by_name: HashMap<Arc<str>, Vec<Arc<Deployment>>> = HashMap::new();
        let mut patterns: Vec<Arc<str>> = Vec::new();
        for deployment in deployments {
            let name = &*deployment.model_name;
            if is_pattern(name) && !patterns.iter().any(|pattern| &**pattern == name) {
                patterns.push(Arc::from(name));
            }
            by_name.entry(Arc::from(name)).or_default().push(Arc::clone(deployment));
        }
        // Stable: config order breaks ties.
        patterns.sort_by_key(|pattern| pattern_precedence(pattern));
        let groups =
            by_name.into_iter().map(|(name, deployments)| (name, ModelGroup::new(deployments, &kept))).collect();
        Self { groups, patterns: patterns.into_boxed_slice(), policy }
    }

    /// The health of the deployment with `id`, if this table has it.
    pub fn health_of(&self, id: &str) -> Option<&Arc<Health>> {
        self.groups.values().find_map(|group| {
            group.deployments.iter().position(|deployment| &*deployment.id == id).map(|at| &group.health[at])
        })
    }

    pub fn policy(&self) -> &RoutingPolicy {
        &self.policy
    }

    /// Picks a deployment of `model` that a key on `key_tier` may use, skipping deployments cooling down and,
    /// while others remain, the slots in `avoid` (already tried by this request). When every candidate is
    /// cooling down, a first pick (`avoid` empty) takes the one whose cooldown ends first; a retry gets
    /// `AllCoolingDown`. A slot `avoid` marks silent is never picked: a retry with only those left gets
    /// `AllCoolingDown` too.
    ///
    /// Never returns a deployment of another tier: candidates come only from routes built with [`tier_allows`].
    pub fn pick(
        &self,
        model: &str,
        key_tier: Option<&Tier>,
        avoid: Tried,
        endpoint: Endpoint,
    ) -> Result<Picked, PoolError> {
        let Some(group) = self.groups.get(model) else {
            return Err(PoolError::UnknownModel { model: model.into(), available: self.model_names(key_tier) });
        };
        let route = group.candidates_for(key_tier);
        if route.usable.is_empty() {
            return Err(match (&route.unset_env, key_tier) {
                (Some(var), _) => PoolError::CredentialUnset { model: model.into(), var: var.to_string() },
                (None, Some(tier)) => PoolError::NoDeploymentOnTier {
                    model: model.into(),
                    tier: tier.clone(),
                    tiers: group.tiers.clone(),
                },
                (None, None) => PoolError::UnknownModel { model: model.into(), available: Vec::new() },
            });
        }
        // Chat completions and messages are served by every provider (translated where needed).
        let every_provider = matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Messages);
        let serves = |i: usize| every_provider || providers::serves(&group.deployments[i], endpoint);
        if !route.usable.iter().any(|&i| serves(i)) {
            let mut providers: Vec<&'static str> =
                route.usable.iter().map(|&i| group.deployments[i].provider).collect();
            providers.sort_unstable();
            providers.dedup();
            return Err(PoolError::EndpointUnsupported { model: model.into(), endpoint, providers });
        }
        let now = now_ms();
        let healthy = |i: usize| !group.health[i].is_cooling(now) && serves(i);
        let strategy = self.policy.strategy;
        // Cooldowns move load between deployments; they never black out a tier. A first attempt that finds
        // every candidate cooling still goes to the one whose cooldown ends first (Envoy's panic threshold),
        // so the client gets the upstream's real answer. Retries do not: they would hammer a deployment
        // that asked for quiet, and the failure they follow already stands as the answer.
        let slot = group
            .choose(route, strategy, |i| healthy(i) && !avoid.contains(i))
            .or_else(|| group.choose(route, strategy, |i| healthy(i) && !avoid.is_silent(i)))
            .or_else(|| {
                let soonest = |&&i: &&usize| group.health[i].cooldown_left(now).unwrap_or(Duration::ZERO);
                let serving = route.usable.iter().filter(|&&i| serves(i));
                avoid.is_empty().then(|| serving.min_by_key(soonest).copied()).flatten()
            })
            .ok_or_else(|| {
                // Only slots this request may still pick: a silent one is never picked again.
                let pickable = route.usable.iter().filter(|&&i| !avoid.is_silent(i));
                let retry_in = pickable.filter_map(|&i| group.health[i].cooldown_left(now)).min();
                PoolError::AllCoolingDown { model: model.into(), retry_in: retry_in.unwrap_or(Duration::ZERO) }
            })?;
        let health = Arc::clone(&group.health[slot]);
        Ok(Picked { deployment: Arc::clone(&group.deployments[slot]), slot, in_flight: health.start(), health })
    }

    /// Whether model group `model` has a deployment a key on `key_tier` may reach.
    pub fn reaches(&self, model: &str, key_tier: Option<&Tier>) -> bool {
        self.groups.get(model).is_some_and(|group| group.candidates_for(key_tier).has_candidates())
    }

    /// Whether the config has a model group named `model`.
    pub fn knows(&self, model: &str) -> bool {
        self.groups.contains_key(model)
    }

    /// The model names a key on `key_tier` can reach, sorted.
    pub fn model_names(&self, key_tier: Option<&Tier>) -> Vec<String> {
        let mut names: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, group)| group.candidates_for(key_tier).has_candidates())
            .map(|(name, _)| name.to_string())
            .collect();
        names.sort();
        names
    }

    /// The highest prompt-token (input or cache write) and output prices among the deployments a key on
    /// `key_tier` may reach for `model` and its fallbacks, as `input` and `output`: what admission reserves a
    /// request's worst-case cost at. `None` when none is priced. A wildcard group's deployments are priced as
    /// the concrete model `wildcard_name` (when the request has one).
    pub fn worst_price(&self, model: &str, wildcard_name: Option<&str>, key_tier: Option<&Tier>) -> Option<Price> {
        let policy = &self.policy;
        let fallbacks = [policy.fallbacks.get(model), policy.context_window_fallbacks.get(model)];
        let names = std::iter::once(model).chain(fallbacks.into_iter().flatten().flatten().map(|name| &**name));
        let mut worst: Option<Price> = None;
        for (index, group) in names.enumerate().filter_map(|(index, name)| Some((index, self.groups.get(name)?))) {
            let candidates = group.candidates_for(key_tier);
            // The name fills the requested group's `*`s only; a fallback group is priced as configured.
            let name = wildcard_name.filter(|_| index == 0);
            for price in candidates.usable.iter().filter_map(|&at| group.deployments[at].price_for(name)) {
                // A prompt token costs at most its cache-write price (above the input price).
                let input = price.input.max(price.cache_write).max(price.cache_write_1h);
                let highest = worst.get_or_insert(price);
                highest.input = highest.input.max(input);
                highest.output = highest.output.max(price.output);
                highest.media = highest.media.max(price.media);
            }
        }
        worst
    }

    /// Whether model group `model` has a tiered deployment.
    pub fn is_tiered_group(&self, model: &str) -> bool {
        self.groups.get(model).is_some_and(|group| group.deployments.iter().any(|deployment| deployment.tier.is_some()))
    }

    /// Every deployment with its current state, by model name then config order (for `GET /health`).
    pub fn states(&self) -> Vec<(Arc<Deployment>, DeploymentState)> {
        let now = now_ms();
        let mut names: Vec<&Arc<str>> = self.groups.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|name| {
                let group = &self.groups[name];
                group.deployments.iter().zip(&group.health).map(move |(d, h)| (Arc::clone(d), h.state(now)))
            })
            .collect()
    }
}

#[path = "routing/names.rs"]
mod names;
#[cfg(test)]
#[path = "routing/tests.rs"]
mod tests;

pub use names::{Listing, Resolved};
