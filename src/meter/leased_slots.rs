//! Parallel slots leased in batches (#22): a replica takes a few of a key's slots in Redis at once (members
//! named for this replica, so they end with its heartbeat when it dies, as a request's slot does), admits
//! requests into them locally, and gives back the free ones once they sat idle for [`GIVE_BACK_AFTER`]. The
//! slots leased over all replicas never add up to more than `max_parallel_requests` (taken atomically in
//! Redis): no overshoot; the imprecision is under-admission while other replicas hold idle free slots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::heartbeat::{alive_prefix, BACKSTOP};
use super::held::{slots_name, SharedSlot};
use super::slices::{GIVE_BACK_AFTER, SHARDS, SLICES};
use super::{lock, MeterError, SharedCounters};
use crate::redis_link::ClusterError;

/// Below this `max_parallel_requests` every request takes its own slot in Redis (exact): a batch would be
/// one slot, and the free slots other replicas hold would matter.
pub(super) const EXACT_BELOW_SLOTS: u64 = 100;

/// Takes up to `ARGV[2]` of a key's slots (`KEYS[1]`, limited to `ARGV[1]`), as members `ARGV[8..]` leased
/// until `ARGV[4]` + `ARGV[3]`: answers how many it took (the first that many members). Slots past their
/// lease, and when there is no room those of replicas whose heartbeat (`ARGV[5]` + id) ended, are dropped
/// first. Keeps this replica's heartbeat (`ARGV[6]`, lease `ARGV[7]` ms) before taking, as admission does.
const TAKE_SLOTS: &str = r#"
local now, limit, want = tonumber(ARGV[4]), tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) + want > limit then
  local seen = {}
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local replica = string.match(member, '^(%x+):')
    if replica then
      if seen[replica] == nil then seen[replica] = redis.call('EXISTS', ARGV[5] .. replica) == 1 end
      if not seen[replica] then redis.call('ZREM', KEYS[1], member) end
    end
  end
end
local take = math.min(math.max(limit - redis.call('ZCARD', KEYS[1]), 0), want)
if take > 0 then
  redis.call('SET', ARGV[5] .. ARGV[6], '1', 'PX', ARGV[7], 'NX')
  for i = 1, take do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[7 + i]) end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return take
"#;

/// The slots this replica leased of one key.
struct Lease {
    /// The leased members in Redis; `in_use` of them hold a request here.
    members: Vec<String>,
    in_use: usize,
    used: Instant,
    /// A request here is taking a batch from Redis.
    taking: bool,
}

/// The slots this replica leased, per key.
pub(super) struct LeasedSlots {
    shards: Vec<Mutex<HashMap<[u8; 32], Lease>>>,
    take: redis::Script,
    /// Numbers this replica's leased members (unique while it runs).
    numbered: AtomicU64,
}

impl LeasedSlots {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            take: redis::Script::new(TAKE_SLOTS),
            numbered: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &[u8; 32]) -> &Mutex<HashMap<[u8; 32], Lease>> {
        &self.shards[key[0] as usize % SHARDS]
    }

    /// One leased slot in use, if one is free (else, with `may_take`, marks a batch being taken: `Err(true)`).
    fn acquire(&self, key: &[u8; 32], may_take: bool) -> Result<(), bool> {
        let now = Instant::now();
        let mut shard = lock(self.shard(key));
        let lease = shard.entry(*key).or_insert(Lease { members: Vec::new(), in_use: 0, used: now, taking: false });
        if lease.in_use < lease.members.len() {
            lease.in_use += 1;
            lease.used = now;
            return Ok(());
        }
        let whole = may_take && !lease.taking;
        lease.taking |= whole;
        Err(whole)
    }

    /// A request here ended: its leased slot is free for the next one.
    pub(super) fn release(&self, key: &[u8; 32]) {
        if let Some(lease) = lock(self.shard(key)).get_mut(key) {
            lease.in_use = lease.in_use.saturating_sub(1);
            lease.used = Instant::now();
        }
    }
}

