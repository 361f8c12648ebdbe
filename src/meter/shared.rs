//! Rate and parallel limits held in Redis, so replicas enforce one limit together: `rpm_limit: 30` lets 30
//! requests a window through however many replicas serve them. One Lua script checks and counts a request
//! atomically (its key's window, its model window, its parallel slot); tokens are added after the answer,
//! in batches. Only a key with such limits pays the round trip; the others never touch Redis here.
//!
//! One counting rule: a request is counted in Redis whenever Redis gives a verdict within `ADMIT_WITHIN`;
//! a late answer is asked for again under the same request id, which the script answers with the verdict it
//! gave (never counting twice), so a slow Redis delays requests but does not hand counting to the replicas.
//! Only while Redis is unreachable (or silent for `ADMIT_WITHIN`) does each replica count alone (the local
//! meter), so a key can get up to one limit per replica until Redis is back; the windows in Redis then take
//! over again.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{spent_name, Admitted, Effective, KeyTally, KeyUse, Meter, MeterError, Quota, WINDOW};
use crate::cluster::{ClusterError, Redis, PREFIX};

/// How long a parallel slot is held if its replica dies before releasing it.
const SLOT_LEASE: Duration = Duration::from_secs(600);
/// How long a request waits for Redis's verdict on its admission, asking again (the same request: counted
/// once) when an answer is late, before it is counted by this replica alone. Longer than Redis's usual
/// stalls (a fork, a slow command), shorter than a client's patience.
const ADMIT_WITHIN: Duration = Duration::from_secs(2);
/// How long Redis remembers a verdict, so a request asked again gets it: longer than [`ADMIT_WITHIN`], short
/// enough that a busy key's verdicts take little memory (one small string per request).
const VERDICT_KEPT: Duration = Duration::from_secs(5);

const ADMIT: &str = r#"
-- Asked again (its answer was late or lost): the verdict already given, nothing counted twice.
local given = redis.call('GET', KEYS[4])
if given then
  local verdict = {}
  for n in string.gmatch(given, '[^,]+') do verdict[#verdict + 1] = tonumber(n) end
  return verdict
end
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local function used(key)
  local counts = redis.call('HMGET', key, 'requests', 'tokens')
  return tonumber(counts[1]) or 0, tonumber(counts[2]) or 0, redis.call('PTTL', key)
end
local function over(limit, count) return ARGV[limit] ~= '' and count >= tonumber(ARGV[limit]) end
local function decide()
  local requests, tokens, left = used(KEYS[1])
  if over(3, requests) then return {0, 1, left} end
  if over(4, tokens) then return {0, 2, left} end
  local model_requests, model_tokens, model_left = 0, 0, 0
  local per_model = ARGV[5] ~= '' or ARGV[6] ~= ''
  if per_model then
    model_requests, model_tokens, model_left = used(KEYS[2])
    if over(5, model_requests) then return {0, 3, model_left} end
    if over(6, model_tokens) then return {0, 4, model_left} end
  end
  if ARGV[7] ~= '' then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
    if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) then return {0, 5, 0} end
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[8]), ARGV[9])
    redis.call('PEXPIRE', KEYS[3], ARGV[8])
  end
  local function count(key)
    redis.call('HINCRBY', key, 'requests', 1)
    if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, window) end
  end
  if ARGV[3] ~= '' or ARGV[4] ~= '' then count(KEYS[1]) end
  if per_model then count(KEYS[2]) end
  return {1, requests + 1, tokens, model_requests + 1, model_tokens}
end
local verdict = decide()
redis.call('SET', KEYS[4], table.concat(verdict, ','), 'PX', ARGV[10])
return verdict
"#;

const ADD_TOKENS: &str = r#"
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'tokens', ARGV[1])
  if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
end
return 1
"#;

