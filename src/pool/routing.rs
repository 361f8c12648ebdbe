//! The routing table: model groups and, per key tier, the deployments that tier may reach.
//!
//! Built once from the validated config and shared by every worker's DeploymentPool. Candidate lists are
//! precomputed per tier, so every pick (first try, retry or fallback) chooses only among deployments the tier
//! rule allows. A pick skips deployments cooling down, prefers ones the request has not tried, applies the
//! routing strategy, and allocates nothing. Rotation counters and health are shared across workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::group::ModelGroup;
use super::health::{now_ms, Health, InFlight};
use super::{Deployment, DeploymentState, PoolError, RoutingPolicy, Tier};
use crate::endpoint::Endpoint;
use crate::providers;

/// The slots of a model group a request has tried, as a bitset: `Copy`, so a pick message carries it without
/// allocating. Slots from 64 on are not remembered (a retry may then pick one of them again; groups that
/// large are not expected), but any attempt at all is: a pick after one is a retry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tried {
    slots: u64,
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
    groups: HashMap<Box<str>, ModelGroup>,
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
        let mut by_name: HashMap<Box<str>, Vec<Arc<Deployment>>> = HashMap::new();
        for deployment in deployments {
            by_name.entry(deployment.model_name.clone()).or_default().push(Arc::clone(deployment));
        }
        let groups = by_name.into_iter().map(|(name, deployments)| (name, ModelGroup::new(deployments))).collect();
        Self { groups, policy }
    }

    pub fn policy(&self) -> &RoutingPolicy {
        &self.policy
    }

    /// Picks a deployment of `model` that a key on `key_tier` may use, skipping deployments cooling down and,
    /// while others remain, the slots in `avoid` (already tried by this request). When every candidate is
    /// cooling down, a first pick (`avoid` empty) takes the one whose cooldown ends first; a retry gets
    /// `AllCoolingDown`.
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
            .or_else(|| group.choose(route, strategy, healthy))
            .or_else(|| {
                let soonest = |&&i: &&usize| group.health[i].cooldown_left(now).unwrap_or(Duration::ZERO);
                let serving = route.usable.iter().filter(|&&i| serves(i));
                avoid.is_empty().then(|| serving.min_by_key(soonest).copied()).flatten()
            })
            .ok_or_else(|| {
                let retry_in = route.usable.iter().filter_map(|&i| group.health[i].cooldown_left(now)).min();
                PoolError::AllCoolingDown { model: model.into(), retry_in: retry_in.unwrap_or(Duration::ZERO) }
            })?;
        let health = Arc::clone(&group.health[slot]);
        Ok(Picked { deployment: Arc::clone(&group.deployments[slot]), slot, in_flight: health.start(), health })
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

    /// Every deployment with its current state, by model name then config order (for `GET /health`).
    pub fn states(&self) -> Vec<(Arc<Deployment>, DeploymentState)> {
        let now = now_ms();
        let mut names: Vec<&Box<str>> = self.groups.keys().collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::config::RoutingStrategy;

    fn table(yaml: &str) -> RoutingTable {
        let env = |var: &str| (var == "SET_KEY").then(|| "k".to_owned());
        let deployments: Vec<_> =
            config::parse(yaml, &env).unwrap().settings.deployments.into_iter().map(Arc::new).collect();
        RoutingTable::new(&deployments, Arc::new(RoutingPolicy::default()))
    }

    fn entry(name: &str, model: &str, tier: Option<&str>, key: &str) -> String {
        let tier = tier.map(|t| format!("\n    model_info: {{tier: {t}}}")).unwrap_or_default();
        format!("  - model_name: {name}\n    litellm_params: {{model: openai/{model}, api_key: {key}, api_base: http://x/}}{tier}\n")
    }

    fn config(entries: &[String]) -> String {
        format!("model_list:\n{}general_settings: {{master_key: sk-m}}\n", entries.concat())
    }

    #[test]
    fn tiered_keys_only_reach_their_tier_and_untiered_deployments() {
        let table = table(&config(&[
            entry("gpt-4", "free-a", Some("free"), "k"),
            entry("gpt-4", "paid-a", Some("paid"), "k"),
            entry("gpt-4", "shared", None, "k"),
        ]));
        for _ in 0..10 {
            let free =
                table.pick("gpt-4", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap().deployment;
            assert!(matches!(&*free.upstream_model, "free-a" | "shared"));
            let paid =
                table.pick("gpt-4", Some(&Tier::Paid), Tried::default(), Endpoint::ChatCompletions).unwrap().deployment;
            assert!(matches!(&*paid.upstream_model, "paid-a" | "shared"));
            let gold = table
                .pick("gpt-4", Some(&Tier::parse("gold")), Tried::default(), Endpoint::ChatCompletions)
                .unwrap()
                .deployment;
            assert_eq!(&*gold.upstream_model, "shared");
        }
    }

    #[test]
    fn picks_rotate_among_candidates() {
        let table = table(&config(&[entry("m", "a", Some("free"), "k"), entry("m", "b", Some("free"), "k")]));
        let picks: Vec<_> = (0..4)
            .map(|_| {
                table
                    .pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions)
                    .unwrap()
                    .deployment
                    .upstream_model
                    .clone()
            })
            .collect();
        assert_eq!(picks.iter().filter(|m| &***m == "a").count(), 2);
        assert_ne!(picks[0], picks[1]);
    }

    #[test]
    fn no_deployment_on_tier_names_model_and_tiers() {
        let table = table(&config(&[entry("gpt-4", "p", Some("paid"), "k"), entry("other", "o", Some("free"), "k")]));
        match table.pick("gpt-4", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).map(|p| p.deployment)
        {
            Err(PoolError::NoDeploymentOnTier { model, tier, tiers }) => {
                assert_eq!((model.as_str(), tier, tiers), ("gpt-4", Tier::Free, vec![Tier::Paid]));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(table.model_names(Some(&Tier::Free)), vec!["other"]);
        assert_eq!(table.model_names(None), vec!["gpt-4", "other"]);
    }

    #[test]
    fn unknown_model_lists_what_the_tier_can_reach() {
        let table = table(&config(&[entry("gpt-4", "p", Some("paid"), "k"), entry("mini", "o", Some("free"), "k")]));
        match table.pick("nope", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).map(|p| p.deployment) {
            Err(PoolError::UnknownModel { available, .. }) => assert_eq!(available, vec!["mini"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn policy_table(entries: &[String], policy: RoutingPolicy) -> RoutingTable {
        let env = |_: &str| None;
        let settings = config::parse(&config(entries), &env).unwrap().settings;
        let deployments: Vec<_> = settings.deployments.into_iter().map(Arc::new).collect();
        RoutingTable::new(&deployments, Arc::new(policy))
    }

    fn weighted(name: &str, weight: u32) -> String {
        format!("  - model_name: m\n    litellm_params: {{model: openai/{name}, api_key: k, api_base: http://x/, weight: {weight}}}\n    model_info: {{tier: free}}\n")
    }

    #[test]
    fn an_attempt_beyond_the_64th_slot_still_makes_the_next_pick_a_retry() {
        let mut tried = Tried::default();
        tried.insert(70);
        assert!(!tried.is_empty() && !tried.contains(70) && !tried.contains(6));
    }

    #[test]
    fn retries_avoid_tried_deployments_while_others_remain() {
        let table = table(&config(&[entry("m", "a", Some("free"), "k"), entry("m", "b", Some("free"), "k")]));
        for _ in 0..4 {
            let first = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
            let retry =
                table.pick("m", Some(&Tier::Free), Tried::of(&[first.slot]), Endpoint::ChatCompletions).unwrap();
            assert_ne!(first.slot, retry.slot);
            let again = table
                .pick("m", Some(&Tier::Free), Tried::of(&[first.slot, retry.slot]), Endpoint::ChatCompletions)
                .unwrap();
            assert!(again.slot == first.slot || again.slot == retry.slot, "all tried: pick among them again");
        }
    }

    #[test]
    fn cooling_deployments_are_skipped_but_never_black_out_the_tier() {
        let policy =
            RoutingPolicy { allowed_fails: 1, cooldown_time: Duration::from_secs(30), ..RoutingPolicy::default() };
        let table =
            policy_table(&[entry("m", "a", Some("free"), "k"), entry("m", "b", Some("free"), "k")], policy.clone());
        let first = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
        first.health.record(super::super::Outcome::Failure { asked_pause: None, status: 500 }, &policy, now_ms());
        for _ in 0..4 {
            assert_ne!(
                table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap().slot,
                first.slot
            );
        }
        let other = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
        // The other one cools for longer: the first attempt goes to the one that comes back first.
        let longer = super::super::Outcome::Failure { asked_pause: Some(Duration::from_secs(60)), status: 429 };
        other.health.record(longer, &policy, now_ms());
        for _ in 0..4 {
            assert_eq!(
                table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap().slot,
                first.slot
            );
        }
        match table.pick("m", Some(&Tier::Free), Tried::of(&[first.slot]), Endpoint::ChatCompletions) {
            Err(PoolError::AllCoolingDown { retry_in, .. }) => assert!(retry_in > Duration::from_secs(25)),
            other => panic!("a retry must not hit a cooling deployment: {other:?}"),
        }
    }

    #[test]
    fn weights_shape_simple_shuffle() {
        let table = policy_table(&[weighted("a", 9), weighted("b", 1)], RoutingPolicy::default());
        let a = (0..10_000)
            .filter(|_| {
                &*table
                    .pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions)
                    .unwrap()
                    .deployment
                    .upstream_model
                    == "a"
            })
            .count();
        assert!((8_700..=9_300).contains(&a), "weight 9 of 10 got {a} of 10000");
    }

    #[test]
    fn least_busy_prefers_fewest_in_flight_and_latency_based_the_fastest() {
        let entries = [entry("m", "a", Some("free"), "k"), entry("m", "b", Some("free"), "k")];
        let table =
            policy_table(&entries, RoutingPolicy { strategy: RoutingStrategy::LeastBusy, ..RoutingPolicy::default() });
        let busy = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
        for _ in 0..4 {
            assert_ne!(
                table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap().slot,
                busy.slot
            );
        }
        let table = policy_table(
            &entries,
            RoutingPolicy { strategy: RoutingStrategy::LatencyBased, ..RoutingPolicy::default() },
        );
        let slow = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
        let fast = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
        assert_ne!(slow.slot, fast.slot, "untried deployments are tried first");
        let policy = RoutingPolicy::default();
        slow.health.record(super::super::Outcome::Success { latency: Duration::from_millis(50) }, &policy, 1);
        fast.health.record(super::super::Outcome::Success { latency: Duration::from_millis(5) }, &policy, 1);
        for _ in 0..4 {
            assert_eq!(
                table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap().slot,
                fast.slot
            );
        }
    }

    #[test]
    fn unset_credentials_are_skipped_then_reported() {
        let table = table(&config(&[
            entry("m", "broken", Some("free"), "os.environ/UNSET_KEY"),
            entry("m", "ok", Some("free"), "os.environ/SET_KEY"),
            entry("only-broken", "b", None, "os.environ/UNSET_KEY"),
        ]));
        for _ in 0..4 {
            assert_eq!(
                &*table
                    .pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions)
                    .unwrap()
                    .deployment
                    .upstream_model,
                "ok"
            );
        }
        match table.pick("only-broken", None, Tried::default(), Endpoint::ChatCompletions).map(|p| p.deployment) {
            Err(PoolError::CredentialUnset { var, .. }) => assert_eq!(var, "UNSET_KEY"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn only_deployments_whose_provider_serves_the_endpoint_are_picked() {
        let anthropic = "  - model_name: m\n    litellm_params: {model: anthropic/claude, api_key: k}\n";
        let table = table(&config(&[anthropic.to_owned(), entry("m", "gpt", None, "k")]));
        for _ in 0..4 {
            let picked = table.pick("m", None, Tried::default(), Endpoint::Embeddings).unwrap();
            assert_eq!(&*picked.deployment.upstream_model, "gpt");
        }
        let chat: std::collections::HashSet<_> =
            (0..4).map(|_| table.pick("m", None, Tried::default(), Endpoint::ChatCompletions).unwrap().slot).collect();
        assert_eq!(chat.len(), 2, "chat is served by both");
        let only = table_of_anthropic();
        match only.pick("m", None, Tried::default(), Endpoint::Embeddings).map(|p| p.deployment) {
            Err(PoolError::EndpointUnsupported { providers, .. }) => assert_eq!(providers, ["anthropic"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn table_of_anthropic() -> RoutingTable {
        let entry = "  - model_name: m\n    litellm_params: {model: anthropic/claude, api_key: k}\n";
        table(&config(&[entry.to_owned(), entry.to_owned()]))
    }
}
