//! Fallback model groups under a key's per-model limits: a fallback is taken only where the key's
//! `model_rpm_limit`/`model_tpm_limit` for that model admit it, and the request is counted there.

use std::sync::Arc;

use super::held::HoldAsk;
use super::{Effective, KeyUse, Meter, Moment, Reservation, SharedHold};

/// A fallback taken: the tokens it holds in its model's window here, or in Redis.
pub(super) struct Entered {
    pub reserved: u64,
    pub held: Option<SharedHold>,
}

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
    /// key's own were counted when the request was admitted), holding `worst_tokens` there under a
    /// `model_tpm_limit`: checked and counted in Redis with every replica when they share one and it answers,
    /// else here. No per-model limit: admitted. `None`: refused; else what it holds (to give back).
    pub(super) async fn admit_fallback(
        self: &Arc<Self>,
        key: [u8; 32],
        model: &Arc<str>,
        limits: &Effective,
        worst_tokens: u64,
        now: Moment,
    ) -> Option<Entered> {
        let model_only = Effective { model_rpm: limits.model_rpm, model_tpm: limits.model_tpm, ..Effective::default() };
        if model_only.is_unlimited() {
            return Some(Entered { reserved: 0, held: None });
        }
        let reserved = model_only.model_tpm.map_or(0, |_| worst_tokens);
        if let Some(shared) = self.shared.as_ref().filter(|shared| shared.in_force()) {
            let reservation = Reservation { model_tokens: reserved, ..Reservation::default() };
            let ask = HoldAsk { reservation, ..HoldAsk::default() };
            // Without a verdict from Redis, this replica counts alone, as for a first model.
            if let Ok(verdict) = shared.admit(&key, model, &model_only, ask, now.wall_ms).await {
                return verdict.ok().map(|checked| Entered { reserved: 0, held: checked.hold });
            }
        }
        // Counted to the live key, found under its shard lock: never an account for a key retired meanwhile.
        let Some((mut shard, live)) = self.live_shard(key) else { return Some(Entered { reserved: 0, held: None }) };
        // A key regenerated since admission: its reservation would be given back to the old key, so none.
        let reserved = if live == key { reserved } else { 0 };
        let account = self.account(&mut shard, live, false);
        let entered = account.admit_model(&model_only, model, now, reserved).is_ok();
        self.note_dirty(&mut shard, live);
        entered.then_some(Entered { reserved, held: None })
    }
}
