//! The spend-log store: a sled database of its own (never in the key store's transactions), rows keyed by
//! start time so they read newest first and prune oldest first, and an index from request id to row.

use std::path::Path;

use super::row::{SpendRow, Stored};

/// Name of the sled database directory inside `--data-dir`.
const DB_DIR: &str = "spend_logs.sled";
/// Rows by (start ms, sequence), both big-endian.
const ROWS_TREE: &str = "rows";
/// `request_id` and `litellm_call_id` → the row's key.
const BY_REQUEST_TREE: &str = "by_request_id";
/// sled's page cache: rows are written once and read rarely.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// The most rows one prune pass removes (the next pass takes the rest).
const PRUNE_BATCH: usize = 10_000;

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct SpendStore {
    db: sled::Db,
    rows: sled::Tree,
    by_request: sled::Tree,
}

/// What a page read found.
pub struct Page {
    pub rows: Vec<SpendRow>,
    /// More rows matched than the page holds.
    pub truncated: bool,
}

/// A stored row as served; `None` for bytes that are no row (never written by this version).
fn decode(value: &[u8]) -> Option<SpendRow> {
    serde_json::from_slice::<Stored>(value).ok().map(Stored::into_row)
}

fn row_key(start_ms: u64, sequence: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&start_ms.to_be_bytes());
    key[8..].copy_from_slice(&sequence.to_be_bytes());
    key
}

impl SpendStore {
    pub fn open(data_dir: &Path) -> Result<Self, sled::Error> {
        let db = sled::Config::new().path(data_dir.join(DB_DIR)).cache_capacity(CACHE_BYTES).open()?;
        let rows = db.open_tree(ROWS_TREE)?;
        let by_request = db.open_tree(BY_REQUEST_TREE)?;
        Ok(Self { db, rows, by_request })
    }

    /// The rows stored, and the sequence the next row takes (after every stored one).
    pub(super) fn count_and_next_sequence(&self) -> Result<(u64, u64), sled::Error> {
        let next = match self.rows.last()? {
            Some((key, _)) => key.get(8..16).and_then(|bytes| bytes.try_into().ok()).map_or(0, u64::from_be_bytes) + 1,
            None => 0,
        };
        Ok((self.rows.len() as u64, next))
    }

    /// Writes `rows` (start ms, row), numbered from `sequence` on, in one batch per tree.
    pub(super) fn append(&self, rows: &[(u64, Stored)], mut sequence: u64) -> Result<u64, sled::Error> {
        let (mut batch, mut index) = (sled::Batch::default(), sled::Batch::default());
        for (start_ms, row) in rows {
            let key = row_key(*start_ms, sequence);
            sequence += 1;
            let Ok(value) = serde_json::to_vec(row) else { continue };
            batch.insert(&key, value);
            index.insert(row.request_id.as_bytes(), &key);
            if row.call_id != row.request_id && !row.call_id.is_empty() {
                index.insert(row.call_id.as_bytes(), &key);
            }
        }
        self.rows.apply_batch(batch)?;
        self.by_request.apply_batch(index)?;
        Ok(sequence)
    }

    /// Removes rows that started before `cutoff_ms`, and the oldest past `max_rows` (of `count` stored);
    /// returns how many went. At most [`PRUNE_BATCH`] a call.
    pub(super) fn prune(&self, cutoff_ms: u64, count: u64, max_rows: u64) -> Result<u64, sled::Error> {
        let over = count.saturating_sub(max_rows);
        let (mut batch, mut index, mut removed) = (sled::Batch::default(), sled::Batch::default(), 0u64);
        for entry in self.rows.iter().take(PRUNE_BATCH) {
            let (key, value) = entry?;
            let start_ms = key.get(..8).and_then(|bytes| bytes.try_into().ok()).map_or(0, u64::from_be_bytes);
            if start_ms >= cutoff_ms && removed >= over {
                break;
            }
            if let Ok(row) = serde_json::from_slice::<Stored>(&value) {
                index.remove(row.request_id.as_bytes());
                index.remove(row.call_id.as_bytes());
            }
            batch.remove(key);
            removed += 1;
        }
        self.by_request.apply_batch(index)?;
        self.rows.apply_batch(batch)?;
        Ok(removed)
    }

    /// The row of a request id (the answer's id or the call id).
    pub fn by_request_id(&self, request_id: &str) -> Result<Option<SpendRow>, sled::Error> {
        let Some(key) = self.by_request.get(request_id.as_bytes())? else { return Ok(None) };
        Ok(self.rows.get(key)?.and_then(|value| decode(&value)))
    }

    /// The rows that started in `from_ms..to_ms` and pass `keep`, newest first: `skip` of them skipped,
    /// then at most `take`.
    pub fn page(
        &self,
        (from_ms, to_ms): (u64, u64),
        keep: impl Fn(&SpendRow) -> bool,
        skip: usize,
        take: usize,
    ) -> Result<Page, sled::Error> {
        let (mut rows, mut seen) = (Vec::with_capacity(take.min(1024)), 0usize);
        let range = row_key(from_ms, 0)..row_key(to_ms, 0);
        for entry in self.rows.range(range).rev() {
            let (_, value) = entry?;
            let Some(row) = decode(&value) else { continue };
            if !keep(&row) {
                continue;
            }
            seen += 1;
            if seen <= skip {
                continue;
            }
            if rows.len() == take {
                return Ok(Page { rows, truncated: true });
            }
            rows.push(row);
        }
        Ok(Page { rows, truncated: false })
    }

    /// Calls `each` with every row that started in `from_ms..to_ms`, oldest first.
    pub fn for_each(&self, (from_ms, to_ms): (u64, u64), mut each: impl FnMut(SpendRow)) -> Result<(), sled::Error> {
        for entry in self.rows.range(row_key(from_ms, 0)..row_key(to_ms, 0)) {
            let (_, value) = entry?;
            if let Some(row) = decode(&value) {
                each(row);
            }
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush().map(|_| ())
    }
}
