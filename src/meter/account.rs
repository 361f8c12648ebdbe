//! One key's counters: its 60 s window (requests and tokens), a window per model it has model limits on,
//! requests in flight, and its spend. Checked and changed under the meter's shard lock; pure logic here.

use std::sync::Arc;
use std::time::Duration;

use super::layers::Effective;
use super::ledger::Spend;
use super::{MeterError, Moment, Quota, Reservation, WINDOW};
use crate::config::BudgetPeriod;

/// Requests and tokens of one fixed window, which starts at its first request (LiteLLM's v3 limiter).
#[derive(Debug, Default, Clone)]
pub struct Window {
    /// Start, on the monotonic clock of [`Moment::mono_ms`].
    start_ms: u64,
    requests: u64,
    tokens: u64,
}

impl Window {
    fn roll(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.start_ms) >= WINDOW.as_millis() as u64 {
            *self = Self { start_ms: now_ms, requests: 0, tokens: 0 };
        }
    }

    fn resets_in(&self, now_ms: u64) -> Duration {
        Duration::from_millis((self.start_ms + WINDOW.as_millis() as u64).saturating_sub(now_ms))
    }

    fn is_over(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.start_ms) >= WINDOW.as_millis() as u64
    }
}

/// A key's window on one model it has model limits on, and the tokens requests in flight that count there
/// hold against `model_tpm_limit`.
#[derive(Debug)]
struct ModelWindow {
    name: Arc<str>,
    window: Window,
    reserved: u64,
}

#[derive(Debug, Default)]
pub struct Account {
    window: Window,
    models: Vec<ModelWindow>,
    pub in_flight: u64,
    /// Held by requests admitted and not yet counted: dollars against the budget, tokens against
    /// `tpm_limit` (what they hold against `model_tpm_limit` sits with each model's window).
    reserved: Reservation,
    /// `None` until read from the ledger.
    pub spend: Option<Spend>,
    /// Spend changed since the ledger last had it.
    pub dirty: bool,
    /// The key is in its shard's list of keys to persist.
    pub queued: bool,
    /// The soft budget warning was logged this budget period.
    warned_soft: bool,
    /// With replicas: dollars counted here and not yet added up in Redis.
    pub unsent: f64,
    /// Admitted or settled since spend was last exchanged with Redis: only such accounts are.
    pub touched: bool,
    /// Redis's sum has been taken in since the spend was loaded.
    pub verified: bool,
    /// The spend entry this account was read from (its dollars and period), the base that Redis's sum for
    /// the same period adds to.
    pub base: (f64, u64),
    /// Dollars settled since a regenerate read this key's spend ([`super::Meter::pin_spend`]), kept until the
    /// key is retired and handed to its successor; while set, the account is never dropped as idle.
    pub handover: Option<f64>,
}

/// What admission tells the response headers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Checked {
    pub requests: Option<Quota>,
    pub tokens: Option<Quota>,
    pub model_requests: Option<Quota>,
    pub model_tokens: Option<Quota>,
    pub spend: Option<f64>,
    pub soft_budget_exceeded: bool,
}

impl Account {
    /// Checks a request against `limits` and counts it, holding `reservation` until its answer is counted,
    /// or refuses it and counts nothing. A budget, `tpm_limit` or `model_tpm_limit` admits while what is spent
    /// (or counted) plus what requests in flight hold is below it, so concurrent requests overshoot it by one
    /// reservation at most. `spend` must be loaded when `limits` watch spend.
    pub fn admit(
        &mut self,
        limits: &Effective,
        model: &Arc<str>,
        now: Moment,
        reservation: Reservation,
    ) -> Result<Checked, MeterError> {
        self.touched = true;
        let now_ms = now.mono_ms;
        self.window.roll(now_ms);
        let spend = self.settle_reset(limits, now.wall_ms);
        if let (Some(max_budget), Some(spend)) = (limits.max_budget, spend) {
            if spend + self.reserved.dollars >= max_budget {
                return Err(MeterError::budget(spend, max_budget));
            }
        }
        if let Some(limit) = limits.parallel {
            if self.in_flight >= limit {
                return Err(MeterError::Parallel { limit });
            }
        }
        let window = &self.window;
        check(limits.rpm, window.requests, window, now_ms, |limit, resets_in| MeterError::Requests {
            limit,
            resets_in,
        })?;
        let tokens = window.tokens.saturating_add(self.reserved.tokens);
        check(limits.tpm, tokens, window, now_ms, |limit, resets_in| MeterError::Tokens { limit, resets_in })?;
        // Counted in its model's window (if limited there) once the key's own limits have passed.
        let (model_requests, model_tokens) = self.admit_model(limits, model, now, reservation.model_tokens)?;
        self.window.requests += 1;
        if limits.parallel.is_some() {
            self.in_flight += 1;
        }
        self.reserved.dollars += reservation.dollars;
        self.reserved.tokens = self.reserved.tokens.saturating_add(reservation.tokens);
        Ok(Checked {
            requests: quota(limits.rpm, self.window.requests),
            tokens: quota(limits.tpm, self.window.tokens),
            model_requests,
            model_tokens,
            spend,
            soft_budget_exceeded: limits.soft_budget.zip(spend).is_some_and(|(soft, spend)| spend >= soft),
        })
    }

