//! Leased slices of a shared window, so most requests of a key limited by a large `rpm_limit`, `tpm_limit`
//! and `max_parallel_requests` need no round trip to Redis: a replica takes a slice of the key's request
//! and token window out of Redis at once (counted there, so the slices every replica holds never add up to
//! more than the limit), admits from it locally, and gives back what it did not use once the slice sat idle
//! for [`GIVE_BACK_AFTER`] (by its periodic exchange). Parallel slots are leased in batches the same way
//! (`leased_slots.rs`). The only imprecision slices add is under-admission: a replica may be refused while
//! another holds an idle slice, for at most that time plus one exchange. Tokens overshoot exactly as on one
//! node: a request is admitted while the window is not used up, and its estimate may cross the limit.
//!
//! Only for keys whose shared limits are each at least their `EXACT_BELOW_*`; smaller limits, and keys with
//! per-model limits or a budget, keep the exact per-request admission.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::account::quota;
use super::held::{window_name, SharedHold, TokenChange};
use super::shared::SharedChecked;
use super::slice_scripts::{GIVE_BACK, TAKE};
use super::{lock, Effective, MeterError, SharedCounters, WINDOW};
use crate::redis_link::ClusterError;

/// Below this `rpm_limit` every request is admitted by Redis itself (exact): a slice would be a handful of
/// requests, and what idle slices keep from other replicas would matter.
pub(super) const EXACT_BELOW: u64 = 100;
/// Below this `tpm_limit` every request is admitted by Redis itself: a slice (a twentieth) would be smaller
/// than a request's usual estimate, so nearly every request would take one anyway.
pub(super) const EXACT_BELOW_TOKENS: u64 = 100_000;
/// How many slices a window is cut into at most: a replica takes `limit / SLICES` per round trip.
pub(super) const SLICES: u64 = 20;
/// How long an unused slice waits before it is given back (at the next exchange after this).
pub(super) const GIVE_BACK_AFTER: Duration = Duration::from_secs(1);
/// Slices are kept in this many maps, picked by the key's hash, so replicas' workers rarely wait on each other.
pub(super) const SHARDS: usize = 16;

/// The shared limits a key is admitted by slices under (each `None` when it has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sliced {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub parallel: Option<u64>,
}

/// What this replica holds of one key's window.
#[derive(Clone, Copy)]
struct Slice {
    /// When the window in Redis started (its id there), and when it ends here.
    start: u64,
    ends: Instant,
    left: u64,
    tokens_left: u64,
    /// The window's counts in Redis when the slice was taken (for the remaining-requests/tokens headers).
    counted: u64,
    tokens_counted: u64,
    used: Instant,
    /// A request here is taking a new slice from Redis.
    taking: bool,
}

impl Slice {
    fn empty(now: Instant) -> Self {
        Self { start: 0, ends: now, left: 0, tokens_left: 0, counted: 0, tokens_counted: 0, used: now, taking: false }
    }
}

/// A request taking a new slice of a key's window: when it ends (answered, failed or dropped), the next
/// request that finds no slice may take one.
struct Taking<'a> {
    slices: &'a Slices,
    key: &'a [u8; 32],
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        if let Some(slice) = lock(self.slices.shard(self.key)).get_mut(self.key) {
            slice.taking = false;
        }
    }
}

/// The slices this replica holds, per key.
pub(super) struct Slices {
    shards: Vec<Mutex<HashMap<[u8; 32], Slice>>>,
    take: redis::Script,
}

impl Slices {
    pub fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), take: redis::Script::new(TAKE) }
    }

    fn shard(&self, key: &[u8; 32]) -> &Mutex<HashMap<[u8; 32], Slice>> {
        &self.shards[key[0] as usize % SHARDS]
    }
}

/// The limits a key is admitted by slices under, if it is: only request, token and parallel limits (no
/// per-model limit, no budget hold), each large enough, at least one.
pub(super) fn sliced(limits: &Effective, holds_budget: bool) -> Option<Sliced> {
    let large = |limit: Option<u64>, below: u64| limit.is_none_or(|limit| limit >= below);
    let sliceable = limits.model_rpm.is_none()
        && limits.model_tpm.is_none()
        && !holds_budget
        && large(limits.rpm, EXACT_BELOW)
        && large(limits.tpm, EXACT_BELOW_TOKENS)
        && large(limits.parallel, super::leased_slots::EXACT_BELOW_SLOTS);
    let any = limits.rpm.is_some() || limits.tpm.is_some() || limits.parallel.is_some();
    (sliceable && any).then_some(Sliced { rpm: limits.rpm, tpm: limits.tpm, parallel: limits.parallel })
}

