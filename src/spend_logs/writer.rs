//! The spend-log writer thread: drains the queue on its own clock (a request never wakes it), writes rows
//! in batches, and prunes rows past the retention or the row cap.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::codec::BlockWriter;
use super::row::{Finished, Spares};
use super::store::SpendStore;
use super::wall_clock::WallClock;
use crate::config::SpendLogSettings;
use crate::keys::KeyHash;

/// The most rows drained before they are written.
const BATCH: usize = 1024;
/// A block is written before it would pass this many bytes (or alone, if one row is larger: a row is
/// under 5 KiB, see `row::MAX_TAGS_BYTES`): a read skips a block outside its range unread, and finds a request
/// id in a block of a couple of hundred rows. Each block is one `write(2)` (and one `fstat`): at 4 KiB the
/// kernel's share of the writer was 0.55 µs per request at 30 k requests a second, at 32 KiB (about one
/// block per 5 ms drain at that rate) 0.32 to 0.42 µs (`bench/results/issue-20-spend-logs.md`, section 15).
pub(super) const BLOCK_BYTES: usize = 32 * 1024;

pub(super) struct Writer {
    store: SpendStore,
    /// The retention and row cap this drain works to, copied from `bounds`.
    settings: SpendLogSettings,
    /// The settings in force, which a reload changes.
    bounds: Arc<Mutex<SpendLogSettings>>,
    master: KeyHash,
    /// The batch being written, reused.
    block: BlockWriter,
    /// Rows dropped (`tiergate_spend_logs_dropped_total`): the writer adds those it could not write.
    lost: Arc<AtomicU64>,
    last_error: Option<Instant>,
    /// Where written rows' boxes go back to, for new requests.
    spares: Arc<Spares>,
    /// The wall clock and the cutoff of the last prune, in ms since the epoch: the cutoff only moves forward
    /// while the clock does, so a reload that lengthens the retention brings back no row a shorter one hid.
    last_prune: (u64, u64),
}

/// Pruning looks often enough for a short retention to hold within a few seconds.
fn prune_every(settings: SpendLogSettings) -> Duration {
    (settings.retention / 4).clamp(Duration::from_millis(500), Duration::from_secs(60))
}

/// At most one error line about rows that could not be written this often.
const ERROR_EVERY: Duration = Duration::from_secs(10);

impl Writer {
    /// Works to the settings in `bounds`, read again before each drain (a reload changes them).
    pub(super) fn new(store: SpendStore, bounds: Arc<Mutex<SpendLogSettings>>, master: KeyHash) -> Self {
        let (block, lost, spares) = (BlockWriter::new(), Arc::default(), Arc::default());
        let settings = *bounds.lock().unwrap_or_else(PoisonError::into_inner);
        Self { store, settings, bounds, master, block, lost, last_error: None, spares, last_prune: (0, 0) }
    }

    /// Hands written rows' boxes back to `spares`.
    pub(super) fn handing_rows_back_to(mut self, spares: Arc<Spares>) -> Self {
        self.spares = spares;
        self
    }

    /// Counts the rows it cannot write in `lost`.
    pub(super) fn counting_lost_rows_in(mut self, lost: Arc<AtomicU64>) -> Self {
        self.lost = lost;
        self
    }

