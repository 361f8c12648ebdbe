//! The store's budget tiers: read, written with compare-and-set, and deleted only when no key links to them
//! (checked against links made on other replicas too).

use super::{Change, Conflict, KeyStore, StoreError, Tree};
use crate::keys::{AuditEntry, BudgetRecord, Grant};

impl KeyStore {
    /// A budget and its stored bytes, for a change that must not overwrite a concurrent one.
    pub fn budget_versioned(&self, id: &str) -> Result<Option<(BudgetRecord, sled::IVec)>, StoreError> {
        match self.budgets.get(id.as_bytes())? {
            Some(bytes) => Ok(Some((serde_json::from_slice(&bytes)?, bytes))),
            None => Ok(None),
        }
    }

    pub fn budget(&self, id: &str) -> Result<Option<BudgetRecord>, StoreError> {
        match self.budgets.get(id.as_bytes())? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Every budget, in id order.
    pub fn budgets(&self) -> Result<Vec<BudgetRecord>, StoreError> {
        self.budgets.iter().map(|entry| Ok(serde_json::from_slice(&entry?.1)?)).collect()
    }

    /// Writes a budget (`Some`) or removes one, with its audit entry. `read`: the stored bytes the change was
    /// computed from (another writer's change since is refused); `None`: a new budget (refused when the id
    /// exists).
    pub fn write_budget(
        &self,
        id: &str,
        budget: Option<&BudgetRecord>,
        read: Option<&[u8]>,
        entry: &AuditEntry,
    ) -> Result<Result<(), Conflict>, StoreError> {
        let mut change = Change::new();
        match read {
            Some(read) => change.check_unchanged(Tree::Budgets, id.as_bytes(), read),
            None => change.check(Tree::Budgets, id.as_bytes(), &[], Conflict::BudgetExists(id.to_owned())),
        }
        match budget {
            Some(budget) => change.put(Tree::Budgets, id.as_bytes(), serde_json::to_vec(budget)?),
            None => change.remove(Tree::Budgets, id.as_bytes()),
        }
        change.audit.push(entry.clone());
        self.commit(change)
    }

    /// Deletes budget `id` (its stored bytes as `read`) if no key links to it: refused with
    /// [`Conflict::BudgetInUse`] when a key here does, and with [`Conflict::ChangedMeanwhile`] when another
    /// replica linked one after this copy was read (its copy had not applied the link yet).
    pub fn delete_unlinked_budget(
        &self,
        id: &str,
        read: &[u8],
        entry: &AuditEntry,
    ) -> Result<Result<(), Conflict>, StoreError> {
        // The copy's position first: every link up to it is in the scan below, and later ones Redis knows of.
        let as_of = self.copy_position()?.seq;
        let keys = self.keys_on_budget(id)?;
        if keys > 0 {
            return Ok(Err(Conflict::BudgetInUse { budget_id: id.to_owned(), keys }));
        }
        let mut change = Change::new();
        change.check_unchanged(Tree::Budgets, id.as_bytes(), read);
        change.remove(Tree::Budgets, id.as_bytes());
        change.unlinked = Some((id.as_bytes().to_vec(), as_of));
        change.audit.push(entry.clone());
        self.commit(change)
    }

    /// How many keys and end users are linked to budget `id` (a scan of every grant and end user: for deleting
    /// a budget, not the API's hot path).
    fn keys_on_budget(&self, id: &str) -> Result<usize, StoreError> {
        let mut count = 0;
        for entry in self.end_users.iter() {
            let user: crate::keys::EndUserRecord = serde_json::from_slice(&entry?.1)?;
            count += usize::from(user.budget_id.as_deref() == Some(id));
        }
        for entry in self.grants.iter() {
            let grant = Grant::decode(&entry?.1)?;
            count += usize::from(grant.budget_id.as_deref() == Some(id));
        }
        Ok(count)
    }
}
