//! Opening a sled database right after this process closed it. sled's background flusher can keep the file
//! lock for a moment after the last handle drops, so a reopen at once (a test, a restart in-process) waits
//! for it briefly instead of failing. Another process holding the lock is still refused, after that wait.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long an open waits for a lock held by a handle that is closing.
const LOCK_WAIT: Duration = Duration::from_secs(2);
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// Opens the sled database at `path` with a page cache of `cache_bytes`.
pub fn open_db(path: &Path, cache_bytes: u64) -> Result<sled::Db, sled::Error> {
    let started = Instant::now();
    loop {
        match sled::Config::new().path(path).cache_capacity(cache_bytes).open() {
            Err(sled::Error::Io(err)) if lock_busy(&err) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(RETRY_EVERY)
            }
            opened => return opened,
        }
    }
}

/// sled reports a held lock as an I/O error of kind `Other` with this text (it has no variant of its own).
fn lock_busy(err: &std::io::Error) -> bool {
    err.to_string().contains("could not acquire lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_reopened_while_its_last_handle_closes_opens() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path(), 1 << 20).unwrap();
        db.insert(b"k", b"v").unwrap();
        // The last handle closes a moment after the reopen starts (as sled's flusher may hold it).
        let closing = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(db);
        });
        let reopened = open_db(dir.path(), 1 << 20);
        closing.join().unwrap();
        assert_eq!(reopened.unwrap().get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_lock_held_elsewhere_is_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = open_db(dir.path(), 1 << 20).unwrap();
        let started = Instant::now();
        let second = open_db(dir.path(), 1 << 20);
        assert!(matches!(&second, Err(sled::Error::Io(err)) if lock_busy(err)), "{:?}", second.err());
        assert!(started.elapsed() >= LOCK_WAIT, "it waited for the lock first");
    }
}
