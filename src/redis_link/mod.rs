//! Replicas sharing one Redis: the link to it (connections with short timeouts), whether it is reachable
//! now, and what its persistence promises. What is shared lives with its owner: keys (`keys::replica`),
//! limits and spend (`meter`), cooldowns (`pool`). Nothing here knows their formats.
//!
//! Every key tiergate writes starts with [`PREFIX`], so one Redis database holds one gateway's state.

mod durability;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

pub use durability::Durability;

use crate::config::RedisSettings;

/// The prefix of every Redis key tiergate uses.
pub const PREFIX: &str = "tiergate:";
/// How long to wait for Redis to accept a connection, and for an answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// For calls a request waits on (its admission): shorter, since the request falls back to local counting.
const ASYNC_ANSWER_TIMEOUT: Duration = Duration::from_millis(500);
/// Redis counts as reachable while something heard from it within this time (the change follower hears
/// from it at least every second, even when nothing changes).
const HEARD_WITHIN: Duration = Duration::from_secs(3);
/// Pause before a reader reconnects after a failure.
const RETRY_AFTER: Duration = Duration::from_millis(250);
/// The same unexpected answer, repeated by a caller that retries, is logged at most this often.
const LOG_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// Why Redis could not do what was asked. Messages never hold the address (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the shared store (Redis) is unreachable: {0}")]
    Unreachable(String),
    #[error("the shared store (Redis) answered unexpectedly: {0}")]
    Protocol(String),
    #[error("Redis holds none of the shared key store (it was emptied, or replaced by an empty one) while this replica still has its copy; changes are refused until the store is restored (docs/replicas.md: Running several replicas)")]
    Emptied,
    #[error("the shared store (Redis) was replaced by another one, which this replica is copying now; retry shortly")]
    Replaced,
}

impl From<redis::RedisError> for ClusterError {
    fn from(err: redis::RedisError) -> Self {
        if let Some(why) = refused_login(&err) {
            // Not an odd answer but no way in: an outage, logged once until Redis lets this replica in.
            return Self::Unreachable(why.into());
        }
        match err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_connection_refusal() {
            true => Self::Unreachable(err.to_string()),
            false => Self::Protocol(err.to_string()),
        }
    }
}

fn unusable(err: redis::RedisError) -> ClusterError {
    match refused_login(&err) {
        Some(why) => ClusterError::Unreachable(why.into()),
        None => ClusterError::Unreachable(err.to_string()),
    }
}

/// Why Redis will not serve this replica at all, if it is its password: a wrong one, or none where one is
/// required (every command then answers `NOAUTH`).
fn refused_login(err: &redis::RedisError) -> Option<&'static str> {
    match (err.kind(), err.code()) {
        (redis::ErrorKind::AuthenticationFailed, _) | (_, Some("WRONGPASS")) => {
            Some("it refused the password: check redis_password (or the URL's)")
        }
        (_, Some("NOAUTH")) => Some("it requires a password: set redis_password (or one in the URL)"),
        _ => None,
    }
}

/// How a replica stands with the shared store: what readiness, `/health` and `/metrics` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedState {
    /// Redis answers and the copy of the key store is current.
    Connected,
    /// Redis is out of reach, but the copy was current within `redis_cache_ttl`: keys are still served from
    /// it, so the replica stays ready (changes are refused, limits count locally).
    Degraded,
    /// The copy was not confirmed current within `redis_cache_ttl`: virtual keys are refused, not ready.
    Stale,
}

impl SharedState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Degraded => "degraded",
            Self::Stale => "stale",
        }
    }

    /// The Prometheus gauge of this state.
    pub fn exposition(self) -> String {
        let value = match self {
            Self::Connected => 0,
            Self::Degraded => 1,
            Self::Stale => 2,
        };
        format!(
            "# HELP tiergate_shared_store_state 0: Redis answers; 1: degraded (Redis unreachable, keys served from \
             this replica's copy within redis_cache_ttl); 2: stale (past redis_cache_ttl: not ready)\n\
             # TYPE tiergate_shared_store_state gauge\ntiergate_shared_store_state {value}\n"
        )
    }
}

