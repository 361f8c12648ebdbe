//! Spend logs: one row per inference request (LiteLLM's `LiteLLM_SpendLogs`), kept in segment files of
//! their own. A request only hands its finished row to a bounded queue (never waiting: when it is full the
//! row is dropped and counted); a writer thread appends rows in blocks and prunes old ones. Each replica
//! keeps its own rows.

mod codec;
mod report;
mod row;
mod served;
mod short;
mod store;
mod switch;
mod wall_clock;
mod writer;

pub use report::{by_day, top_keys, top_models, Grouping};
pub use row::{Finished, Pending, END_USER_HEADER, TAGS_HEADER};
pub use served::SpendRow;
pub use store::{is_busy, Page, SpendStore};
pub use switch::SpendLogSwitch;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::SpendLogSettings;
use crate::endpoint::Endpoint;
use crate::keys::{KeyHash, KeyStore};
use crate::tier::Tier;

/// Rows waiting for the writer; past this, new ones are dropped (and counted).
const QUEUE: usize = 16_384;
/// What the rows waiting for the writer may hold in memory, about; past this, new ones are dropped (and
/// counted). A usual row holds a few hundred bytes, so the row count binds first; rows with the most tags
/// and the longest names (about 5 KiB each) stop here instead, at a few thousand, when the disk stalls.
const QUEUE_BYTES: usize = 16 << 20;
/// At most one warning about dropped rows this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The spend log of this process: the queue into it, and the store to read it from.
pub struct SpendLog {
    queue: SyncSender<Finished>,
    /// About the bytes the queued rows hold ([`Finished::queued_bytes`]): added here, taken off by the writer.
    queued_bytes: Arc<AtomicUsize>,
    max_queued_bytes: usize,
    /// Rows dropped: refused by the full queue here, or not written by the writer.
    dropped: Arc<AtomicU64>,
    last_warning: Mutex<Option<Instant>>,
    store: SpendStore,
    /// Boxes of written rows, for new requests' rows.
    spares: Arc<row::Spares>,
    /// Where a row's key alias is read when rows are served (the alias in force then).
    keys: KeyStore,
    /// `false` once a reload turned spend logs off: no new rows (the writer and the store stay).
    recording: AtomicBool,
    /// The retention and row cap in force, which the writer reads before each drain.
    bounds: Arc<Mutex<SpendLogSettings>>,
    writer: Mutex<Option<(std::sync::mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl SpendLog {
    /// Opens the store under `data_dir` and starts the writer. `master` names master-key rows.
    fn start(
        data_dir: &Path,
        settings: SpendLogSettings,
        keys: KeyStore,
        master: KeyHash,
    ) -> std::io::Result<Arc<Self>> {
        Self::start_with_queue(data_dir, settings, (keys, master), (QUEUE, QUEUE_BYTES))
    }

    fn start_with_queue(
        data_dir: &Path,
        settings: SpendLogSettings,
        (keys, master): (KeyStore, KeyHash),
        (queue, max_queued_bytes): (usize, usize),
    ) -> std::io::Result<Arc<Self>> {
        let store = SpendStore::open(data_dir)?;
        let (sender, rows) = sync_channel(queue);
        let (stop, stopped) = std::sync::mpsc::channel();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let spares = Arc::new(row::Spares::default());
        let bounds = Arc::new(Mutex::new(settings));
        let mut parts = writer::Writer::new(store.clone(), Arc::clone(&bounds), master)
            .counting_lost_rows_in(Arc::clone(&dropped))
            .handing_rows_back_to(Arc::clone(&spares));
        // The bounds hold from the first read on.
        parts.prune();
        let drained = Arc::clone(&queued_bytes);
        let thread =
            std::thread::Builder::new().name("spend-logs".into()).spawn(move || parts.run(rows, &drained, stopped))?;
        Ok(Arc::new(Self {
            queue: sender,
            queued_bytes,
            max_queued_bytes,
            dropped,
            last_warning: Mutex::new(None),
            store,
            spares,
            keys,
            recording: AtomicBool::new(settings.enabled),
            bounds,
            writer: Mutex::new(Some((stop, thread))),
        }))
    }

    /// Whether requests leave rows now.
    pub fn is_recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// Puts a reloaded config's settings in force: rows on or off from the next request, the retention and row
    /// cap from the writer's next drain.
    fn put_in_force(&self, settings: SpendLogSettings) {
        if self.recording.swap(settings.enabled, Ordering::Relaxed) != settings.enabled {
            log::info!("spend logs turned {} by the config", if settings.enabled { "on" } else { "off" });
        }
        *self.bounds.lock().unwrap_or_else(PoisonError::into_inner) = settings;
    }

    /// The row of a request that started at `started`, by `key` (`None`: the master key) on `tier`.
    pub fn pending(&self, started: Instant, key: Option<KeyHash>, tier: Option<Tier>, endpoint: Endpoint) -> Pending {
        self.spares.pending(started, key, tier, endpoint)
    }

    /// Queues a finished request's row; never waits.
    pub fn record(&self, finished: Finished) {
        let bytes = finished.queued_bytes();
        let problem = if self.queued_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            "the spend log cannot keep up (its queue holds too many bytes); rows are being dropped"
        } else {
            let problem = match self.queue.try_send(finished) {
                Ok(()) => return,
                Err(TrySendError::Full(_)) => "the spend log cannot keep up; rows are being dropped",
                Err(TrySendError::Disconnected(_)) => "the spend-log writer has stopped; rows are being dropped",
            };
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            problem
        };
        self.dropped.fetch_add(1, Ordering::Relaxed);
        // Rate-limited: a full queue under load must not become a log line per request.
        let mut last = self.last_warning.try_lock();
        if let Ok(last) = last.as_deref_mut() {
            if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                *last = Some(Instant::now());
                log::warn!("{problem} ({} so far)", self.dropped.load(Ordering::Relaxed));
            }
        }
    }

