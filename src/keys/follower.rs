//! Keeps a replica's copy of the shared store: reads the change stream (a blocking read, so changes are
//! pushed, not polled per request) and applies each change in order, in one sled transaction with the copy's
//! position. A gap in the numbers (the stream was trimmed past the copy, or Redis was emptied or replaced)
//! makes it copy the whole store again. Runs on a thread of its own, reconnecting until the process ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::Commands;

use super::audit::renumbered;
use super::change::{decode_audit, decode_writes, Tree, Write};
use super::replica::{Names, SharedKeys, HEAD};
use super::{BudgetRecord, KeyStore, StoreError};
use crate::meter::{spent_name, Meter, Spend};
use crate::redis_link::ClusterError;

/// How long one stream read blocks when nothing changes: also how often the follower confirms that Redis
/// answers.
const READ_BLOCK_MS: usize = 1000;
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Changes read per stream read, and entries per page when copying a whole hash.
const BATCH: usize = 512;
/// Where the copy's position is kept, in the store's `meta` tree.
const COPY_EPOCH: &[u8] = b"copy_epoch";
const COPY_SEQ: &[u8] = b"copy_seq";

/// Where a copy is in the shared store's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Position {
    pub(super) epoch: Option<Vec<u8>>,
    pub(super) seq: u64,
}

/// Starts the follower thread of `store` (a replica's copy).
pub fn follow(store: KeyStore, meter: Arc<Meter>) -> Result<(), StoreError> {
    let shared = store.shared.clone().ok_or_else(not_a_copy)?;
    let redis = Arc::clone(&shared.redis);
    let started = redis.spawn_reader("redis-follower", move |_| follow_once(&store, &shared, &meter));
    started.map_err(|err| StoreError::Io(sled::Error::Io(err)))
}

/// Fills `store` (an empty copy, not followed) with the whole shared store once, each key's spend entry
/// with what metering added in its current period folded in: for `keys export`.
pub fn copy_once(store: &KeyStore) -> Result<(), StoreError> {
    let shared = store.shared.clone().ok_or_else(not_a_copy)?;
    let mut connection = shared.redis.connect(READ_TIMEOUT)?;
    let epoch: Option<Vec<u8>> = connection.get(Names::epoch()).map_err(ClusterError::from)?;
    copy_all(&mut connection, store, None, epoch)?;
    for entry in store.keys.iter().keys() {
        let Ok(hash) = <[u8; 32]>::try_from(&entry?[..]) else { continue };
        let sums: Vec<(u64, f64)> = connection.hgetall(spent_name(&hash)).map_err(ClusterError::from)?;
        let base = store.spend.get(hash)?.map(|bytes| Spend::decode(&bytes));
        let period = base.and_then(|base| base.reset_at_ms).unwrap_or(0);
        // The base's period if metering added to it, else the latest period metering added to.
        let latest = sums.iter().find(|(at, _)| *at == period).or_else(|| sums.iter().max_by_key(|(at, _)| *at));
        let Some(&(at, added)) = latest.filter(|(_, added)| added.is_finite()) else { continue };
        let mut spend = base.filter(|_| at == period).unwrap_or_default();
        spend.dollars = (spend.dollars + added).min(crate::config::MAX_DOLLARS);
        spend.reset_at_ms = (at != 0).then_some(at);
        spend.period = spend.period.or(base.and_then(|base| base.period));
        store.spend.insert(hash, spend.encode())?;
    }
    Ok(())
}

/// The store is a gateway's own, not a replica's copy of a shared store.
fn not_a_copy() -> StoreError {
    StoreError::Shared(ClusterError::Protocol("this key store is not a copy of a shared store".into()))
}