/// One request taken from a slice: the window's counts as known here and what is left of each, the window's
/// start, and the part of its estimate the slice did not have (added to the window in Redis).
struct FromSlice {
    counted: (u64, u64),
    left: (u64, u64),
    start: u64,
    short: u64,
}

impl SharedCounters {
    /// Admits one request of `key` (estimated at `estimate` tokens) under `limits` from this replica's slice
    /// and leased slots, taking a new slice (or batch of slots) from Redis when it has none left: `Ok(Err)`
    /// refused (used up everywhere), `Err` Redis failed (the caller counts locally instead).
    pub(super) async fn admit_sliced(
        self: &Arc<Self>,
        key: &[u8; 32],
        limits: Sliced,
        estimate: u64,
        now_ms: u64,
    ) -> Result<Result<SharedChecked, MeterError>, ClusterError> {
        // The slot first: a request it refuses takes nothing from the window (as the admission script).
        let slot = match limits.parallel {
            Some(parallel) => match self.lease_slot(key, parallel, now_ms).await? {
                Ok(slot) => Some(slot),
                Err(refusal) => return Ok(Err(refusal)),
            },
            None => None,
        };
        if limits.rpm.is_none() && limits.tpm.is_none() {
            let checked = SharedChecked {
                requests: None,
                tokens: None,
                model_requests: None,
                model_tokens: None,
                slot,
                hold: None,
            };
            return Ok(Ok(checked));
        }
        let estimate = limits.tpm.map_or(0, |_| estimate);
        let taken = match self.one_from_slice(key, limits, estimate, true) {
            Ok(taken) => taken,
            Err(wanted) => {
                let wanted = wanted.ok_or_else(|| ClusterError::Protocol("a slice wanted nothing".into()))?;
                match self.take_slice(key, limits, estimate, wanted, now_ms).await? {
                    Ok(taken) => taken,
                    Err(refusal) => return Ok(Err(refusal)),
                }
            }
        };
        if taken.short > 0 {
            // The window had less than the estimate left: the rest is added in Redis, as the admission script
            // adds the whole estimate (one node's overshoot, no more).
            let change = TokenChange::added(window_name(key), taken.start, taken.short);
            lock(&self.pending).push(change);
        }
        let hold = (estimate > 0).then(|| {
            let mut hold = SharedHold::new(self, key, None, estimate);
            hold.counted_in(taken.start, 0);
            hold
        });
        Ok(Ok(SharedChecked {
            requests: limits.rpm.and_then(|rpm| quota(Some(rpm), taken.counted.0.saturating_sub(taken.left.0))),
            tokens: limits.tpm.and_then(|tpm| quota(Some(tpm), taken.counted.1.saturating_sub(taken.left.1))),
            model_requests: None,
            model_tokens: None,
            slot,
            hold,
        }))
    }