    /// Rows dropped because the queue was full (`tiergate_spend_logs_dropped_total`).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The spend log's series in Prometheus' text format.
    pub fn exposition(&self) -> String {
        format!(
            "# HELP tiergate_spend_logs_dropped_total Spend-log rows dropped because the writer could not keep up\n\
             # TYPE tiergate_spend_logs_dropped_total counter\ntiergate_spend_logs_dropped_total {}\n",
            self.dropped()
        )
    }

    pub fn store(&self) -> &SpendStore {
        &self.store
    }

    /// Fills each row's `metadata.user_api_key_alias` with its key's alias, and its owners (read once per key):
    /// `team_id`, `organization_id` (the key's, else its team's) and `user` (the key's user; without one, the
    /// end user as before), also as `metadata.user_api_key_team_id|org_id|user_id`. Owners are the key's as it
    /// is now: rows keep no copy of them, so a key moved to another team shows the new one, a deleted key none.
    pub fn join_aliases(&self, rows: &mut [SpendRow]) {
        let mut owners = self.owners();
        for row in rows {
            owners.join(row);
        }
    }

    /// `/global/spend/report` over `range`, each row joined with its key's owners first (as
    /// [`Self::join_aliases`]), so it groups by team, user and organization as `/spend/logs` shows them.
    pub fn report(&self, range: (u64, u64), grouping: Grouping) -> Result<serde_json::Value, std::io::Error> {
        let mut owners = self.owners();
        report::report(&self.store, range, grouping, &mut |row| owners.join(row))
    }

    fn owners(&self) -> Owners<'_> {
        Owners { keys: &self.keys, joined: HashMap::new() }
    }

    /// The alias and name (`sk-...abcd`) of the key with hash `hex`, if it still exists.
    pub fn key_names(&self, hex: &str) -> (Option<String>, Option<String>) {
        let record = KeyHash::from_hex(hex).and_then(|hash| self.keys.get(&hash).ok().flatten());
        record.map_or((None, None), |record| (record.key_alias, Some(record.key_name)))
    }

    /// Writes what is queued, stops the writer and flushes the store (at shutdown).
    pub fn close(&self) {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((stop, thread)) = writer {
            drop(stop);
            let _ = thread.join();
        }
        if let Err(err) = self.store.flush() {
            log::error!("cannot flush the spend log: {err}");
        }
    }
}

