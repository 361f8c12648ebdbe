//! Rate and parallel limits held in Redis, so replicas enforce one limit together: `rpm_limit: 30` lets 30
//! requests a window through however many replicas serve them. One Lua script checks and counts a request
//! atomically (its key's window, its model window, its parallel slot, and what it reserves: its estimated
//! tokens in the key's window and its model window, its worst-case dollars against the budget, checked with what every replica spent
//! and holds; `held.rs`); tokens are added after the answer, in batches. Only a key with such limits, or a
//! budget that reserves dollars, pays the round trip (one per admission, and one per fallback group with
//! per-model limits); the others never touch Redis here. Large rate, token and parallel limits without a
//! per-model limit or budget skip it for most requests: they are admitted from leased slices (`slices.rs`).
//!
//! One counting rule: a request is counted in Redis whenever Redis gives a verdict within `ADMIT_WITHIN`;
//! a late answer is asked for again under the same request id, which the script answers with the verdict it
//! gave (never counting twice), so a slow Redis delays requests but does not hand counting to the replicas.
//! Only while Redis is unreachable (or silent for `ADMIT_WITHIN`) does each replica count alone (the local
//! meter), so a key can get up to one limit per replica until Redis is back; the windows in Redis then take
//! over again.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::account::quota;
use super::admit_script::ADMIT;
use super::heartbeat::{alive_prefix, Heartbeat, BACKSTOP};
use super::held::{held_names, model_window_name, window_name, HoldAsk, SharedHold, SharedSlot, TokenChange};
use super::slices::{sliced, Slices};
use super::{spent_name, Admitted, Effective, KeyTally, KeyUse, Meter, MeterError, Quota, Reservation, WINDOW};
use crate::redis_link::{ClusterError, Redis, PREFIX};

/// How long a request waits for Redis's verdict on its admission, asking again (the same request: counted
/// once) when an answer is late, before it is counted by this replica alone. Longer than Redis's usual
/// stalls (a fork, a slow command), shorter than a client's patience.
const ADMIT_WITHIN: Duration = Duration::from_secs(2);
/// How long Redis remembers a verdict, so a request asked again gets it: longer than [`ADMIT_WITHIN`], short
/// enough that a busy key's verdicts take little memory (one small string per request).
const VERDICT_KEPT: Duration = Duration::from_secs(5);

