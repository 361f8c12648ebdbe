//! The sled-backed key store: hashed keys → records, their grants, the alias index, budget tiers and the
//! audit trail. It opens the database; besides it, the meter's ledger writes the spend tree it hands out (one
//! process), and with replicas the follower keeps the store as a copy of the shared one.
//!
//! Every write is built as a [`Change`] and runs in one sled transaction over the trees it touches, its audit
//! entry included, so a crash never leaves an alias pointing at a missing key, a key whose alias is claimed
//! twice, a grant that disagrees with its record, or a change without its entry. (A whole copy made from
//! Redis is not one transaction; the copy's position is written last.)

use std::fs::{DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::audit::{AuditEntry, AUDIT_TREE};
use super::change::{Change, Tree};
use super::grant::{CorruptGrant, Grant};
use super::replica::SharedKeys;
use super::{KeyHash, KeyRecord};
use crate::meter::{Spend, SPEND_TREE};
use crate::redis_link::ClusterError;

/// Key records, keyed by the 32-byte SHA-256 of the key.
const KEYS_TREE: &str = "keys";
/// `key_alias` → the 32-byte hash of the key that has it.
const ALIASES_TREE: &str = "aliases";
/// Key hash → its [`Grant`], the part of the record authorising reads (written with the record).
const GRANTS_TREE: &str = "grants";
/// `budget_id` → its [`BudgetRecord`] (JSON).
const BUDGETS_TREE: &str = "budgets";
/// Model id → a model added at run time ([`super::StoredModel`], JSON; its api key sealed).
const MODELS_TREE: &str = "models";
/// End-user id → its [`super::EndUserRecord`] (JSON).
const END_USERS_TREE: &str = "end_users";
/// Users, teams and organizations (`keys/orgs`): one tree, keys prefixed by kind.
const ENTITIES_TREE: &str = "entities";
/// Store-level facts, such as which one-time upgrades have run.
const META_TREE: &str = "meta";
/// Name of the sled database directory inside `--data-dir`.
const DB_DIR: &str = "keys.sled";
/// sled's page cache. Its default (1 GiB) lets RSS grow with the store; hot keys fit easily in this, and the
/// OS page cache serves the rest (scripts/bench.sh measures authorise cost and RSS up to 1 M keys).
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Modes of the data dir (and the directories in it) and of its files: the owner's only.
const PRIVATE_DIR: u32 = 0o700;
const PRIVATE_FILE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the key store at {path}: {source}; is another tiergate using this --data-dir?")]
    Open { path: PathBuf, source: sled::Error },
    #[error("key store I/O failed: {0}")]
    Io(#[from] sled::Error),
    #[error("a stored key record is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(transparent)]
    CorruptGrant(#[from] CorruptGrant),
    #[error(transparent)]
    Shared(ClusterError),
}

impl From<Conflict> for super::KeyError {
    fn from(conflict: Conflict) -> Self {
        match conflict {
            Conflict::KeyExists => Self::KeyTaken,
            Conflict::AliasTaken(alias) => Self::AliasTaken(alias),
            Conflict::BudgetExists(id) => Self::BudgetExists(id),
            Conflict::ChangedMeanwhile => Self::ChangedMeanwhile,
            Conflict::BudgetGone(id) => Self::UnknownBudget(id),
            Conflict::BudgetInUse { budget_id, keys } => Self::BudgetInUse { budget_id, keys },
            Conflict::EndUserExists(id) => super::EndUserError::Exists(id).into(),
        }
    }
}

/// A key to delete: its hash, its alias, and its record's stored bytes as read (which must still be there).
pub struct Doomed {
    pub hash: KeyHash,
    pub alias: Option<String>,
    pub read: Vec<u8>,
}

/// Why a write was refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    KeyExists,
    AliasTaken(String),
    BudgetExists(String),
    /// What the change was computed from was changed or removed meanwhile (by another replica).
    ChangedMeanwhile,
    /// The key is linked to a budget that is not (or no longer) there.
    BudgetGone(String),
    /// A budget to delete still has keys linked to it.
    BudgetInUse {
        budget_id: String,
        keys: usize,
    },
    EndUserExists(String),
}

/// A handle to the store; cheap to clone (sled handles are reference-counted).
#[derive(Clone)]
pub struct KeyStore {
    pub(super) db: sled::Db,
    pub(super) keys: sled::Tree,
    pub(super) aliases: sled::Tree,
    pub(super) grants: sled::Tree,
    pub(super) budgets: sled::Tree,
    /// The meter's spend tree: a key's spend is written, moved and deleted in the key's own transaction.
    pub(super) spend: sled::Tree,
    /// Models added at run time: written, replicated and audited like keys.
    pub(super) models: sled::Tree,
    /// End users: written, replicated and audited like keys.
    pub(super) end_users: sled::Tree,
    pub(super) audit: sled::Tree,
    /// Store-level facts: one-time upgrades done, and a replica copy's position in the shared store.
    pub(super) meta: sled::Tree,
    /// Users, teams and organizations: written, replicated and audited like keys, in the same transactions.
    pub(super) entities: sled::Tree,
    /// Set when replicas share a Redis: changes are committed there first, and this store is the replica's
    /// copy.
    pub(super) shared: Option<Arc<SharedKeys>>,
    /// Owner → keys, in memory (`keys/orgs/index.rs`): changed with every change applied here.
    pub(super) owners: Arc<super::orgs::OwnerIndex>,
    /// End users in memory, for the hot path (`keys/end_user_view.rs`): changed with every change applied.
    pub(super) end_user_view: Arc<super::end_user_view::EndUserView>,
    /// Raised by every writer of `grants` once its write is committed (`keys/grants_version.rs`).
    pub(super) grants_version: Arc<super::grants_version::GrantsVersion>,
}

impl KeyStore {
    /// Opens (or creates) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_DIR);
        let open = || -> Result<Self, sled::Error> {
            DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(data_dir)?;
            let db = super::open_db(&path, CACHE_BYTES)?;
            let keys = db.open_tree(KEYS_TREE)?;
            let aliases = db.open_tree(ALIASES_TREE)?;
            let grants = db.open_tree(GRANTS_TREE)?;
            let budgets = db.open_tree(BUDGETS_TREE)?;
            let spend = db.open_tree(SPEND_TREE)?;
            let audit = db.open_tree(AUDIT_TREE)?;
            let models = db.open_tree(MODELS_TREE)?;
            let end_users = db.open_tree(END_USERS_TREE)?;
            // The data dir itself, and the store inside it: never other files an operator keeps there.
            std::fs::set_permissions(data_dir, Permissions::from_mode(PRIVATE_DIR))?;
            make_private(&path)?;
            let meta = db.open_tree(META_TREE)?;
            let entities = db.open_tree(ENTITIES_TREE)?;
            Ok(Self {
                db,
                keys,
                aliases,
                grants,
                budgets,
                spend,
                models,
                end_users,
                audit,
                meta,
                entities,
                shared: None,
                owners: Arc::default(),
                end_user_view: Arc::default(),
                grants_version: Arc::default(),
            })
        };
        let store = open().map_err(|source| StoreError::Open { path: path.clone(), source })?;
        store.complete_grants()?;
        store.owners.rebuild(&store.keys)?;
        store.end_user_view.rebuild(&store.end_users)?;
        Ok(store)
    }

    /// The grant of a key, for authorising a request: no JSON, no metadata.
    pub fn grant(&self, hash: &KeyHash) -> Result<Option<Grant>, StoreError> {
        match self.grants.get(hash.as_bytes())? {
            Some(bytes) => Ok(Some(Grant::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// A key's record and its stored bytes, for a change that must not overwrite a concurrent one.
    pub fn get_versioned(&self, hash: &KeyHash) -> Result<Option<(KeyRecord, sled::IVec)>, StoreError> {
        match self.keys.get(hash.as_bytes())? {
            Some(bytes) => Ok(Some((serde_json::from_slice(&bytes)?, bytes))),
            None => Ok(None),
        }
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

    /// Stores a new key, with its starting spend if it has one; refuses when the hash or the alias is taken.
    pub fn insert(
        &self,
        hash: &KeyHash,
        record: &KeyRecord,
        spend: Option<Spend>,
        entry: &AuditEntry,
    ) -> Result<Result<(), Conflict>, StoreError> {
        let mut change = Change::new();
        change.check(Tree::Keys, hash.as_bytes(), &[], Conflict::KeyExists);
        claim_alias(&mut change, record.key_alias.as_deref(), &[hash]);
        put_key(self, &mut change, hash, record, spend)?;
        change.audit.push(entry.clone());
        self.commit(change)
    }

    /// Replaces the record of `old_hash` by `record` under `new_hash` (the same hash for an update, a new one
    /// for a regenerated key), moving the alias index along; refuses when the new alias belongs to another key.
    /// `spend`, when given, is written under `new_hash`; a regenerated key's old spend entry goes.
    /// `read`: the stored bytes the new record was computed from; another writer's change since is refused.
    #[allow(clippy::too_many_arguments)]
    pub fn replace(
        &self,
        old_hash: &KeyHash,
        old_alias: Option<&str>,
        new_hash: &KeyHash,
        record: &KeyRecord,
        spend: Option<Spend>,
        entry: &AuditEntry,
        read: &[u8],
    ) -> Result<Result<(), Conflict>, StoreError> {
        let mut change = Change::new();
        change.check_unchanged(Tree::Keys, old_hash.as_bytes(), read);
        if old_hash != new_hash {
            change.check(Tree::Keys, new_hash.as_bytes(), &[], Conflict::KeyExists);
        }
        if let Some(alias) = old_alias {
            change.remove(Tree::Aliases, alias.as_bytes());
        }
        claim_alias(&mut change, record.key_alias.as_deref(), &[old_hash, new_hash]);
        if old_hash != new_hash {
            remove_key(&mut change, old_hash, None);
        }
        put_key(self, &mut change, new_hash, record, spend)?;
        change.audit.push(entry.clone());
        self.commit(change)
    }

    /// Removes keys, their aliases and their spend, all or nothing, with one audit entry each; refused when
    /// any of them was changed (or regenerated away) since it was read.
    pub fn delete(&self, doomed: &[Doomed], entries: &[AuditEntry]) -> Result<Result<(), Conflict>, StoreError> {
        let mut change = Change::new();
        for Doomed { hash, alias, read } in doomed {
            change.check_unchanged(Tree::Keys, hash.as_bytes(), read);
            if let Some(alias) = alias {
                // Another replica may have given the alias to another key meanwhile: that one stays.
                change.check(Tree::Aliases, alias.as_bytes(), &[hash.as_bytes()], Conflict::ChangedMeanwhile);
            }
            remove_key(&mut change, hash, alias.as_deref());
        }
        change.audit.extend(entries.iter().cloned());
        self.commit(change)
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

    /// The spend tree, for the meter's ledger (in this database, so a key's flush covers its spend).
    pub fn spend_tree(&self) -> sled::Tree {
        self.spend.clone()
    }

    /// Records a refused change (nothing else is written).
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut change = Change::new();
        change.audit.push(entry.clone());
        self.commit(change).map(|_no_checks| ())
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

    /// Makes a change: here (sled), or through the shared store first when replicas share one.
    pub(super) fn commit(&self, change: Change) -> Result<Result<(), Conflict>, StoreError> {
        match &self.shared {
            // A copy no follower keeps (a move's scratch copy) takes its own changes itself, so what it does
            // next (an import's next line, which may name the team just written) reads them.
            Some(shared) if !shared.followed() => {
                let committed = shared.commit(&change)?;
                if committed.is_ok() {
                    // Redis has it; a check this copy refuses (someone else wrote Redis meanwhile) skips it here.
                    let _copied_or_not = self.apply(&change)?;
                }
                Ok(committed)
            }
            Some(shared) => shared.commit(&change),
            None => self.apply(&change),
        }
    }
}

/// Writes a key's record, its grant and, if given, its spend; its budget must exist.
/// Its grant carries what the key's owners decide, as this change leaves them (`keys/orgs`).
fn put_key(
    store: &KeyStore,
    change: &mut Change,
    hash: &KeyHash,
    record: &KeyRecord,
    spend: Option<Spend>,
) -> Result<(), StoreError> {
    if let Some(budget) = &record.budget_id {
        change.link_budget(budget);
    }
    change.put(Tree::Keys, hash.as_bytes(), record.to_stored()?);
    let grant = store.grant_after(change, record, true)?;
    change.put(Tree::Grants, hash.as_bytes(), grant.encode());
    if let Some(spend) = spend {
        change.put(Tree::Spend, hash.as_bytes(), spend.encode());
    }
    Ok(())
}

/// Removes a key's record, grant, spend and (if given) alias.
pub(super) fn remove_key(change: &mut Change, hash: &KeyHash, alias: Option<&str>) {
    for tree in [Tree::Keys, Tree::Grants, Tree::Spend] {
        change.remove(tree, hash.as_bytes());
    }
    if let Some(alias) = alias {
        change.remove(Tree::Aliases, alias.as_bytes());
    }
}

/// Points `alias` at the last of `owners`, unless a key other than `owners` has it.
fn claim_alias(change: &mut Change, alias: Option<&str>, owners: &[&KeyHash]) {
    let (Some(alias), Some(owner)) = (alias, owners.last()) else { return };
    let allowed: Vec<&[u8]> = owners.iter().map(|hash| &hash.as_bytes()[..]).collect();
    change.check(Tree::Aliases, alias.as_bytes(), &allowed, Conflict::AliasTaken(alias.to_owned()));
    change.put(Tree::Aliases, alias.as_bytes(), owner.as_bytes().to_vec());
}

/// Makes `dir` (the sled store) and everything under it readable by the owner only (0700 directories, 0600
/// files). Files sled creates later are covered by the directories' modes. (The spend log's store too.)
pub fn make_private(dir: &Path) -> std::io::Result<()> {
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

mod budgets;
mod end_users;
mod import;
#[cfg(test)]
mod tests;