    /// Takes a slice (what `wanted` asks) from Redis, and the rest of this request from it.
    async fn take_slice(
        self: &Arc<Self>,
        key: &[u8; 32],
        limits: Sliced,
        estimate: u64,
        wanted: Wanted,
        now_ms: u64,
    ) -> Result<Result<FromSlice, MeterError>, ClusterError> {
        // One slice taken at a time per key here (the requests that find none while it is on its way take
        // only themselves, so a burst does not pile many slices up on one replica).
        let _taking = wanted.whole.then(|| Taking { slices: &self.slices, key });
        // Given back to the slice if Redis refuses (or fails), not lost until the window ends.
        let mut lent = Lent { slices: &self.slices, key, wanted: Some(wanted) };
        let limit = |limit: Option<u64>| limit.map(|limit| limit.to_string()).unwrap_or_default();
        let mut invocation = self.slices.take.prepare_invoke();
        invocation.key(window_name(key)).arg(limit(limits.rpm)).arg(wanted.requests);
        invocation.arg(limit(limits.tpm)).arg(wanted.tokens).arg(WINDOW.as_millis() as u64).arg(now_ms);
        let invocation = &invocation;
        let answer: Vec<i64> =
            self.call(|mut connection| async move { invocation.invoke_async(&mut connection).await }).await?;
        let number = |at: usize| answer.get(at).copied().unwrap_or(0).max(0) as u64;
        let (short, took, counted, left_ms, start) =
            (number(0), (number(1), number(2)), (number(3), number(4)), number(5), number(6));
        if short > 0 {
            drop(lent);
            // Used up in Redis, maybe by the slice another request here has just brought.
            return Ok(self.one_from_slice(key, limits, estimate, false).map_err(|_| {
                let resets_in = Duration::from_millis(left_ms);
                match short {
                    1 => MeterError::Requests { limit: limits.rpm.unwrap_or(0), resets_in },
                    _ => MeterError::Tokens { limit: limits.tpm.unwrap_or(0), resets_in },
                }
            }));
        }
        lent.wanted = None;
        let now = Instant::now();
        let ends = now + Duration::from_millis(left_ms);
        let mut slices = lock(self.slices.shard(key));
        let fresh = Slice { start, ends, counted: counted.0, tokens_counted: counted.1, ..Slice::empty(now) };
        let slice = slices.entry(*key).or_insert(fresh);
        if slice.start != start || slice.ends <= now {
            // The window the old slice was of has ended in Redis, and its leftover with it.
            *slice = Slice { taking: slice.taking, ..fresh };
        }
        slice.left += took.0;
        slice.tokens_left += took.1;
        slice.counted = slice.counted.max(counted.0);
        slice.tokens_counted = slice.tokens_counted.max(counted.1);
        slice.used = now;
        // The rest of this request: admitted by Redis, whatever the slice holds now.
        if wanted.requests > 0 {
            slice.left = slice.left.saturating_sub(1);
        }
        let rest = estimate - wanted.tokens_got;
        let from_slice = rest.min(slice.tokens_left);
        slice.tokens_left -= from_slice;
        Ok(Ok(FromSlice {
            counted: (slice.counted, slice.tokens_counted),
            left: (slice.left, slice.tokens_left),
            start,
            short: rest - from_slice,
        }))
    }

    /// One request from this replica's slice of `key`'s window, if it has what it needs left; else (with
    /// `may_take`) what to take from Redis, having taken what the slice had: a slice, or only this request
    /// while another request here is taking one.
    fn one_from_slice(
        &self,
        key: &[u8; 32],
        limits: Sliced,
        estimate: u64,
        may_take: bool,
    ) -> Result<FromSlice, Option<Wanted>> {
        let now = Instant::now();
        let mut slices = lock(self.slices.shard(key));
        let slice = slices.entry(*key).or_insert(Slice::empty(now));
        if slice.ends <= now {
            (slice.left, slice.tokens_left) = (0, 0);
        }
        let needs_requests = limits.rpm.is_some() && slice.left == 0;
        // As on one node, a request needs room in the window: at least one token, and its estimate in full
        // from the slice (else it asks Redis for what it lacks, so only the request that uses the window up
        // crosses the limit, by what its estimate lacked).
        let needs_tokens = limits.tpm.is_some() && slice.tokens_left < estimate.max(1);
        if !needs_requests && !needs_tokens {
            return Ok(one(slice, limits, estimate, now));
        }
        if !may_take {
            return Err(None);
        }
        if limits.rpm.is_some() && !needs_requests {
            slice.left -= 1;
        }
        let tokens_got = estimate.min(slice.tokens_left);
        slice.tokens_left -= tokens_got;
        let lacking = if needs_tokens { (estimate - tokens_got).max(1) } else { 0 };
        let whole = !slice.taking;
        slice.taking |= whole;
        let (requests, tokens) = match whole {
            true => (
                limits.rpm.filter(|_| needs_requests).map_or(0, |rpm| (rpm / SLICES).max(1)),
                limits.tpm.filter(|_| needs_tokens).map_or(0, |tpm| (tpm / SLICES).max(lacking)),
            ),
            false => (u64::from(needs_requests), lacking),
        };
        Err(Some(Wanted {
            requests,
            tokens,
            took_request: limits.rpm.is_some() && !needs_requests,
            tokens_got,
            start: slice.start,
            whole,
        }))
    }

