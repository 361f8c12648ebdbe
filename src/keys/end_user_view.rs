//! End users as the hot path reads them: an immutable snapshot in memory (id → record), swapped whole when a
//! change to them is applied to this store (the registry's own, or a replica's follower applying another
//! replica's), so a request naming a `user` reads no sled and decodes no JSON. Blocking an end user or
//! changing its budget is seen by the next request here, and on replicas once their copy applies it.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::change::{Tree, Write};
use super::{EndUserRecord, StoreError};
use crate::meter::Level;

/// id → the record and its meter account (`Level::EndUser.account(id)`, worked out once per change, not per
/// request).
type Snapshot = HashMap<Box<str>, (Arc<EndUserRecord>, [u8; 32])>;

fn metered(id: &str, record: EndUserRecord) -> (Arc<EndUserRecord>, [u8; 32]) {
    (Arc::new(record), Level::EndUser.account(id))
}

/// The snapshot; every clone of the store shares it.
#[derive(Default)]
pub(super) struct EndUserView {
    snapshot: ArcSwap<Snapshot>,
}

impl EndUserView {
    /// The end user `id`, if one was created: one atomic load and one map lookup, no allocation.
    pub(super) fn find(&self, id: &str) -> Option<Arc<EndUserRecord>> {
        self.snapshot.load().get(id).map(|(record, _)| Arc::clone(record))
    }

    /// [`EndUserView::find`], with the end user's meter account.
    pub(super) fn find_metered(&self, id: &str) -> Option<(Arc<EndUserRecord>, [u8; 32])> {
        self.snapshot.load().get(id).cloned()
    }

    /// Follows a change's writes to the end-user tree. Callers apply changes one at a time (under the owner
    /// index's write lock), so no swap is lost. Copies the map once per change that touches end users:
    /// those are admin calls, rare beside the requests that read it.
    pub(super) fn apply(&self, writes: &[Write]) {
        let mut changed = writes.iter().filter(|write| write.tree == Tree::EndUsers).peekable();
        if changed.peek().is_none() {
            return;
        }
        let mut next = Snapshot::clone(&self.snapshot.load());
        for write in changed {
            let Ok(id) = std::str::from_utf8(&write.key) else { continue };
            match write.value.as_deref().map(serde_json::from_slice::<EndUserRecord>) {
                Some(Ok(record)) => {
                    next.insert(id.into(), metered(id, record));
                }
                Some(Err(err)) => {
                    log::warn!("an end-user record written to the store is unreadable, left out: {err}");
                    next.remove(id);
                }
                None => {
                    next.remove(id);
                }
            }
        }
        self.snapshot.store(Arc::new(next));
    }

    /// Builds the snapshot again from the end-user tree (at open, after a whole copy from Redis).
    pub(super) fn rebuild(&self, tree: &sled::Tree) -> Result<(), StoreError> {
        let mut next = Snapshot::new();
        for entry in tree.iter() {
            let (id, bytes) = entry?;
            let Ok(id) = std::str::from_utf8(&id) else { continue };
            next.insert(id.into(), metered(id, serde_json::from_slice(&bytes)?));
        }
        self.snapshot.store(Arc::new(next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyStore;

    fn put(id: &str, blocked: bool) -> Write {
        let record = serde_json::json!({
            "user_id": id, "alias": null, "blocked": blocked, "models": [], "allowed_model_region": null,
            "default_model": null, "budget_id": null, "limits": {}, "created_at": "", "updated_at": ""
        });
        Write { tree: Tree::EndUsers, key: id.as_bytes().to_vec(), value: Some(record.to_string().into_bytes()) }
    }

    /// #21 item 3: a request reads the end user from memory (the same record each time, never decoded
    /// again), and a block is seen by the next read.
    #[test]
    fn end_users_are_read_from_the_snapshot_and_follow_each_applied_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let mut change = super::super::change::Change::new();
        change.writes.push(put("ann", false));
        store.apply(&change).unwrap().unwrap();
        let (first, again) = (store.end_user_view.find("ann").unwrap(), store.end_user_view.find("ann").unwrap());
        assert!(Arc::ptr_eq(&first, &again), "one record in memory, not one decoded per request");
        assert!(!first.blocked);

        let mut change = super::super::change::Change::new();
        change.writes.push(put("ann", true));
        store.apply(&change).unwrap().unwrap();
        assert!(store.end_user_view.find("ann").unwrap().blocked, "the block is seen at once");
        assert!(!first.blocked, "a request holding the old snapshot finishes with it");

        let mut change = super::super::change::Change::new();
        change.writes.push(Write { tree: Tree::EndUsers, key: b"ann".to_vec(), value: None });
        store.apply(&change).unwrap().unwrap();
        assert!(store.end_user_view.find("ann").is_none());

        // Written before a restart: built again at open.
        let mut change = super::super::change::Change::new();
        change.writes.push(put("bo", false));
        store.apply(&change).unwrap().unwrap();
        drop(store);
        let store = KeyStore::open(dir.path()).unwrap();
        assert!(store.end_user_view.find("bo").is_some());
    }
}
