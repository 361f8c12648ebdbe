//! Spend logs as the config in force says: a reload turns them on or off and changes their retention and row
//! cap at once. The log is opened at start, or by the first reload that turns it on, and stays open: turning it
//! off stops new rows, and the rows already written stay readable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::SpendLog;
use crate::config::SpendLogSettings;
use crate::keys::{KeyHash, KeyStore};

/// The process's spend log, if it was ever turned on, and what opening it takes.
pub struct SpendLogSwitch {
    log: OnceLock<Arc<SpendLog>>,
    /// Held while a log is opened or put in force, and by `close`: a log opened during shutdown is never set.
    opening: Mutex<Opening>,
}

struct Opening {
    data_dir: PathBuf,
    keys: KeyStore,
    /// Names master-key rows.
    master: KeyHash,
    closed: bool,
}

/// Settings ready to be put in force: with the log they open, if they turn it on for the first time.
pub struct Prepared {
    settings: SpendLogSettings,
    /// Dropped unused (a reload refused after it was opened): its writer stops, with nothing written.
    opened: Option<Arc<SpendLog>>,
}

impl SpendLogSwitch {
    /// Puts the config's `settings` in force at start: the log is opened under `data_dir` if they turn it on.
    pub fn start(
        data_dir: &Path,
        settings: SpendLogSettings,
        keys: KeyStore,
        master: KeyHash,
    ) -> std::io::Result<Self> {
        let opening = Mutex::new(Opening { data_dir: data_dir.to_owned(), keys, master, closed: false });
        let switch = Self { log: OnceLock::new(), opening };
        let prepared = switch.prepare(settings)?;
        switch.put_in_force(prepared);
        Ok(switch)
    }

    /// The log, if requests leave rows now.
    pub fn recording(&self) -> Option<&Arc<SpendLog>> {
        self.log.get().filter(|log| log.is_recording())
    }

    /// The log, if it was ever turned on: its rows can be read.
    pub fn opened(&self) -> Option<&Arc<SpendLog>> {
        self.log.get()
    }

    /// Where the log is (or would be) kept.
    pub fn dir(&self) -> PathBuf {
        self.opening().data_dir.join(super::store::DIR)
    }

    /// Opens the log if `settings` turn it on for the first time, and changes nothing in force. It reads the
    /// log's files: a blocking call. One reload at a time prepares and puts in force.
    pub fn prepare(&self, settings: SpendLogSettings) -> std::io::Result<Prepared> {
        let opening = self.opening();
        let opened = match self.log.get().is_none() && settings.enabled && !opening.closed {
            true => Some(SpendLog::start(&opening.data_dir, settings, opening.keys.clone(), opening.master)?),
            false => None,
        };
        Ok(Prepared { settings, opened })
    }

    /// Puts prepared settings in force: rows on or off from the next request, the bounds from the writer's next
    /// drain. Returns whether requests leave rows from now on.
    pub fn put_in_force(&self, prepared: Prepared) -> bool {
        let opening = self.opening();
        if let (Some(log), false) = (prepared.opened, opening.closed) {
            // Only ever set here, under `opening`; a second prepared log (never: one reload at a time) is dropped.
            let _ = self.log.set(log);
        }
        match self.log.get() {
            Some(log) => {
                log.put_in_force(prepared.settings);
                log.is_recording()
            }
            None => false,
        }
    }

    /// Writes what is queued and stops the writer (at shutdown); no log is opened after.
    pub fn close(&self) {
        self.opening().closed = true;
        if let Some(log) = self.log.get() {
            log.close();
        }
    }

    fn opening(&self) -> std::sync::MutexGuard<'_, Opening> {
        // Nothing panics while it is held (a clone, a start that returns its errors, a set).
        self.opening.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
