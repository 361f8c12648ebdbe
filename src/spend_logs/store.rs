//! The spend-log store: a sled database of its own (never in the key store's transactions). Rows are kept in
//! blocks, one sled entry per batch the writer drains (JSON lines), keyed by the block's earliest and latest
//! start: one sled write per batch instead of one per row keeps sled's own work (and the garbage its epochs
//! free on whichever thread touches sled next, the HTTP workers included) off the request path. Reads scan
//! blocks newest first, skipping those outside the range unread.

use std::path::Path;

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
    memchr::memchr_iter(b'\n', block).count() as u64
}

/// A block's rows, as stored, in the order written; bytes that are no row are skipped.
fn stored_rows(block: &[u8]) -> impl DoubleEndedIterator<Item = Stored> + '_ {
    block.split(|&byte| byte == b'\n').filter_map(|line| serde_json::from_slice::<Stored>(line).ok())
}

impl SpendStore {
    pub fn open(data_dir: &Path) -> Result<Self, sled::Error> {
        let path = data_dir.join(DB_DIR);
        let db = sled::Config::new().path(&path).cache_capacity(CACHE_BYTES).open()?;
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

    /// Writes `rows` (start ms, row) as one block numbered `sequence`.
    pub(super) fn append(&self, rows: &[(u64, Stored)], sequence: u64) -> Result<(), sled::Error> {
        let (Some(earliest), Some(latest)) = (rows.iter().map(|row| row.0).min(), rows.iter().map(|row| row.0).max())
        else {
            return Ok(());
        };
        let mut block = Vec::with_capacity(rows.len() * 400);
        for (_, row) in rows {
            if serde_json::to_writer(&mut block, row).is_ok() {
                block.push(b'\n');
            }
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
                let cut = memchr::memchr_iter(b'\n', &block).nth(usize::try_from(over - 1).unwrap_or(usize::MAX));
                if let Some(at) = cut {
                    self.blocks.insert(&key, &block[at + 1..])?;
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

    pub fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush().map(|_| ())
    }
}
