//! What requests in flight hold in Redis when replicas share one: a parallel slot, and, so a budget, a
//! `tpm_limit` and a `model_tpm_limit` hold across all replicas as they do on one node, a request's
//! worst-case dollars (a lease in `tiergate:held:<key>`, summed with what every replica spent by the
//! admission script) and its estimated tokens (added to the key's shared window, and to its model's, at
//! admission).
//!
//! Given back so that there is never a moment where neither the hold nor the real count is in Redis: the
//! answer's cost goes into the next spend batch, and the hold's release rides in that same batch or a later
//! one (one script adds the cost and drops the holds); the answer's real token count replaces the estimate
//! in the same window (`actual - estimate`, never below 0). A window that ended between admission and answer
//! took the estimate with it: the real count is then added in full to the window running now, as the local
//! meter counts it. A hold whose replica died is given back once its heartbeat ends (`heartbeat.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use super::{lock, Effective, Reservation, SharedCounters, WINDOW};
use crate::redis_link::{ClusterError, PREFIX};

/// Adds an answer's tokens to a window: `ARGV[1]` (its count less the estimate admission added, may be
/// negative) when the window is still the one that started at `ARGV[3]`, else `ARGV[4]` (its count). Never
/// below 0; a window it creates starts now (`ARGV[5]`).
const ADD_TOKENS: &str = r#"
local add = ARGV[4]
if ARGV[3] ~= '0' and redis.call('HGET', KEYS[1], 'start') == ARGV[3] then add = ARGV[1] end
if tonumber(add) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[1], 'tokens', add) < 0 then redis.call('HSET', KEYS[1], 'tokens', 0) end
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('HSET', KEYS[1], 'start', ARGV[5])
end
return 1
"#;

/// A parallel slot held in Redis, or possibly taken by an admission script sent there; released (in the
/// background) when dropped, whatever dropped it (the answer's end, an error, or the request's future
/// dropped by a client that left while Redis had not answered yet).
pub struct SharedSlot {
    windows: Arc<SharedCounters>,
    set: String,
    member: String,
    /// A slot of this replica's lease for that key (`leased_slots.rs`): freed here, not in Redis.
    leased: Option<[u8; 32]>,
}

impl SharedSlot {
    pub(super) fn new(windows: &Arc<SharedCounters>, set: String, member: String) -> Self {
        Self { windows: Arc::clone(windows), set, member, leased: None }
    }

    pub(super) fn leased(windows: &Arc<SharedCounters>, key: &[u8; 32]) -> Self {
        Self { windows: Arc::clone(windows), set: String::new(), member: String::new(), leased: Some(*key) }
    }

    /// Nothing to give back: Redis refused the request, so no slot was taken.
    pub(super) fn disarm(mut self) {
        self.set.clear();
        self.leased = None;
    }
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
        if let Some(key) = self.leased.take() {
            self.windows.leased_slots.release(&key);
            return;
        }
        if self.set.is_empty() {
            return;
        }
        let (windows, set, member) =
            (Arc::clone(&self.windows), std::mem::take(&mut self.set), std::mem::take(&mut self.member));
        // Off the request: on the worker's runtime. Without one (never on a worker) the lease ends it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // Twice: a connection that died with a Redis restart fails once, then is opened anew.
                for _ in 0..2 {
                    let release = redis::cmd("ZREM").arg(&set).arg(&member).to_owned();
                    if windows.query::<i64>(release).await.is_ok() {
                        return;
                    }
                }
                // Redis is down (it persists the slot): given back with the next spend exchange once it is
                // back, not left taken for its whole lease, refusing the key on every replica meanwhile.
                lock(&windows.slot_releases).push((set, member));
            });
        }
    }
}

/// Sets a hold still held (`KEYS`: the key's leases and dollars; `ARGV`: its id) to its answer's real cost
/// (`ARGV[2]`), which then counts in its place until the spend batch with that cost gives it back. Setting
/// it twice sets the same: safe to send again, or to arrive after the batch (then nothing is held).
pub(super) const SHRINK: &str = r#"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[2], 'total', tonumber(ARGV[2]) - tonumber(held))
return 1
"#;

/// What admission asks Redis to hold for a request, with what the key's budget adds to there: the spend
/// entry's dollars (its base) and its period.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct HoldAsk {
    pub reservation: Reservation,
    pub base: f64,
    pub period: u64,
}

/// A key's hold in one window's tokens: the window (its name and start, `0` when unknown) and the change.
pub(super) struct TokenChange {
    window: String,
    start: u64,
    /// Added when the window is still the one that started at `start`.
    same_window: i64,
    /// Added otherwise.
    other_window: u64,
}

