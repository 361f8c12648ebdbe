//! The spend-log writer thread: drains the queue on its own clock (a request never wakes it), writes rows
//! in batches, and prunes rows past the retention or the row cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::codec::BlockWriter;
use super::row::{bounded, Finished};
use super::store::SpendStore;
use crate::config::SpendLogSettings;
use crate::keys::KeyHash;
use crate::pool::LiveTable;

/// How often the writer drains the queue.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// The most rows drained before they are written.
const BATCH: usize = 1024;
/// A block is written before it would pass this many bytes (or alone, if one row is larger: a row is
/// under 5 KiB, see `row::MAX_TAGS_BYTES`). Small on purpose: sled 0.34 writes a *page* (a tree leaf,
/// up to about 20 entries) of over about 128 KiB (a quarter of its 512 KiB segment) to a blob file and counts
/// it in its 16 MiB cache by the few bytes of the blob's pointer, so such pages are never evicted: with 96 KiB
/// blocks every stored row stayed in memory (190 MB of RSS at the default million rows). With blocks of at
/// most 4 KiB a leaf stays under the blob size, and sled's cache bounds what it keeps in memory.
pub(super) const BLOCK_BYTES: usize = 4 * 1024;
/// How often the deployment facts are read again from the routing table, at most (on an unknown id).
const FACTS_FOR: Duration = Duration::from_secs(1);

pub(super) struct Writer {
    store: SpendStore,
    settings: SpendLogSettings,
    master: KeyHash,
    table: Arc<LiveTable>,
    /// Deployment id, upstream model and provider of each deployment, sorted by id (read from the routing
    /// table). Searched, not hashed: a gateway has a few deployments, and a SipHash of each row's id cost
    /// more than the rest of its lookup.
    facts: Vec<(Box<str>, String, &'static str)>,
    /// The one last found: a batch's rows mostly come from the same deployments in a row.
    last_facts: Option<usize>,
    facts_read: Option<Instant>,
    count: u64,
    sequence: u64,
    /// The batch being written, reused.
    block: BlockWriter,
}

impl Writer {
    pub(super) fn new(store: SpendStore, settings: SpendLogSettings, master: KeyHash, table: Arc<LiveTable>) -> Self {
        let (count, sequence) = (0, 0);
        let (facts, block) = (Vec::new(), BlockWriter::new());
        Self { store, settings, master, table, facts, last_facts: None, facts_read: None, count, sequence, block }
    }