    /// Gives back, in one pipeline, what slices idle for [`GIVE_BACK_AFTER`] did not use, and forgets slices
    /// whose window ended. Blocking: for the meter's persist thread. Not sent (Redis down): those requests
    /// stay counted until their window ends, as the admissions they stood for would have been.
    pub(super) fn give_back_slices(&self) {
        let now = Instant::now();
        let mut unused = Vec::new();
        for shard in &self.slices.shards {
            lock(shard).retain(|key, slice| {
                if slice.ends <= now && !slice.taking {
                    return false;
                }
                if (slice.left > 0 || slice.tokens_left > 0) && now.duration_since(slice.used) >= GIVE_BACK_AFTER {
                    let left = (std::mem::take(&mut slice.left), std::mem::take(&mut slice.tokens_left));
                    unused.push((*key, slice.start, left));
                }
                true
            });
        }
        if unused.is_empty() {
            return;
        }
        let mut pipeline = redis::pipe();
        for (key, start, left) in &unused {
            // EVAL, not EVALSHA: a pipeline cannot load a script that a restarted Redis forgot.
            pipeline
                .cmd("EVAL")
                .arg(GIVE_BACK)
                .arg(1)
                .arg(window_name(key))
                .arg(left.0)
                .arg(start)
                .arg(left.1)
                .ignore();
        }
        if let Err(err) = self.redis().run(|connection| pipeline.query::<()>(connection)) {
            log::warn!(
                "{} unused slice(s) of request and token windows could not be given back in Redis ({err})",
                unused.len()
            );
        }
    }
}

/// What a request asks Redis for when its replica's slice lacks something, and what it took of the slice.
#[derive(Clone, Copy)]
struct Wanted {
    requests: u64,
    tokens: u64,
    /// It took its request, and these tokens, from the slice of the window that started at `start`.
    took_request: bool,
    tokens_got: u64,
    start: u64,
    /// A whole slice: this request is the one taking it for the key.
    whole: bool,
}

/// What a request took of its slice before asking Redis for the rest: put back unless it was admitted.
struct Lent<'a> {
    slices: &'a Slices,
    key: &'a [u8; 32],
    wanted: Option<Wanted>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let Some(wanted) = self.wanted else { return };
        if let Some(slice) = lock(self.slices.shard(self.key)).get_mut(self.key) {
            if slice.start == wanted.start {
                slice.left += u64::from(wanted.took_request);
                slice.tokens_left += wanted.tokens_got;
            }
        }
    }
}

/// Takes one request (and its estimate) from `slice`: what it lacks of its estimate is `short`.
fn one(slice: &mut Slice, limits: Sliced, estimate: u64, now: Instant) -> FromSlice {
    if limits.rpm.is_some() {
        slice.left = slice.left.saturating_sub(1);
    }
    let from_slice = estimate.min(slice.tokens_left);
    slice.tokens_left -= from_slice;
    slice.used = now;
    FromSlice {
        counted: (slice.counted, slice.tokens_counted),
        left: (slice.left, slice.tokens_left),
        start: slice.start,
        short: estimate - from_slice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_large_enough_request_token_and_parallel_limits_are_sliced() {
        let rpm = |rpm| Effective { rpm: Some(rpm), ..Effective::default() };
        let all = Sliced { rpm: Some(1000), tpm: Some(EXACT_BELOW_TOKENS), parallel: Some(100) };
        assert_eq!(sliced(&rpm(1000), false), Some(Sliced { rpm: Some(1000), tpm: None, parallel: None }));
        assert_eq!(sliced(&Effective { tpm: all.tpm, parallel: all.parallel, ..rpm(1000) }, false), Some(all));
        assert_eq!(sliced(&rpm(EXACT_BELOW - 1), false), None, "small limits stay exact");
        assert_eq!(sliced(&rpm(1000), true), None, "a budget hold needs the admission script");
        assert_eq!(sliced(&Effective { parallel: Some(99), ..rpm(1000) }, false), None);
        assert_eq!(sliced(&Effective { tpm: Some(EXACT_BELOW_TOKENS - 1), ..rpm(1000) }, false), None);
        assert_eq!(sliced(&Effective { model_rpm: Some(1000), ..rpm(1000) }, false), None);
        assert_eq!(sliced(&Effective::default(), false), None);
    }
}