/// What an admitted request holds in Redis: its dollars (`id` in the key's holds), its estimated tokens
/// in the key's window, and in its model's window. Given back when dropped: the dollars by the next spend
/// exchange, the tokens by the next token batch, unless the answer's count took them over
/// ([`Self::take_tokens`], [`Self::take_model_tokens`]).
pub struct SharedHold {
    windows: Arc<SharedCounters>,
    key: [u8; 32],
    /// Empty: no dollars held.
    id: String,
    tokens: u64,
    /// When the key's window the tokens were added to started (`0`: not known, nothing to take back).
    start: u64,
    /// The estimate held in the window of the model the answer counts in (under its `model_tpm_limit`).
    model: Option<ModelEstimate>,
}

/// Tokens held in a key's window on one model, which started at `start` (`0`: not known, nothing to take
/// back).
struct ModelEstimate {
    name: Box<str>,
    tokens: u64,
    start: u64,
}

impl TokenChange {
    /// `tokens` added to the window that started at `start` (nothing if it ended).
    pub(super) fn added(window: String, start: u64, tokens: u64) -> Self {
        Self { window, start, same_window: tokens.min(i64::MAX as u64) as i64, other_window: 0 }
    }
}

impl SharedHold {
    pub(super) fn new(windows: &Arc<SharedCounters>, key: &[u8; 32], id: Option<&str>, tokens: u64) -> Self {
        let id = id.map(str::to_owned).unwrap_or_default();
        Self { windows: Arc::clone(windows), key: *key, id, tokens, start: 0, model: None }
    }

    /// Also holds `tokens` in the key's window on `model`.
    pub(super) fn in_model(mut self, model: &str, tokens: u64) -> Self {
        self.model = (tokens > 0).then(|| ModelEstimate { name: model.into(), tokens, start: 0 });
        self
    }

    /// The admission script added the tokens to the key's window that started at `start`, and to the model
    /// window that started at `model_start`.
    pub(super) fn counted_in(&mut self, start: u64, model_start: u64) {
        self.start = start;
        if let Some(model) = &mut self.model {
            model.start = model_start;
        }
    }

    /// Nothing is held: Redis refused the request.
    pub(super) fn disarm(mut self) {
        self.id.clear();
        self.tokens = 0;
        self.model = None;
    }

    /// Gives back what is held in the model window (the answer counts in another model's now), and takes
    /// over what `fallback` holds in its own model's window.
    pub(super) fn move_model(&mut self, fallback: Option<SharedHold>) {
        self.give_back_model();
        self.model = fallback.and_then(|mut fallback| fallback.model.take());
    }

    /// Gives back, with the next token batch, what is held in the model window.
    pub(super) fn give_back_model(&mut self) {
        if let Some(model) = self.model.take().filter(|model| model.start > 0 && model.tokens > 0) {
            let change = TokenChange {
                window: format!("{}:{}", window_name(&self.key), model.name),
                start: model.start,
                same_window: -(model.tokens.min(i64::MAX as u64) as i64),
                other_window: 0,
            };
            lock(&self.windows.pending).push(change);
        }
    }

    /// The estimate held in `key`'s window on `model`, with that window's start, taken over by the answer's
    /// count.
    pub(super) fn take_model_tokens(&mut self, key: &[u8; 32], model: &str) -> Option<(u64, u64)> {
        // Another key's or model's estimate (never expected) is left for the drop to give back.
        if *key != self.key || self.model.as_ref().is_some_and(|held| &*held.name != model) {
            return None;
        }
        let held = self.model.take()?;
        (held.start > 0 && held.tokens > 0).then_some((held.start, held.tokens))
    }

    /// The answer is counted here at `cost`: its hold of dollars becomes that cost at once (in the background,
    /// so a key near its budget is not refused for a worst case that is over), and is given back with the
    /// spend batch that carries the cost.
    pub(super) fn settled_at(self, cost: f64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.id.is_empty() || !cost.is_finite() {
            return;
        }
        let (windows, [leases, dollars], id) = (Arc::clone(&self.windows), held_names(&self.key), self.id.clone());
        runtime.spawn(async move {
            let mut invocation = windows.shrink.prepare_invoke();
            invocation.key(leases).key(dollars).arg(id).arg(cost.max(0.0).to_string());
            let invocation = &invocation;
            // Not sent: the worst case counts until the batch gives it back (later, never wrong).
            let _ = windows
                .call(|mut connection| async move { invocation.invoke_async::<i64>(&mut connection).await })
                .await;
        });
    }

    /// The estimate held in `key`'s window, with that window's start, taken over by the answer's count.
    pub(super) fn take_tokens(&mut self, key: &[u8; 32]) -> Option<(u64, u64)> {
        let held = (self.start > 0 && self.tokens > 0 && *key == self.key).then_some((self.start, self.tokens));
        self.tokens = 0;
        held
    }
}

