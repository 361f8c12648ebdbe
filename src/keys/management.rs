//! The key lifecycle, as KeyRegistry messages: mint, read, update, delete, list, regenerate.
//!
//! Every change is validated against the config (tiers, model names), written in one store transaction and
//! answered only once durable (see `registry.rs`). Handlers run one at a time, so check-then-write is safe.

use std::time::SystemTime;

use actix::{Context, Handler, Message, ResponseFuture};

use serde_json::Value;

use super::audit::{key_entry, AuditEntry};
use super::store::{Conflict, Doomed};
use super::{abbreviate, KeyChanges, KeyError, KeyHash, KeyRecord, KeyRegistry, KeyStore, StoreError, VirtualKey};
use crate::meter::Spend;

/// The longest `key_alias`: it is sent back in query strings (`/key/list?key_alias=`) and tables.
pub const MAX_ALIAS_BYTES: usize = 256;

/// The spend a change gives a key whose spend is `current`: a new amount (`spend`), and a reset scheduled
/// from now when it sets the key's `budget_duration`; `None` when the change touches neither.
fn changed_spend(current: Spend, changes: &KeyChanges) -> Option<Spend> {
    let new_period = changes.limits.budget_duration;
    if changes.spend.is_none() && new_period.is_none() {
        return None;
    }
    let mut spend = current;
    if let Some(dollars) = changes.spend {
        spend.dollars = dollars;
    }
    if let Some(period) = new_period {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        spend.reset_at_ms = period.map(|period| period.next_reset(now));
        spend.period = period;
    }
    Some(spend)
}

/// A key named by a caller: the plaintext key or its hash (`token`), with a label safe to show back.
#[derive(Debug, Clone)]
pub struct KeyRef {
    pub hash: KeyHash,
    /// `sk-...abcd` for a plaintext key; the token for a hash.
    pub label: String,
}

impl KeyRef {
    pub fn parse(text: &str) -> Self {
        match KeyHash::from_hex(text) {
            Some(hash) => Self { hash, label: text.to_ascii_lowercase() },
            None => Self { hash: KeyHash::of(text), label: abbreviate(text) },
        }
    }
}

/// A key to mint: a custom plaintext `key` (LiteLLM's `key` field) or a random one, with its fields.
#[derive(Debug, Default)]
pub struct NewKey {
    pub key: Option<String>,
    pub changes: KeyChanges,
}

/// A freshly minted (or regenerated) key: the plaintext, shown once, and what was stored.
#[derive(Debug)]
pub struct MintedKey {
    pub key: VirtualKey,
    pub record: KeyRecord,
}

/// One page of `/key/list`.
#[derive(Debug)]
pub struct KeyPage {
    pub records: Vec<KeyRecord>,
    pub total: usize,
}

impl KeyRegistry {
    fn load(&self, key: &KeyRef) -> Result<KeyRecord, KeyError> {
        self.load_versioned(key).map(|(record, _)| record)
    }

    /// A key's record and its stored bytes (what a change to it must find unchanged).
    fn load_versioned(&self, key: &KeyRef) -> Result<(KeyRecord, sled::IVec), KeyError> {
        self.store.get_versioned(&key.hash)?.ok_or_else(|| KeyError::KeyNotFound { key: key.label.clone() })
    }

    fn check(&self, changes: &KeyChanges, record: &KeyRecord) -> Result<(), KeyError> {
        if changes.metadata.is_some() {
            self.rules.check_tier(&record.metadata)?;
        }
        if let Some(models) = &changes.models {
            self.rules.check_models(models)?;
        }
        if changes.limits.model_rpm_limit.is_some() || changes.limits.model_tpm_limit.is_some() {
            self.rules.check_limit_models(&record.limits)?;
        }
        if let Some(Some(budget_id)) = &changes.budget_id {
            if self.store.budget(budget_id)?.is_none() {
                return Err(KeyError::UnknownBudget(budget_id.clone()));
            }
        }
        if let Some(Some(alias)) = &changes.key_alias {
            let printable = alias.chars().all(|c| !c.is_control());
            if alias.is_empty() || alias.len() > MAX_ALIAS_BYTES || !printable {
                return Err(KeyError::InvalidAlias);
            }
        }
        self.check_owners(record)
    }

