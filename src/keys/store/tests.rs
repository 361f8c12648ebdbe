//! The sled store's writes: grants beside records, compare-and-set, and the upgrade of old stores.
use super::*;
use crate::keys::KeyChanges;
use std::time::SystemTime;

fn record(token: &str, blocked: bool) -> KeyRecord {
    let changes = KeyChanges { blocked: Some(blocked), ..KeyChanges::default() };
    KeyRecord::new(token.into(), "sk-...abcd".into(), changes, SystemTime::now()).unwrap()
}

#[test]
fn every_write_keeps_the_grant_beside_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path()).unwrap();
    let (a, b) = (KeyHash::of("sk-a"), KeyHash::of("sk-b"));
    store.insert(&a, &record("a", false), None, &AuditEntry::new("generate")).unwrap().unwrap();
    assert!(!store.grant(&a).unwrap().unwrap().blocked);
    let read = |hash: &KeyHash| store.get_versioned(hash).unwrap().unwrap().1;
    let stale = read(&a);
    store.replace(&a, None, &a, &record("a", true), None, &AuditEntry::new("update"), &stale).unwrap().unwrap();
    assert!(store.grant(&a).unwrap().unwrap().blocked);
    let refused = store.replace(&a, None, &a, &record("a", false), None, &AuditEntry::new("update"), &stale);
    assert_eq!(refused.unwrap(), Err(Conflict::ChangedMeanwhile), "computed from what another change replaced");
    assert!(store.grant(&a).unwrap().unwrap().blocked, "the block stands");
    let regenerate = AuditEntry::new("regenerate");
    store.replace(&a, None, &b, &record("b", false), None, &regenerate, &read(&a)).unwrap().unwrap();
    assert!(store.grant(&a).unwrap().is_none(), "a regenerated key's old grant is gone");
    assert!(store.grant(&b).unwrap().is_some());
    let gone = Doomed { hash: b, alias: None, read: read(&b).to_vec() };
    store.delete(&[gone], &[AuditEntry::new("delete")]).unwrap().unwrap();
    assert!(store.grant(&b).unwrap().is_none());
}

#[test]
fn a_store_from_before_grants_gets_them_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let hash = KeyHash::of("sk-old");
    {
        let store = KeyStore::open(dir.path()).unwrap();
        store.keys.insert(hash.as_bytes(), serde_json::to_vec(&record("old", true)).unwrap()).unwrap();
        store.db.open_tree(META_TREE).unwrap().remove(GRANTS_COMPLETE).unwrap();
        store.flush().unwrap();
        assert!(store.grant(&hash).unwrap().is_none());
    }
    let store = KeyStore::open(dir.path()).unwrap();
    assert!(store.grant(&hash).unwrap().unwrap().blocked);
}