    /// Runs until `stopped` says stop (its sender dropped), then writes what is left.
    /// `queued_bytes` is what the queued rows hold ([`Finished::queued_bytes`]): what is drained is taken off.
    pub(super) fn run(mut self, rows: Receiver<Finished>, queued_bytes: &AtomicUsize, stopped: Receiver<()>) {
        // Counted here, not at start-up: a large store takes a moment to count, and nothing waits on it.
        match self.store.count_and_next_sequence() {
            Ok((count, sequence)) => (self.count, self.sequence) = (count, sequence),
            Err(err) => log::error!("cannot read the spend log's size: {err}; its row cap counts from now"),
        }
        // Pruning looks often enough for a short retention to hold within a few seconds.
        let prune_every = (self.settings.retention / 4).clamp(Duration::from_millis(500), Duration::from_secs(60));
        let mut pruned_at = Instant::now() - prune_every;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let closing = matches!(stopped.try_recv(), Err(TryRecvError::Disconnected));
            let mut drained = 0;
            loop {
                match rows.try_recv() {
                    Ok(finished) => {
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
            if pruned_at.elapsed() >= prune_every {
                pruned_at = Instant::now();
                self.prune();
            }
            if closing {
                return;
            }
            std::thread::sleep(DRAIN_EVERY);
        }
    }

    fn write(&mut self, batch: &mut Vec<Finished>) {
        for finished in batch.iter() {
            let facts = self.facts_of(finished.model_id()).map(|at| &self.facts[at]);
            let facts = facts.map(|(_, model, provider)| (model.as_str(), *provider));
            finished.write_into(&mut self.block, &self.master, facts);
            if self.block.over(BLOCK_BYTES) {
                self.append_block();
            }
        }
        // The requests' own allocations are freed here, on the writer, after their rows are written.
        batch.clear();
        self.append_block();
    }

    /// Writes the block filled so far as one sled entry, and empties it.
    fn append_block(&mut self) {
        let Some(span) = self.block.span() else { return };
        let rows = self.block.rows() as u64;
        match self.store.append(self.block.bytes(), span, self.sequence) {
            Ok(()) => {
                self.sequence += 1;
                self.count += rows;
                if self.count > self.settings.max_rows {
                    self.prune();
                }
            }
            Err(err) => log::error!("cannot write {rows} spend-log rows: {err}"),
        }
        self.block.clear();
    }

    fn prune(&mut self) {
        let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis();
        let cutoff = u64::try_from(now_ms)
            .unwrap_or(u64::MAX)
            .saturating_sub(u64::try_from(self.settings.retention.as_millis()).unwrap_or(u64::MAX));
        loop {
            match self.store.prune(cutoff, self.count, self.settings.max_rows) {
                Ok(0) => return,
                Ok(removed) => self.count = self.count.saturating_sub(removed),
                Err(err) => return log::error!("cannot prune the spend log: {err}"),
            }
        }
    }

    /// Where in `facts` the deployment `id` is (the upstream model and provider a row names), reading the
    /// routing table's deployments again for an id not known yet (at most every [`FACTS_FOR`]).
    fn facts_of(&mut self, id: &str) -> Option<usize> {
        if id.is_empty() {
            return None;
        }
        if let Some(at) = self.last_facts.filter(|&at| *self.facts[at].0 == *id) {
            return Some(at);
        }
        let find = |facts: &[(Box<str>, String, &str)]| facts.binary_search_by(|(known, ..)| (**known).cmp(id)).ok();
        let mut found = find(&self.facts);
        if found.is_none() && self.facts_read.is_none_or(|at| at.elapsed() >= FACTS_FOR) {
            self.facts_read = Some(Instant::now());
            self.facts = (self.table.load().states().into_iter())
                // The upstream model is the config's text: cut as a row cuts the client's (a careless admin's
                // 20 KB name would otherwise make every row a block of its own, too large for sled's cache).
                .map(|(deployment, _)| {
                    (deployment.id.clone(), bounded(&deployment.upstream_model).into_string(), deployment.provider)
                })
                .collect();
            self.facts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            found = find(&self.facts);
        }
        self.last_facts = found;
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;
    use crate::pool::RoutingTable;
    use crate::spend_logs::Pending;

    #[test]
    fn a_busy_batch_is_written_in_blocks_sled_keeps_inline() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpendStore::open(dir.path()).unwrap();
        let mut writer = writer(&store);
        let mut batch: Vec<Finished> =
            (0..2_000).map(|_| row("a-customer-of-the-tenant", &["team-a".into()])).collect();
        writer.write(&mut batch);
        assert_eq!(store.count_and_next_sequence().unwrap().0, 2_000);
        let sizes: Vec<usize> = store.blocks_for_tests().map(|block| block.len()).collect();
        assert!(sizes.len() > 1 && sizes.iter().all(|&size| size <= BLOCK_BYTES), "block sizes {sizes:?}");
    }

    /// The memory bound: sled 0.34 keeps a page of over about 128 KiB in a blob file and counts it in its
    /// cache by the pointer's few bytes, so every such page stays in memory for good (RSS grew with the
    /// stored rows, 190 MB at the default row cap). No page may go to a blob file, for rows of the usual
    /// size and for rows at their largest (every tag and the end user at their bounds, in 4-byte characters).
    #[test]
    fn no_spend_log_page_is_kept_outside_sleds_counted_cache() {
        let wide = "\u{1F600}".repeat(300);
        let tags: Vec<Box<str>> = (0..40).map(|_| wide.as_str().into()).collect();
        for (rows, end_user, tags) in
            [(30_000, "a-customer-of-the-tenant", vec!["team-a".into()]), (2_000, &*wide, tags)]
        {
            let dir = tempfile::tempdir().unwrap();
            let store = SpendStore::open(dir.path()).unwrap();
            let mut writer = writer(&store);
            for _ in 0..rows / 1_000 {
                let mut batch: Vec<Finished> = (0..1_000).map(|_| row(end_user, &tags)).collect();
                writer.write(&mut batch);
            }
            store.flush().unwrap();
            assert_eq!(store.count_and_next_sequence().unwrap().0, rows);
            let blobs = std::fs::read_dir(dir.path().join("spend_logs.sled/blobs")).map_or(0, Iterator::count);
            assert_eq!(blobs, 0, "{blobs} sled pages in blob files after {rows} rows with {}-byte tags", tags[0].len());
        }
    }

    /// A store written by an earlier version (blocks of up to 96 KiB) keeps working: rows written since in
    /// 4 KiB blocks add to it, a request id is found in either, a page walks both, and the row cap prunes
    /// the old large blocks first (the block it runs through keeps its newest rows).
    #[test]
    fn a_store_of_96_kib_blocks_reads_pages_and_prunes_next_to_4_kib_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpendStore::open(dir.path()).unwrap();
        let master = KeyHash::of("m");
        let (mut old, mut sequence) = (BlockWriter::new(), 0);
        let mut append = |block: &mut BlockWriter| {
            store.append(block.bytes(), block.span().unwrap(), sequence).unwrap();
            sequence += 1;
            block.clear();
        };
        for i in 0..1_500 {
            finished(&format!("chatcmpl-old-{i}")).write_into(&mut old, &master, None);
            if old.over(96 * 1024) {
                append(&mut old);
            }
        }
        append(&mut old);
        let old_blocks = store.blocks_for_tests().count();
        assert!(old_blocks >= 2 && store.blocks_for_tests().all(|block| block.len() > 40 * 1024), "{old_blocks}");
        let settings = SpendLogSettings { max_rows: 2_000, ..SpendLogSettings::default() };
        let table = Arc::new(LiveTable::from_pointee(RoutingTable::new(&[], Arc::default())));
        let mut writer = Writer::new(store.clone(), settings, master, table);
        (writer.count, writer.sequence) = store.count_and_next_sequence().unwrap();
        assert_eq!(writer.count, 1_500);
        let mut batch: Vec<Finished> = (0..1_000).map(|i| finished(&format!("chatcmpl-new-{i}"))).collect();
        writer.write(&mut batch);
        assert_eq!(store.count_and_next_sequence().unwrap().0, 2_000, "the cap holds across both sizes");
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

    fn finished(answer_id: &str) -> Finished {
        let mut pending = Pending::new(SystemTime::now(), None, None, Endpoint::ChatCompletions);
        pending.asked(&Arc::from("gpt-4"), Some("a-customer-of-the-tenant"), &["team-a".into()]);
        pending.finish(Duration::from_millis(4), None, Some(answer_id))
    }

    fn writer(store: &SpendStore) -> Writer {
        let table = Arc::new(LiveTable::from_pointee(RoutingTable::new(&[], Arc::default())));
        Writer::new(store.clone(), SpendLogSettings::default(), KeyHash::of("m"), table)
    }

    fn row(end_user: &str, tags: &[Box<str>]) -> Finished {
        let mut pending = Pending::new(SystemTime::now(), None, None, Endpoint::ChatCompletions);
        pending.asked(&Arc::from("gpt-4"), Some(end_user), tags);
        pending.finish(Duration::from_millis(4), None, None)
    }
}