/// Follows the stream on one connection until it fails.
fn follow_once(store: &KeyStore, shared: &SharedKeys, meter: &Meter) -> Result<(), ClusterError> {
    let mut connection = shared.redis.connect(READ_TIMEOUT)?;
    shared.redis.report_durability_once();
    let mut position = store.copy_position().map_err(store_failure)?;
    shared.copy_of(position.epoch.clone());
    shared.applied(position.seq);
    let options = StreamReadOptions::default().count(BATCH).block(READ_BLOCK_MS);
    // Set when the copy must be made whole again (a gap in the stream, a damaged change).
    let mut recopy = false;
    loop {
        let (epoch, head) = store_head(&mut connection)?;
        shared.redis.heard();
        if epoch.is_none() && position.epoch.is_some() {
            // Redis holds nothing while this copy was of a store: it was emptied, or replaced by an empty
            // one. The copies may be all that is left of the keys: never wipe one for that. Keep serving it,
            // refuse changes (a change would start a new, empty store) and say how to restore.
            shared.emptied(true);
            shared.redis.caught_up();
            std::thread::sleep(Duration::from_millis(READ_BLOCK_MS as u64));
            continue;
        }
        shared.emptied(false);
        if recopy || epoch != position.epoch || position.seq > head {
            position = copy_all(&mut connection, store, Some(meter), epoch)?;
            shared.copy_of(position.epoch.clone());
            shared.applied(position.seq);
            recopy = false;
        }
        if position.seq >= head {
            shared.redis.caught_up();
        }
        // After every entry numbered `position.seq` (ours end in -1; anything else there is not a change).
        let from = format!("{}-{}", position.seq, u64::MAX);
        let reply: Option<StreamReadReply> = connection.xread_options(&[Names::stream()], &[from], &options)?;
        shared.redis.heard();
        let entries: Vec<_> = reply.into_iter().flat_map(|reply| reply.keys).flat_map(|key| key.ids).collect();
        let read = entries.len();
        for entry in entries {
            let seq = entry.id.split_once('-').and_then(|(seq, _)| seq.parse::<u64>().ok());
            let field = |name: &str| match entry.map.get(name) {
                Some(redis::Value::BulkString(bytes)) => Some(bytes.as_slice()),
                _ => None,
            };
            let writes = field("writes").and_then(decode_writes);
            let audit = field("audit").and_then(decode_audit);
            let (true, Some(writes), Some(audit)) = (seq == Some(position.seq + 1), writes, audit) else {
                // A gap (the stream was trimmed past this copy) or a damaged change: copy everything again.
                log::warn!(
                    "the change stream does not continue this replica's copy at change {}; copying the whole store",
                    position.seq + 1
                );
                recopy = true;
                break;
            };
            position.seq += 1;
            store.apply_copied(&writes, &audit, &position).map_err(store_failure)?;
            tell_meter(meter, &writes);
            shared.applied(position.seq);
        }
        // Fewer than a batch: the stream had nothing more when it was read.
        if !recopy && read < BATCH {
            shared.redis.caught_up();
        }
    }
}

/// Copies the whole shared store into `store` and returns the position it is at. Changes made during the
/// copy are applied again from the stream afterwards; each write sets a value, so that converges.
fn copy_all(
    connection: &mut redis::Connection,
    store: &KeyStore,
    meter: Option<&Meter>,
    epoch: Option<Vec<u8>>,
) -> Result<Position, ClusterError> {
    let (_, head) = store_head(connection)?;
    // Raised however the copy ends: a failure half way may have written some grants already.
    let _raise = store.grants_version.raised_on_exit();
    // Grants last: a key becomes usable here only once its budget and spend are in the copy.
    for tree in [
        Tree::Budgets,
        Tree::Spend,
        Tree::Entities,
        Tree::Aliases,
        Tree::Keys,
        Tree::Grants,
        Tree::Models,
        Tree::EndUsers,
    ] {
        let mut seen = HashSet::new();
        scan(connection, &Names::tree(tree), |field, value| {
            store.tree(tree).insert(field.as_slice(), value.as_slice()).map_err(sled_failure)?;
            seen.insert(field);
            Ok(())
        })?;
        for stale in store.tree(tree).iter().keys() {
            let stale = stale.map_err(sled_failure)?;
            if !seen.contains(&stale[..]) {
                store.tree(tree).remove(stale).map_err(sled_failure)?;
            }
        }
    }
    store.audit.clear().map_err(sled_failure)?;
    scan(connection, &Names::audit(), |field, payload| {
        let seq = std::str::from_utf8(&field).ok().and_then(|seq| seq.parse::<u64>().ok());
        let entries = decode_audit(&payload);
        let (Some(seq), Some(entries)) = (seq, entries) else { return Ok(()) };
        for (index, entry) in entries.into_iter().enumerate() {
            let id = audit_id(seq, index);
            store.audit.insert(id.to_be_bytes(), renumbered(entry, id)).map_err(sled_failure)?;
        }
        Ok(())
    })?;
    store.owners.rebuild(&store.keys).map_err(store_failure)?;
    store.end_user_view.rebuild(&store.end_users).map_err(store_failure)?;
    let position = Position { epoch, seq: head };
    store.set_copy_position(&position).map_err(store_failure)?;
    if let Some(meter) = meter {
        for budget in store.budgets().map_err(store_failure)? {
            meter.set_budget(&budget.budget_id, Some(budget.limits));
        }
        // Spend entries may have changed under the counters in memory: read them again.
        meter.reload_spend();
    }
    log::info!("copied the shared key store from Redis (at change {})", position.seq);
    Ok(position)
}

/// A field of a Redis hash and its value.
type Entry = (Vec<u8>, Vec<u8>);

/// The shared store's epoch and last change number.
fn store_head(connection: &mut redis::Connection) -> Result<(Option<Vec<u8>>, u64), ClusterError> {
    let head = redis::Script::new(HEAD);
    Ok(head.key(Names::epoch()).key(Names::seq()).key(Names::stream()).invoke(connection)?)
}

