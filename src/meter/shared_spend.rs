//! Spend added up across replicas through Redis. Each key's spend is its base (the entry an admin or a
//! regenerate last wrote, which every replica's copy of the key store holds) plus what metering added since,
//! kept in Redis per budget period: `tiergate:spent:<key hash>` maps a period (the time it resets; 0 when it
//! never does) to the dollars added in it. A new period starts at 0 by itself; writing a key's base clears
//! what was added (the key store's commit script does).
//!
//! Replicas send what they added in batches (every [`super::PERSIST_EVERY`]) and read the totals back, so a
//! budget crossed on one replica refuses on every other within about that interval.
//!
//! When a key's spend entry is written anew (an admin's spend, a delete, a team or end user deleted), the
//! key store's commit script notes the change's number in `tiergate:spend-written:<key hash>`. Each batch
//! says how far this replica's copy of the store was when it was gathered, and its dollars for a key whose
//! entry was written by a later change are left out: they were counted before this replica knew of the
//! write (an answer of a deleted end user, gathered just before the delete reached this copy), and adding
//! them after the commit cleared the sum would hand them to the key's namesake created again.
//!
//! The exchange is idempotent: each batch is numbered per replica, and one script adds a batch only if its
//! number is above the last one Redis applied for that replica. A batch whose answer was lost (Redis applied
//! it, the answer missed the timeout) is sent again as it was, under its number, before anything new: Redis
//! then answers the sums without adding it twice.

use std::time::Duration;

use super::held::held_names;
use super::{account::Account, lock, Meter, Shard, SharedCounters, Spend};
use crate::redis_link::{ClusterError, PREFIX};

/// How long a period's sum is kept after the period ends.
const KEEP_AFTER_PERIOD: Duration = Duration::from_secs(86_400);
/// How long Redis remembers the last batch a replica applied: far longer than a batch is retried for.
const BATCH_NUMBER_KEPT: Duration = Duration::from_secs(86_400);

/// One key's batch: its hash, the period it spent in, and the dollars to add (may be 0: a read).
pub(super) type Batch = ([u8; 32], u64, f64);
/// A hold of dollars to give back: its key and id.
pub(super) type Release = ([u8; 32], String);

/// What one numbered exchange sends: the change this replica's copy had applied when the batches were
/// gathered, the keys' batches and the holds it gives back.
pub(super) struct Exchanged {
    copy_seq: u64,
    batches: Vec<Batch>,
    releases: Vec<Release>,
}

/// Adds a numbered batch once (`KEYS[1]`: the replica's last applied number; `ARGV[1]` the batch's, 0 for a
/// read; `ARGV[3]` how many keys it has; `ARGV[4]` the change the replica's copy was at) and answers each
/// key's sum for its period (the keys' sums in `KEYS`, then where the change that last wrote each key's
/// spend entry is noted), then for each key the change whose write left its dollars out (0: added); with the
/// batch, gives back the holds it carries (after the keys: each hold's
/// leases and dollars in `KEYS`, its id in `ARGV`).
pub(super) const EXCHANGE: &str = r#"
local applied = tonumber(redis.call('GET', KEYS[1]) or '0')
local fresh = tonumber(ARGV[1]) > applied
if fresh then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
local keys = tonumber(ARGV[3])
local copy_seq = tonumber(ARGV[4])
local sums = {}
for k = 2, keys + 1 do
  local at = 5 + (k - 2) * 3
  local sum
  -- Counted before this replica's copy had the last write of the key's spend entry: not added, and the
  -- write's number is answered after the sums (0: added), so the replica settles them as of that write.
  local written = tonumber(redis.call('GET', KEYS[keys + k]) or '0')
  sums[keys + k - 1] = 0
  if fresh and tonumber(ARGV[at + 1]) > 0 and written <= copy_seq then
    sum = redis.call('HINCRBYFLOAT', KEYS[k], ARGV[at], ARGV[at + 1])
    if ARGV[at + 2] ~= '0' then redis.call('PEXPIREAT', KEYS[k], ARGV[at + 2]) end
  else
    if fresh and tonumber(ARGV[at + 1]) > 0 then sums[keys + k - 1] = written end
    sum = redis.call('HGET', KEYS[k], ARGV[at])
  end
  sums[k - 1] = sum or false
end
-- The answers' costs of these holds are in the sums now (this batch or an earlier one).
if fresh then
  for r = 0, #ARGV - (5 + keys * 3) do
    local id, leases, dollars = ARGV[5 + keys * 3 + r], KEYS[2 + keys * 2 + r * 2], KEYS[3 + keys * 2 + r * 2]
    local amount = redis.call('HGET', dollars, id)
    if amount then
      redis.call('HINCRBYFLOAT', dollars, 'total', '-' .. amount)
      redis.call('HDEL', dollars, id)
    end
    redis.call('ZREM', leases, id)
    if redis.call('EXISTS', leases) == 0 then redis.call('DEL', dollars) end
  end
