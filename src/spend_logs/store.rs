//! The spend-log store: a sled database of its own (never in the key store's transactions). Rows are kept in
//! blocks, one sled entry per batch the writer drains (binary rows, see `codec`), keyed by the block's earliest and latest
//! start: one sled write per batch instead of one per row keeps sled's own work (and the garbage its epochs
//! free on whichever thread touches sled next, the HTTP workers included) off the request path. Reads scan
//! blocks newest first, skipping those outside the range unread.

use std::path::Path;

use super::codec;
use super::row::{SpendRow, Stored};
use crate::keys::make_private;

/// Name of the sled database directory inside `--data-dir`.
const DB_DIR: &str = "spend_logs.sled";
/// Blocks by (earliest start ms, latest start ms, sequence), all big-endian.
const BLOCKS_TREE: &str = "blocks";
/// sled's page cache: rows are written once and read rarely.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct SpendStore {
    db: sled::Db,
    blocks: sled::Tree,
}

/// What a page read found.
pub struct Page {
    pub rows: Vec<SpendRow>,
    /// More rows matched than the page holds.
    pub truncated: bool,
}

fn block_key(earliest_ms: u64, latest_ms: u64, sequence: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&earliest_ms.to_be_bytes());
    key[8..16].copy_from_slice(&latest_ms.to_be_bytes());
    key[16..].copy_from_slice(&sequence.to_be_bytes());
    key
}

/// (earliest start ms, latest start ms, sequence) of a block's key.
fn key_parts(key: &[u8]) -> (u64, u64, u64) {
    let number = |at: usize| key.get(at..at + 8).and_then(|bytes| bytes.try_into().ok()).map_or(0, u64::from_be_bytes);
    (number(0), number(8), number(16))
}

fn rows_in(block: &[u8]) -> u64 {
    codec::count(block)
}

/// A block's rows, as stored, in the order written (either format; see `codec`).
fn stored_rows(block: &[u8]) -> impl DoubleEndedIterator<Item = Stored> + '_ {
    codec::rows(block)
}

impl SpendStore {
    pub fn open(data_dir: &Path) -> Result<Self, sled::Error> {
        let path = data_dir.join(DB_DIR);
        let db = crate::keys::open_db(&path, CACHE_BYTES)?;
        let blocks = db.open_tree(BLOCKS_TREE)?;
        // Rows name keys (by hash) and end users: the owner's only, like the key store.
        make_private(&path)?;
        Ok(Self { db, blocks })
    }

    /// The rows stored, and the sequence the next block takes (after every stored one).
    pub(super) fn count_and_next_sequence(&self) -> Result<(u64, u64), sled::Error> {
        let (mut count, mut next) = (0, 0);
        for entry in self.blocks.iter() {
            let (key, block) = entry?;
            count += rows_in(&block);
            next = next.max(key_parts(&key).2 + 1);
        }
        Ok((count, next))
    }

    /// Writes `block` (rows that started from `earliest` to `latest` ms) as one block numbered `sequence`.
    pub(super) fn append(
        &self,
        block: &[u8],
        (earliest, latest): (u64, u64),
        sequence: u64,
    ) -> Result<(), sled::Error> {
        if block.is_empty() {
            return Ok(());
        }
        self.blocks.insert(block_key(earliest, latest, sequence), block)?;
        Ok(())
    }

    /// Removes blocks whose rows all started before `cutoff_ms`, and the oldest rows past `max_rows` (of
    /// `count` stored); returns how many rows went.
    pub(super) fn prune(&self, cutoff_ms: u64, count: u64, max_rows: u64) -> Result<u64, sled::Error> {
        let mut removed = 0u64;
        for entry in self.blocks.iter() {
            let (key, block) = entry?;
            let (_, latest, _) = key_parts(&key);
            let (rows, left) = (rows_in(&block), count.saturating_sub(removed));
            if latest < cutoff_ms || left.saturating_sub(rows) >= max_rows {
                self.blocks.remove(&key)?;
                removed += rows;
                continue;
            }
            // The block the cap runs through keeps only its newest rows.
            let over = left.saturating_sub(max_rows);
            if over > 0 {
                if let Some(kept) = codec::without_oldest(&block, over) {
                    self.blocks.insert(&key, kept)?;
                    removed += over;
                }
            }
            break;
        }
        Ok(removed)
    }

