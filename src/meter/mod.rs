//! Limits on a key's use and what it spends: requests and tokens per 60 s window (per key, and per key and
//! model), requests in flight, and a budget in USD with an optional reset period. Checked before a request is
//! routed, counted when its answer is in (tokens and cost from its usage).
//!
//! Counters live in memory, shared by every HTTP worker (sharded locks), so a limit holds across all of them.
//! Rate windows restart with the process (documented); spend is written to sled by [`Meter::persist`] in
//! batches, which `lib` runs every [`PERSIST_EVERY`], so a crash loses the spend of the last interval and the
//! write in progress (documented as at most 1 s). A request of a
//! key without limits takes no lock; its answer takes one only when the deployment is priced.

mod account;
mod admit_script;
mod error;
mod fallback;
mod hashing;
mod heartbeat;
mod held;
mod layers;
mod leased_slots;
mod ledger;
mod level_tally;
mod levels;
mod moment;
mod reserve;
mod shard;
mod shared;
mod shared_spend;
mod slice_scripts;
mod slices;
mod succession;
mod tally;

use std::collections::HashMap;

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::{LimitSet, TokenCounting};
use crate::tier::Tier;
use account::Account;
pub use error::MeterError;
pub(crate) use hashing::KeyHashing;
pub use held::{SharedHold, SharedSlot};
pub use layers::Effective;
pub use ledger::{Ledger, Spend, SPEND_TREE};
pub use level_tally::LevelTallies;
pub use levels::{Level, LevelDefault, LevelRefusal, LevelUse};
pub use moment::Moment;
pub use reserve::{Reservation, Worst};
use shard::Shard;
pub use shared::SharedCounters;
pub(crate) use shared_spend::spend_written_prefix;
pub use shared_spend::{spent_name, spent_prefix};
pub use tally::{Admitted, KeyTally, Noted, UsageCell};

/// LiteLLM's `LITELLM_RATE_LIMIT_WINDOW_SIZE`: a fixed window that starts at a key's first request.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How often spend is written to disk: the most spend a crash can lose.
pub const PERSIST_EVERY: Duration = Duration::from_millis(250);
/// Counter shards: a key's counters sit behind one of these locks, picked by its hash.
const SHARDS: usize = 16;

/// What is left of a limit, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
}

/// An answer to count: its model, the limits its request was admitted under, its (prompt, completion)
/// tokens and its cost in USD.
struct Answer<'a> {
    model: &'a str,
    limits: &'a Effective,
    tokens: (u64, u64),
    cost: f64,
    /// What admission reserved for it, given back as it is counted.
    reserved: Reservation,
    /// What admission holds for it in Redis (with replicas): given back once its cost is counted.
    held: Option<SharedHold>,
    /// The keys made alive again before it was admitted ([`Meter::revivals`]).
    revivals_seen: u64,
    /// Whether its request holds a parallel slot of the key, given back under the same lock (a level's).
    releases_slot: bool,
}

/// One request's key, as the meter sees it.
pub struct KeyUse<'a> {
    pub key: [u8; 32],
    pub own: &'a LimitSet,
    pub budget_id: Option<&'a str>,
    pub tier: Option<&'a Tier>,
    pub model: &'a Arc<str>,
    /// The model groups the request may fall back to (`fallbacks`, `context_window_fallbacks`), whose
    /// per-model limits it meets there.
    pub fallbacks: &'a [&'a [Arc<str>]],
    /// The most the request may use, which admission reserves against a budget and `tpm_limit` (worked out
    /// only for a key that has one).
    pub worst: &'a dyn Fn() -> Worst,
}

/// What the config says every key on a tier gets, and how tokens count.
struct TierRules {
    limits: HashMap<Tier, LimitSet>,
    counting: TokenCounting,
}