/// A key's alias and owners, read from the key store once per key and copied into each of its rows.
struct Owners<'a> {
    keys: &'a KeyStore,
    joined: HashMap<String, Joined>,
}

/// Alias, team, user, organization.
type Joined = (Option<String>, Option<String>, Option<String>, Option<String>);

impl Owners<'_> {
    fn join(&mut self, row: &mut SpendRow) {
        let keys = self.keys;
        let (alias, team, user, org) = self.joined.entry(row.api_key.clone()).or_insert_with(|| {
            let record = KeyHash::from_hex(&row.api_key).and_then(|hash| keys.get(&hash).ok().flatten());
            let Some(record) = record else { return (None, None, None, None) };
            let org = record.organization_id.clone().or_else(|| {
                let team = record.team_id.as_deref()?;
                keys.entity::<crate::keys::orgs::TeamRecord>(team).ok().flatten()?.organization_id
            });
            (record.key_alias, record.team_id, record.user_id, org)
        });
        row.team_id.clone_from(team);
        row.organization_id.clone_from(org);
        if let Some(user) = user {
            row.user.clone_from(user);
        }
        if let Some(metadata) = row.metadata.as_object_mut() {
            metadata.insert("user_api_key_alias".into(), alias.clone().into());
            metadata.insert("user_api_key_team_id".into(), team.clone().into());
            metadata.insert("user_api_key_org_id".into(), org.clone().into());
            metadata.insert("user_api_key_user_id".into(), user.clone().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;

    #[test]
    fn a_full_queue_drops_rows_and_counts_them_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let keys = (KeyStore::open(&dir.path().join("keys")).unwrap(), KeyHash::of("m"));
        let log = SpendLog::start_with_queue(dir.path(), SpendLogSettings::default(), keys, (2, QUEUE_BYTES)).unwrap();
        let started = Instant::now();
        for _ in 0..10_000 {
            let pending = Pending::new(Instant::now(), None, None, Endpoint::ChatCompletions);
            log.record(pending.finish(Duration::ZERO, None, None));
        }
        assert!(started.elapsed() < Duration::from_secs(1), "recording never waits on the writer");
        assert!(log.dropped() > 0, "a full queue drops rows");
        log.close();
        let pending = Pending::new(Instant::now(), None, None, Endpoint::ChatCompletions);
        let before = log.dropped();
        log.record(pending.finish(Duration::ZERO, None, None));
        assert_eq!(log.dropped(), before + 1, "a stopped writer drops and counts, too");
    }

    #[test]
    fn rows_waiting_for_the_writer_hold_a_bounded_number_of_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let keys = (KeyStore::open(&dir.path().join("keys")).unwrap(), KeyHash::of("m"));
        let row = || {
            let mut pending = Pending::new(Instant::now(), None, None, Endpoint::ChatCompletions);
            let tags = vec!["t".repeat(200); 5].join(",");
            pending.read_headers(Some(&"u".repeat(256)), Some(&tags));
            pending.finish(Duration::ZERO, None, None)
        };
        let bytes = row().queued_bytes();
        assert!(bytes > 1000, "a row's tags and end user are counted: {bytes}");
        // Room for ten such rows, in a queue of a thousand; an idle writer looks every 50 ms, so a burst fills it.
        let limits = (1000, 10 * bytes);
        let log = SpendLog::start_with_queue(dir.path(), SpendLogSettings::default(), keys, limits).unwrap();
        for _ in 0..100 {
            log.record(row());
        }
        assert!(log.dropped() >= 80, "at most about ten rows wait: {} dropped", log.dropped());
        assert!(log.queued_bytes.load(Ordering::Relaxed) <= 10 * bytes);
        // The writer takes them off: the queue takes rows again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.queued_bytes.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(log.queued_bytes.load(Ordering::Relaxed), 0, "what the writer drained is taken off");
        let dropped = log.dropped();
        log.record(row());
        assert_eq!(log.dropped(), dropped, "a drained queue takes a row again");
        log.close();
    }
}