    /// Runs until `stopped` says stop (its sender dropped), then writes what is left.
    /// `queued_bytes` is what the queued rows hold ([`Finished::queued_bytes`]): what is drained is taken off.
    pub(super) fn run(mut self, rows: Receiver<Finished>, queued_bytes: &AtomicUsize, stopped: Receiver<()>) {
        // `None`: a prune is due (no instant before now is needed, which need not exist so soon after boot).
        let mut pruned_at: Option<Instant> = None;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let in_force = *self.bounds.lock().unwrap_or_else(PoisonError::into_inner);
            if in_force != self.settings {
                // A reload changed them: pruned to the new bounds at once.
                self.settings = in_force;
                pruned_at = None;
            }
            let closing = matches!(stopped.try_recv(), Err(TryRecvError::Disconnected));
            let (mut drained, mut found_rows) = (0, false);
            loop {
                match rows.try_recv() {
                    Ok(finished) => {
                        found_rows = true;
                        drained += finished.queued_bytes();
                        batch.push(finished);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
                if batch.len() == BATCH {
                    queued_bytes.fetch_sub(std::mem::take(&mut drained), Ordering::Relaxed);
                    self.write(&mut batch);
                }
            }
            // Taken off with each batch taken (not per row: the workers add to it on every request), so a queue
            // that never empties under load does not count rows already off it.
            queued_bytes.fetch_sub(drained, Ordering::Relaxed);
            self.write(&mut batch);
            if pruned_at.is_none_or(|at| at.elapsed() >= prune_every(self.settings)) {
                pruned_at = Some(Instant::now());
                self.prune();
            }
            if closing {
                return;
            }
            std::thread::sleep(crate::drain_pace::pause_after(found_rows));
        }
    }

    fn write(&mut self, batch: &mut Vec<Finished>) {
        if batch.is_empty() {
            return;
        }
        // One clock read for the batch: a row's start is the request's `Instant`, made wall time here.
        let clock = WallClock::now();
        for finished in batch.iter() {
            finished.write_into(&mut self.block, &self.master, &clock);
            if self.block.over(BLOCK_BYTES) {
                self.append_block();
            }
        }
        // Written: the rows' boxes go back for new requests (their texts and handles are dropped here).
        self.spares.take_back(batch);
        self.append_block();
    }

    /// Appends the block filled so far to the store, and empties it.
    fn append_block(&mut self) {
        let Some(span) = self.block.span() else { return };
        let rows = self.block.rows() as u64;
        if let Err(err) = self.store.append(self.block.bytes(), span, rows) {
            self.lost.fetch_add(rows, Ordering::Relaxed);
            // At most one line this often: a full disk fails every block, hundreds a second.
            if self.last_error.is_none_or(|at| at.elapsed() >= ERROR_EVERY) {
                self.last_error = Some(Instant::now());
                let lost = self.lost.load(Ordering::Relaxed);
                log::error!("cannot write spend-log rows: {err} (rows dropped so far: {lost})");
            }
        }
        self.block.clear();
        // The row cap is only a comparison until a whole segment is past it.
        if self.store.rows() > self.settings.max_rows {
            self.prune();
        }
    }

    /// Sets the store's bounds (the row cap, and the retention as of now), deleting what is past them.
    pub(super) fn prune(&mut self) {
        let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis();
        let now_ms = u64::try_from(now_ms).unwrap_or(u64::MAX);
        let mut cutoff = now_ms.saturating_sub(u64::try_from(self.settings.retention.as_millis()).unwrap_or(u64::MAX));
        let (last_now_ms, last_cutoff) = self.last_prune;
        if now_ms >= last_now_ms {
            cutoff = cutoff.max(last_cutoff);
        }
        self.last_prune = (now_ms, cutoff);
        if let Err(err) = self.store.prune(cutoff, self.settings.max_rows) {
            log::error!("cannot prune the spend log: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;
    use crate::meter::Noted;
    use crate::spend_logs::Pending;
    use crate::tier::Tier;
    use actix_web::HttpResponse;

    /// A written row's box is handed back and filled by the next request: nothing of the row it held shows
    /// in the new one (tokens, ids, end user, tags, key, model, the kept answer).
    #[test]
    fn a_reused_row_box_carries_nothing_of_the_row_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpendStore::open(dir.path()).unwrap();
        let spares = Arc::new(Spares::default());
        let mut writer = writer(&store, SpendLogSettings::default()).handing_rows_back_to(Arc::clone(&spares));
        let key = Some(KeyHash::of("sk-a"));
        let mut first = spares.pending(Instant::now(), key, Some(Tier::Free), Endpoint::ChatCompletions);
        first.asked(&Arc::from("gpt-4"), Some("end-user-a"), &["tag-a".into()]);
        let answered = HttpResponse::Ok().insert_header(("x-litellm-call-id", "call-a")).finish();
        first.answered_by(&answered, Duration::from_millis(3), None);
        let answer = br#"{"id":"chatcmpl-a","usage":{"prompt_tokens":7,"completion_tokens":9}}"#;
        writer.write(&mut vec![first.finish_whole(Noted::Unread { prompt_bytes: 10 }, answer)]);
        assert_eq!(spares.len_for_tests(), 1, "the written row's box is handed back");

        let mut second = spares.pending(Instant::now(), None, None, Endpoint::Embeddings);
        assert_eq!(spares.len_for_tests(), 0, "and taken for the next request");
        second.answered_by(&HttpResponse::Ok().finish(), Duration::from_millis(1), None);
        let short = br#"{"id":"chatcmpl-b","usage":{"prompt_tokens":2,"completion_tokens":1}}"#;
        writer.write(&mut vec![second.finish_whole(Noted::Unread { prompt_bytes: 3 }, short)]);
        let third = spares.pending(Instant::now(), None, None, Endpoint::Embeddings);
        writer.write(&mut vec![third.finish(Duration::from_millis(1), None, None)]);
        let second = store.by_request_id("chatcmpl-b").unwrap().unwrap();
        assert_eq!((second.prompt_tokens, second.completion_tokens), (2, 1), "its own answer, nothing of the last");
        let first = store.by_request_id("chatcmpl-a").unwrap().unwrap();
        assert_eq!((first.prompt_tokens, first.completion_tokens, first.end_user.as_str()), (7, 9, "end-user-a"));
        let mut rows = Vec::new();
        store.for_each((0, u64::MAX), |row| rows.push(row)).unwrap();
        let third = rows.into_iter().find(|row| !row.request_id.starts_with("chatcmpl-")).unwrap();
        assert_eq!((third.prompt_tokens, third.completion_tokens, third.spend), (0, 0, 0.0));
        assert_eq!((third.end_user.as_str(), third.model_group.as_str(), third.tier.as_deref()), ("", "", None));
        assert!(third.request_tags.is_empty());
        assert_ne!(third.litellm_call_id, "call-a");
        assert_ne!(third.call_type, first.call_type);
        assert_eq!(third.api_key, KeyHash::of("m").to_hex(), "the master key's row, not the last row's key");
    }

    #[test]
    fn a_busy_batch_is_written_in_small_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpendStore::open(dir.path()).unwrap();
        let mut writer = writer(&store, SpendLogSettings::default());
        let mut batch: Vec<Finished> =
            (0..2_000).map(|_| row("a-customer-of-the-tenant", &["team-a".into()])).collect();
        writer.write(&mut batch);
        assert_eq!(store.rows(), 2_000);
        let sizes: Vec<usize> = store.blocks_for_tests().iter().map(Vec::len).collect();
        assert!(sizes.len() > 1 && sizes.iter().all(|&size| size <= BLOCK_BYTES), "block sizes {sizes:?}");
    }

    /// The disk bound: past the row cap, reads see exactly the newest `max_rows` rows, and the files hold at
    /// most a segment more than those (whole segments past the cap are deleted).
    #[test]
    fn past_the_row_cap_reads_see_the_newest_rows_and_the_disk_holds_a_segment_more() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpendStore::open(dir.path()).unwrap();
        let settings = SpendLogSettings { max_rows: 10_000, ..SpendLogSettings::default() };
        let mut writer = writer(&store, settings);
        for round in 0..200 {
            let mut batch: Vec<Finished> = (0..1_000).map(|i| finished(&format!("chatcmpl-{round}-{i}"))).collect();
            writer.write(&mut batch);
        }
        let mut seen = 0;
        store.for_each((0, u64::MAX), |_| seen += 1).unwrap();
        assert_eq!(seen, 10_000);
        assert_eq!(store.by_request_id("chatcmpl-189-999").unwrap().map(|row| row.request_id), None);
        assert!(store.by_request_id("chatcmpl-190-0").unwrap().is_some());
        let on_disk: u64 = std::fs::read_dir(dir.path().join("spend_logs"))
            .unwrap()
            .map(|entry| entry.unwrap().metadata().unwrap().len())
            .sum();
        let row_bytes = store.blocks_for_tests().iter().map(Vec::len).sum::<usize>() as u64 / store.rows();
        assert!(on_disk <= 10_000 * (row_bytes + 1) + (8 << 20) + 64 * 1024, "{on_disk} bytes on disk");
        assert!(store.rows() < 200_000 / 2, "whole segments past the cap are deleted ({} rows kept)", store.rows());
    }

    /// A store written by an earlier version (blocks of up to 96 KiB) keeps working: rows written since in
    /// smaller blocks add to it, a request id is found in either, a page walks both, and the row cap prunes
    /// the old large blocks first (the block it runs through shows its newest rows).
    #[test]
    fn a_store_of_96_kib_blocks_reads_pages_and_prunes_next_to_smaller_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpendStore::open(dir.path()).unwrap();
        let master = KeyHash::of("m");
        let mut old = BlockWriter::new();
        let append = |block: &mut BlockWriter| {
            store.append(block.bytes(), block.span().unwrap(), block.rows() as u64).unwrap();
            block.clear();
        };
        for i in 0..1_500 {
            finished(&format!("chatcmpl-old-{i}")).write_into(&mut old, &master, &WallClock::now());
            if old.over(96 * 1024) {
                append(&mut old);
            }
        }
        append(&mut old);
        let old_blocks = store.blocks_for_tests();
        assert!(old_blocks.len() >= 2 && old_blocks.iter().all(|block| block.len() > 40 * 1024));
        assert_eq!(store.rows(), 1_500);
        let settings = SpendLogSettings { max_rows: 2_000, ..SpendLogSettings::default() };
        let mut writer = writer(&store, settings);
        let mut batch: Vec<Finished> = (0..1_000).map(|i| finished(&format!("chatcmpl-new-{i}"))).collect();
        writer.write(&mut batch);
        let mut seen = 0;
        store.for_each((0, u64::MAX), |_| seen += 1).unwrap();
        assert_eq!(seen, 2_000, "the cap holds across both sizes");
        let found = |id: &str| store.by_request_id(id).unwrap().map(|row| row.request_id);
        assert_eq!(found("chatcmpl-old-1499").as_deref(), Some("chatcmpl-old-1499"));
        assert_eq!(found("chatcmpl-new-0").as_deref(), Some("chatcmpl-new-0"));
        assert_eq!(found("chatcmpl-old-499"), None, "the oldest 500 rows are pruned");
        assert_eq!(found("chatcmpl-old-500").as_deref(), Some("chatcmpl-old-500"));
        let page = store.page((0, u64::MAX), |_| true, 990, 20).unwrap();
        let ids: Vec<&str> = page.rows.iter().map(|row| row.request_id.as_str()).collect();
        assert_eq!(ids.len(), 20);
        assert!(ids[..10].iter().all(|id| id.starts_with("chatcmpl-new-")), "{ids:?}");
        assert!(ids[10..].iter().all(|id| id.starts_with("chatcmpl-old-")), "{ids:?}");
    }