/// The counters and spend of every key in use, shared by all workers; the budget tiers and tier defaults.
pub struct Meter {
    shards: Vec<Mutex<Shard>>,
    ledger: Ledger,
    /// One batch write at a time.
    writing: Mutex<()>,
    budgets: RwLock<HashMap<String, Arc<LimitSet>>>,
    /// `tier_limits` and `token_rate_limit_type` from the config; a reload replaces them.
    tier_rules: ArcSwap<TierRules>,
    /// When idle counters were last dropped (ms since the epoch).
    last_sweep_ms: AtomicU64,
    /// Keys deleted or regenerated while answers of theirs may still be in flight: the old hash → the key
    /// that took over (`None`: deleted) and when (ms). Such an answer is counted to its successor, or not at
    /// all, never to a dead key. Forgotten after [`RETIRED_FOR`].
    retired: Mutex<HashMap<[u8; 32], Retired>>,
    /// Retired keys made alive again (an end user or level deleted, a custom key minted again), as they were
    /// retired, with their number among the revivals: a request admitted before then was their namesake's;
    /// its answer counts to that one's successor or nowhere, and what it holds went with the namesake's
    /// account. Forgotten after [`RETIRED_FOR`].
    revived: Mutex<HashMap<[u8; 32], (Retired, u64)>>,
    /// How many keys were made alive again so far: a request admitted after the last needs no look-up.
    revivals: AtomicU64,
    /// Set when replicas share a Redis: window and parallel limits are counted there, and spend added up.
    shared: Option<Arc<SharedCounters>>,
    /// What each level's accounts without a budget of their own get (`levels.rs`).
    level_defaults: RwLock<Vec<(Level, Arc<LevelDefault>)>>,
}

/// A retired key's successor (`None`: deleted) and when it was retired (ms since the epoch).
type Retired = (Option<[u8; 32]>, u64);

/// How long a retired key's late answers are redirected: longer than any stream's idle timeout allows.
const RETIRED_FOR: Duration = Duration::from_secs(86_400);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

impl Meter {
    /// Replaces the tier defaults and the token counting (a config reload); keys follow at once.
    pub fn set_tier_rules(&self, tier_limits: HashMap<Tier, LimitSet>, counting: TokenCounting) {
        self.tier_rules.store(Arc::new(TierRules { limits: tier_limits, counting }));
    }

    /// The tiers `tier_limits` sets defaults for (a set of `{}` included).
    pub fn limited_tiers(&self) -> Vec<Tier> {
        self.tier_rules.load().limits.keys().cloned().collect()
    }