    fn mint(&self, mut request: NewKey) -> Result<MintedKey, KeyError> {
        self.settle_owned_tier(&mut request.changes)?;
        // Always written: a custom key minted again after a delete starts from its own spend (0 by default),
        // never from anything its earlier self left behind (in the ledger, in memory or in Redis's sums).
        let spend = changed_spend(Spend::default(), &request.changes).unwrap_or_default();
        let (key, record) = self.store_fresh(
            request.key,
            |key| {
                let record = KeyRecord::new(
                    key.hash().to_hex(),
                    abbreviate(key.expose()),
                    request.changes.clone(),
                    SystemTime::now(),
                )?;
                self.check(&request.changes, &record)?;
                Ok(record)
            },
            |hash, record| {
                let entry = key_entry("generate", hash, None, record, &request.changes)?;
                self.store.insert(hash, record, Some(spend), &entry)
            },
        )?;
        self.meter.remember_spend(key.hash().as_bytes(), Some(spend));
        Ok(MintedKey { key, record })
    }

    /// The one "custom or random key" loop of mint and regenerate: makes the key (`custom`, else a random
    /// one), builds its record with `record_for`, and stores it with `write`. A custom key that exists, or
    /// that is the master key, is refused; a random one that collides is drawn again, never overwritten.
    fn store_fresh(
        &self,
        custom: Option<String>,
        record_for: impl Fn(&VirtualKey) -> Result<KeyRecord, KeyError>,
        write: impl Fn(&KeyHash, &KeyRecord) -> Result<Result<(), Conflict>, StoreError>,
    ) -> Result<(VirtualKey, KeyRecord), KeyError> {
        let is_custom = custom.is_some();
        let mut plaintext = custom;
        loop {
            let key = match plaintext.take() {
                Some(text) => VirtualKey::custom(text)?,
                None => VirtualKey::mint(),
            };
            let hash = key.hash();
            if hash == self.rules.master {
                return Err(KeyError::KeyIsMaster);
            }
            let record = record_for(&key)?;
            match write(&hash, &record)? {
                Ok(()) => return Ok((key, record)),
                // A random 128-bit collision will not happen; if it did, draw again rather than overwrite.
                Err(Conflict::KeyExists) if !is_custom => {}
                Err(conflict) => return Err(conflict.into()),
            }
        }
    }

    fn update(&self, key: &KeyRef, changes: KeyChanges) -> Result<KeyRecord, KeyError> {
        let (mut record, read) = self.load_versioned(key)?;
        let before = record.clone();
        let old_alias = record.key_alias.clone();
        self.rules.check_tier_kept(&record, &changes)?;
        record.apply(changes.clone(), SystemTime::now())?;
        self.check(&changes, &record)?;
        self.check_inherited_tier_kept(&before, &record, &changes)?;
        let current = self.meter.spend_of(key.hash.as_bytes()).map_err(StoreError::from)?;
        let spend = changed_spend(current, &changes);
        let mut entry = key_entry("update", &key.hash, Some(&before), &record, &changes)?;
        // A change of `blocked` alone is a block or an unblock.
        if entry.changed.len() == 1 {
            match entry.changed.get("blocked").and_then(Value::as_bool) {
                Some(true) => entry.action = "block",
                Some(false) => entry.action = "unblock",
                None => {}
            }
        }
        match self.store.replace(&key.hash, old_alias.as_deref(), &key.hash, &record, spend, &entry, &read)? {
            Ok(()) => {
                self.meter.remember_spend(key.hash.as_bytes(), spend);
                Ok(record)
            }
            Err(conflict) => Err(conflict.into()),
        }
    }