impl Meter {
    /// [`Meter::admit`], with window and parallel limits counted in Redis together with every replica when
    /// they share one and it answers; the budget is checked here either way.
    pub async fn admit_across(
        self: &Arc<Self>,
        key: KeyUse<'_>,
        now: super::Moment,
    ) -> Result<(Admitted, KeyTally), MeterError> {
        let limits = self.effective(&key);
        if limits.watches_spend() {
            self.verify_spend(&key.key).await;
        }
        let Some(shared) = self.shared.as_ref().filter(|shared| limits.has_shared_limits() && shared.in_force()) else {
            return self.admit_with(&key, limits, limits, now);
        };
        let (mut admitted, tally) = self.admit_with(&key, limits.without_shared(), limits, now)?;
        match shared.admit(&key.key, key.model, &limits, now.wall_ms).await {
            Ok(Ok(checked)) => {
                admitted.requests = checked.requests;
                admitted.tokens = checked.tokens;
                admitted.model_requests = checked.model_requests;
                admitted.model_tokens = checked.model_tokens;
                admitted.shared_slot = checked.slot;
                Ok((admitted, tally))
            }
            Ok(Err(refusal)) => Err(refusal),
            // No verdict from Redis within `ADMIT_WITHIN` (or no connection): this replica counts alone.
            Err(_) => {
                // Counted again below with every limit: the first count of this request is taken back.
                drop((admitted, tally));
                self.uncount_request(&key.key);
                self.admit_with(&key, limits, limits, now)
            }
        }
    }

    /// With replicas: a key whose spend this replica has just read from its ledger (first use, or after its
    /// counters were dropped as idle) learns Redis's sum before its first request is checked against its
    /// budget, so what other replicas spent counts at once. One round trip, only then.
    async fn verify_spend(&self, key: &[u8; 32]) {
        let Some(windows) = self.shared.as_ref().filter(|windows| windows.in_force()) else {
            return;
        };
        let Some(period) = self.unverified_period(key) else { return };
        let read = redis::cmd("HGET").arg(spent_name(key)).arg(period).to_owned();
        if let Ok(sum) = windows.query::<Option<f64>>(read).await {
            self.take_shared_sum(key, period, sum.unwrap_or(0.0));
        }
    }
}

thread_local! {
    /// Each worker's connection for admissions (multiplexed: one per thread serves all its requests), with
    /// the outage count it was opened in.
    static CONNECTION: RefCell<Option<(redis::aio::MultiplexedConnection, u64)>> = const { RefCell::new(None) };
}

/// What the meter keeps in Redis with every replica: the windows and slots of keys with rate or parallel
/// limits (here), and the sums of keys' spend (`shared_spend.rs`).
pub struct SharedCounters {
    redis: Arc<Redis>,
    admit: redis::Script,
    /// Tokens of answers not yet added in Redis: the window hashes to add to, and how many.
    pending: Mutex<Vec<(Vec<String>, u64)>>,
    /// This process among the replicas (random, per start): names its numbered spend batches in Redis.
    pub(super) replica: String,
    pub(super) exchange: redis::Script,
    /// The number of the last spend batch sent.
    pub(super) batches: std::sync::atomic::AtomicU64,
    /// A spend batch whose answer was lost, with its number: sent again, as it was, before anything new.
    pub(super) unanswered: Mutex<Option<(u64, Vec<super::shared_spend::Batch>)>>,
}

/// What the shared check reports for the response headers.
pub(super) struct SharedChecked {
    pub requests: Option<Quota>,
    pub tokens: Option<Quota>,
    pub model_requests: Option<Quota>,
    pub model_tokens: Option<Quota>,
    pub slot: Option<SharedSlot>,
}

/// A parallel slot held in Redis, or possibly taken by an admission script sent there; released (in the
/// background) when dropped, whatever dropped it (the answer's end, an error, or the request's future
/// dropped by a client that left while Redis had not answered yet).
pub struct SharedSlot {
    windows: Arc<SharedCounters>,
    set: String,
    member: String,
}

impl SharedSlot {
    /// Nothing to give back: Redis refused the request, so no slot was taken.
    fn disarm(mut self) {
        self.set.clear();
    }
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
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
            });
        }
    }
}