end
return sums
"#;

/// The spend sums in Redis.
impl SharedCounters {
    /// Adds each batch's dollars and gives back the releases, once for batch `number` (0: only reads), and
    /// returns each key's sum for its period, in order, and for each the number of the change that wrote its
    /// spend entry after the batch was gathered, whose dollars were left out for that (0: none). Blocking.
    fn exchange(&self, number: u64, exchanged: &Exchanged) -> Result<(Vec<f64>, Vec<u64>), ClusterError> {
        let Exchanged { copy_seq, batches, releases } = exchanged;
        let mut invocation = self.exchange.prepare_invoke();
        invocation.key(format!("{PREFIX}batch:{}", self.replica));
        invocation.arg(number).arg(BATCH_NUMBER_KEPT.as_millis() as u64).arg(batches.len()).arg(copy_seq);
        for (key, period, dollars) in batches {
            let expire = match *period > 0 {
                true => period.saturating_add(KEEP_AFTER_PERIOD.as_millis() as u64),
                false => 0,
            };
            invocation.key(spent_name(key)).arg(period).arg(dollars.max(0.0)).arg(expire);
        }
        for (key, _, _) in batches {
            invocation.key(spend_written_name(key));
        }
        for (key, id) in releases {
            let [leases, dollars] = held_names(key);
            invocation.key(leases).key(dollars).arg(id);
        }
        let mut sums: Vec<Option<f64>> = self.redis().run(|connection| invocation.invoke(connection))?;
        let left_out = sums.split_off(batches.len().min(sums.len()));
        let left_out = left_out.into_iter().map(|written| written.unwrap_or(0.0) as u64).collect();
        Ok((sums.into_iter().map(|sum| sum.filter(|sum| sum.is_finite()).unwrap_or(0.0)).collect(), left_out))
    }

    /// Gives back the parallel slots whose release failed while Redis was down (kept for the next try when
    /// this one fails too: a slot is never left taken for its whole lease). Blocking.
    fn give_back_slots(&self) {
        let slots = std::mem::take(&mut *lock(&self.slot_releases));
        if slots.is_empty() {
            return;
        }
        let mut pipeline = redis::pipe();
        for (set, member) in &slots {
            pipeline.cmd("ZREM").arg(set).arg(member).ignore();
        }
        if let Err(err) = self.redis().run(|connection| pipeline.query::<()>(connection)) {
            log::warn!(
                "{} parallel slot(s) could not be given back in Redis ({err}); kept for the next try",
                slots.len()
            );
            lock(&self.slot_releases).extend(slots);
        }
    }

    /// What metering added to `key` in `period`. Blocking.
    pub(super) fn added(&self, key: &[u8; 32], period: u64) -> Result<f64, ClusterError> {
        let read = Exchanged { copy_seq: 0, batches: vec![(*key, period, 0.0)], releases: Vec::new() };
        self.exchange(0, &read).map(|(sums, _)| sums.first().copied().unwrap_or(0.0))
    }
}

/// Where the sums of a key's spend are: this, followed by the key's raw 32-byte hash.
pub fn spent_prefix() -> String {
    format!("{PREFIX}spent:")
}

/// `tiergate:spent:` followed by the key's raw 32-byte hash (Redis names are binary-safe).
pub fn spent_name(key: &[u8; 32]) -> Vec<u8> {
    let mut name = spent_prefix().into_bytes();
    name.extend_from_slice(key);
    name
}

/// Where the number of the change that last wrote a key's spend entry is: this, followed by the key's raw
/// 32-byte hash.
pub(crate) fn spend_written_prefix() -> String {
    format!("{PREFIX}spend-written:")
}

fn spend_written_name(key: &[u8; 32]) -> Vec<u8> {
    let mut name = spend_written_prefix().into_bytes();
    name.extend_from_slice(key);
    name
}