    pub fn new(ledger: Ledger, tier_limits: HashMap<Tier, LimitSet>, counting: TokenCounting) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            ledger,
            writing: Mutex::new(()),
            budgets: RwLock::default(),
            tier_rules: ArcSwap::from_pointee(TierRules { limits: tier_limits, counting }),
            last_sweep_ms: AtomicU64::new(0),
            retired: Mutex::default(),
            revived: Mutex::default(),
            revivals: AtomicU64::new(0),
            shared: None,
            level_defaults: RwLock::default(),
        }
    }

    /// Counts window and parallel limits, and adds up spend, in Redis with every replica (`lib` calls it
    /// before sharing the meter).
    pub fn share_through(&mut self, counters: Arc<SharedCounters>) {
        self.shared = Some(counters);
    }

    /// The limits in force for `key` on its model.
    pub fn effective(&self, key: &KeyUse<'_>) -> Effective {
        self.effective_on(key, key.model)
    }

    /// The limits in force for `key` on `model`.
    pub(super) fn effective_on(&self, key: &KeyUse<'_>, model: &str) -> Effective {
        let budget =
            key.budget_id.and_then(|id| self.budgets.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned());
        // Loaded only for a key on a tier: a level has none.
        let rules = key.tier.map(|_| self.tier_rules.load());
        let tier = key.tier.zip(rules.as_ref()).and_then(|(tier, rules)| rules.limits.get(tier));
        Effective::resolve(key.own, budget.as_ref(), tier, model)
    }

    /// Counts a request against the limits in force, or refuses it (nothing is counted then). Checked and
    /// counted under one lock, so N concurrent requests against `rpm_limit: N` let exactly N through.
    pub fn admit(self: &Arc<Self>, key: KeyUse<'_>, now: Moment) -> Result<(Admitted, KeyTally), MeterError> {
        let limits = self.effective(&key);
        let reservation = self.reserve_for(&key, &limits);
        self.admit_with(&key, limits, limits, reservation, now)
    }

    /// Admission checked against `checked` (what this replica counts), holding `reservation` (what
    /// [`Self::reserve_for`] makes of `limits`) as far as `checked` reserves, settled later with `limits`.
    pub(super) fn admit_with(
        self: &Arc<Self>,
        key: &KeyUse<'_>,
        checked: Effective,
        limits: Effective,
        reservation: Reservation,
        now: Moment,
    ) -> Result<(Admitted, KeyTally), MeterError> {
        let mut tally = KeyTally::new(Arc::clone(self), key.key, Arc::clone(key.model), limits);
        if !key.fallbacks.iter().all(|names| names.is_empty()) {
            let fallback_limits = self.fallback_limits(key);
            // What a fallback holds against its own `model_tpm_limit`: worked out only when one has it.
            let worst_tokens = match fallback_limits.iter().any(|(_, limits)| limits.model_tpm.is_some()) {
                true => self.worst_tokens((key.worst)()),
                false => 0,
            };
            tally.with_fallback_limits(fallback_limits, worst_tokens);
        }
        let limits = checked;
        if limits.is_unlimited() {
            return Ok((Admitted::unlimited(), tally));
        }
        let reservation = reservation.within(&limits);
        // A request authorised just before its key was deleted is let through, counted nowhere (as its answer).
        let Some((mut shard, live)) = self.live_shard(key.key) else { return Ok((Admitted::unlimited(), tally)) };
        let admit = |account: &mut Account| account.admit(&limits, key.model, now, reservation);
        let checked = self.change_account(&mut shard, live, limits.watches_spend(), admit)?;
        let revivals_seen = self.revivals();
        tally.count_to(live, reservation, revivals_seen);
        let slot = limits.parallel.is_some().then(|| (Arc::clone(self), live, revivals_seen));
        Ok((Admitted::new(slot, checked, &limits), tally))
    }

    /// Adds an answer's tokens and cost to `key`; the spend before it, and whether the soft budget was just
    /// crossed.
    fn settle(&self, key: [u8; 32], answer: Answer<'_>, now: Moment) -> (f64, bool) {
        let counted = self.counted_tokens(answer.tokens);
        self.settle_counted(key, answer, counted, now)
    }

    /// The tokens of an answer's (prompt, completion) that count against `tpm_limit` (`token_rate_limit_type`).
    fn counted_tokens(&self, (prompt, completion): (u64, u64)) -> u64 {
        self.tier_rules.load().counting.count(prompt, completion)
    }

    /// [`Self::settle`] with the answer's tokens already counted (`counted`).
    fn settle_counted(&self, key: [u8; 32], answer: Answer<'_>, counted: u64, now: Moment) -> (f64, bool) {
        let original = key;
        let Some((mut shard, mut key)) = self.live_shard(key) else { return (0.0, false) };
        // Admitted before its key was retired and made alive again: the answer was its namesake's, and counts
        // to that one's successor or nowhere (its reservations went with it; its holds go back as it drops).
        if let Some(successor) = self.revived_since(&original, answer.revivals_seen) {
            drop(shard);
            let Some(found) = successor.and_then(|successor| self.live_shard(successor)) else {
                return (0.0, false);
            };
            (shard, key) = found;
        }
        let mut held = answer.held;
        if let Some(shared) = &self.shared {
            let estimate = held.as_mut().and_then(|held| held.take_tokens(&key));
            let model_estimate = held.as_mut().and_then(|held| held.take_model_tokens(&key, answer.model));
            shared.count_tokens(&key, answer.model, answer.limits, counted, (estimate, model_estimate));
        }
        // The reservation (and a level's parallel slot) goes back under the lock the answer is counted under:
        // never both, never neither. A key retired since took its reservations with it; an account made by
        // this very settle holds none.
        let settle = |account: &mut Account| {
            if key == original {
                account.release(answer.reserved, answer.model);
                if answer.releases_slot {
                    account.in_flight = account.in_flight.saturating_sub(1);
                }
            }
            account.settle(answer.limits, answer.model, counted, answer.cost, now)
        };
        let settled = self.change_account(&mut shard, key, true, settle);
        // Given back only now that the cost is counted: the exchange that sends it carries the release, or
        // a later one does.
        drop(shard);
        if let Some(held) = held {
            held.settled_at(answer.cost);
        }
        settled
    }

    /// Takes back a request counted in the key's window (it is about to be admitted again).
    fn uncount_request(&self, key: &[u8; 32]) {
        if let Some(account) = self.shard(key).accounts.get_mut(key) {
            account.uncount_request();
        }
    }

    pub(super) fn release_slot(&self, key: &[u8; 32], revivals_seen: u64) {
        self.give_back(key, revivals_seen, |account| account.in_flight = account.in_flight.saturating_sub(1));
    }

    /// Writes the spend that changed since the last call to the ledger and flushes it; then, once a window,
    /// drops the counters of keys idle for a whole window (their spend is read back from the ledger when the
    /// key is next used). Blocking: run it off the workers.
    pub fn persist(&self, now: Moment) -> Result<(), sled::Error> {
        let _writing = lock(&self.writing);
        if let Some(Err(err)) = self.shared.as_ref().map(|shared| shared.flush_tokens()) {
            log::warn!("answers' tokens could not be added to the shared windows: {err}");
        }
        match &self.shared {
            Some(shared) => self.share_spend(shared),
            None => self.write_spend()?,
        }
        // Only now: an account evicted before its spend was written could be read back stale.
        let now_ms = now.wall_ms;
        if now_ms.saturating_sub(self.last_sweep_ms.load(Ordering::Relaxed)) >= WINDOW.as_millis() as u64 {
            self.last_sweep_ms.store(now_ms, Ordering::Relaxed);
            for shard in &self.shards {
                lock(shard).accounts.retain(|_, account| !account.is_idle(now.mono_ms));
            }
            let expiry = RETIRED_FOR.as_millis() as u64;
            lock(&self.retired).retain(|_, (_, since)| now_ms.saturating_sub(*since) < expiry);
            lock(&self.revived).retain(|_, ((_, since), _)| now_ms.saturating_sub(*since) < expiry);
        }
        Ok(())
    }

    /// Writes the spend that changed since the last call to the ledger and flushes it (one process, sled).
    fn write_spend(&self) -> Result<(), sled::Error> {
        let changed = self.gather_spend();
        self.write_gathered(changed)
    }

    /// The spend that changed since the last call, taken off the queue.
    fn gather_spend(&self) -> Vec<([u8; 32], Spend)> {
        let mut changed = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            let Shard { accounts, dirty } = &mut *shard;
            for key in dirty.drain(..) {
                let Some(account) = accounts.get_mut(&key) else { continue };
                // Written whole to the ledger: nothing is left to add up elsewhere.
                (account.dirty, account.queued, account.unsent) = (false, false, 0.0);
                changed.extend(account.spend.map(|spend| (key, spend)));
            }
        }
        changed
    }

    /// Writes a gathered batch and flushes it; on failure, queues its keys again.
    fn write_gathered(&self, changed: Vec<([u8; 32], Spend)>) -> Result<(), sled::Error> {
        if !changed.is_empty() {
            // Written under the retired keys' lock, leaving out any retired since the batch was gathered: a
            // deleted key's spend is never written back (retire removes what an earlier batch wrote).
            let written = {
                let retired = lock(&self.retired);
                self.ledger.write(changed.iter().copied().filter(|(key, _)| !retired.contains_key(key)))
            };
            let written = written.and_then(|()| self.ledger.flush());
            if let Err(err) = written {
                // Queued again: the next call retries them, and none is dropped from memory meanwhile.
                for (key, _) in &changed {
                    let mut shard = self.shard(key);
                    if let Some(account) = shard.accounts.get_mut(key) {
                        account.dirty = true;
                    }
                    self.note_dirty(&mut shard, *key);
                }
                return Err(err);
            }
        }
        Ok(())
    }

    /// The spend of a key, as counted so far (memory first, then the ledger; with replicas, as Redis adds it
    /// up, plus what this replica has not sent yet).
    pub fn spend_of(&self, key: &[u8; 32]) -> Result<Spend, sled::Error> {
        if let Some(shared) = &self.shared {
            return self.shared_spend_of(shared, key);
        }
        match self.shard(key).accounts.get(key).and_then(|account| account.spend) {
            Some(spend) => Ok(spend),
            None => self.ledger.read(key),
        }
    }

    /// Creates, replaces or (with `None`) removes a budget tier; every key linked to it follows at once.
    pub fn set_budget(&self, id: &str, limits: Option<LimitSet>) {
        let mut budgets = self.budgets.write().unwrap_or_else(PoisonError::into_inner);
        match limits {
            Some(limits) => budgets.insert(id.to_owned(), Arc::new(limits)),
            None => budgets.remove(id),
        };
    }
}

#[cfg(test)]
mod tests;
