//! Moving a key store to another gateway (or, with scale-out, to and from a shared store): every key
//! record, its spend, every budget tier and every model added at run time (its api key as sealed, which
//! opens under the same master key) as JSON lines. Records hold key hashes only, so an export never
//! holds a plaintext key. Both run on a stopped gateway's `--data-dir` (sled allows one process).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::audit::AuditEntry;
use super::{BudgetRecord, EndUserRecord, KeyHash, KeyRecord, KeyStore, StoreError, StoredModel};
use crate::meter::Spend;

/// The store an export reads or an import writes: a stopped gateway's (`--data-dir`), or, with a Redis URL,
/// the shared store of replicas through a scratch copy (filled from Redis for an export; an import commits
/// to Redis), removed when this is dropped.
pub struct MovingStore {
    store: Option<KeyStore>,
    scratch: Option<PathBuf>,
}

impl MovingStore {
    pub fn open(data_dir: &Path, redis_url: Option<&str>) -> Result<Self, Box<dyn std::error::Error>> {
        let Some(url) = redis_url.filter(|url| !url.is_empty()) else {
            return Ok(Self { store: Some(KeyStore::open(data_dir)?), scratch: None });
        };
        let redis = crate::redis_link::Redis::new(&crate::config::RedisSettings::from_url(url)?)?;
        let scratch = std::env::temp_dir().join(format!("tiergate-move-{:032x}", rand::random::<u128>()));
        // Owned from here on: a failure below still removes the scratch directory.
        let mut moving = Self { store: None, scratch: Some(scratch.clone()) };
        let store = KeyStore::open_replica(&scratch, super::SharedKeys::new(redis, false))?;
        super::copy_once(&store)?;
        moving.store = Some(store);
        Ok(moving)
    }
}

impl std::ops::Deref for MovingStore {
    type Target = KeyStore;

    fn deref(&self) -> &KeyStore {
        self.store.as_ref().expect("set until dropped")
    }
}

impl Drop for MovingStore {
    fn drop(&mut self) {
        // The store first: sled's files are closed before their directory goes.
        drop(self.store.take());
        if let Some(scratch) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

/// One exported line.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Budget(BudgetRecord),
    Key {
        // Boxed: a record is several times a budget's size (serde reads and writes it as the record itself).
        record: Box<KeyRecord>,
        /// The meter's spend entry as stored (hex): exact, including its reset schedule.
        spend: Option<String>,
    },
    Model {
        id: String,
        model: StoredModel,
    },
    EndUser {
        record: Box<EndUserRecord>,
        /// The meter's spend entry of the end user's account (hex), as a key's.
        spend: Option<String>,
    },
    /// A user, team or organization (`keys/orgs`): its key in the entities tree (`team:<id>`, …) and record.
    Entity {
        key: String,
        record: serde_json::Value,
    },
}

/// What an export or import went through.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub keys: usize,
    pub budgets: usize,
    /// Models added at run time.
    pub models: usize,
    pub end_users: usize,
    /// Users, teams and organizations.
    pub entities: usize,
    /// Import only: already in the store (same hash or alias, or same budget id), left as they are.
    pub skipped: usize,
}