    fn delete(&self, keys: &[KeyRef], aliases: &[String]) -> Result<Vec<String>, KeyError> {
        let mut doomed: Vec<Doomed> = Vec::with_capacity(keys.len() + aliases.len());
        let mut deleted = Vec::with_capacity(doomed.capacity());
        for key in keys {
            let (record, read) = self.load_versioned(key)?;
            // A key named twice (or by its key and its alias) is deleted, and audited, once.
            if !doomed.iter().any(|doomed| doomed.hash == key.hash) {
                doomed.push(Doomed { hash: key.hash, alias: record.key_alias, read: read.to_vec() });
            }
            deleted.push(key.label.clone());
        }
        for alias in aliases {
            let hash = self.store.hash_of_alias(alias)?.ok_or_else(|| KeyError::AliasNotFound(alias.clone()))?;
            let key = KeyRef { hash, label: alias.clone() };
            let (_, read) = self.load_versioned(&key)?;
            if !doomed.iter().any(|doomed| doomed.hash == hash) {
                doomed.push(Doomed { hash, alias: Some(alias.clone()), read: read.to_vec() });
            }
            deleted.push(alias.clone());
        }
        let entries: Vec<AuditEntry> = doomed
            .iter()
            .map(|doomed| AuditEntry {
                token: Some(doomed.hash.to_hex()),
                key_alias: doomed.alias.clone(),
                ..AuditEntry::new("delete")
            })
            .collect();
        self.store.delete(&doomed, &entries)??;
        for doomed in &doomed {
            self.meter.retire(doomed.hash.as_bytes(), None, SystemTime::now());
        }
        Ok(deleted)
    }

    fn regenerate(&self, key: &KeyRef, new_key: Option<String>) -> Result<MintedKey, KeyError> {
        let (current, read) = self.load_versioned(key)?;
        let alias = current.key_alias.clone();
        // The key's spend goes with it, in the same transaction: a new plaintext is not a new budget. What is
        // settled to the old key from this read on is handed to the new one when the old one is retired.
        let spend = self.meter.pin_spend(key.hash.as_bytes()).map_err(StoreError::from)?;
        let stored = self.store_fresh(
            new_key,
            |fresh| {
                if fresh.hash() == key.hash {
                    return Err(KeyError::KeyTaken);
                }
                let mut record = current.clone();
                record.token = fresh.hash().to_hex();
                record.key_name = abbreviate(fresh.expose());
                record.apply(KeyChanges::default(), SystemTime::now())?;
                Ok(record)
            },
            |hash, record| {
                let mut entry = key_entry("regenerate", &key.hash, Some(&current), record, &KeyChanges::default())?;
                entry.changed.insert("token".into(), Value::String(hash.to_hex()));
                self.store.replace(&key.hash, alias.as_deref(), hash, record, Some(spend), &entry, &read)
            },
        );
        let (key_material, record) = stored.inspect_err(|_| self.meter.unpin(key.hash.as_bytes()))?;
        // Only back to life (a custom key once deleted): the spend is in the ledger, and an answer of the new
        // key may already have been counted on top of it.
        self.meter.remember_spend(key_material.hash().as_bytes(), None);
        self.meter.retire(key.hash.as_bytes(), Some(*key_material.hash().as_bytes()), SystemTime::now());
        Ok(MintedKey { key: key_material, record })
    }

    /// The key with `alias`, as a page of at most one (two point reads: cheap enough for the actor, and
    /// consistent with the writes it serialises).
    fn list_alias(&self, page: usize, alias: &str) -> Result<KeyPage, KeyError> {
        let record = match self.store.hash_of_alias(alias)? {
            Some(hash) => self.store.get(&hash)?,
            None => None,
        };
        let total = usize::from(record.is_some());
        let records: Vec<KeyRecord> = record.into_iter().filter(|_| page == 1).collect();
        Ok(KeyPage { records, total })
    }
}

/// One page of every key: a scan of the whole store (for the total). Blocking: run it off the actor thread.
fn list(store: &KeyStore, page: usize, size: usize) -> Result<KeyPage, KeyError> {
    let (records, total) = store.page((page - 1).saturating_mul(size), size)?;
    Ok(KeyPage { records, total })
}

/// Mint a key; answered once the key is durable.
#[derive(Message)]
#[rtype(result = "Result<MintedKey, KeyError>")]
pub struct MintKey(pub NewKey);

impl Handler<MintKey> for KeyRegistry {
    type Result = ResponseFuture<Result<MintedKey, KeyError>>;

    fn handle(&mut self, MintKey(request): MintKey, ctx: &mut Context<Self>) -> Self::Result {
        let alias = request.changes.key_alias.clone().flatten();
        let outcome = self.mint(request);
        if let Err(err) = &outcome {
            self.refused(AuditEntry { key_alias: alias, ..AuditEntry::new("generate") }, err);
        }
        self.when_durable(ctx, outcome)
    }
}

/// Read a key's record.
#[derive(Message)]
#[rtype(result = "Result<KeyRecord, KeyError>")]
pub struct GetKey(pub KeyRef);

