//! Applying a [`Change`] to sled: its checks, then its writes in order, then its audit entries, in one
//! transaction over every tree of the store.

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;

use super::audit::append;
use super::change::{Change, Tree, Write};
use super::store::Conflict;
use super::{KeyStore, StoreError};

impl KeyStore {
    /// Applies a change in one transaction: its checks, its writes in order, its audit entries (numbered
    /// by sled).
    pub(super) fn apply(&self, change: &Change) -> Result<Result<(), Conflict>, StoreError> {
        // Readers of the owner index see it and the store agree: both change under its lock.
        let mut owners = self.owners.write();
        let outcome = self.transact(|trees| {
            for check in &change.checks {
                if !check.holds(trees.tree(check.tree).get(&check.key)?.as_deref()) {
                    return Err(ConflictableTransactionError::Abort(check.conflict.clone()));
                }
            }
            trees.write_all(&change.writes)?;
            for entry in &change.audit {
                append(trees.audit, entry, change.at)?;
            }
            Ok(())
        })?;
        if outcome.is_ok() {
            self.grants_version.raise_for(&change.writes);
            owners.apply(&change.writes);
            self.end_user_view.apply(&change.writes);
        }
        Ok(outcome)
    }

    /// Runs `body` in one transaction over every tree.
    pub(super) fn transact<A>(&self, body: impl Fn(&TxTrees<'_>) -> TxResult<A>) -> Result<Result<(), A>, StoreError> {
        let trees = (
            &self.keys,
            &self.aliases,
            &self.grants,
            &self.budgets,
            &self.spend,
            &self.models,
            &self.end_users,
            &self.audit,
            &self.meta,
            &self.entities,
        );
        let outcome =
            trees.transaction(|(keys, aliases, grants, budgets, spend, models, end_users, audit, meta, entities)| {
                body(&TxTrees { keys, aliases, grants, budgets, spend, models, end_users, audit, meta, entities })
            });
        match outcome {
            Ok(()) => Ok(Ok(())),
            Err(TransactionError::Abort(refusal)) => Ok(Err(refusal)),
            Err(TransactionError::Storage(err)) => Err(err.into()),
        }
    }

    /// A tree a change writes, outside transactions.
    pub(super) fn tree(&self, tree: Tree) -> &sled::Tree {
        match tree {
            Tree::Keys => &self.keys,
            Tree::Aliases => &self.aliases,
            Tree::Grants => &self.grants,
            Tree::Budgets => &self.budgets,
            Tree::Spend => &self.spend,
            Tree::Models => &self.models,
            Tree::EndUsers => &self.end_users,
            Tree::Entities => &self.entities,
        }
    }
}

pub(super) type TxResult<A> = Result<(), ConflictableTransactionError<A>>;

/// Every tree of the store, inside one transaction.
pub(super) struct TxTrees<'a> {
    keys: &'a TransactionalTree,
    aliases: &'a TransactionalTree,
    grants: &'a TransactionalTree,
    budgets: &'a TransactionalTree,
    spend: &'a TransactionalTree,
    models: &'a TransactionalTree,
    end_users: &'a TransactionalTree,
    pub(super) audit: &'a TransactionalTree,
    pub(super) meta: &'a TransactionalTree,
    entities: &'a TransactionalTree,
}

impl<'a> TxTrees<'a> {
    pub(super) fn tree(&self, tree: Tree) -> &'a TransactionalTree {
        match tree {
            Tree::Keys => self.keys,
            Tree::Aliases => self.aliases,
            Tree::Grants => self.grants,
            Tree::Budgets => self.budgets,
            Tree::Spend => self.spend,
            Tree::Models => self.models,
            Tree::EndUsers => self.end_users,
            Tree::Entities => self.entities,
        }
    }

    /// Makes `writes` in order.
    pub(super) fn write_all(&self, writes: &[Write]) -> Result<(), UnabortableTransactionError> {
        for write in writes {
            match &write.value {
                Some(value) => self.tree(write.tree).insert(write.key.as_slice(), value.as_slice())?,
                None => self.tree(write.tree).remove(write.key.as_slice())?,
            };
        }
        Ok(())
    }
}