/// The link to the shared Redis, used by every part that shares state. Cheap to share (`Arc`).
pub struct Redis {
    client: redis::Client,
    /// The address without credentials, for log lines.
    pub shown: String,
    /// How long a replica keeps serving keys it knows while Redis is unreachable.
    pub cache_ttl: Duration,
    /// When Redis last answered (ms since the epoch); 0: never.
    heard_ms: AtomicU64,
    /// When this replica's copy of the key store was last known to hold every change (ms since the epoch).
    caught_up_ms: AtomicU64,
    /// Set by a failed call, cleared by the next answer.
    failing: AtomicBool,
    /// Whether the persistence check has been logged.
    durability_reported: AtomicBool,
    /// When an unexpected answer was last logged (ms since the epoch).
    protocol_logged_ms: AtomicU64,
    /// Counts the times Redis became unreachable: a connection opened before the last time is not trusted.
    outages: AtomicU64,
    /// The connection writes go through, opened on first use and again after an outage; with the outage
    /// count it was opened in.
    writer: Mutex<Option<(redis::Connection, u64)>>,
}

/// Milliseconds since the Unix epoch (the wall clock replicas share; `pool::now_ms` is a monotonic one).
fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

impl Redis {
    /// A link to the Redis of `settings`; nothing is connected yet.
    pub fn new(settings: &RedisSettings) -> Result<Arc<Self>, ClusterError> {
        let client = redis::Client::open(settings.url.expose())
            .map_err(|_| ClusterError::Protocol(format!("{} is not a usable Redis address", settings.shown)))?;
        Ok(Arc::new(Self {
            client,
            shown: settings.shown.clone(),
            cache_ttl: settings.cache_ttl,
            heard_ms: AtomicU64::new(0),
            caught_up_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            outages: AtomicU64::new(0),
            protocol_logged_ms: AtomicU64::new(0),
            durability_reported: AtomicBool::new(false),
            writer: Mutex::new(None),
        }))
    }

    /// A new connection of its own (for a blocking reader), with the given answer timeout.
    pub fn connect(&self, answer_timeout: Duration) -> Result<redis::Connection, ClusterError> {
        let outcome = self.client.get_connection_with_timeout(CONNECT_TIMEOUT).and_then(|connection| {
            connection.set_read_timeout(Some(answer_timeout))?;
            connection.set_write_timeout(Some(ANSWER_TIMEOUT))?;
            Ok(connection)
        });
        // Whatever fails a connection (a refused password included) leaves Redis out of reach; a connection
        // opened is no answer yet (without a password it is, but every command on it is refused).
        outcome.map_err(|err| self.failed(unusable(err)))
    }

