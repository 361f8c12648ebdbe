//! Keys that go away while their answers are still counted: a regenerated key's spend moves to its successor
//! exactly (the spend read for the move plus every answer counted after the read), a deleted key's spend goes
//! with it and never comes back (not from a spend batch in flight, nor from a request still running), and a
//! custom key minted again starts from its own spend.

use std::sync::MutexGuard;
use std::time::SystemTime;

use std::sync::atomic::Ordering;

use super::{lock, millis, shared_spend, Meter, Shard, Spend};

impl Meter {
    /// The key a request or answer of `key` counts to, with its shard locked: itself, unless it was retired
    /// (regenerated: its successor; deleted: none). The usual case takes one lock: the key is in use. Else
    /// the retired keys are looked up while its shard is still locked, and [`Meter::retire`] takes the same
    /// two locks in the same order, so no account of a key is ever made after the key was retired: what was
    /// counted to it before is handed over by the retire, what comes after goes to the successor.
    pub(super) fn live_shard(&self, key: [u8; 32]) -> Option<(MutexGuard<'_, Shard>, [u8; 32])> {
        let mut live = key;
        // A key regenerated twice while an answer ran: follow the chain (bounded, in case of a cycle).
        for _ in 0..8 {
            let shard = self.shard(&live);
            if shard.accounts.contains_key(&live) {
                return Some((shard, live));
            }
            match lock(&self.retired).get(&live) {
                None => return Some((shard, live)),
                Some((successor, _)) => live = (*successor)?,
            }
        }
        None
    }

    /// How many keys were made alive again so far. Read with a key's account found alive, under its shard's
    /// lock, by a request counted to that account: every revival before the account was is counted in it,
    /// and a revival after it needs a retire first, which takes the account (and what the request holds
    /// there) away.
    pub(super) fn revivals(&self) -> u64 {
        self.revivals.load(Ordering::Relaxed)
    }

    /// `Some(successor)` when `key` was retired and made alive again since a request that saw `revivals_seen`
    /// ([`Self::revivals`]) was admitted: that request was its namesake's, and nothing of it is the account
    /// the key has now. Looked at under the key's shard lock, after finding its account alive there: a key
    /// leaves the retired ones for the revived ones under the retired keys' lock, which finding it alive
    /// takes, so a key found alive is found revived here.
    pub(super) fn revived_since(&self, key: &[u8; 32], revivals_seen: u64) -> Option<Option<[u8; 32]>> {
        if revivals_seen >= self.revivals.load(Ordering::Relaxed) {
            return None;
        }
        let revived = lock(&self.revived).get(key).copied();
        revived.filter(|(_, revival)| revivals_seen < *revival).map(|((successor, _), _)| successor)
    }

    /// `give` to the account of `key`, for a request that saw `revivals_seen` and ended without an answer:
    /// unless the key is gone, or was made alive again since (what it held went with its namesake).
    pub(super) fn give_back(&self, key: &[u8; 32], revivals_seen: u64, give: impl FnOnce(&mut super::Account)) {
        if let Some(account) = self.shard(key).accounts.get_mut(key) {
            if self.revived_since(key, revivals_seen).is_none() {
                give(account);
            }
        }
    }

    /// Takes in a key's spend as the key store has just written it (an admin's `spend`, a new key's starting
    /// spend); `None` when the change left it alone. Memory only; the account is queued, so a batch that read
    /// the old value before this is followed by one with it. (A regenerated key's spend is moved by
    /// [`Meter::pin_spend`] and [`Meter::retire`], not here.)
    pub fn remember_spend(&self, key: &[u8; 32], spend: Option<Spend>) {
        // A custom key minted again after a delete is alive again; answers admitted before the delete still
        // count nowhere (`Meter::settle`), nor give back what they held (`Meter::revived_since`).
        // Moved under the retired keys' lock: `settle` looks for a revived key after finding it alive under
        // that lock, so it sees the move whole.
        let mut retired = lock(&self.retired);
        if let Some(gone) = retired.remove(key) {
            let revival = self.revivals.fetch_add(1, Ordering::Relaxed) + 1;
            lock(&self.revived).insert(*key, (gone, revival));
        }
        drop(retired);
        let Some(spend) = spend else { return };
        let mut shard = self.shard(key);
        if let Some(account) = shard.accounts.get_mut(key) {
            account.load(spend);
            account.unsent = 0.0;
            account.dirty = true;
        }
        self.note_dirty(&mut shard, *key);
    }

    /// A key's spend, read to be moved to the key that replaces it (regenerate): from now until
    /// [`Meter::retire`] hands it over (or [`Meter::unpin`]), what is settled to it is also kept apart, so the
    /// successor gets exactly the spend read here plus what came after. Read under the key's lock, and with
    /// replicas while no exchange with Redis runs, so nothing is in both.
    pub fn pin_spend(&self, key: &[u8; 32]) -> Result<Spend, sled::Error> {
        let _exchange = self.shared.as_ref().map(|_| lock(&self.writing));
        let (spend, local) = {
            let mut shard = self.shard(key);
            let account = self.account(&mut shard, *key, true);
            account.handover = Some(0.0);
            (account.spend.unwrap_or_default(), shared_spend::local_of(account))
        };
        match (&self.shared, local) {
            (Some(shared), Some(local)) => self.with_shared_sum(shared, key, local),
            _ => Ok(spend),
        }
    }

    /// Undoes [`Meter::pin_spend`] when the move was refused: the key stays, its spend where it is.
    pub fn unpin(&self, key: &[u8; 32]) {
        if let Some(account) = self.shard(key).accounts.get_mut(key) {
            account.handover = None;
        }
    }

    /// Forgets a deleted key (`successor: None`) or the old hash of a regenerated one; answers of it still in
    /// flight count to the successor, or not at all. A regenerated key's spend settled since
    /// [`Meter::pin_spend`] read it (on a replica that did not read it: what it has not sent to Redis yet) goes
    /// to the successor. The key's spend entry is removed again: a batch gathered before the key store removed
    /// it may have written it back.
    ///
    /// On one node it waits for a spend write in progress: a batch gathered before the retire and written
    /// after it would put a deleted end user's or team's spend back, for its namesake created again to find.
    /// (With replicas, Redis leaves such a batch out: see `shared_spend`.)
    pub fn retire(&self, key: &[u8; 32], successor: Option<[u8; 32]>, now: SystemTime) {
        let _writing = self.shared.is_none().then(|| lock(&self.writing));
        let mut shard = self.shard(key);
        let old = {
            let mut retired = lock(&self.retired);
            retired.insert(*key, (successor, millis(now)));
            if let Err(err) = self.ledger.remove(key) {
                log::error!("cannot remove a retired key's spend from the store: {err}");
            }
            shard.accounts.remove(key)
        };
        drop(shard);
        let (Some(successor), Some(old)) = (successor, old) else { return };
        self.hand_over(successor, old.handover.unwrap_or(old.unsent));
    }

    /// Adds `dollars` a retired key spent to `successor` (or the key that replaced it since).
    pub(super) fn hand_over(&self, successor: [u8; 32], dollars: f64) {
        if dollars <= 0.0 {
            return;
        }
        if let Some((mut shard, live)) = self.live_shard(successor) {
            self.account(&mut shard, live, true).take_over(dollars);
            self.note_dirty(&mut shard, live);
        }
    }
}