impl SharedCounters {
    /// A parallel slot of `key` (limited to `parallel`) from this replica's lease, leasing a batch from
    /// Redis when none is free: `Ok(Err)` refused (every slot is taken), `Err` Redis failed.
    pub(super) async fn lease_slot(
        self: &Arc<Self>,
        key: &[u8; 32],
        parallel: u64,
        now_ms: u64,
    ) -> Result<Result<SharedSlot, MeterError>, ClusterError> {
        let leases = &self.leased_slots;
        let whole = match leases.acquire(key, true) {
            Ok(()) => return Ok(Ok(SharedSlot::leased(self, key))),
            Err(whole) => whole,
        };
        let _taking = whole.then(|| Taking { leases, key });
        let want = if whole { (parallel / SLICES).max(1) } else { 1 };
        let first = leases.numbered.fetch_add(want, Ordering::Relaxed);
        let members: Vec<String> = (first..first + want).map(|n| format!("{}:lease{n}", self.replica)).collect();
        let mut invocation = leases.take.prepare_invoke();
        invocation.key(slots_name(key)).arg(parallel).arg(want).arg(BACKSTOP.as_millis() as u64).arg(now_ms);
        invocation.arg(alive_prefix()).arg(&self.replica).arg(self.heartbeat.lease().as_millis() as u64);
        for member in &members {
            invocation.arg(member);
        }
        let invocation = &invocation;
        // From the moment the script may run until its answer is recorded here, the batch is given back if
        // this future is dropped (the client left) or Redis fails: a lost batch would be leased for a day.
        let mut unrecorded = Unrecorded { windows: self, key, members };
        let took: i64 =
            self.call(|mut connection| async move { invocation.invoke_async(&mut connection).await }).await?;
        let members = std::mem::take(&mut unrecorded.members);
        let took = (took.max(0) as usize).min(members.len());
        if took == 0 {
            // Every slot is taken in Redis, maybe by the batch another request here has just brought.
            return Ok(match leases.acquire(key, false) {
                Ok(()) => Ok(SharedSlot::leased(self, key)),
                Err(_) => Err(MeterError::Parallel { limit: parallel }),
            });
        }
        let mut shard = lock(leases.shard(key));
        let now = Instant::now();
        let lease = shard.entry(*key).or_insert(Lease { members: Vec::new(), in_use: 0, used: now, taking: false });
        lease.members.extend(members.into_iter().take(took));
        lease.in_use += 1;
        lease.used = now;
        Ok(Ok(SharedSlot::leased(self, key)))
    }

    /// Gives back the free slots of leases idle for [`GIVE_BACK_AFTER`] (a release that fails goes with the
    /// next exchange, as a request's does), and forgets empty leases. Blocking: for the meter's persist thread.
    pub(super) fn give_back_leased_slots(&self) {
        let now = Instant::now();
        let mut free = Vec::new();
        for shard in &self.leased_slots.shards {
            lock(shard).retain(|key, lease| {
                if lease.in_use < lease.members.len() && now.duration_since(lease.used) >= GIVE_BACK_AFTER {
                    let set = slots_name(key);
                    free.extend(lease.members.drain(lease.in_use..).map(|member| (set.clone(), member)));
                }
                !lease.members.is_empty() || lease.in_use > 0 || lease.taking
            });
        }
        if !free.is_empty() {
            lock(&self.slot_releases).extend(free);
        }
    }
}

/// A request taking a batch of slots: when it ends, the next request that finds none free may take one.
struct Taking<'a> {
    leases: &'a LeasedSlots,
    key: &'a [u8; 32],
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        if let Some(lease) = lock(self.leases.shard(self.key)).get_mut(self.key) {
            lease.taking = false;
        }
    }
}

/// A batch of slots asked for and not recorded in a lease yet: when dropped so, given back in Redis with the
/// next exchange (members never taken are removed harmlessly).
struct Unrecorded<'a> {
    windows: &'a SharedCounters,
    key: &'a [u8; 32],
    members: Vec<String>,
}

impl Drop for Unrecorded<'_> {
    fn drop(&mut self) {
        if self.members.is_empty() {
            return;
        }
        let set = slots_name(self.key);
        let members = std::mem::take(&mut self.members);
        lock(&self.windows.slot_releases).extend(members.into_iter().map(|member| (set.clone(), member)));
    }
}
