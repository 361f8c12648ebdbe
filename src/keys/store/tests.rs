//! The sled store's writes: grants beside records, compare-and-set, and the upgrade of old stores.
use super::import::GRANTS_COMPLETE;
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

/// A record as every tiergate before #22 stored it: whole, every null and default written out.
const OLD_RECORD: &str = concat!(
    r#"{"token":"0b4e7a0e5fe84ad35fb5f95b9ceeac79e4d4b3a6e2a5d0f5f2e5ad2b8c2f3e4a","key_name":"sk-...abcd","#,
    r#""key_alias":"ci","metadata":{"tier":"paid"},"models":[],"aliases":{},"blocked":false,"duration":null,"#,
    r#""created_at":"2026-12-03T19:00:00.000Z","updated_at":"2026-12-03T19:00:00.000Z","expires":null,"#,
    r#""rpm_limit":null,"tpm_limit":null,"max_parallel_requests":null,"max_budget":null,"soft_budget":null,"#,
    r#""budget_duration":null,"model_rpm_limit":null,"model_tpm_limit":null,"budget_id":null,"team_id":null,"#,
    r#""user_id":null,"organization_id":null}"#
);

#[test]
fn a_store_written_before_compact_records_serves_and_updates_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let hash = KeyHash::of("sk-old");
    {
        // The old store, as earlier versions wrote it: sled without compression, the record whole, its grant
        // and its alias in their trees.
        let db = sled::Config::new().path(dir.path().join(DB_DIR)).open().unwrap();
        let old: KeyRecord = serde_json::from_str(OLD_RECORD).unwrap();
        db.open_tree(KEYS_TREE).unwrap().insert(hash.as_bytes(), OLD_RECORD.as_bytes()).unwrap();
        db.open_tree(GRANTS_TREE).unwrap().insert(hash.as_bytes(), Grant::of(&old).encode()).unwrap();
        db.open_tree(ALIASES_TREE).unwrap().insert(b"ci", &hash.as_bytes()[..]).unwrap();
        db.open_tree(META_TREE).unwrap().insert(GRANTS_COMPLETE, &[1]).unwrap();
        db.flush().unwrap();
    }
    let store = KeyStore::open(dir.path()).unwrap();
    let (old, read) = store.get_versioned(&hash).unwrap().unwrap();
    assert_eq!(serde_json::to_string(&old).unwrap(), OLD_RECORD, "every field reads back and shows as before");
    assert_eq!(store.grant(&hash).unwrap().unwrap().tier, Some(crate::tier::Tier::Paid));
    assert_eq!(store.hash_of_alias("ci").unwrap(), Some(hash));
    // An update computed from the old bytes goes through, and the record is rewritten compactly.
    let updated = KeyRecord { blocked: true, ..old };
    store.replace(&hash, Some("ci"), &hash, &updated, None, &AuditEntry::new("update"), &read).unwrap().unwrap();
    let stored = store.keys.get(hash.as_bytes()).unwrap().unwrap();
    assert!(stored.len() * 2 < OLD_RECORD.len(), "{} bytes stored: {}", stored.len(), String::from_utf8_lossy(&stored));
    assert_eq!(store.get(&hash).unwrap().unwrap(), updated);
    assert!(store.grant(&hash).unwrap().unwrap().blocked);
    assert_eq!(store.hash_of_alias("ci").unwrap(), Some(hash));
}
