//! The audit trail: every key and budget change (and every refused one), appended to the store in the same
//! transaction as the change it records, so it is exactly as durable. An entry names its target by hash,
//! alias and budget id and shows the values of the fields that changed; never a plaintext key or secret.

use std::time::SystemTime;

use actix::{Context, Handler, Message, ResponseFuture};
use serde_json::{json, Map, Value};

use super::record::timestamp;
use sled::transaction::{TransactionalTree, UnabortableTransactionError};

use super::{KeyChanges, KeyError, KeyHash, KeyRecord, KeyRegistry, KeyStore, StoreError};

/// The sled tree of entries: a big-endian id (sled's monotonic `generate_id`) → the entry as JSON.
pub(super) const AUDIT_TREE: &str = "audit";

/// One change to record.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// `generate`, `update`, `block`, `unblock`, `regenerate`, `delete`, `budget_new`, `budget_update`,
    /// `budget_delete`.
    pub action: &'static str,
    /// The key's hash (hex).
    pub token: Option<String>,
    pub key_alias: Option<String>,
    pub budget_id: Option<String>,
    /// The fields that changed, with their new values (`null`: removed).
    pub changed: Map<String, Value>,
    /// `None`: done; else why it was refused.
    pub refused: Option<String>,
}

impl AuditEntry {
    pub fn new(action: &'static str) -> Self {
        Self { action, ..Self::default() }
    }

    /// The entry as stored: with its id and time.
    pub(super) fn encode(&self, id: u64, at: SystemTime) -> Vec<u8> {
        let outcome = match &self.refused {
            None => json!("ok"),
            Some(reason) => json!({"refused": reason}),
        };
        let entry = json!({
            "id": id,
            "at": timestamp(at),
            "at_ms": at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64),
            "action": self.action,
            "token": self.token,
            "key_alias": self.key_alias,
            "budget_id": self.budget_id,
            "changed": self.changed,
            "outcome": outcome,
        });
        serde_json::to_vec(&entry).unwrap_or_default()
    }
}

/// What a change did to a record, for its entry: [`changed_fields`] of the two (as JSON; `None` is no record:
/// before a creation, after a deletion, which changes nothing to show), less the `ignored` fields (ids the
/// entry names anyway, timestamps).
pub fn record_changes<T: serde::Serialize>(
    before: Option<&T>,
    after: Option<&T>,
    ignored: &[&str],
) -> Result<Map<String, Value>, serde_json::Error> {
    let Some(after) = after else { return Ok(Map::new()) };
    let before = before.map(serde_json::to_value).transpose()?.unwrap_or_else(|| Value::Object(Map::new()));
    let mut changed = changed_fields(&before, &serde_json::to_value(after)?);
    for field in ignored {
        changed.remove(*field);
    }
    Ok(changed)
}

/// The top-level fields of `after` whose values differ from `before`'s (a field `after` lacks is `null`).
fn changed_fields(before: &Value, after: &Value) -> Map<String, Value> {
    let empty = Map::new();
    let (before, after) = (before.as_object().unwrap_or(&empty), after.as_object().unwrap_or(&empty));
    let mut changed = Map::new();
    for (field, value) in after {
        if before.get(field) != Some(value) {
            changed.insert(field.clone(), value.clone());
        }
    }
    for field in before.keys().filter(|field| !after.contains_key(*field)) {
        changed.insert(field.clone(), Value::Null);
    }
    changed
}

/// An entry stored with id 0 (as changes carry them), with its id set.
pub(super) fn renumbered(payload: &[u8], id: u64) -> Vec<u8> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(mut entry)) => {
            entry.insert("id".into(), json!(id));
            serde_json::to_vec(&entry).unwrap_or_default()
        }
        _ => payload.to_vec(),
    }
}