impl SharedCounters {
    pub fn new(redis: Arc<Redis>) -> Arc<Self> {
        Arc::new(Self {
            redis,
            admit: redis::Script::new(ADMIT),
            pending: Mutex::default(),
            replica: format!("{:032x}", rand::random::<u128>()),
            exchange: redis::Script::new(super::shared_spend::EXCHANGE),
            batches: std::sync::atomic::AtomicU64::new(0),
            unanswered: Mutex::default(),
        })
    }

    pub(super) fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Whether the shared windows are in force now (Redis answers); if not, the local meter counts.
    pub(super) fn in_force(&self) -> bool {
        self.redis.is_up()
    }

    /// Checks and counts one request of `key` on `model`: `Ok(Err)` refused, `Err` Redis failed (the caller
    /// counts locally instead).
    pub(super) async fn admit(
        self: &Arc<Self>,
        key: &[u8; 32],
        model: &str,
        limits: &Effective,
        now_ms: u64,
    ) -> Result<Result<SharedChecked, MeterError>, ClusterError> {
        let [window, model_window, slots] = names(key, model);
        let member = format!("{:032x}", rand::random::<u128>());
        let limit = |limit: Option<u64>| limit.map(|limit| limit.to_string()).unwrap_or_default();
        let mut invocation = self.admit.prepare_invoke();
        invocation.key(&window).key(&model_window).key(&slots).key(format!("{PREFIX}verdict:{member}"));
        invocation.arg(now_ms).arg(WINDOW.as_millis() as u64);
        for value in [limits.rpm, limits.tpm, limits.model_rpm, limits.model_tpm, limits.parallel] {
            invocation.arg(limit(value));
        }
        invocation.arg(SLOT_LEASE.as_millis() as u64).arg(&member).arg(VERDICT_KEPT.as_millis() as u64);
        // From the moment the script may run, its slot is given back whenever this is dropped: after an
        // error, or with this future, if the client leaves before Redis answers.
        let slot = limits.parallel.map(|_| SharedSlot { windows: Arc::clone(self), set: slots, member });
        let invocation = &invocation;
        let deadline = std::time::Instant::now() + ADMIT_WITHIN;
        let mut reconnected = false;
        let answer: Vec<i64> = loop {
            let asked = self.attempt(|mut connection| async move { invocation.invoke_async(&mut connection).await });
            match asked.await {
                Ok(answer) => break answer,
                // Late, not gone: ask again; the script answers a request it has seen with its verdict.
                Err(Attempt::Late) if std::time::Instant::now() < deadline => continue,
                Err(Attempt::Late) => return Err(self.redis.failed(late())),
                // A connection lost (maybe after the script ran): once more, on a new one.
                Err(Attempt::Failed(_)) if !reconnected && std::time::Instant::now() < deadline => {
                    reconnected = true;
                }
                Err(Attempt::Failed(err)) => return Err(err),
            }
        };
        let number = |at: usize| answer.get(at).copied().unwrap_or(0).max(0) as u64;
        if answer.first() != Some(&1) {
            if let Some(slot) = slot {
                slot.disarm();
            }
            let resets_in = Duration::from_millis(number(2));
            let model = model.to_owned();
            let refusal = match number(1) {
                1 => MeterError::Requests { limit: limits.rpm.unwrap_or(0), resets_in },
                2 => MeterError::Tokens { limit: limits.tpm.unwrap_or(0), resets_in },
                3 => MeterError::ModelRequests { model, limit: limits.model_rpm.unwrap_or(0), resets_in },
                4 => MeterError::ModelTokens { model, limit: limits.model_tpm.unwrap_or(0), resets_in },
                _ => MeterError::Parallel { limit: limits.parallel.unwrap_or(0) },
            };
            return Ok(Err(refusal));
        }
        let quota =
            |limit: Option<u64>, used: u64| limit.map(|limit| Quota { limit, remaining: limit.saturating_sub(used) });
        Ok(Ok(SharedChecked {
            requests: quota(limits.rpm, number(1)),
            tokens: quota(limits.tpm, number(2)),
            model_requests: quota(limits.model_rpm, number(3)),
            model_tokens: quota(limits.model_tpm, number(4)),
            slot,
        }))
    }

