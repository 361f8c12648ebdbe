//! The sled-backed key store: hashed keys → records. The only module that touches sled.

use std::path::{Path, PathBuf};

use super::{KeyHash, KeyRecord};

/// The tree of key records, keyed by the 32-byte SHA-256 of the key.
const KEYS_TREE: &str = "keys";
/// Name of the sled database directory inside `--data-dir`.
const DB_DIR: &str = "keys.sled";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the key store at {path}: {source}; is another tiergate using this --data-dir?")]
    Open { path: PathBuf, source: sled::Error },
    #[error("key store I/O failed: {0}")]
    Io(#[from] sled::Error),
    #[error("a stored key record is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// A handle to the store; cheap to clone (sled handles are reference-counted).
#[derive(Clone)]
pub struct KeyStore {
    db: sled::Db,
    keys: sled::Tree,
}

impl KeyStore {
    /// Opens (or creates) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_DIR);
        let open = || -> Result<Self, sled::Error> {
            std::fs::create_dir_all(data_dir)?;
            let db = sled::Config::new().path(&path).open()?;
            let keys = db.open_tree(KEYS_TREE)?;
            Ok(Self { db, keys })
        };
        open().map_err(|source| StoreError::Open { path: path.clone(), source })
    }

    /// Stores a new record; returns `false` (and changes nothing) when the hash is already taken.
    pub fn insert_new(&self, hash: &KeyHash, record: &KeyRecord) -> Result<bool, StoreError> {
        let value = serde_json::to_vec(record)?;
        let swapped = self.keys.compare_and_swap(hash.as_bytes(), None as Option<&[u8]>, Some(value))?;
        Ok(swapped.is_ok())
    }

    pub fn get(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        match self.keys.get(hash.as_bytes())? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Writes every buffered change to disk and fsyncs. Blocking: call it off the actor thread.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// A cheap read that fails when the store is unusable (for the readiness probe).
    pub fn probe(&self) -> Result<(), StoreError> {
        self.keys.first()?;
        Ok(())
    }
}