/// Why an import stopped (what came before was written).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {problem}")]
    Unreadable { line: usize, problem: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl KeyStore {
    /// Writes every budget tier, then every key with its spend, one JSON line each.
    pub fn export_lines(&self, out: &mut dyn Write) -> Result<Moved, StoreError> {
        let mut moved = Moved::default();
        let mut write = |line: &Line| -> Result<(), StoreError> {
            serde_json::to_writer(&mut *out, line)?;
            out.write_all(b"\n").map_err(|err| StoreError::Io(sled::Error::Io(err)))
        };
        for budget in self.budgets()? {
            write(&Line::Budget(budget))?;
            moved.budgets += 1;
        }
        // After the budgets their `budget_id` links to.
        for user in self.end_users(0, usize::MAX)? {
            let account = crate::meter::Level::EndUser.account(&user.user_id);
            let spend = self.spend.get(account)?.map(hex::encode);
            write(&Line::EndUser { record: Box::new(user), spend })?;
            moved.end_users += 1;
        }
        for (id, model, _) in self.added_models()? {
            write(&Line::Model { id, model })?;
            moved.models += 1;
        }
        // Before the keys: an imported key's grant is derived from its owners, which must be there first.
        for entry in self.entities.iter() {
            let (key, value) = entry?;
            if super::orgs::is_mark(&key) {
                continue;
            }
            let key = String::from_utf8_lossy(&key).into_owned();
            write(&Line::Entity { key, record: serde_json::from_slice(&value)? })?;
            moved.entities += 1;
        }
        for entry in self.keys.iter() {
            let (hash, value) = entry?;
            let record: KeyRecord = serde_json::from_slice(&value)?;
            let spend = self.spend.get(&hash)?.map(hex::encode);
            write(&Line::Key { record: Box::new(record), spend })?;
            moved.keys += 1;
        }
        Ok(moved)
    }

    /// Reads an export: budgets and keys not in the store yet are written (each in its own transaction, with
    /// an `import` audit entry); ones already there are skipped, never overwritten. Flushed at the end.
    pub fn import_lines(&self, lines: impl BufRead) -> Result<Moved, ImportError> {
        let mut moved = Moved::default();
        for (index, text) in lines.lines().enumerate() {
            let line = index + 1;
            let unreadable = |problem: String| ImportError::Unreadable { line, problem };
            let text = text.map_err(|err| unreadable(err.to_string()))?;
            if text.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(&text).map_err(|err| unreadable(err.to_string()))? {
                Line::Budget(budget) => {
                    if self.budget(&budget.budget_id)?.is_some() {
                        moved.skipped += 1;
                        continue;
                    }
                    let entry =
                        AuditEntry { budget_id: Some(budget.budget_id.clone()), ..AuditEntry::new("budget_import") };
                    match self.write_budget(&budget.budget_id, Some(&budget), None, &entry)? {
                        Ok(()) => moved.budgets += 1,
                        Err(_) => moved.skipped += 1,
                    }
                }
                Line::Model { id, model } => {
                    if self.added_model(&id)?.is_some() {
                        moved.skipped += 1;
                        continue;
                    }
                    let mut entry = AuditEntry::new("model_import");
                    entry.changed.insert("model_id".into(), id.clone().into());
                    match self.write_model(&id, Some(&model), None, entry)? {
                        Ok(()) => moved.models += 1,
                        Err(_) => moved.skipped += 1,
                    }
                }
                Line::EndUser { record, spend } => {
                    let spend = spend.map(|hex| decode_hex(&hex)).transpose().map_err(unreadable)?;
                    let mut entry = AuditEntry::new("end_user_import");
                    entry.changed.insert("end_user_id".into(), record.user_id.clone().into());
                    match self.import_end_user(&record, spend.map(|bytes| Spend::decode(&bytes)), entry)? {
                        Ok(()) => moved.end_users += 1,
                        Err(_) => moved.skipped += 1,
                    }
                }
                Line::Entity { key, record } => {
                    KeyStore::check_entity_line(&key, &record).map_err(unreadable)?;
                    let bytes = serde_json::to_vec(&record).map_err(|err| unreadable(err.to_string()))?;
                    match self.insert_entity(key.as_bytes(), bytes)? {
                        Ok(()) => moved.entities += 1,
                        Err(_) => moved.skipped += 1,
                    }
                }
                Line::Key { record, spend } => {
                    let hash = KeyHash::from_hex(&record.token)
                        .ok_or_else(|| unreadable("a key record's token is not a 64-digit hash".into()))?;
                    let spend = spend.map(|hex| decode_hex(&hex)).transpose().map_err(unreadable)?;
                    // Its grant is derived from its owners now: without them it would reach every tier.
                    if let Some(owner) = self.missing_owner(&record)? {
                        return Err(unreadable(format!(
                            "the key names {owner}, which is not in the store nor on an earlier line; an export lists users, teams and organizations before keys"
                        )));
                    }
                    let entry = AuditEntry {
                        token: Some(record.token.clone()),
                        key_alias: record.key_alias.clone(),
                        ..AuditEntry::new("import")
                    };
                    match self.insert(&hash, &record, spend.map(|bytes| Spend::decode(&bytes)), &entry)? {
                        Ok(()) => moved.keys += 1,
                        Err(_conflict) => moved.skipped += 1,
                    }
                }
            }
        }
        self.derive_owned_grants()?;
        self.flush()?;
        Ok(moved)
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    hex::decode(text).map_err(|_| "a spend entry is not hex".into())
}
