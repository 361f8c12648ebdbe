//! Fallback model groups under a key's per-model limits: a fallback is taken only where the key's
//! `model_rpm_limit`/`model_tpm_limit` for that model admit it, and the request is counted there.

use std::sync::Arc;

use super::{Effective, KeyUse, Meter, Moment};

impl Meter {
    /// The key's limits on each of the request's fallback models that it has per-model limits on.
    pub(super) fn fallback_limits(&self, key: &KeyUse<'_>) -> Vec<(Arc<str>, Effective)> {
        // The usual case, no per-model limit in any layer: nothing to resolve per fallback.
        let budget_has = || {
            let budgets = self.budgets.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            key.budget_id.and_then(|id| budgets.get(id)).is_some_and(|set| set.model_names().next().is_some())
        };
        let tier_has = || {
            let rules = self.tier_rules.load();
            key.tier.and_then(|tier| rules.limits.get(tier)).is_some_and(|set| set.model_names().next().is_some())
        };
        if key.own.model_names().next().is_none() && !budget_has() && !tier_has() {
            return Vec::new();
        }
        key.fallbacks
            .iter()
            .flat_map(|names| names.iter())
            .filter_map(|name| {
                let limits = self.effective_on(key, name);
                (limits.model_rpm.is_some() || limits.model_tpm.is_some()).then(|| (Arc::clone(name), limits))
            })
            .collect()
    }

    /// Admits a request into fallback `model` under the key's `limits` on it (its per-model limits; the
    /// key's own were counted when the request was admitted): checked and counted in Redis with every
    /// replica when they share one and it answers, else here. No per-model limit: admitted.
    pub(super) async fn admit_fallback(
        self: &Arc<Self>,
        key: [u8; 32],
        model: &Arc<str>,
        limits: &Effective,
        now: Moment,
    ) -> bool {
        let model_only = Effective { model_rpm: limits.model_rpm, model_tpm: limits.model_tpm, ..Effective::default() };
        if model_only.is_unlimited() {
            return true;
        }
        if let Some(shared) = self.shared.as_ref().filter(|shared| shared.in_force()) {
            // Without a verdict from Redis, this replica counts alone, as for a first model.
            if let Ok(verdict) = shared.admit(&key, model, &model_only, Default::default(), now.wall_ms).await {
                return verdict.is_ok();
            }
        }
        let mut shard = self.shard(&key);
        self.account(&mut shard, key, false).admit_model(&model_only, model, now).is_ok()
    }
}
