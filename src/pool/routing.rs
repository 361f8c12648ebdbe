//! The routing table: model groups and, per key tier, the deployments that tier may reach.
//!
//! Built once from the validated config and shared by every worker's DeploymentPool. Candidate lists are
//! precomputed per tier, so a pick is a map lookup, an atomic increment and an index: no allocation, no lock,
//! no config clone, and no way to return a deployment the tier rule forbids. The rotation counters are
//! shared, so rotation is even across workers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{tier_allows, Deployment, PoolError, Tier};

/// Deployments grouped by `model_name`, with round-robin state per (model, tier).
#[derive(Debug)]
pub struct RoutingTable {
    groups: HashMap<Box<str>, ModelGroup>,
}

#[derive(Debug)]
struct ModelGroup {
    deployments: Vec<Arc<Deployment>>,
    /// The tiers this group's deployments are on, sorted (for error messages).
    tiers: Vec<Tier>,
    /// Route for untiered keys and the master key: every deployment.
    any_tier: Route,
    /// Route for each tier in `tiers`: that tier's deployments plus untiered ones.
    per_tier: Vec<(Tier, Route)>,
    /// Route for keys on a tier none of this group's deployments has: untiered deployments only.
    other_tiers: Route,
}

#[derive(Debug, Default)]
struct Route {
    /// Indexes into `ModelGroup::deployments` of deployments that can be called.
    usable: Box<[usize]>,
    /// Set when some candidate cannot be called because its `os.environ/VAR` api key is unset.
    unset_env: Option<Box<str>>,
    next: AtomicUsize,
}

impl Route {
    fn new(deployments: &[Arc<Deployment>], key_tier: Option<&Tier>) -> Self {
        let mut route = Route::default();
        let mut usable = Vec::new();
        for (index, deployment) in deployments.iter().enumerate() {
            if !tier_allows(key_tier, deployment.tier.as_ref()) {
                continue;
            }
            match deployment.unset_credential() {
                None => usable.push(index),
                Some(var) => route.unset_env = Some(var.into()),
            }
        }
        route.usable = usable.into_boxed_slice();
        route
    }

    fn has_candidates(&self) -> bool {
        !self.usable.is_empty() || self.unset_env.is_some()
    }
}

impl ModelGroup {
    fn new(deployments: Vec<Arc<Deployment>>) -> Self {
        let mut tiers: Vec<Tier> = deployments.iter().filter_map(|d| d.tier.clone()).collect();
        tiers.sort();
        tiers.dedup();
        let per_tier = tiers.iter().map(|tier| (tier.clone(), Route::new(&deployments, Some(tier)))).collect();
        let other_tiers = Route::new(&deployments, Some(&Tier::Named("\0no deployment has this tier".into())));
        let any_tier = Route::new(&deployments, None);
        Self { deployments, tiers, any_tier, per_tier, other_tiers }
    }

    fn route(&self, key_tier: Option<&Tier>) -> &Route {
        match key_tier {
            None => &self.any_tier,
            Some(tier) => self.per_tier.iter().find(|(t, _)| t == tier).map_or(&self.other_tiers, |(_, r)| r),
        }
    }
}

impl RoutingTable {
    /// A table over `deployments`, which every worker's table shares.
    pub fn new(deployments: &[Arc<Deployment>]) -> Self {
        let mut by_name: HashMap<Box<str>, Vec<Arc<Deployment>>> = HashMap::new();
        for deployment in deployments {
            by_name.entry(deployment.model_name.clone()).or_default().push(Arc::clone(deployment));
        }
        let groups = by_name.into_iter().map(|(name, deployments)| (name, ModelGroup::new(deployments))).collect();
        Self { groups }
    }

    /// Picks a deployment of `model` that a key on `key_tier` may use, rotating among the candidates.
    ///
    /// Never returns a deployment of another tier: candidates come only from routes built with [`tier_allows`].
    pub fn pick(&self, model: &str, key_tier: Option<&Tier>) -> Result<Arc<Deployment>, PoolError> {
        let Some(group) = self.groups.get(model) else {
            return Err(PoolError::UnknownModel { model: model.into(), available: self.model_names(key_tier) });
        };
        let route = group.route(key_tier);
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
        let index = route.usable[route.next.fetch_add(1, Ordering::Relaxed) % route.usable.len()];
        Ok(Arc::clone(&group.deployments[index]))
    }

    /// The model names a key on `key_tier` can reach, sorted.
    pub fn model_names(&self, key_tier: Option<&Tier>) -> Vec<String> {
        let mut names: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, group)| group.route(key_tier).has_candidates())
            .map(|(name, _)| name.to_string())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn table(yaml: &str) -> RoutingTable {
        let env = |var: &str| (var == "SET_KEY").then(|| "k".to_owned());
        let deployments: Vec<_> =
            config::parse(yaml, &env).unwrap().settings.deployments.into_iter().map(Arc::new).collect();
        RoutingTable::new(&deployments)
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
            let free = table.pick("gpt-4", Some(&Tier::Free)).unwrap();
            assert!(matches!(&*free.upstream_model, "free-a" | "shared"));
            let paid = table.pick("gpt-4", Some(&Tier::Paid)).unwrap();
            assert!(matches!(&*paid.upstream_model, "paid-a" | "shared"));
            let gold = table.pick("gpt-4", Some(&Tier::parse("gold"))).unwrap();
            assert_eq!(&*gold.upstream_model, "shared");
        }
    }

    #[test]
    fn picks_rotate_among_candidates() {
        let table = table(&config(&[entry("m", "a", Some("free"), "k"), entry("m", "b", Some("free"), "k")]));
        let picks: Vec<_> =
            (0..4).map(|_| table.pick("m", Some(&Tier::Free)).unwrap().upstream_model.clone()).collect();
        assert_eq!(picks.iter().filter(|m| &***m == "a").count(), 2);
        assert_ne!(picks[0], picks[1]);
    }

    #[test]
    fn no_deployment_on_tier_names_model_and_tiers() {
        let table = table(&config(&[entry("gpt-4", "p", Some("paid"), "k"), entry("other", "o", Some("free"), "k")]));
        match table.pick("gpt-4", Some(&Tier::Free)) {
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
        match table.pick("nope", Some(&Tier::Free)) {
            Err(PoolError::UnknownModel { available, .. }) => assert_eq!(available, vec!["mini"]),
            other => panic!("unexpected {other:?}"),
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
            assert_eq!(&*table.pick("m", Some(&Tier::Free)).unwrap().upstream_model, "ok");
        }
        match table.pick("only-broken", None) {
            Err(PoolError::CredentialUnset { var, .. }) => assert_eq!(var, "UNSET_KEY"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