impl Drop for SharedHold {
    fn drop(&mut self) {
        self.give_back_model();
        if self.start > 0 && self.tokens > 0 {
            let change = TokenChange {
                window: window_name(&self.key),
                start: self.start,
                same_window: -(self.tokens.min(i64::MAX as u64) as i64),
                other_window: 0,
            };
            lock(&self.windows.pending).push(change);
        }
        if !self.id.is_empty() {
            // After the answer's cost (if any) was counted: the next exchange carries both, or the cost went
            // in an earlier one (`share_spend` takes these before it gathers costs).
            lock(&self.windows.releases).push((self.key, std::mem::take(&mut self.id)));
        }
    }
}

/// An estimate held in a shared window: when that window started, and the tokens.
pub(super) type Estimate = (u64, u64);

/// A key's window hash in Redis.
pub(super) fn window_name(key: &[u8; 32]) -> String {
    format!("{PREFIX}window:{}", crate::metrics::hex(key))
}

/// A key's set of parallel slots in Redis.
pub(super) fn slots_name(key: &[u8; 32]) -> String {
    format!("{PREFIX}slots:{}", crate::metrics::hex(key))
}

/// A key's window hash in Redis for `model` (the same name the admission script counts in).
pub(super) fn model_window_name(key: &[u8; 32], model: &str) -> String {
    format!("{}:{model}", window_name(key))
}

/// A key's holds in Redis: the leases (a sorted set: id → when it ends) and the dollars of each (a hash: id
/// → dollars, and their `total`).
pub(super) fn held_names(key: &[u8; 32]) -> [String; 2] {
    let hex = crate::metrics::hex(key);
    [format!("{PREFIX}held:{hex}"), format!("{PREFIX}held:{hex}:dollars")]
}

impl SharedCounters {
    /// Queues an answer's tokens for the windows that count them (sent by [`Self::flush_tokens`]); `held`
    /// and `model_held`: the estimates admission added to the key's window and to its window on `model`
    /// (each's start and tokens), which this count replaces.
    pub(super) fn count_tokens(
        &self,
        key: &[u8; 32],
        model: &str,
        limits: &Effective,
        tokens: u64,
        (held, model_held): (Option<Estimate>, Option<Estimate>),
    ) {
        let mut changes = Vec::with_capacity(2);
        if (limits.rpm.is_some() || limits.tpm.is_some()) && (tokens > 0 || held.is_some()) {
            let (start, estimate) = held.unwrap_or_default();
            let same_window = (tokens.min(i64::MAX as u64) as i64).saturating_sub(estimate.min(i64::MAX as u64) as i64);
            changes.push(TokenChange { window: window_name(key), start, same_window, other_window: tokens });
        }
        if (limits.model_rpm.is_some() || limits.model_tpm.is_some()) && (tokens > 0 || model_held.is_some()) {
            let window = model_window_name(key, model);
            let (start, estimate) = model_held.unwrap_or_default();
            let same_window = (tokens.min(i64::MAX as u64) as i64).saturating_sub(estimate.min(i64::MAX as u64) as i64);
            changes.push(TokenChange { window, start, same_window, other_window: tokens });
        }
        if !changes.is_empty() {
            lock(&self.pending).extend(changes);
        }
    }

    /// Adds the queued tokens in Redis, in one pipeline. Blocking: for the meter's persist thread. Tokens
    /// that cannot be sent while Redis is down are dropped (the windows they belong to are short; an
    /// estimate not taken back then counts until its window ends).
    pub fn flush_tokens(&self) -> Result<(), ClusterError> {
        let now_ms = super::millis(std::time::SystemTime::now());
        let pending = std::mem::take(&mut *lock(&self.pending));
        if pending.is_empty() {
            return Ok(());
        }
        let mut per_window: HashMap<(String, u64), (i64, u64)> = HashMap::new();
        for change in pending {
            let sum = per_window.entry((change.window, change.start)).or_default();
            *sum = (sum.0.saturating_add(change.same_window), sum.1.saturating_add(change.other_window));
        }
        let mut pipeline = redis::pipe();
        for ((window, start), (same_window, other_window)) in &per_window {
            // EVAL, not EVALSHA: a pipeline cannot load a script that a restarted Redis forgot.
            pipeline.cmd("EVAL").arg(ADD_TOKENS).arg(1).arg(window).arg(same_window);
            pipeline.arg(WINDOW.as_millis() as u64).arg(start).arg(other_window).arg(now_ms).ignore();
        }
        self.redis().run(|connection| pipeline.query::<()>(connection))
    }
}

impl super::Meter {
    /// What a key's budget adds to in Redis: its spend entry's dollars for the current period (its base)
    /// and that period (the time it resets; 0 when never).
    pub(super) fn budget_base(&self, key: &[u8; 32]) -> (f64, u64) {
        let shard = self.shard(key);
        let Some((base, Some(spend))) = shard.accounts.get(key).map(|account| (account.base, account.spend)) else {
            return (0.0, 0);
        };
        let period = spend.reset_at_ms.unwrap_or(0);
        (if base.1 == period { base.0 } else { 0.0 }, period)
    }
}