impl Meter {
    /// [`Meter::admit`], with window and parallel limits counted, and a budget's reservation held, in Redis
    /// together with every replica when they share one and it answers; else this replica counts alone.
    pub async fn admit_across(
        self: &Arc<Self>,
        key: KeyUse<'_>,
        now: super::Moment,
    ) -> Result<(Admitted, KeyTally), MeterError> {
        let limits = self.effective(&key);
        // The round trips to Redis are boxed: held inline they made this future (and every future awaiting it,
        // up to the request's) kilobytes larger, and a future is copied whole each time it is moved.
        // (Checked here too: with one replica, no box at all.)
        if limits.watches_spend() && self.shared.is_some() {
            Box::pin(self.verify_spend(&key.key)).await;
        }
        let reservation = self.reserve_for(&key, &limits);
        // Only keys with a window or parallel limit, or a budget that reserves dollars, pay the round trip.
        let holds_budget = limits.max_budget.is_some() && reservation.dollars > 0.0;
        let Some(shared) =
            self.shared.as_ref().filter(|shared| (limits.has_shared_limits() || holds_budget) && shared.in_force())
        else {
            return self.admit_with(&key, limits, limits, reservation, now);
        };
        let (mut admitted, mut tally) = self.admit_with(&key, limits.without_shared(), limits, reservation, now)?;
        let (base, period) = match limits.max_budget {
            Some(_) => self.budget_base(&key.key),
            None => (0.0, 0),
        };
        let ask = HoldAsk { reservation, base, period };
        // A key limited by a large `rpm_limit` alone is admitted from this replica's slice of its window.
        let verdict = match sliced(&limits, holds_budget) {
            Some(sliced) => Box::pin(shared.admit_sliced(&key.key, sliced, reservation.tokens, now.wall_ms)).await,
            None => Box::pin(shared.admit(&key.key, key.model, &limits, ask, now.wall_ms)).await,
        };
        match verdict {
            Ok(Ok(checked)) => {
                admitted.requests = checked.requests;
                admitted.tokens = checked.tokens;
                admitted.model_requests = checked.model_requests;
                admitted.model_tokens = checked.model_tokens;
                admitted.shared_slot = checked.slot;
                tally.hold_in_redis(checked.hold);
                Ok((admitted, tally))
            }
            Ok(Err(refusal)) => Err(refusal),
            // No verdict from Redis within `ADMIT_WITHIN` (or no connection): this replica counts alone.
            Err(_) => {
                // Counted again below with every limit: the first count of this request (if it made one, and
                // to the key it made it to) is taken back.
                let counted_to = tally.counted_to();
                drop((admitted, tally));
                if !limits.without_shared().is_unlimited() {
                    self.uncount_request(&counted_to);
                }
                self.admit_with(&key, limits, limits, reservation, now)
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
/// limits (here), what requests in flight hold (`held.rs`), and the sums of keys' spend (`shared_spend.rs`).
pub struct SharedCounters {
    redis: Arc<Redis>,
    admit: redis::Script,
    /// Tokens of answers (and estimates given back) not yet added in Redis.
    pub(super) pending: Mutex<Vec<TokenChange>>,
    /// Holds of dollars to give back with the next spend exchange: the key and the hold's id.
    pub(super) releases: Mutex<Vec<([u8; 32], String)>>,
    /// Parallel slots whose release failed (Redis down): their set and member, sent with the next exchange.
    pub(super) slot_releases: Mutex<Vec<(String, String)>>,
    pub(super) shrink: redis::Script,
    /// This process among the replicas (random, per start): names its numbered spend batches in Redis.
    pub(super) replica: String,
    pub(super) exchange: redis::Script,
    /// The number of the last spend batch sent.
    pub(super) batches: std::sync::atomic::AtomicU64,
    /// The change the key store's copy on this replica has applied (`keys::SharedKeys`), sent with each
    /// spend batch.
    pub(super) copy_seq: Arc<std::sync::atomic::AtomicU64>,
    /// A spend batch whose answer was lost, with its number: sent again, as it was, before anything new.
    pub(super) unanswered: Mutex<Option<(u64, super::shared_spend::Exchanged)>>,
    /// Dollars Redis left out of a batch (their key's spend entry was written by a later change than the
    /// copy had): the key, that change, the dollars; settled once the copy has the change.
    pub(super) left_out: Mutex<Vec<([u8; 32], u64, f64)>>,
    /// This replica's heartbeat in Redis, by which the others tell its slots and holds from a dead one's.
    pub(super) heartbeat: Heartbeat,
    /// The slices of keys' request windows this replica admits from (`slices.rs`).
    pub(super) slices: Slices,
    /// The parallel slots this replica leased in batches (`leased_slots.rs`).
    pub(super) leased_slots: super::leased_slots::LeasedSlots,
}

/// What the shared check reports for the response headers.
pub(super) struct SharedChecked {
    pub requests: Option<Quota>,
    pub tokens: Option<Quota>,
    pub model_requests: Option<Quota>,
    pub model_tokens: Option<Quota>,
    pub slot: Option<SharedSlot>,
    pub hold: Option<SharedHold>,
}

impl SharedCounters {
    pub fn new(redis: Arc<Redis>, copy_seq: Arc<std::sync::atomic::AtomicU64>) -> Arc<Self> {
        Arc::new(Self {
            redis,
            admit: redis::Script::new(ADMIT),
            pending: Mutex::default(),
            releases: Mutex::default(),
            slot_releases: Mutex::default(),
            shrink: redis::Script::new(super::held::SHRINK),
            replica: format!("{:032x}", rand::random::<u128>()),
            exchange: redis::Script::new(super::shared_spend::EXCHANGE),
            batches: std::sync::atomic::AtomicU64::new(0),
            copy_seq,
            unanswered: Mutex::default(),
            left_out: Mutex::default(),
            heartbeat: Heartbeat::from_env(),
            slices: Slices::new(),
            leased_slots: super::leased_slots::LeasedSlots::new(),
        })
    }

    pub(super) fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Whether the shared windows are in force now (Redis answers); if not, the local meter counts.
    pub(super) fn in_force(&self) -> bool {
        self.redis.is_up()
    }

    /// Checks and counts one request of `key` on `model`, holding what `ask` reserves (against the budget,
    /// when `limits` have one; in the window, when they have a `tpm_limit`): `Ok(Err)` refused, `Err` Redis
    /// failed (the caller counts locally instead).
    pub(super) async fn admit(
        self: &Arc<Self>,
        key: &[u8; 32],
        model: &str,
        limits: &Effective,
        ask: HoldAsk,
        now_ms: u64,
    ) -> Result<Result<SharedChecked, MeterError>, ClusterError> {
        let [window, model_window, slots] = names(key, model);
        let [leases, held] = held_names(key);
        // Named for this replica: another gives its slot and hold back once this replica's heartbeat ends.
        let member = format!("{}:{:032x}", self.replica, rand::random::<u128>());
        let limit = |limit: Option<u64>| limit.map(|limit| limit.to_string()).unwrap_or_default();
        let mut invocation = self.admit.prepare_invoke();
        invocation.key(&window).key(&model_window).key(&slots).key(format!("{PREFIX}verdict:{member}"));
        invocation.key(spent_name(key)).key(leases).key(held);
        invocation.arg(now_ms).arg(WINDOW.as_millis() as u64);
        for value in [limits.rpm, limits.tpm, limits.model_rpm, limits.model_tpm, limits.parallel] {
            invocation.arg(limit(value));
        }
        invocation.arg(BACKSTOP.as_millis() as u64).arg(&member).arg(VERDICT_KEPT.as_millis() as u64);
        let Reservation { dollars, tokens, model_tokens } = ask.reservation.within(limits);
        invocation.arg(limits.max_budget.map(|max| max.to_string()).unwrap_or_default());
        invocation.arg(ask.base.to_string()).arg(ask.period).arg(dollars.to_string());
        invocation.arg(BACKSTOP.as_millis() as u64).arg(tokens).arg(model_tokens);
        invocation.arg(alive_prefix()).arg(&self.replica).arg(self.heartbeat.lease().as_millis() as u64);
        // From the moment the script may run, what it takes is given back whenever these are dropped: after
        // an error, or with this future, if the client leaves before Redis answers.
        let holds = (dollars > 0.0 || tokens > 0 || model_tokens > 0).then(|| {
            SharedHold::new(self, key, (dollars > 0.0).then_some(&*member), tokens).in_model(model, model_tokens)
        });
        let slot = limits.parallel.map(|_| SharedSlot::new(self, slots, member));
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
            let resets_in = Duration::from_millis(number(2));
            let model = model.to_owned();
            let refusal = match (answer.first(), number(1)) {
                (Some(0), 1) => MeterError::Requests { limit: limits.rpm.unwrap_or(0), resets_in },
                (Some(0), 2) => MeterError::Tokens { limit: limits.tpm.unwrap_or(0), resets_in },
                (Some(0), 3) => MeterError::ModelRequests { model, limit: limits.model_rpm.unwrap_or(0), resets_in },
                (Some(0), 4) => MeterError::ModelTokens { model, limit: limits.model_tpm.unwrap_or(0), resets_in },
                (Some(0), 5) => MeterError::Parallel { limit: limits.parallel.unwrap_or(0) },
                (Some(0), 6) => MeterError::budget(number(2) as f64 / 1_000_000.0, limits.max_budget.unwrap_or(0.0)),
                // Not an answer this script gives: whatever it may have taken is given back (the slot and holds
                // drop), and this replica counts the request alone.
                _ => return Err(ClusterError::Protocol(format!("an admission answer of {answer:?}"))),
            };
            if let Some(slot) = slot {
                slot.disarm();
            }
            if let Some(holds) = holds {
                holds.disarm();
            }
            return Ok(Err(refusal));
        }
        Ok(Ok(SharedChecked {
            requests: quota(limits.rpm, number(1)),
            tokens: quota(limits.tpm, number(2)),
            model_requests: quota(limits.model_rpm, number(3)),
            model_tokens: quota(limits.model_tpm, number(4)),
            slot,
            hold: holds.map(|mut holds| {
                holds.counted_in(number(5), number(6));
                holds
            }),
        }))
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
    [window_name(key), model_window_name(key, model), super::held::slots_name(key)]
}