    /// The newest row of a request id (the answer's id or the call id). Blocks without the id's bytes are
    /// passed over unread.
    pub fn by_request_id(&self, request_id: &str) -> Result<Option<SpendRow>, sled::Error> {
        if request_id.is_empty() {
            return Ok(None);
        }
        let finder = memchr::memmem::Finder::new(request_id.as_bytes());
        for entry in self.blocks.iter().rev() {
            let (_, block) = entry?;
            if finder.find(&block).is_none() {
                continue;
            }
            let found = stored_rows(&block).rev().find(|row| row.request_id == request_id || row.call_id == request_id);
            if let Some(row) = found {
                return Ok(Some(row.into_row()));
            }
        }
        Ok(None)
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
        for entry in self.blocks.iter().rev() {
            let (key, block) = entry?;
            let (earliest, latest, _) = key_parts(&key);
            if latest < from_ms || earliest >= to_ms {
                continue;
            }
            for row in stored_rows(&block).rev() {
                if !(from_ms..to_ms).contains(&row.start_ms()) {
                    continue;
                }
                let row = row.into_row();
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
        }
        Ok(Page { rows, truncated: false })
    }

    /// Calls `each` with every row that started in `from_ms..to_ms`.
    pub fn for_each(&self, (from_ms, to_ms): (u64, u64), mut each: impl FnMut(SpendRow)) -> Result<(), sled::Error> {
        for entry in self.blocks.iter() {
            let (key, block) = entry?;
            let (earliest, latest, _) = key_parts(&key);
            if latest < from_ms || earliest >= to_ms {
                continue;
            }
            for row in stored_rows(&block).filter(|row| (from_ms..to_ms).contains(&row.start_ms())) {
                each(row.into_row());
            }
        }
        Ok(())
    }

    /// Every stored block's bytes, oldest first.
    #[cfg(test)]
    pub(super) fn blocks_for_tests(&self) -> impl Iterator<Item = sled::IVec> + '_ {
        self.blocks.iter().values().map(Result::unwrap)
    }

    pub fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::endpoint::Endpoint;
    use crate::keys::KeyHash;
    use crate::proxy::TokenUsage;
    use crate::spend_logs::codec::BlockWriter;
    use crate::spend_logs::{Finished, Pending};
    use crate::tier::Tier;

    /// A chat answered by a deployment: the row a busy gateway writes most.
    fn answered(at: SystemTime, end_user: &str) -> Finished {
        let mut pending = Pending::new(at, Some(KeyHash::of("sk-user")), Some(Tier::Free), Endpoint::ChatCompletions);
        pending.asked(&Arc::from("gpt-4"), Some(end_user), &["team-a".into()]);
        let response = actix_web::HttpResponse::Ok()
            .insert_header(("x-litellm-call-id", "8c7f4a52-3d1e-4b7a-9f0e-2a6c1d5e9b30"))
            .insert_header(("x-litellm-model-id", "gpt-4-free-0"))
            .insert_header(("x-litellm-model-api-base", "http://127.0.0.1:4010"))
            .finish();
        pending.answered_by(&response, Duration::from_millis(3));
        let usage = TokenUsage { prompt_tokens: 9, completion_tokens: 3, ..TokenUsage::default() };
        pending.finish(Duration::from_millis(5), Some((usage, 0.25)), Some("chatcmpl-1"))
    }

