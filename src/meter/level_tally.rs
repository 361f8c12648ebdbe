//! What a request's levels (its key's owners, its end user) hold between admission and the answer, and how
//! the answer is counted to them. On a meter that counts alone, a level is lean: its account, the limits it
//! was admitted under and what it reserves, beside one meter, model and pricing shared by the request's
//! levels, so admission allocates once and the answer is priced once. With replicas, each level is a key's
//! tally, whose holds in Redis go with it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::tally::{priced, MediaCount};
use super::{Admitted, Answer, Effective, KeyTally, KeyUse, Meter, MeterError, Moment, Reservation};
use crate::config::{Deployment, MediaUse};
use crate::proxy::{Settled, Tally, TokenUsage};

/// The levels of one request, admitted; each counts the answer. Dropped without one (every attempt failed,
/// the client left), they give back what they reserve and their parallel slots.
pub struct LevelTallies(Tallies);

enum Tallies {
    None,
    Here(HereLevels),
    Shared(Vec<(Admitted, KeyTally)>),
}

/// Levels admitted by a meter that counts alone.
pub(super) struct HereLevels {
    meter: Arc<Meter>,
    /// The model the answer counts in: the one asked for, or the fallback that serves it.
    model: Arc<str>,
    wildcard_name: Option<Arc<str>>,
    media: Option<MediaCount>,
    levels: Vec<HereLevel>,
}

/// One level admitted alone: its live account, the limits it was admitted under, what it reserves, the keys
/// made alive again before ([`Meter::revivals`], read with the account).
struct HereLevel {
    account: [u8; 32],
    limits: Effective,
    reserved: Reservation,
    holds_slot: bool,
    revivals_seen: u64,
}

impl LevelTallies {
    /// No levels: a key without owners, a request naming no end user.
    pub fn none() -> Self {
        Self(Tallies::None)
    }

    /// Levels admitted in Redis with every replica, each as a key's tally.
    pub(super) fn shared(levels: Vec<(Admitted, KeyTally)>) -> Self {
        Self(Tallies::Shared(levels))
    }

    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Tallies::None => true,
            Tallies::Here(here) => here.levels.is_empty(),
            Tallies::Shared(levels) => levels.is_empty(),
        }
    }

    /// Prices the answer as the concrete model `wildcard_name` names, when a wildcard group serves it.
    pub fn price_as(&mut self, wildcard_name: Option<Arc<str>>) {
        match &mut self.0 {
            Tallies::None => {}
            Tallies::Here(here) => here.wildcard_name = wildcard_name,
            Tallies::Shared(levels) => levels.iter_mut().for_each(|(_, tally)| tally.price_as(wildcard_name.clone())),
        }
    }

    /// Prices the answer as a media request's (see [`KeyTally::with_media`]).
    pub fn count_media(&mut self, asked: MediaUse, uploaded: Option<Arc<AtomicU64>>) {
        match &mut self.0 {
            Tallies::None => {}
            Tallies::Here(here) => here.media = Some(MediaCount::new(asked, uploaded)),
            Tallies::Shared(levels) => {
                levels.iter_mut().for_each(|(_, tally)| tally.count_media(asked, uploaded.clone()));
            }
        }
    }

    /// Whether any level needs the answer's usage read (a priced deployment, a token limit, a budget).
    pub fn wants_usage(&self, deployment: &Deployment) -> bool {
        match &self.0 {
            Tallies::None => false,
            Tallies::Here(here) => {
                deployment.price_for(here.wildcard_name.as_deref()).is_some()
                    || here.levels.iter().any(|HereLevel { limits, .. }| {
                        limits.tpm.is_some() || limits.model_tpm.is_some() || limits.watches_spend()
                    })
            }
            Tallies::Shared(levels) => levels.iter().any(|(_, tally)| tally.wants_usage(deployment)),
        }
    }

    /// Counts the answer to every level, as of one moment; what the first level was charged (`None`: no
    /// levels).
    pub fn settle(self, deployment: &Arc<Deployment>, usage: TokenUsage) -> Option<Settled> {
        let now = Moment::now();
        match self.0 {
            Tallies::None => None,
            Tallies::Here(here) => here.settle(deployment, usage, now),
            Tallies::Shared(levels) => {
                let mut first = None;
                for (admitted, tally) in levels {
                    first.get_or_insert(tally.settle_at(deployment, usage, now));
                    drop(admitted);
                }
                first
            }
        }
    }

    /// Moves every level's count to the fallback `model` (a level has no fallback limits of its own: what it
    /// reserved in the model it leaves goes back, and its per-model limits stay behind); `false` if a level
    /// refuses it.
    pub async fn admit_fallback(&mut self, model: &Arc<str>) -> bool {
        match &mut self.0 {
            Tallies::None => true,
            Tallies::Here(here) => {
                here.enter_fallback(model);
                true
            }
            Tallies::Shared(levels) => {
                for (_, tally) in levels {
                    if !tally.admit_fallback(model).await {
                        return false;
                    }
                }
                true
            }
        }
    }
}

