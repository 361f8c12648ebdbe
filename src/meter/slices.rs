//! Leased slices of a shared request window, so most requests of a key limited by `rpm_limit` alone need no
//! round trip to Redis: a replica takes a slice of the key's window out of Redis at once (counted there, so
//! the slices every replica holds never add up to more than the limit: no overshoot), admits from it
//! locally, and gives back what it did not use once the slice sat idle for [`GIVE_BACK_AFTER`] (by its
//! periodic exchange). The only imprecision is under-admission: a replica may be refused while another
//! holds an idle slice, for at most that time plus one exchange.
//!
//! Only for keys whose one shared limit is `rpm_limit` of at least [`EXACT_BELOW`]; smaller limits, and
//! keys with token, parallel, per-model limits or a budget, keep the exact per-request admission.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::account::quota;
use super::held::window_name;
use super::shared::SharedChecked;
use super::{lock, Effective, MeterError, SharedCounters, WINDOW};
use crate::redis_link::ClusterError;

/// Below this `rpm_limit` every request is admitted by Redis itself (exact): a slice would be a handful of
/// requests, and what idle slices keep from other replicas would matter.
pub(super) const EXACT_BELOW: u64 = 100;
/// How many slices a window is cut into at most: a replica takes `limit / SLICES` requests per round trip.
const SLICES: u64 = 20;
/// How long an unused slice waits before it is given back (at the next exchange after this).
pub(super) const GIVE_BACK_AFTER: Duration = Duration::from_secs(1);
/// Slices are kept in this many maps, picked by the key's hash, so replicas' workers rarely wait on each other.
const SHARDS: usize = 16;

/// Takes up to `ARGV[2]` requests of a window (`KEYS[1]`) limited to `ARGV[1]`: answers what it took (0:
/// the window is used up), the window's count after, the milliseconds it has left and when it started.
/// A window it creates lasts `ARGV[3]` ms and starts at `ARGV[4]`, as the admission script's.
const TAKE: &str = r#"
local requests = tonumber(redis.call('HGET', KEYS[1], 'requests') or '0')
local take = math.min(math.max(tonumber(ARGV[1]) - requests, 0), tonumber(ARGV[2]))
if take > 0 then
  redis.call('HINCRBY', KEYS[1], 'requests', take)
  if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    redis.call('HSET', KEYS[1], 'start', ARGV[4])
  end
end
local start = tonumber(redis.call('HGET', KEYS[1], 'start') or '0')
return {take, requests + take, redis.call('PTTL', KEYS[1]), start}
"#;

/// Gives `ARGV[1]` unused requests back to a window (`KEYS[1]`), if it is still the one that started at
/// `ARGV[2]` (a window that ended took them with it); never below 0.
const GIVE_BACK: &str = r#"
if redis.call('HGET', KEYS[1], 'start') ~= ARGV[2] then return 0 end
if redis.call('HINCRBY', KEYS[1], 'requests', -tonumber(ARGV[1])) < 0 then redis.call('HSET', KEYS[1], 'requests', 0) end
return 1
"#;