    fn store() -> (tempfile::TempDir, SpendStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SpendStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_row_is_stored_in_under_60_percent_of_its_json_line_and_reads_back_as_written() {
        let (_dir, store) = store();
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_770_000_123_456);
        let mut block = BlockWriter::new();
        answered(at, "customer-7").write_into(&mut block, &KeyHash::of("m"), Some(("fake", "openai")));
        let start = 1_764_770_000_123;
        store.append(block.bytes(), (start, start), 0).unwrap();
        let row = store.by_request_id("chatcmpl-1").unwrap().expect("found by the answer's id");
        let json = serde_json::to_vec(&stored_rows(block.bytes()).next().unwrap()).unwrap();
        assert!(
            block.bytes().len() * 5 < json.len() * 3,
            "binary {} bytes, JSON line {}",
            block.bytes().len(),
            json.len()
        );
        assert_eq!(
            (row.request_id.as_str(), row.litellm_call_id.as_str()),
            ("chatcmpl-1", "8c7f4a52-3d1e-4b7a-9f0e-2a6c1d5e9b30")
        );
        assert_eq!((row.call_type.as_str(), row.api_key.clone()), ("acompletion", KeyHash::of("sk-user").to_hex()));
        assert_eq!(
            (row.model.as_str(), row.custom_llm_provider.as_str(), row.model_id.as_str()),
            ("fake", "openai", "gpt-4-free-0")
        );
        assert_eq!((row.model_group.as_str(), row.api_base.as_str()), ("gpt-4", "http://127.0.0.1:4010"));
        assert_eq!(
            (row.end_user.as_str(), row.request_tags.clone(), row.tier.as_deref()),
            ("customer-7", vec!["team-a".to_owned()], Some("free"))
        );
        assert_eq!((row.prompt_tokens, row.completion_tokens, row.spend, row.status_code), (9, 3, 0.25, 200));
        assert_eq!(
            (row.start_time.as_str(), row.completion_start_time.as_str()),
            ("2025-12-03T13:53:20.123Z", "2025-12-03T13:53:20.126Z")
        );
        assert_eq!(row.request_duration_ms, 5);
    }

    #[test]
    fn rows_written_as_json_lines_before_the_binary_format_still_read_and_prune() {
        let (_dir, store) = store();
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        // Format 1: a block of JSON lines, as main wrote them.
        let mut old = Vec::new();
        for user in ["old-1", "old-2"] {
            let mut block = BlockWriter::new();
            answered(at(1_000), user).write_into(&mut block, &KeyHash::of("m"), None);
            let mut row = stored_rows(block.bytes()).next().unwrap();
            row.request_id = format!("req-{user}");
            serde_json::to_writer(&mut old, &row).unwrap();
            old.push(b'\n');
        }
        store.blocks.insert(block_key(1_000, 1_000, 0), old).unwrap();
        let mut new = BlockWriter::new();
        for user in ["new-1", "new-2"] {
            answered(at(2_000), user).write_into(&mut new, &KeyHash::of("m"), None);
        }
        store.append(new.bytes(), (2_000, 2_000), 1).unwrap();
        let users = |store: &SpendStore| {
            let page = store.page((0, u64::MAX), |_| true, 0, 10).unwrap();
            page.rows.into_iter().map(|row| row.end_user).collect::<Vec<_>>()
        };
        assert_eq!(users(&store), ["new-2", "new-1", "old-2", "old-1"], "newest first, across formats");
        assert_eq!(store.by_request_id("req-old-1").unwrap().map(|row| row.end_user).as_deref(), Some("old-1"));
        assert_eq!(store.count_and_next_sequence().unwrap(), (4, 2));
        // The row cap cuts the oldest rows of either format.
        assert_eq!(store.prune(0, 4, 3).unwrap(), 1);
        assert_eq!(users(&store), ["new-2", "new-1", "old-2"]);
        assert_eq!(store.prune(0, 3, 1).unwrap(), 2, "the old block goes whole, and the oldest new row");
        assert_eq!(users(&store), ["new-2"]);
    }
}
