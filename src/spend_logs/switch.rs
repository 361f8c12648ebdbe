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
    /// Held while settings are put in force, so the log is opened once.
    opening: Mutex<Opening>,
}

struct Opening {
    data_dir: PathBuf,
    keys: KeyStore,
    /// Names master-key rows.
    master: KeyHash,
}

impl SpendLogSwitch {
    /// Puts the config's `settings` in force at start: the log is opened under `data_dir` if they turn it on.
    pub fn start(
        data_dir: &Path,
        settings: SpendLogSettings,
        keys: KeyStore,
        master: KeyHash,
    ) -> std::io::Result<Self> {
        let opening = Mutex::new(Opening { data_dir: data_dir.to_owned(), keys, master });
        let logs = Self { log: OnceLock::new(), opening };
        logs.apply(settings)?;
        Ok(logs)
    }

    /// The log, if requests leave rows now.
    pub fn recording(&self) -> Option<&Arc<SpendLog>> {
        self.log.get().filter(|log| log.is_recording())
    }

    /// The log, if it was ever turned on: its rows can be read.
    pub fn opened(&self) -> Option<&Arc<SpendLog>> {
        self.log.get()
    }

    /// Puts `settings` in force (a reload): the log is opened if they turn it on for the first time. Returns
    /// whether rows are written from now on.
    pub fn apply(&self, settings: SpendLogSettings) -> std::io::Result<bool> {
        let opening = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
        match self.log.get() {
            Some(log) => log.put_in_force(settings),
            None if settings.enabled => {
                let log = SpendLog::start(&opening.data_dir, settings, opening.keys.clone(), opening.master).map_err(
                    |err| {
                        let path = opening.data_dir.join(super::store::DIR);
                        std::io::Error::new(err.kind(), format!("{}: {err}", path.display()))
                    },
                )?;
                // Only ever set here, under `opening`.
                let _ = self.log.set(log);
            }
            None => {}
        }
        Ok(settings.enabled)
    }

    /// Writes what is queued and stops the writer (at shutdown).
    pub fn close(&self) {
        if let Some(log) = self.log.get() {
            log.close();
        }
    }
}