/// Reads a whole Redis hash, a page at a time.
fn scan(
    connection: &mut redis::Connection,
    hash: &str,
    mut each: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), ClusterError>,
) -> Result<(), ClusterError> {
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<Entry>) =
            redis::cmd("HSCAN").arg(hash).arg(cursor).arg("COUNT").arg(BATCH).query(connection)?;
        for (field, value) in page {
            each(field, value)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The audit id of the `index`th entry of change `seq`: ordered like the changes, the same on every replica,
/// and below 2^53 (exact in JSON readers) for 2^33 changes. One change has at most 2^20 entries (a delete is
/// bounded by the request size).
fn audit_id(seq: u64, index: usize) -> u64 {
    (seq << 20) | (index as u64 & 0xf_ffff)
}

/// Budgets and spend set by an admin on another replica reach this replica's meter, and so do deleted and
/// regenerated keys (their answers still in flight count to the successor, or not at all).
fn tell_meter(meter: &Meter, writes: &[Write]) {
    let key_of = |write: &Write| <[u8; 32]>::try_from(write.key.as_slice()).ok();
    for write in writes {
        match (write.tree, &write.value) {
            (Tree::Budgets, value) => {
                let id = String::from_utf8_lossy(&write.key);
                let budget = value.as_deref().and_then(|value| serde_json::from_slice::<BudgetRecord>(value).ok());
                meter.set_budget(&id, budget.map(|budget| budget.limits));
            }
            // A deleted end user's spend goes with it here too (an id used again starts from zero).
            (Tree::EndUsers, None) => {
                let id = String::from_utf8_lossy(&write.key);
                let account = crate::meter::Level::EndUser.account(&id);
                meter.retire(&account, None, std::time::SystemTime::now());
                meter.remember_spend(&account, None);
            }
            // A level's spend entry deleted (a team, user, organization or membership gone): its account
            // goes here too. A key's goes with its record, below (a regenerated key's moves to its successor).
            (Tree::Spend, None) if !writes.iter().any(|other| other.tree == Tree::Keys && other.key == write.key) => {
                if let Some(account) = key_of(write) {
                    meter.retire(&account, None, std::time::SystemTime::now());
                    meter.remember_spend(&account, None);
                }
            }
            (Tree::Spend, Some(value)) => {
                if let Ok(key) = <[u8; 32]>::try_from(write.key.as_slice()) {
                    meter.remember_spend(&key, Some(Spend::decode(value)));
                }
            }
            _ => {}
        }
    }
    // After the spend entries: a regenerated key's spend written anew must not undo what the retire hands
    // its successor (answers of the old key counted after the spend was read).
    let added = writes.iter().filter(|write| write.tree == Tree::Keys && write.value.is_some()).find_map(key_of);
    for gone in writes.iter().filter(|write| write.tree == Tree::Keys && write.value.is_none()).filter_map(key_of) {
        meter.retire(&gone, added.filter(|added| *added != gone), std::time::SystemTime::now());
    }
}

fn sled_failure(err: sled::Error) -> ClusterError {
    store_failure(err.into())
}

fn store_failure(err: StoreError) -> ClusterError {
    ClusterError::Protocol(format!("this replica's copy of the key store failed: {err}"))
}

impl KeyStore {
    pub(super) fn copy_position(&self) -> Result<Position, StoreError> {
        let epoch = self.meta.get(COPY_EPOCH)?.map(|epoch| epoch.to_vec());
        let seq = self.meta.get(COPY_SEQ)?.and_then(|seq| seq.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes);
        Ok(Position { epoch, seq })
    }

    fn set_copy_position(&self, position: &Position) -> Result<(), StoreError> {
        match &position.epoch {
            Some(epoch) => self.meta.insert(COPY_EPOCH, epoch.as_slice())?,
            None => self.meta.remove(COPY_EPOCH)?,
        };
        self.meta.insert(COPY_SEQ, &position.seq.to_be_bytes())?;
        Ok(())
    }

    /// Applies one change from the stream, with the copy's new position, in one transaction.
    fn apply_copied(&self, writes: &[Write], audit: &[&[u8]], position: &Position) -> Result<(), StoreError> {
        let mut owners = self.owners.write();
        let outcome = self.transact::<()>(|trees| {
            trees.write_all(writes)?;
            for (index, entry) in audit.iter().enumerate() {
                let id = audit_id(position.seq, index);
                trees.audit.insert(&id.to_be_bytes(), renumbered(entry, id))?;
            }
            trees.meta.insert(COPY_SEQ, &position.seq.to_be_bytes())?;
            Ok(())
        })?;
        // The body never aborts.
        outcome.unwrap_or_default();
        self.grants_version.raise_for(writes);
        owners.apply(writes);
        self.end_user_view.apply(writes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_ids_follow_the_change_order() {
        assert!(audit_id(7, 3) < audit_id(8, 0));
        assert_eq!(audit_id(1, 0), 1 << 20);
    }
}