    /// Queues an answer's tokens for the windows that count them (sent by [`Self::flush_tokens`]).
    pub(super) fn count_tokens(&self, key: &[u8; 32], model: &str, limits: &Effective, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let [window, model_window, _] = names(key, model);
        let mut windows = Vec::with_capacity(2);
        if limits.rpm.is_some() || limits.tpm.is_some() {
            windows.push(window);
        }
        if limits.model_rpm.is_some() || limits.model_tpm.is_some() {
            windows.push(model_window);
        }
        if !windows.is_empty() {
            self.pending.lock().unwrap_or_else(PoisonError::into_inner).push((windows, tokens));
        }
    }

    /// Adds the queued tokens in Redis, in one pipeline. Blocking: for the meter's persist thread. Tokens
    /// that cannot be sent while Redis is down are dropped (the windows they belong to are short).
    pub fn flush_tokens(&self) -> Result<(), ClusterError> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if pending.is_empty() {
            return Ok(());
        }
        let mut per_window: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for (windows, tokens) in pending {
            for window in windows {
                let sum = per_window.entry(window).or_default();
                *sum = sum.saturating_add(tokens);
            }
        }
        let mut pipeline = redis::pipe();
        for (window, tokens) in &per_window {
            // EVAL, not EVALSHA: a pipeline cannot load a script that a restarted Redis forgot.
            pipeline.cmd("EVAL").arg(ADD_TOKENS).arg(1).arg(window).arg(tokens).arg(WINDOW.as_millis() as u64).ignore();
        }
        self.redis.write(|connection| pipeline.query::<()>(connection))
    }

    /// Runs `call` on this worker's connection (opened on first use, again after a failure).
    pub(super) async fn call<T, F>(
        &self,
        call: impl FnOnce(redis::aio::MultiplexedConnection) -> F,
    ) -> Result<T, ClusterError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.attempt(call).await.map_err(|attempt| match attempt {
            Attempt::Late => self.redis.failed(late()),
            Attempt::Failed(err) => err,
        })
    }

    /// [`Self::call`], telling a late answer apart: that is no outage (Redis stalls now and then), so it is
    /// not noted as one and the connection is kept (its answer, when it comes, is dropped).
    async fn attempt<T, F>(&self, call: impl FnOnce(redis::aio::MultiplexedConnection) -> F) -> Result<T, Attempt>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        // A connection from before an outage may be dead even though Redis is back (it restarted).
        let outages = self.redis.outages();
        let open = CONNECTION.with(|cell| cell.borrow().clone()).filter(|(_, opened_in)| *opened_in == outages);
        let connection = match open {
            Some((connection, _)) => connection,
            None => {
                let connection = self.redis.connect_async().await.map_err(Attempt::Failed)?;
                CONNECTION.with(|cell| *cell.borrow_mut() = Some((connection.clone(), outages)));
                connection
            }
        };
        match call(connection).await {
            Err(err) if err.is_timeout() => Err(Attempt::Late),
            outcome => {
                let outcome = self.redis.noted(outcome.map_err(ClusterError::from));
                if outcome.is_err() {
                    CONNECTION.with(|cell| *cell.borrow_mut() = None);
                }
                outcome.map_err(Attempt::Failed)
            }
        }
    }

    pub(super) async fn query<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, ClusterError> {
        self.call(|mut connection| async move { command.query_async(&mut connection).await }).await
    }
}

/// How one call to Redis went wrong.
enum Attempt {
    /// No answer within the connection's timeout.
    Late,
    Failed(ClusterError),
}

fn late() -> ClusterError {
    ClusterError::Unreachable("no answer in time".into())
}

/// A key's window hash, its window hash for `model`, and its set of parallel slots.
fn names(key: &[u8; 32], model: &str) -> [String; 3] {
    let hex = crate::metrics::hex(key);
    [format!("{PREFIX}window:{hex}"), format!("{PREFIX}window:{hex}:{model}"), format!("{PREFIX}slots:{hex}")]
}