    /// Checks a request against the key's limits on `model` (`model_rpm_limit`, `model_tpm_limit`) and counts
    /// it in that model's window, holding `reserved` tokens there until its answer is counted, or refuses it
    /// and counts nothing; what is left of each, when limited. The first model of a request is admitted with
    /// the key's other limits, a fallback model on its own.
    pub fn admit_model(
        &mut self,
        limits: &Effective,
        model: &Arc<str>,
        now: Moment,
        reserved: u64,
    ) -> Result<(Option<Quota>, Option<Quota>), MeterError> {
        if limits.model_rpm.is_none() && limits.model_tpm.is_none() {
            return Ok((None, None));
        }
        let now_ms = now.mono_ms;
        let ModelWindow { window, reserved: held, .. } = self.model_window(model, now_ms);
        let name = || model.to_string();
        check(limits.model_rpm, window.requests, window, now_ms, |limit, resets_in| MeterError::ModelRequests {
            model: name(),
            limit,
            resets_in,
        })?;
        let tokens = window.tokens.saturating_add(*held);
        check(limits.model_tpm, tokens, window, now_ms, |limit, resets_in| MeterError::ModelTokens {
            model: name(),
            limit,
            resets_in,
        })?;
        window.requests += 1;
        if limits.model_tpm.is_some() {
            *held = held.saturating_add(reserved);
        }
        Ok((quota(limits.model_rpm, window.requests), quota(limits.model_tpm, window.tokens)))
    }

    /// Adds an answer's tokens and cost; returns the spend before it and whether the soft budget was just
    /// crossed for the first time this period (to log it once).
    pub fn settle(&mut self, limits: &Effective, model: &str, tokens: u64, cost: f64, now: Moment) -> (f64, bool) {
        self.touched = true;
        let now_ms = now.mono_ms;
        self.window.roll(now_ms);
        self.window.tokens = self.window.tokens.saturating_add(tokens);
        if let Some(ModelWindow { window, .. }) = self.models.iter_mut().find(|entry| &*entry.name == model) {
            window.roll(now_ms);
            window.tokens = window.tokens.saturating_add(tokens);
        }
        let before = self.settle_reset(limits, now.wall_ms).unwrap_or_default();
        let spend = self.spend.get_or_insert_with(Spend::default);
        if cost > 0.0 {
            spend.dollars = (spend.dollars + cost).min(crate::config::MAX_DOLLARS);
            self.unsent += cost;
            self.dirty = true;
            if let Some(handover) = &mut self.handover {
                *handover += cost;
            }
        }
        let crossed_soft = limits.soft_budget.is_some_and(|soft| spend.dollars >= soft) && !self.warned_soft;
        self.warned_soft |= crossed_soft;
        (before, crossed_soft)
    }

    /// Takes back one request counted in the key's window.
    pub fn uncount_request(&mut self) {
        self.window.requests = self.window.requests.saturating_sub(1);
    }

    /// Gives back what a request held (its answer is counted now, or it ended without one); its model tokens
    /// were held in `model`'s window.
    pub fn release(&mut self, reservation: Reservation, model: &str) {
        self.reserved.dollars = (self.reserved.dollars - reservation.dollars).max(0.0);
        self.reserved.tokens = self.reserved.tokens.saturating_sub(reservation.tokens);
        if reservation.model_tokens > 0 {
            if let Some(entry) = self.models.iter_mut().find(|entry| &*entry.name == model) {
                entry.reserved = entry.reserved.saturating_sub(reservation.model_tokens);
            }
        }
    }