    /// Rows the writer cannot write (no segment can be made) are counted as dropped, not lost silently.
    #[test]
    fn rows_that_cannot_be_written_are_counted_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpendStore::open(dir.path()).unwrap();
        let lost = Arc::new(AtomicU64::new(0));
        let mut writer = writer(&store, SpendLogSettings::default()).counting_lost_rows_in(Arc::clone(&lost));
        std::fs::remove_dir_all(dir.path().join("spend_logs")).unwrap();
        std::fs::write(dir.path().join("spend_logs"), b"not a directory").unwrap();
        let mut batch: Vec<Finished> = (0..100).map(|i| finished(&format!("chatcmpl-{i}"))).collect();
        writer.write(&mut batch);
        assert_eq!(lost.load(Ordering::Relaxed), 100);
    }

    fn finished(answer_id: &str) -> Finished {
        let mut pending = Pending::new(Instant::now(), None, None, Endpoint::ChatCompletions);
        pending.asked(&Arc::from("gpt-4"), Some("a-customer-of-the-tenant"), &["team-a".into()]);
        pending.finish(Duration::from_millis(4), None, Some(answer_id))
    }

    fn writer(store: &SpendStore, settings: SpendLogSettings) -> Writer {
        Writer::new(store.clone(), Arc::new(Mutex::new(settings)), KeyHash::of("m"))
    }

    fn row(end_user: &str, tags: &[Box<str>]) -> Finished {
        let mut pending = Pending::new(Instant::now(), None, None, Endpoint::ChatCompletions);
        pending.asked(&Arc::from("gpt-4"), Some(end_user), tags);
        pending.finish(Duration::from_millis(4), None, None)
    }
}