impl Handler<GetKey> for KeyRegistry {
    type Result = Result<KeyRecord, KeyError>;

    fn handle(&mut self, GetKey(key): GetKey, _: &mut Context<Self>) -> Self::Result {
        self.load(&key)
    }
}

/// Change some fields of a key (also block/unblock); answered once durable.
#[derive(Message)]
#[rtype(result = "Result<KeyRecord, KeyError>")]
pub struct UpdateKey {
    pub key: KeyRef,
    pub changes: KeyChanges,
}

impl Handler<UpdateKey> for KeyRegistry {
    type Result = ResponseFuture<Result<KeyRecord, KeyError>>;

    fn handle(&mut self, msg: UpdateKey, ctx: &mut Context<Self>) -> Self::Result {
        let action = match msg.changes.blocked {
            Some(true) => "block",
            Some(false) => "unblock",
            None => "update",
        };
        let outcome = self.update(&msg.key, msg.changes);
        if let Err(err) = &outcome {
            self.refused(AuditEntry { token: Some(msg.key.hash.to_hex()), ..AuditEntry::new(action) }, err);
        }
        self.when_durable(ctx, outcome)
    }
}

/// Delete keys (by key or hash) and keys by alias, all or nothing; answers what was deleted, once durable.
#[derive(Message)]
#[rtype(result = "Result<Vec<String>, KeyError>")]
pub struct DeleteKeys {
    pub keys: Vec<KeyRef>,
    pub aliases: Vec<String>,
}

impl Handler<DeleteKeys> for KeyRegistry {
    type Result = ResponseFuture<Result<Vec<String>, KeyError>>;

    fn handle(&mut self, msg: DeleteKeys, ctx: &mut Context<Self>) -> Self::Result {
        let outcome = self.delete(&msg.keys, &msg.aliases);
        if let Err(err) = &outcome {
            let token = msg.keys.first().map(|key| key.hash.to_hex());
            let key_alias = msg.aliases.first().cloned();
            self.refused(AuditEntry { token, key_alias, ..AuditEntry::new("delete") }, err);
        }
        self.when_durable(ctx, outcome)
    }
}

/// Replace a key's plaintext, keeping its record; the old key stops working. Answered once durable.
#[derive(Message)]
#[rtype(result = "Result<MintedKey, KeyError>")]
pub struct RegenerateKey {
    pub key: KeyRef,
    pub new_key: Option<String>,
}

impl Handler<RegenerateKey> for KeyRegistry {
    type Result = ResponseFuture<Result<MintedKey, KeyError>>;

    fn handle(&mut self, msg: RegenerateKey, ctx: &mut Context<Self>) -> Self::Result {
        let outcome = self.regenerate(&msg.key, msg.new_key);
        if let Err(err) = &outcome {
            self.refused(AuditEntry { token: Some(msg.key.hash.to_hex()), ..AuditEntry::new("regenerate") }, err);
        }
        self.when_durable(ctx, outcome)
    }
}

/// One page of keys (1-based `page`), optionally only the key with `alias`.
#[derive(Message)]
#[rtype(result = "Result<KeyPage, KeyError>")]
pub struct ListKeys {
    pub page: usize,
    pub size: usize,
    pub alias: Option<String>,
}

impl Handler<ListKeys> for KeyRegistry {
    type Result = ResponseFuture<Result<KeyPage, KeyError>>;

    /// A full page scans the store on a blocking thread with its own store handle, so a list of a large
    /// store never holds up the writes and readiness checks queued behind it on this actor.
    fn handle(&mut self, msg: ListKeys, _: &mut Context<Self>) -> Self::Result {
        let page = msg.page.max(1);
        if let Some(alias) = msg.alias {
            let outcome = self.list_alias(page, &alias);
            return Box::pin(async move { outcome });
        }
        let store = self.store.clone();
        Box::pin(async move {
            match actix_rt::task::spawn_blocking(move || list(&store, page, msg.size)).await {
                Ok(outcome) => outcome,
                // Only when the runtime shuts down (a panic exits the process): answer as a failed store read.
                Err(err) => Err(StoreError::Io(sled::Error::Io(std::io::Error::other(format!(
                    "the key list was cut short: {err}"
                ))))
                .into()),
            }
        })
    }
}