impl Meter {
    /// Sends what each key used here since the last call added and takes in its total, so spend from other
    /// replicas is seen here. A failed exchange is sent again, as it was, before anything new; its dollars
    /// stay counted here (`unsent`) until Redis has them.
    pub(super) fn share_spend(&self, shared: &SharedCounters) {
        // Redis is out of reach (the outage is logged once where it was noticed): what was counted stays here,
        // unsent, until it is back; no retry every interval, and no lock held across a timeout meanwhile.
        if !shared.in_force() {
            return;
        }
        shared.renew_heartbeat();
        shared.give_back_slices();
        shared.give_back_leased_slots();
        shared.give_back_slots();
        let unanswered = lock(&shared.unanswered).take();
        if let Some((number, exchanged)) = unanswered {
            match shared.exchange(number, &exchanged) {
                // Its dollars were put back as not sent when it failed (and went with a key retired
                // meanwhile): what Redis left out of it is settled already.
                Ok((sums, _)) => self.take_sums(&exchanged.batches, &sums, true),
                Err(err) => {
                    log::warn!("spend could not be added up in Redis ({err}); kept for the next try");
                    *lock(&shared.unanswered) = Some((number, exchanged));
                    return;
                }
            }
        }
        // Read before the accounts are: the copy retires a deleted key's account before it moves on, so
        // what is gathered below was counted after every change up to here reached this replica.
        let copy_seq = shared.copy_seq.load(std::sync::atomic::Ordering::Acquire);
        self.settle_left_out(shared, copy_seq);
        // Taken before the costs are gathered: a hold is given back after its answer's cost was counted, so
        // that cost is in this batch or an earlier one, never left for a later one.
        let releases = std::mem::take(&mut *lock(&shared.releases));
        let mut batches: Vec<Batch> = Vec::new();
        // Keys being regenerated here (`pin_spend`): all they settle goes to the successor with the retire,
        // sent or not, so what Redis leaves out of theirs is not settled again.
        let mut pinned: Vec<[u8; 32]> = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            let Shard { accounts, dirty } = &mut *shard;
            dirty.clear();
            for (key, account) in accounts.iter_mut() {
                (account.dirty, account.queued) = (false, false);
                // Dollars counted before its loaded spend was forgotten (`reload_spend`) still go to Redis:
                // its spend is read again first, so the batch names the right period.
                if account.spend.is_none() && account.unsent > 0.0 {
                    match self.ledger.read(key) {
                        Ok(spend) => account.load(spend),
                        Err(err) => log::warn!("a key's spend could not be read from the store ({err})"),
                    }
                    account.touched = true;
                }
                // A key not used here since the last exchange needs no fresh total yet: its next use is
                // counted, and exchanged, within one interval.
                let Some(spend) = account.spend.filter(|_| std::mem::take(&mut account.touched)) else { continue };
                if account.handover.is_some() {
                    pinned.push(*key);
                }
                batches.push((*key, spend.reset_at_ms.unwrap_or(0), std::mem::take(&mut account.unsent)));
            }
        }
        if batches.is_empty() && releases.is_empty() {
            return;
        }
        let number = shared.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let exchanged = Exchanged { copy_seq, batches, releases };
        match shared.exchange(number, &exchanged) {
            Ok((sums, left_out)) => {
                self.take_sums(&exchanged.batches, &sums, false);
                let left_out = exchanged.batches.iter().zip(left_out);
                let left_out = left_out.filter(|((key, _, _), written)| *written > 0 && !pinned.contains(key));
                let left_out = left_out.map(|((key, _, dollars), written)| (*key, written, *dollars));
                lock(&shared.left_out).extend(left_out);
            }
            Err(err) => {
                // Redis may have added it and lost only the answer: the same batch goes again, never merged
                // into a new one. Meanwhile its dollars count here as not sent.
                for (key, _, dollars) in &exchanged.batches {
                    if let Some(account) = self.shard(key).accounts.get_mut(key) {
                        account.unsent += dollars;
                        account.touched = true;
                    }
                }
                log::warn!("spend could not be added up in Redis ({err}); kept for the next try");
                *lock(&shared.unanswered) = Some((number, exchanged));
            }
        }
    }

    /// Settles the dollars Redis left out of a batch once this replica's copy has the change that wrote their
    /// key's spend entry (`copy_seq`): a regenerated key's go to its successor, as the retire hands over what
    /// was not sent yet; a deleted key's, or those counted before an admin set the spend, go nowhere.
    fn settle_left_out(&self, shared: &SharedCounters, copy_seq: u64) {
        let mut left_out = lock(&shared.left_out);
        if left_out.is_empty() {
            return;
        }
        let (settled, waiting) = std::mem::take(&mut *left_out).into_iter().partition(|(_, at, _)| *at <= copy_seq);
        *left_out = waiting;
        drop(left_out);
        for (key, _, dollars) in settled {
            let Some((Some(successor), _)) = lock(&self.retired).get(&key).copied() else { continue };
            self.hand_over(successor, dollars);
        }
    }

    /// Takes in Redis's sums for an exchanged batch; `resent`: its dollars had been put back as not sent,
    /// and Redis has them now.
    fn take_sums(&self, batches: &[Batch], sums: &[f64], resent: bool) {
        for ((key, period, dollars), sum) in batches.iter().zip(sums) {
            let mut shard = self.shard(key);
            let Some(account) = shard.accounts.get_mut(key) else { continue };
            if resent {
                account.unsent = (account.unsent - dollars).max(0.0);
            }
            account.take_shared_sum(*period, *sum);
        }
    }

    /// A key's spend when replicas share it: its base plus what metering added this period. Blocking: for the
    /// registry's thread (admin changes), never a worker.
    pub(super) fn shared_spend_of(&self, shared: &SharedCounters, key: &[u8; 32]) -> Result<Spend, sled::Error> {
        let local = self.local_spend(key)?;
        self.with_shared_sum(shared, key, local)
    }

    /// `local` (a key's base and what is unsent) with what Redis added up for its period. Blocking.
    pub(super) fn with_shared_sum(
        &self,
        shared: &SharedCounters,
        key: &[u8; 32],
        (spend, unsent): (Spend, f64),
    ) -> Result<Spend, sled::Error> {
        let added = shared.added(key, spend.reset_at_ms.unwrap_or(0)).map_err(io_error)?;
        Ok(with_sum(spend, added, unsent))
    }

    /// Each key's spend, for answers (`/key/info`, `/key/list`): from memory and the ledger and, with
    /// replicas, Redis's sums, read in one pipeline on the worker's own async connection.
    pub async fn spends_of(&self, keys: &[[u8; 32]]) -> Result<Vec<Spend>, sled::Error> {
        let Some(windows) = self.shared.as_ref() else {
            return keys.iter().map(|key| self.spend_of(key)).collect();
        };
        // An empty pipeline is a Redis protocol error ("empty command"): logged, and the connection dropped.
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let locals = keys.iter().map(|key| self.local_spend(key)).collect::<Result<Vec<_>, _>>()?;
        let mut pipeline = redis::pipe();
        for (key, (spend, _)) in keys.iter().zip(&locals) {
            pipeline.cmd("HGET").arg(spent_name(key)).arg(spend.reset_at_ms.unwrap_or(0));
        }
        // A view of spend must not fail an answer (a key change may have just been made): without Redis, what
        // this replica knows.
        let sums: Vec<Option<f64>> = windows
            .call(|mut connection| async move { pipeline.query_async(&mut connection).await })
            .await
            .unwrap_or_else(|_| vec![None; keys.len()]);
        Ok(locals
            .into_iter()
            .zip(sums)
            .map(|((spend, unsent), sum)| with_sum(spend, sum.unwrap_or(0.0), unsent))
            .collect())
    }

    /// Forgets every key's loaded spend (not what is unsent): the key store's copy was replaced, so each is
    /// read again, with Redis's sum, on the key's next use.
    pub fn reload_spend(&self) {
        for shard in &self.shards {
            for account in lock(shard).accounts.values_mut() {
                account.spend = None;
                account.verified = false;
            }
        }
    }

    /// The period of a key's spend when Redis's sum for it has not been read since the spend was loaded.
    pub(super) fn unverified_period(&self, key: &[u8; 32]) -> Option<u64> {
        // A retired key gets no account (its requests count to its successor, or nowhere).
        let (mut shard, live) = self.live_shard(*key)?;
        let account = self.account(&mut shard, live, true);
        let spend = account.spend.filter(|_| !account.verified)?;
        Some(spend.reset_at_ms.unwrap_or(0))
    }

    pub(super) fn take_shared_sum(&self, key: &[u8; 32], period: u64, sum: f64) {
        if let Some(account) = self.shard(key).accounts.get_mut(key) {
            account.take_shared_sum(period, sum);
        }
    }

    /// A key's base for its current period and what this replica has not sent yet.
    pub(super) fn local_spend(&self, key: &[u8; 32]) -> Result<(Spend, f64), sled::Error> {
        let in_memory = self.shard(key).accounts.get(key).map(|account| (local_of(account), account.unsent));
        Ok(match in_memory {
            Some((Some(local), _)) => local,
            // Its loaded spend was forgotten (`reload_spend`), not what it has not sent yet.
            Some((None, unsent)) => (self.ledger.read(key)?, unsent),
            None => (self.ledger.read(key)?, 0.0),
        })
    }
}

/// An account's base for its current period and what this replica has not sent yet (`None`: spend not read).
pub(super) fn local_of(account: &Account) -> Option<(Spend, f64)> {
    let (base, spend) = (account.base, account.spend?);
    let dollars = if base.1 == spend.reset_at_ms.unwrap_or(0) { base.0 } else { 0.0 };
    Some((Spend { dollars, ..spend }, account.unsent))
}

fn with_sum(mut spend: Spend, added: f64, unsent: f64) -> Spend {
    let added = if added.is_finite() { added } else { 0.0 };
    spend.dollars = (spend.dollars + added + unsent).min(crate::config::MAX_DOLLARS);
    spend
}

fn io_error(err: ClusterError) -> sled::Error {
    sled::Error::Io(std::io::Error::other(err.to_string()))
}
