//! The meter's accounts, spread over shards by key hash (each behind its own lock): finding a key's shard
//! and account (its spend read from the ledger on first use), and queueing an account whose spend changed for
//! the next [`Meter::persist`].

use std::collections::HashMap;
use std::sync::MutexGuard;

use super::account::Account;
use super::{lock, KeyHashing, Meter, Spend, SHARDS};

/// The accounts of a shard, by key hash.
pub(super) type Accounts = HashMap<[u8; 32], Account, KeyHashing>;

#[derive(Default)]
pub(super) struct Shard {
    pub(super) accounts: Accounts,
    /// Keys whose spend changed since the last [`Meter::persist`].
    pub(super) dirty: Vec<[u8; 32]>,
}

impl Meter {
    pub(super) fn shard(&self, key: &[u8; 32]) -> MutexGuard<'_, Shard> {
        lock(&self.shards[key[0] as usize % SHARDS])
    }

    /// The key's account, its spend read from the ledger first when `with_spend` and not read yet.
    pub(super) fn account<'s>(&self, shard: &'s mut Shard, key: [u8; 32], with_spend: bool) -> &'s mut Account {
        self.account_in(&mut shard.accounts, key, with_spend)
    }

    fn account_in<'s>(&self, accounts: &'s mut Accounts, key: [u8; 32], with_spend: bool) -> &'s mut Account {
        let account = accounts.entry(key).or_default();
        if with_spend && account.spend.is_none() {
            account.load(self.ledger.read(&key).unwrap_or_else(|err| {
                log::error!("cannot read a key's spend from the store ({err}); it counts from 0 until restart");
                Spend::default()
            }));
        }
        account
    }

    /// `change` made to the key's account (as [`Self::account`] finds it), which is then queued for the next
    /// [`Meter::persist`] if that made its spend change: one look-up for both, on every limited request.
    pub(super) fn change_account<R>(
        &self,
        shard: &mut Shard,
        key: [u8; 32],
        with_spend: bool,
        change: impl FnOnce(&mut Account) -> R,
    ) -> R {
        let Shard { accounts, dirty } = shard;
        let account = self.account_in(accounts, key, with_spend);
        let changed = change(account);
        if account.dirty && !account.queued {
            account.queued = true;
            dirty.push(key);
        }
        changed
    }

    /// Queues a key whose spend changed for the next [`Meter::persist`] (once).
    pub(super) fn note_dirty(&self, shard: &mut Shard, key: [u8; 32]) {
        if let Some(account) = shard.accounts.get_mut(&key) {
            if account.dirty && !account.queued {
                account.queued = true;
                shard.dirty.push(key);
            }
        }
    }
}