/// The audit entry of a key change: its target, and the record's fields that changed (`before` is `None` for
/// a new key) plus the spend it was given; timestamps and the hash of a key's own record are left out.
pub(super) fn key_entry(
    action: &'static str,
    hash: &KeyHash,
    before: Option<&KeyRecord>,
    after: &KeyRecord,
    changes: &KeyChanges,
) -> Result<AuditEntry, StoreError> {
    let mut changed = record_changes(before, Some(after), &["token", "created_at", "updated_at"])?;
    if let Some(spend) = changes.spend {
        changed.insert("spend".into(), spend.into());
    }
    Ok(AuditEntry {
        token: Some(hash.to_hex()),
        key_alias: after.key_alias.clone(),
        changed,
        ..AuditEntry::new(action)
    })
}

/// Appends `entry` inside a transaction.
pub(super) fn append(
    audit: &TransactionalTree,
    entry: &AuditEntry,
    at: SystemTime,
) -> Result<(), UnabortableTransactionError> {
    let id = audit.generate_id()?;
    audit.insert(&id.to_be_bytes(), entry.encode(id, at))?;
    Ok(())
}

impl KeyStore {
    /// Audit entries matching `filter`, newest first: `take` of them after `skip`, and how many match in all.
    /// A scan of the whole trail: for the admin API, off the actor thread.
    pub fn audit_page(
        &self,
        filter: &AuditFilter,
        skip: usize,
        take: usize,
    ) -> Result<(Vec<serde_json::Value>, usize), StoreError> {
        let (mut page, mut total) = (Vec::new(), 0);
        for entry in self.audit.iter().rev() {
            let entry: serde_json::Value = serde_json::from_slice(&entry?.1)?;
            if filter.admits(&entry) {
                if total >= skip && page.len() < take {
                    page.push(entry);
                }
                total += 1;
            }
        }
        Ok((page, total))
    }
}

/// Which entries `GET /audit` wants.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// What names the key: each is compared with an entry's hash and alias (a caller's text can be a
    /// plaintext key, a hash or an alias, and an alias may look like a key).
    pub key: Vec<String>,
    pub action: Option<String>,
    /// Milliseconds since the Unix epoch, inclusive.
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

impl AuditFilter {
    pub(super) fn admits(&self, entry: &Value) -> bool {
        let text = |field: &str| entry.get(field).and_then(Value::as_str);
        let at = entry.get("at_ms").and_then(Value::as_u64).unwrap_or(0);
        (self.key.is_empty() || self.key.iter().any(|key| text("token") == Some(key) || text("key_alias") == Some(key)))
            && self.action.as_deref().is_none_or(|action| text("action") == Some(action))
            && self.since_ms.is_none_or(|since| at >= since)
            && self.until_ms.is_none_or(|until| at <= until)
    }
}

/// A page of the audit trail, newest first (`GET /audit`): entries and how many match.
#[derive(Message)]
#[rtype(result = "Result<(Vec<Value>, usize), KeyError>")]
pub struct ListAudit {
    pub filter: AuditFilter,
    /// 1-based.
    pub page: usize,
    pub size: usize,
}

impl Handler<ListAudit> for KeyRegistry {
    type Result = ResponseFuture<Result<(Vec<Value>, usize), KeyError>>;

    /// A scan of the trail, on a blocking thread with its own store handle (as a key list is).
    fn handle(&mut self, msg: ListAudit, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let skip = (msg.page.max(1) - 1).saturating_mul(msg.size);
            let read = move || store.audit_page(&msg.filter, skip, msg.size);
            match actix_rt::task::spawn_blocking(read).await {
                Ok(outcome) => Ok(outcome?),
                Err(err) => Err(StoreError::Io(sled::Error::Io(std::io::Error::other(format!(
                    "the audit listing was cut short: {err}"
                ))))
                .into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_fields_are_kept_with_their_new_values() {
        let before = json!({"blocked": false, "key_alias": "a", "spend": 1, "gone": 2});
        let after = json!({"blocked": true, "key_alias": "a", "spend": 1});
        assert_eq!(Value::Object(changed_fields(&before, &after)), json!({"blocked": true, "gone": null}));
    }
}