/// What this replica holds of one key's window.
#[derive(Clone, Copy)]
struct Slice {
    /// When the window in Redis started (its id there), and when it ends here.
    start: u64,
    ends: Instant,
    left: u64,
    /// The window's count in Redis when the slice was taken (for the remaining-requests header).
    counted: u64,
    used: Instant,
    /// A request here is taking a new slice from Redis.
    taking: bool,
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

/// The `rpm_limit` a key is admitted by slices under, if it is: its only shared limit, and large enough.
pub(super) fn sliced(limits: &Effective, holds_budget: bool) -> Option<u64> {
    let only_rpm = limits.tpm.is_none()
        && limits.parallel.is_none()
        && limits.model_rpm.is_none()
        && limits.model_tpm.is_none()
        && !holds_budget;
    limits.rpm.filter(|rpm| only_rpm && *rpm >= EXACT_BELOW)
}

impl SharedCounters {
    /// Admits one request of `key` (limited to `rpm` requests a window) from this replica's slice, taking a
    /// new slice from Redis when it has none left: `Ok(Err)` refused (the window is used up everywhere),
    /// `Err` Redis failed (the caller counts locally instead).
    pub(super) async fn admit_sliced(
        self: &Arc<Self>,
        key: &[u8; 32],
        rpm: u64,
        now_ms: u64,
    ) -> Result<Result<SharedChecked, MeterError>, ClusterError> {
        let checked = |counted: u64, left: u64| SharedChecked {
            requests: quota(Some(rpm), counted.saturating_sub(left)),
            tokens: None,
            model_requests: None,
            model_tokens: None,
            slot: None,
            hold: None,
        };
        let size = match self.one_from_slice(key, rpm) {
            Ok((counted, left)) => return Ok(Ok(checked(counted, left))),
            Err(size) => size,
        };
        // One slice taken at a time per key here: the requests that find none while it is on its way take
        // only themselves, so a burst does not pile many slices up on one replica.
        let _taking = (size > 1).then(|| Taking { slices: &self.slices, key });
        let mut invocation = self.slices.take.prepare_invoke();
        invocation.key(window_name(key)).arg(rpm).arg(size).arg(WINDOW.as_millis() as u64).arg(now_ms);
        let invocation = &invocation;
        let answer: Vec<i64> =
            self.call(|mut connection| async move { invocation.invoke_async(&mut connection).await }).await?;
        let number = |at: usize| answer.get(at).copied().unwrap_or(0).max(0) as u64;
        let (took, counted, left_ms, start) = (number(0), number(1), number(2), number(3));
        if took == 0 {
            // The window is used up in Redis, maybe by the slice another request here has just brought.
            return Ok(match self.one_from_slice(key, 1) {
                Ok((counted, left)) => Ok(checked(counted, left)),
                Err(_) => Err(MeterError::Requests { limit: rpm, resets_in: Duration::from_millis(left_ms) }),
            });
        }
        let now = Instant::now();
        let ends = now + Duration::from_millis(left_ms);
        let mut slices = lock(self.slices.shard(key));
        let fresh = Slice { start, ends, left: 0, counted, used: now, taking: false };
        let slice = slices.entry(*key).or_insert(fresh);
        if slice.start != start || slice.ends <= now {
            // The window the old slice was of has ended in Redis, and its leftover with it.
            *slice = Slice { taking: slice.taking, ..fresh };
        }
        // This request takes one of the slice.
        slice.left += took - 1;
        slice.counted = slice.counted.max(counted);
        slice.used = now;
        Ok(Ok(checked(slice.counted, slice.left)))
    }

    /// One request from this replica's slice of `key`'s window, if it has one left (the window's count as
    /// known here, and what is left); else how many to take from Redis: a slice, or only this request while
    /// another request here is taking one.
    fn one_from_slice(&self, key: &[u8; 32], rpm: u64) -> Result<(u64, u64), u64> {
        let now = Instant::now();
        let mut slices = lock(self.slices.shard(key));
        let slice =
            slices.entry(*key).or_insert(Slice { start: 0, ends: now, left: 0, counted: 0, used: now, taking: false });
        if slice.left > 0 && slice.ends > now {
            slice.left -= 1;
            slice.used = now;
            return Ok((slice.counted, slice.left));
        }
        if slice.taking {
            return Err(1);
        }
        slice.taking = true;
        Err((rpm / SLICES).max(1))
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
                if slice.left > 0 && now.duration_since(slice.used) >= GIVE_BACK_AFTER {
                    unused.push((*key, slice.start, std::mem::take(&mut slice.left)));
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
            pipeline.cmd("EVAL").arg(GIVE_BACK).arg(1).arg(window_name(key)).arg(left).arg(start).ignore();
        }
        if let Err(err) = self.redis().run(|connection| pipeline.query::<()>(connection)) {
            log::warn!("{} unused slice(s) of request windows could not be given back in Redis ({err})", unused.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_large_enough_rpm_limit_alone_is_sliced() {
        let rpm = |rpm| Effective { rpm: Some(rpm), ..Effective::default() };
        assert_eq!(sliced(&rpm(1000), false), Some(1000));
        assert_eq!(sliced(&rpm(EXACT_BELOW - 1), false), None, "small limits stay exact");
        assert_eq!(sliced(&rpm(1000), true), None, "a budget hold needs the admission script");
        assert_eq!(sliced(&Effective { parallel: Some(5), ..rpm(1000) }, false), None);
        assert_eq!(sliced(&Effective { tpm: Some(5), ..rpm(1000) }, false), None);
        assert_eq!(sliced(&Effective::default(), false), None);
    }
}
