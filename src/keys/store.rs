//! The sled-backed key store: hashed keys → records, and the alias index. The only module that touches sled.
//!
//! Every write that touches both trees runs in one sled transaction, so a crash never leaves an alias
//! pointing at a missing key or a key whose alias is claimed twice.

use std::convert::Infallible;
use std::fs::{DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use super::{KeyHash, KeyRecord};

/// Key records, keyed by the 32-byte SHA-256 of the key.
const KEYS_TREE: &str = "keys";
/// `key_alias` → the 32-byte hash of the key that has it.
const ALIASES_TREE: &str = "aliases";
/// Name of the sled database directory inside `--data-dir`.
const DB_DIR: &str = "keys.sled";
/// sled's page cache. Its default (1 GiB) lets RSS grow with the store; hot keys fit easily in this, and the
/// OS page cache serves the rest (scripts/bench.sh measures authorise cost and RSS up to 1 M keys).
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Modes of the data dir (and the directories in it) and of its files: the owner's only.
const PRIVATE_DIR: u32 = 0o700;
const PRIVATE_FILE: u32 = 0o600;
/// Keys written per sled batch by [`KeyStore::import`].
const IMPORT_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the key store at {path}: {source}; is another tiergate using this --data-dir?")]
    Open { path: PathBuf, source: sled::Error },
    #[error("key store I/O failed: {0}")]
    Io(#[from] sled::Error),
    #[error("a stored key record is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Why a write was refused (nothing was written).
#[derive(Debug, PartialEq, Eq)]
pub enum Conflict {
    KeyExists,
    AliasTaken(String),
}

/// A handle to the store; cheap to clone (sled handles are reference-counted).
#[derive(Clone)]
pub struct KeyStore {
    db: sled::Db,
    keys: sled::Tree,
    aliases: sled::Tree,
}

type TxResult = Result<(), ConflictableTransactionError<Conflict>>;

impl KeyStore {
    /// Opens (or creates) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_DIR);
        let open = || -> Result<Self, sled::Error> {
            DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(data_dir)?;
            let db = sled::Config::new().path(&path).cache_capacity(CACHE_BYTES).open()?;
            let keys = db.open_tree(KEYS_TREE)?;
            let aliases = db.open_tree(ALIASES_TREE)?;
            make_private(data_dir)?;
            Ok(Self { db, keys, aliases })
        };
        open().map_err(|source| StoreError::Open { path: path.clone(), source })
    }

    pub fn get(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        match self.keys.get(hash.as_bytes())? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The hash of the key that has `alias`.
    pub fn hash_of_alias(&self, alias: &str) -> Result<Option<KeyHash>, StoreError> {
        Ok(self.aliases.get(alias.as_bytes())?.and_then(|bytes| KeyHash::from_bytes(&bytes)))
    }

    /// Stores a new key; refuses when the hash or the alias is taken.
    pub fn insert(&self, hash: &KeyHash, record: &KeyRecord) -> Result<Result<(), Conflict>, StoreError> {
        let value = serde_json::to_vec(record)?;
        self.transaction(|keys, aliases| {
            if keys.get(hash.as_bytes())?.is_some() {
                return abort(Conflict::KeyExists);
            }
            claim_alias(aliases, record.key_alias.as_deref(), hash)?;
            keys.insert(hash.as_bytes(), value.as_slice())?;
            Ok(())
        })
    }

    /// Replaces the record of `old_hash` by `record` under `new_hash` (the same hash for an update, a new one
    /// for a regenerated key), moving the alias index along; refuses when the new alias belongs to another key.
    pub fn replace(
        &self,
        old_hash: &KeyHash,
        old_alias: Option<&str>,
        new_hash: &KeyHash,
        record: &KeyRecord,
    ) -> Result<Result<(), Conflict>, StoreError> {
        let value = serde_json::to_vec(record)?;
        self.transaction(|keys, aliases| {
            if old_hash != new_hash && keys.get(new_hash.as_bytes())?.is_some() {
                return abort(Conflict::KeyExists);
            }
            if let Some(alias) = old_alias {
                aliases.remove(alias.as_bytes())?;
            }
            claim_alias(aliases, record.key_alias.as_deref(), new_hash)?;
            keys.remove(old_hash.as_bytes())?;
            keys.insert(new_hash.as_bytes(), value.as_slice())?;
            Ok(())
        })
    }

    /// Removes keys and their aliases, all or nothing.
    pub fn delete(&self, doomed: &[(KeyHash, Option<String>)]) -> Result<(), StoreError> {
        let outcome = (&self.keys, &self.aliases).transaction(|(keys, aliases)| {
            for (hash, alias) in doomed {
                keys.remove(hash.as_bytes())?;
                if let Some(alias) = alias {
                    aliases.remove(alias.as_bytes())?;
                }
            }
            Ok::<_, ConflictableTransactionError<Infallible>>(())
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(err)) => Err(err.into()),
            Err(TransactionError::Abort(never)) => match never {},
        }
    }

    /// Writes many new keys at once and flushes: for bulk loads (benchmarks, migrations), not the API.
    /// Records must have no alias (the alias index is not written); an existing hash is overwritten.
    pub fn import(&self, records: impl IntoIterator<Item = (KeyHash, KeyRecord)>) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut count = 0;
        for (hash, record) in records {
            debug_assert!(record.key_alias.is_none(), "import does not index aliases");
            batch.insert(&hash.as_bytes()[..], serde_json::to_vec(&record)?);
            count += 1;
            if count % IMPORT_BATCH == 0 {
                self.keys.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        self.keys.apply_batch(batch)?;
        self.flush()?;
        Ok(count)
    }

    /// Records in hash order, skipping `skip` and returning at most `take`; and the total count.
    pub fn page(&self, skip: usize, take: usize) -> Result<(Vec<KeyRecord>, usize), StoreError> {
        let mut records = Vec::with_capacity(take.min(1000));
        let mut total = 0;
        for entry in self.keys.iter() {
            let (_, value) = entry?;
            if total >= skip && records.len() < take {
                records.push(serde_json::from_slice(&value)?);
            }
            total += 1;
        }
        Ok((records, total))
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

    fn transaction(
        &self,
        body: impl Fn(&TransactionalTree, &TransactionalTree) -> TxResult,
    ) -> Result<Result<(), Conflict>, StoreError> {
        match (&self.keys, &self.aliases).transaction(|(keys, aliases)| body(keys, aliases)) {
            Ok(()) => Ok(Ok(())),
            Err(TransactionError::Abort(conflict)) => Ok(Err(conflict)),
            Err(TransactionError::Storage(err)) => Err(err.into()),
        }
    }
}

/// Makes `dir` and everything under it readable by the owner only (0700 directories, 0600 files). Files sled
/// creates later are covered by the directory's mode.
fn make_private(dir: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(dir, Permissions::from_mode(PRIVATE_DIR))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        match entry.file_type()? {
            kind if kind.is_dir() => make_private(&entry.path())?,
            kind if kind.is_file() => std::fs::set_permissions(entry.path(), Permissions::from_mode(PRIVATE_FILE))?,
            _ => {}
        }
    }
    Ok(())
}

fn abort(conflict: Conflict) -> TxResult {
    Err(ConflictableTransactionError::Abort(conflict))
}

/// Points `alias` at `hash`, unless another key has it.
fn claim_alias(aliases: &TransactionalTree, alias: Option<&str>, hash: &KeyHash) -> TxResult {
    let Some(alias) = alias else { return Ok(()) };
    match aliases.get(alias.as_bytes())? {
        Some(owner) if owner.as_ref() != hash.as_bytes() => abort(Conflict::AliasTaken(alias.to_owned())),
        _ => {
            aliases.insert(alias.as_bytes(), hash.as_bytes())?;
            Ok(())
        }
    }
}
