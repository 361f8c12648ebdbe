//! Which limits apply to a request: each field from the first layer that sets it, the key's own, then its
//! budget tier's (`budget_id`), then its tier's defaults (`tier_limits`); a field no layer sets is unlimited.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{BudgetPeriod, LimitSet};

/// The limits in force for one request of one key on one model, resolved once at admission.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Effective {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub parallel: Option<u64>,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
    pub budget_duration: Option<BudgetPeriod>,
    pub model_rpm: Option<u64>,
    pub model_tpm: Option<u64>,
}

impl Effective {
    /// Resolves the layers for `model`: `own` first, then `budget`, then `tier`.
    pub fn resolve(own: &LimitSet, budget: Option<&Arc<LimitSet>>, tier: Option<&LimitSet>, model: &str) -> Self {
        let layers = [Some(own), budget.map(|budget| &**budget), tier];
        let first = |field: fn(&LimitSet) -> Option<u64>| layers.iter().flatten().find_map(|set| field(set));
        let first_amount = |field: fn(&LimitSet) -> Option<f64>| layers.iter().flatten().find_map(|set| field(set));
        // A per-model map is a field like any other: the first layer that has one decides, for every model.
        let per_model = |field: fn(&LimitSet) -> &Option<BTreeMap<String, u64>>| {
            layers.iter().flatten().find_map(|set| field(set).as_ref()).and_then(|map| map.get(model).copied())
        };
        Self {
            rpm: first(|set| set.rpm_limit),
            tpm: first(|set| set.tpm_limit),
            parallel: first(|set| set.max_parallel_requests),
            max_budget: first_amount(|set| set.max_budget),
            soft_budget: first_amount(|set| set.soft_budget),
            budget_duration: layers.iter().flatten().find_map(|set| set.budget_duration),
            model_rpm: per_model(|set| &set.model_rpm_limit),
            model_tpm: per_model(|set| &set.model_tpm_limit),
        }
    }

    /// Whether anything is limited: if not, the request takes no lock.
    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }

    /// Whether a window or parallel limit is set: what replicas count together in Redis.
    pub fn has_shared_limits(&self) -> bool {
        self.rpm.is_some()
            || self.tpm.is_some()
            || self.parallel.is_some()
            || self.model_rpm.is_some()
            || self.model_tpm.is_some()
    }

    /// These limits without windows and parallel limits: what a replica still checks itself when Redis does.
    pub fn without_shared(&self) -> Self {
        Self { rpm: None, tpm: None, parallel: None, model_rpm: None, model_tpm: None, ..*self }
    }

    /// Whether the key's spend matters before the answer (a budget, hard or soft, or a reset period).
    pub fn watches_spend(&self) -> bool {
        self.max_budget.is_some() || self.soft_budget.is_some() || self.budget_duration.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_beats_its_budget_which_beats_its_tier() {
        let own = LimitSet { rpm_limit: Some(1), ..LimitSet::default() };
        let budget = Arc::new(LimitSet { rpm_limit: Some(2), tpm_limit: Some(20), ..LimitSet::default() });
        let tier = LimitSet {
            rpm_limit: Some(3),
            tpm_limit: Some(30),
            max_budget: Some(1.0),
            model_rpm_limit: Some(BTreeMap::from([("gpt-4".to_owned(), 5)])),
            ..LimitSet::default()
        };
        let all = Effective::resolve(&own, Some(&budget), Some(&tier), "gpt-4");
        assert_eq!((all.rpm, all.tpm, all.max_budget, all.model_rpm), (Some(1), Some(20), Some(1.0), Some(5)));
        let no_budget = Effective::resolve(&own, None, Some(&tier), "other");
        assert_eq!((no_budget.rpm, no_budget.tpm, no_budget.model_rpm), (Some(1), Some(30), None));
        assert!(Effective::resolve(&LimitSet::default(), None, None, "gpt-4").is_unlimited());
    }
}