impl HereLevels {
    pub(super) fn new(meter: &Arc<Meter>, model: &Arc<str>, capacity: usize) -> Self {
        Self {
            meter: Arc::clone(meter),
            model: Arc::clone(model),
            wildcard_name: None,
            media: None,
            levels: Vec::with_capacity(capacity),
        }
    }

    pub(super) fn into_tallies(self) -> LevelTallies {
        LevelTallies(Tallies::Here(self))
    }

    /// Admits the request on one more level (see [`Meter::admit_with`], which a key's admission runs), or
    /// refuses it: nothing is counted to this level then, and what the levels before it hold goes back as
    /// `self` drops.
    pub(super) fn admit(&mut self, key: &KeyUse<'_>, now: Moment) -> Result<(), MeterError> {
        let meter = &self.meter;
        let limits = meter.effective(key);
        let revivals_seen = meter.revivals();
        let reserved = Reservation::default();
        let unlimited = HereLevel { account: key.key, limits, reserved, holds_slot: false, revivals_seen };
        if limits.is_unlimited() {
            self.levels.push(unlimited);
            return Ok(());
        }
        let reserved = meter.reserve_for(key, &limits).within(&limits);
        // A level deleted just before is let through, counted nowhere (as its answer).
        let Some((mut shard, live)) = meter.live_shard(key.key) else {
            self.levels.push(unlimited);
            return Ok(());
        };
        let admit = |account: &mut super::Account| account.admit(&limits, key.model, now, reserved);
        meter.change_account(&mut shard, live, limits.watches_spend(), admit)?;
        let (holds_slot, revivals_seen) = (limits.parallel.is_some(), meter.revivals());
        self.levels.push(HereLevel { account: live, limits, reserved, holds_slot, revivals_seen });
        Ok(())
    }

    fn settle(mut self, deployment: &Deployment, usage: TokenUsage, now: Moment) -> Option<Settled> {
        let (usage, cost) = priced(deployment, self.wildcard_name.as_deref(), self.media.as_ref(), usage);
        let tokens = (usage.prompt_tokens, usage.completion_tokens);
        let counted = self.meter.counted_tokens(tokens);
        let mut first = None;
        for level in std::mem::take(&mut self.levels) {
            let answer = Answer {
                model: &self.model,
                limits: &level.limits,
                tokens,
                cost,
                reserved: level.reserved,
                held: None,
                revivals_seen: level.revivals_seen,
                releases_slot: level.holds_slot,
            };
            let (spend_before, crossed_soft) = self.meter.settle_counted(level.account, answer, counted, now);
            if crossed_soft {
                let soft = level.limits.soft_budget.unwrap_or_default();
                let hash = hex::encode(&level.account[..4]);
                log::warn!(
                    "level {hash}… has spent {:.6} USD, over its soft_budget of {soft} USD",
                    spend_before + cost
                );
            }
            first.get_or_insert(Settled { cost, spend_before: Some(spend_before) });
        }
        first
    }

    /// [`LevelTallies::admit_fallback`] alone: nothing to ask of anyone.
    fn enter_fallback(&mut self, model: &Arc<str>) {
        for level in &mut self.levels {
            let left =
                Reservation { model_tokens: std::mem::take(&mut level.reserved.model_tokens), ..Default::default() };
            if !left.is_empty() {
                self.meter.release_reservation(&level.account, left, &self.model, level.revivals_seen);
            }
            (level.limits.model_rpm, level.limits.model_tpm) = (None, None);
        }
        self.model = Arc::clone(model);
    }
}

impl Drop for HereLevels {
    fn drop(&mut self) {
        for level in &self.levels {
            if !level.reserved.is_empty() {
                self.meter.release_reservation(&level.account, level.reserved, &self.model, level.revivals_seen);
            }
            if level.holds_slot {
                self.meter.release_slot(&level.account, level.revivals_seen);
            }
        }
    }
}