    /// A multiplexed connection for async callers (one per worker thread serves all its requests); an answer
    /// slower than [`ASYNC_ANSWER_TIMEOUT`] fails the call.
    pub async fn connect_async(&self) -> Result<redis::aio::MultiplexedConnection, ClusterError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(ASYNC_ANSWER_TIMEOUT));
        let outcome = self.client.get_multiplexed_async_connection_with_config(&config).await;
        outcome.map_err(|err| self.failed(unusable(err)))
    }

    /// Runs `read` (a blocking reader of a Redis stream) on a thread of its own, again after each failure
    /// (noted, then a short pause), until the process ends.
    pub fn spawn_reader(
        self: &Arc<Self>,
        name: &str,
        mut read: impl FnMut(&Redis) -> Result<(), ClusterError> + Send + 'static,
    ) -> std::io::Result<()> {
        let redis = Arc::clone(self);
        let thread = std::thread::Builder::new().name(name.into());
        thread
            .spawn(move || loop {
                if let Err(err) = read(&redis) {
                    redis.noted::<()>(Err(err)).ok();
                    std::thread::sleep(RETRY_AFTER);
                }
            })
            .map(drop)
    }

    /// Runs `call` on the one shared connection: writes, and reads that cannot wait on a reader thread (the
    /// persistence settings, a script's answer). Fails fast, without trying, while the last call failed and
    /// nothing answered since: a mutation then gets its 503 at once instead of after a timeout.
    pub fn run<T>(
        &self,
        call: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, ClusterError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(ClusterError::Unreachable("no answer from it lately; retry once it is back".into()));
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let outages = self.outages.load(Ordering::Relaxed);
        // A connection from before an outage may be dead even though Redis is back (it restarted).
        if writer.as_ref().is_none_or(|(_, opened_in)| *opened_in != outages) {
            *writer = Some((self.connect(ANSWER_TIMEOUT)?, outages));
        }
        let (connection, _) = writer.as_mut().expect("connected above");
        let outcome = self.noted(call(connection).map_err(ClusterError::from));
        if outcome.is_err() {
            // The next write reconnects: a failed call can leave an answer unread on the connection.
            *writer = None;
        }
        outcome
    }

    /// Records the outcome of a call: an answer (even an error reply) means Redis is reachable.
    pub fn noted<T>(&self, outcome: Result<T, ClusterError>) -> Result<T, ClusterError> {
        match &outcome {
            Ok(_) => self.heard(),
            Err(err) => self.note_failure(err),
        }
        outcome
    }

    fn note_failure(&self, err: &ClusterError) {
        match err {
            ClusterError::Unreachable(why) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    self.outages.fetch_add(1, Ordering::Relaxed);
                    log::error!("Redis at {} is unreachable: {why}", self.shown);
                }
            }
            ClusterError::Protocol(why) => {
                // At most one line per interval: a caller that retries must not flood the log.
                let now = unix_ms();
                let last = self.protocol_logged_ms.load(Ordering::Relaxed);
                if now.saturating_sub(last) >= LOG_AT_MOST_EVERY.as_millis() as u64 {
                    self.protocol_logged_ms.store(now, Ordering::Relaxed);
                    log::error!("Redis at {}: {why}", self.shown);
                }
                self.heard();
            }
            ClusterError::Emptied | ClusterError::Replaced => self.heard(),
        }
    }

    /// Notes a failure (as [`Self::noted`] does) and hands it back.
    pub fn failed(&self, err: ClusterError) -> ClusterError {
        self.note_failure(&err);
        err
    }

    /// Something answered: Redis is reachable now.
    pub fn heard(&self) {
        self.heard_ms.store(unix_ms(), Ordering::Relaxed);
        if self.failing.swap(false, Ordering::Relaxed) {
            log::warn!("Redis at {} answers again", self.shown);
        }
    }

    /// How many times Redis has become unreachable: a connection opened before the last time is not trusted.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// Whether Redis answered lately and nothing has failed since.
    pub fn is_up(&self) -> bool {
        !self.failing.load(Ordering::Relaxed) && self.heard_within(HEARD_WITHIN)
    }

    /// Where this replica stands: its copy first (past the TTL nothing else matters), then Redis.
    pub fn state(&self) -> SharedState {
        match (self.copy_is_fresh(), self.is_up()) {
            (false, _) => SharedState::Stale,
            (true, false) => SharedState::Degraded,
            (true, true) => SharedState::Connected,
        }
    }

    /// The copy of the key store held every change Redis had, as of now (the follower says so).
    pub fn caught_up(&self) {
        self.caught_up_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// Whether keys may still be served from this replica's copy: it was caught up within the cache TTL (a
    /// follower that cannot read or apply the stream lets it go stale, however well Redis answers).
    pub fn copy_is_fresh(&self) -> bool {
        unix_ms().saturating_sub(self.caught_up_ms.load(Ordering::Relaxed)) <= self.cache_ttl.as_millis() as u64
    }

    fn heard_within(&self, window: Duration) -> bool {
        unix_ms().saturating_sub(self.heard_ms.load(Ordering::Relaxed)) <= window.as_millis() as u64
    }

    /// Logs what Redis's persistence settings promise about an acknowledged write, loudly when it is less
    /// than "on disk"; once, when Redis first answers (at start-up, or later if it was down then).
    pub fn report_durability_once(&self) {
        if self.durability_reported.swap(true, Ordering::Relaxed) {
            return;
        }
        match self.run(durability::read) {
            Ok(Durability::OnDisk) => log::info!("Redis at {} fsyncs every write before answering", self.shown),
            Ok(Durability::Weaker(why)) => log::error!(
                "Redis at {}: {why}. Until then a key acknowledged by /key/generate can be lost if redis-server crashes.",
                self.shown
            ),
            Ok(Durability::Unknown) => log::warn!(
                "Redis at {} refuses CONFIG GET, so its persistence cannot be checked: make sure it runs with \
                 `appendonly yes` and `appendfsync always`, or acknowledged keys can be lost if it crashes",
                self.shown
            ),
            Err(err) => {
                // Retried with every reconnect: the failure itself is logged (once per interval) by `noted`.
                log::debug!("cannot check Redis's persistence yet: {err}");
                self.durability_reported.store(false, Ordering::Relaxed);
            }
        }
    }
}
