//! Grants written outside the API's changes: the upgrade at open of a store from before grants existed, and
//! bulk loads. Each raises the grants version however it ends (see `keys/grants_version.rs`).

use super::{KeyStore, StoreError};
use crate::keys::{Grant, KeyHash, KeyRecord};
use crate::redis_link::ClusterError;

/// Set in `meta` once every key has its grant (stores written before grants existed are upgraded at open).
pub(super) const GRANTS_COMPLETE: &[u8] = b"grants_complete";
/// Keys written per sled batch by [`KeyStore::import`].
const IMPORT_BATCH: usize = 10_000;

impl KeyStore {
    /// Writes the grant of every key that lacks one (a store from before grants existed), once.
    pub(super) fn complete_grants(&self) -> Result<(), StoreError> {
        let meta = &self.meta;
        if meta.contains_key(GRANTS_COMPLETE)? {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for entry in self.keys.iter() {
            let (hash, value) = entry?;
            let record: KeyRecord = serde_json::from_slice(&value)?;
            batch.insert(hash, Grant::of(&record).encode());
        }
        let _raise = self.grants_version.raised_on_exit();
        self.grants.apply_batch(batch)?;
        meta.insert(GRANTS_COMPLETE, &[1])?;
        self.flush()
    }

    /// Writes many new keys at once and flushes: for bulk loads (benchmarks, migrations), not the API.
    /// Records must have no alias (the alias index is not written); an existing hash is overwritten.
    pub fn import(&self, records: impl IntoIterator<Item = (KeyHash, KeyRecord)>) -> Result<usize, StoreError> {
        if self.shared.is_some() {
            // A replica's copy follows Redis: keys written straight into it would be nowhere else.
            let refusal = ClusterError::Protocol("a bulk load goes into Redis with `keys import`".into());
            return Err(StoreError::Shared(refusal));
        }
        // Raised however the load ends: one that fails half way has written some grants already.
        let _raise = self.grants_version.raised_on_exit();
        let (mut batch, mut grants) = (sled::Batch::default(), sled::Batch::default());
        let mut count = 0;
        for (hash, record) in records {
            debug_assert!(record.key_alias.is_none(), "import does not index aliases");
            batch.insert(&hash.as_bytes()[..], record.to_stored()?);
            grants.insert(&hash.as_bytes()[..], Grant::of(&record).encode());
            count += 1;
            if count % IMPORT_BATCH == 0 {
                self.keys.apply_batch(std::mem::take(&mut batch))?;
                self.grants.apply_batch(std::mem::take(&mut grants))?;
                self.grants_version.raise();
            }
        }
        self.keys.apply_batch(batch)?;
        self.grants.apply_batch(grants)?;
        self.owners.rebuild(&self.keys)?;
        self.flush()?;
        Ok(count)
    }
}