    /// Starts a new budget period when the current one is over (spend back to 0) and keeps the next reset
    /// in line with the period in force; the spend after that.
    fn settle_reset(&mut self, limits: &Effective, now_ms: u64) -> Option<f64> {
        let spend = self.spend.as_mut()?;
        // A period changed since the reset was scheduled (its budget tier or tier default was edited, even
        // while the key sat idle or the gateway was down) is followed at once: the next reset is scheduled
        // anew, the spend so far kept.
        let period_changed = spend.period.is_some() && spend.period != limits.budget_duration;
        if spend.period != limits.budget_duration {
            spend.period = limits.budget_duration;
            self.dirty = true;
        }
        let reset_at = match (limits.budget_duration, spend.reset_at_ms) {
            (None, _) => None,
            (Some(period), None) => Some(period.next_reset(now_ms)),
            (Some(period), Some(due)) if due <= now_ms => {
                spend.dollars = 0.0;
                self.warned_soft = false;
                Some(roll_forward(period, due, now_ms))
            }
            (Some(period), Some(_)) if period_changed => Some(period.next_reset(now_ms)),
            (Some(_), due) => due,
        };
        if reset_at != spend.reset_at_ms {
            spend.reset_at_ms = reset_at;
            self.dirty = true;
        }
        Some(spend.dollars)
    }

    fn model_window(&mut self, model: &Arc<str>, now_ms: u64) -> &mut ModelWindow {
        let at = match self.models.iter().position(|entry| entry.name == *model) {
            Some(at) => at,
            None => {
                self.models.push(ModelWindow { name: Arc::clone(model), window: Window::default(), reserved: 0 });
                self.models.len() - 1
            }
        };
        let entry = &mut self.models[at];
        entry.window.roll(now_ms);
        entry
    }

    /// Starts from `spend` as stored (read from the ledger, or just written by an admin).
    pub fn load(&mut self, spend: Spend) {
        self.base = (spend.dollars, spend.reset_at_ms.unwrap_or(0));
        self.spend = Some(spend);
        self.verified = false;
    }

    /// Takes in what was settled to the key this one replaced, after its spend was read for the move: on top
    /// of the spend the move wrote (and, with replicas, still to be added up in Redis).
    pub fn take_over(&mut self, dollars: f64) {
        let spend = self.spend.get_or_insert_with(Spend::default);
        spend.dollars = (spend.dollars + dollars).min(crate::config::MAX_DOLLARS);
        self.unsent += dollars;
        (self.dirty, self.touched) = (true, true);
    }

    /// Takes in what every replica added in `period` (Redis's sum): the spend is the base plus that sum plus
    /// what was counted here since it was sent. A period that ended meanwhile is left to the next exchange.
    pub fn take_shared_sum(&mut self, period: u64, sum: f64) {
        let Some(spend) = self.spend.as_mut().filter(|spend| spend.reset_at_ms.unwrap_or(0) == period) else { return };
        self.verified = true;
        let sum = if sum.is_finite() { sum } else { 0.0 };
        let base = if self.base.1 == period { self.base.0 } else { 0.0 };
        spend.dollars = (base + sum + self.unsent).min(crate::config::MAX_DOLLARS);
    }

    /// Nothing here that memory must keep: no request in flight, no unsaved spend, every window over
    /// (`now_ms` on the monotonic clock).
    pub fn is_idle(&self, now_ms: u64) -> bool {
        self.in_flight == 0
            && self.reserved.is_empty()
            && self.handover.is_none()
            && !self.dirty
            && self.unsent == 0.0
            && self.window.is_over(now_ms)
            && self.models.iter().all(|entry| entry.reserved == 0 && entry.window.is_over(now_ms))
    }
}

/// The first reset after `now_ms` on the schedule that `due` was on: replicas that roll a key's period at
/// different moments agree on the next one (and so on where its spend is summed). A schedule far behind
/// (a key idle for thousands of periods) restarts from now.
fn roll_forward(period: BudgetPeriod, due: u64, now_ms: u64) -> u64 {
    let mut next = due;
    for _ in 0..1_000 {
        next = period.next_reset(next);
        if next > now_ms {
            return next;
        }
    }
    period.next_reset(now_ms)
}

/// What is left of `limit` once `used`.
pub(super) fn quota(limit: Option<u64>, used: u64) -> Option<Quota> {
    limit.map(|limit| Quota { limit, remaining: limit.saturating_sub(used) })
}

/// Refuses when `used` has reached `limit`.
fn check(
    limit: Option<u64>,
    used: u64,
    window: &Window,
    now_ms: u64,
    refuse: impl FnOnce(u64, Duration) -> MeterError,
) -> Result<(), MeterError> {
    match limit {
        Some(limit) if used >= limit => Err(refuse(limit, window.resets_in(now_ms))),
        _ => Ok(()),
    }
}
