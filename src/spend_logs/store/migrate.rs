//! Moving a spend log kept by an earlier version (a sled database of blocks, `spend_logs.sled`) into the
//! segment files, once: its blocks are copied as they are (either format reads, see `codec`), into a
//! directory that only takes the log's name when it is whole, so a crash midway leaves the old store to move
//! again at the next start, and never half a log.

use std::path::Path;

use super::super::codec;
use super::SpendStore;

/// The old store's directory inside `--data-dir`, and its tree of blocks.
const SLED_DIR: &str = "spend_logs.sled";
const BLOCKS_TREE: &str = "blocks";
/// A file left in the old store once its rows are in the log.
const MOVED: &str = "moved-into-spend_logs";
/// sled's page cache while the old store is read once.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Moves the old store under `data_dir`, if any, into the log at `dir` (opened with `open`).
pub(super) fn from_sled(
    data_dir: &Path,
    dir: &Path,
    open: impl Fn(&Path) -> std::io::Result<SpendStore>,
) -> std::io::Result<()> {
    let old = data_dir.join(SLED_DIR);
    if !old.exists() {
        return Ok(());
    }
    let moved = old.join(MOVED);
    if moved.exists() {
        // Moved before a crash that came between the move and this.
    } else if dir.exists() {
        // Both, and not moved yet: an earlier version ran again (a rollback) and wrote rows in a store of its
        // own since the move. They are newer than the log's, so they go after them; a crash midway copies them
        // again at the next start (those rows twice, none lost).
        let rows = copy(&old, &open(dir)?)?;
        mark_moved(&moved)?;
        log::warn!("moved {rows} spend-log rows written by an earlier version since the last move into the log");
    } else {
        let moving = dir.with_extension("moving");
        if moving.exists() {
            std::fs::remove_dir_all(&moving)?;
        }
        let rows = copy(&old, &open(&moving)?)?;
        // Durable before the old store goes: the segments (synced as they were written), their directory,
        // the mark that they are moved, and the rename in the data directory.
        sync_dir(&moving)?;
        mark_moved(&moved)?;
        std::fs::rename(&moving, dir)?;
        sync_dir(data_dir)?;
        log::info!("moved {rows} spend-log rows from {SLED_DIR} into {}", dir.display());
    }
    std::fs::remove_dir_all(&old)
}

/// Leaves the durable mark `moved` in the old store: its rows are in the log (a crash before the old store
/// is removed must not copy them again).
fn mark_moved(moved: &Path) -> std::io::Result<()> {
    std::fs::File::create(moved)?.sync_all()?;
    sync_dir(moved.parent().unwrap_or(moved))
}

/// Makes the entries of directory `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Copies every block of the sled store at `old` into `into`, oldest first; returns the rows copied.
fn copy(old: &Path, into: &SpendStore) -> std::io::Result<u64> {
    let db = crate::keys::open_db(old, CACHE_BYTES).map_err(std::io::Error::other)?;
    let blocks = db.open_tree(BLOCKS_TREE).map_err(std::io::Error::other)?;
    let mut copied = 0;
    for entry in blocks.iter() {
        let (key, block) = entry.map_err(std::io::Error::other)?;
        let number = |at: usize| key.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
        let rows = codec::count(&block);
        into.append(&block, (number(0), number(8)), rows)?;
        copied += rows;
    }
    into.flush()?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_sled_store_is_moved_once_and_reads_as_before() {
        let data = tempfile::tempdir().unwrap();
        write_old_store(data.path(), &["req-1", "req-2"]);
        let store = SpendStore::open(data.path()).unwrap();
        assert!(!data.path().join(SLED_DIR).exists(), "the old store is gone once moved");
        assert_eq!(store.rows(), 2);
        let found = store.by_request_id("req-2").unwrap().expect("a moved row is found");
        assert_eq!((found.prompt_tokens, found.completion_tokens, found.spend), (1, 2, 0.5));
        drop(store);
        let again = SpendStore::open(data.path()).unwrap();
        assert_eq!(again.rows(), 2, "moved once, not again");
        drop(again);
        // A rollback: the earlier version writes a store of its own again; its rows are moved in after.
        write_old_store(data.path(), &["req-3"]);
        let after = SpendStore::open(data.path()).unwrap();
        assert_eq!(after.rows(), 3, "the rows written after a rollback are kept");
        assert!(after.by_request_id("req-3").unwrap().is_some());
        drop(after);
        // A crash after a move, before the old store went: not moved again.
        write_old_store(data.path(), &["req-4"]);
        std::fs::File::create(data.path().join(SLED_DIR).join(MOVED)).unwrap();
        assert_eq!(SpendStore::open(data.path()).unwrap().rows(), 3);
    }

    /// An earlier version's store in `data` (created or added to): one block of JSON lines, one per id.
    fn write_old_store(data: &Path, ids: &[&str]) {
        let db = crate::keys::open_db(&data.join(SLED_DIR), CACHE_BYTES).unwrap();
        let tree = db.open_tree(BLOCKS_TREE).unwrap();
        let line = |id: &str| {
            format!(
                "{{\"r\":\"{id}\",\"c\":\"c-{id}\",\"t\":\"acompletion\",\"k\":\"ab\",\"s\":1000,\"f\":1,\"d\":2,\
                 \"m\":\"fake\",\"i\":\"d1\",\"g\":\"gpt-4\",\"p\":\"openai\",\"b\":\"\",\"u\":\"\",\"a\":[],\"h\":200,\
                 \"l\":null,\"n\":[1,2,0,0],\"$\":0.5}}\n"
            )
        };
        let sequence = tree.len() as u64;
        let mut key = [0u8; 24];
        key[..8].copy_from_slice(&1u64.to_be_bytes());
        key[8..16].copy_from_slice(&2u64.to_be_bytes());
        key[16..].copy_from_slice(&sequence.to_be_bytes());
        tree.insert(key, ids.iter().map(|id| line(id)).collect::<String>().as_bytes()).unwrap();
        db.flush().unwrap();
    }
}
