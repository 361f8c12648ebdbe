//! The store's end users: read, written with compare-and-set, deleted with their spend.

use super::{Change, Conflict, KeyStore, StoreError, Tree};
use crate::keys::{AuditEntry, EndUserRecord};
use crate::meter::{Level, Spend};

impl KeyStore {
    /// An end user and its stored bytes, for a change that must not overwrite a concurrent one.
    pub fn end_user_versioned(&self, id: &str) -> Result<Option<(EndUserRecord, sled::IVec)>, StoreError> {
        match self.end_users.get(id.as_bytes())? {
            Some(bytes) => Ok(Some((serde_json::from_slice(&bytes)?, bytes))),
            None => Ok(None),
        }
    }

    pub fn end_user(&self, id: &str) -> Result<Option<EndUserRecord>, StoreError> {
        match self.end_users.get(id.as_bytes())? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// End users in id order: `take` of them after the first `skip`.
    pub fn end_users(&self, skip: usize, take: usize) -> Result<Vec<EndUserRecord>, StoreError> {
        self.end_users.iter().skip(skip).take(take).map(|entry| Ok(serde_json::from_slice(&entry?.1)?)).collect()
    }

    /// Writes an end user with its audit entry. `read`: the stored bytes the change was computed from
    /// (another writer's change since is refused); `None`: a new end user (refused when the id exists).
    pub fn write_end_user(
        &self,
        user: &EndUserRecord,
        read: Option<&[u8]>,
        entry: &AuditEntry,
    ) -> Result<Result<(), Conflict>, StoreError> {
        let id = user.user_id.as_bytes();
        let mut change = Change::new();
        match read {
            Some(read) => change.check_unchanged(Tree::EndUsers, id, read),
            None => change.check(Tree::EndUsers, id, &[], Conflict::EndUserExists(user.user_id.clone())),
        }
        if let Some(budget) = &user.budget_id {
            change.link_budget(budget);
        }
        change.put(Tree::EndUsers, id, serde_json::to_vec(user)?);
        change.audit.push(entry.clone());
        self.commit(change)
    }

    /// Writes an imported end user and its spend, unless the id is taken (refused: nothing is overwritten).
    pub fn import_end_user(
        &self,
        user: &EndUserRecord,
        spend: Option<Spend>,
        entry: AuditEntry,
    ) -> Result<Result<(), Conflict>, StoreError> {
        let id = user.user_id.as_bytes();
        let mut change = Change::new();
        change.check(Tree::EndUsers, id, &[], Conflict::EndUserExists(user.user_id.clone()));
        change.put(Tree::EndUsers, id, serde_json::to_vec(user)?);
        if let Some(spend) = spend {
            change.put(Tree::Spend, &Level::EndUser.account(&user.user_id), spend.encode());
        }
        change.audit.push(entry);
        self.commit(change)
    }

    /// Deletes end users (each id with its stored bytes as read, which must still be there) and their spend,
    /// in one change.
    pub fn delete_end_users(
        &self,
        doomed: &[(&str, &[u8])],
        entries: Vec<AuditEntry>,
    ) -> Result<Result<(), Conflict>, StoreError> {
        let mut change = Change::new();
        for (id, read) in doomed {
            change.check_unchanged(Tree::EndUsers, id.as_bytes(), read);
            change.remove(Tree::EndUsers, id.as_bytes());
            change.remove(Tree::Spend, &Level::EndUser.account(id));
        }
        change.audit = entries;
        self.commit(change)
    }
}
