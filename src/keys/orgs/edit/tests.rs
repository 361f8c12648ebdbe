//! The cost of an owner change: its own keys, not every key of the store (#21 item 1).

use std::time::{Instant, SystemTime};

use super::*;
use crate::keys::{KeyChanges, KeyRecord};

fn team_key(team: &str, n: usize) -> (KeyHash, KeyRecord) {
    let token = format!("{n:064x}");
    let changes = KeyChanges { team_id: Some(Some(team.to_owned())), ..KeyChanges::default() };
    (KeyHash::of(&token), KeyRecord::new(token, "sk-...".into(), changes, SystemTime::now()).unwrap())
}

/// #21 item 1: a team change derives its own keys again, whatever the number of other teams' keys. The
/// figure printed (with 100,000 other keys) is the one reported: the change's key work against the scan of every key it replaced.
#[test]
fn a_team_change_settles_its_own_keys_not_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path()).unwrap();
    store.import((0..100_000).map(|n| team_key(&format!("other-{}", n % 1000), n))).unwrap();
    store.import((0..3).map(|n| team_key("t", 1_000_000 + n))).unwrap();
    let team: TeamRecord = serde_json::from_value(serde_json::json!({
        "team_id": "t", "metadata": {"tier": "paid"}, "created_at": "", "updated_at": ""
    }))
    .unwrap();
    store.entities.insert(TeamRecord::key_of("t"), serde_json::to_vec(&team).unwrap()).unwrap();

    let started = Instant::now();
    let owners = store.owners.read();
    let affected = in_hash_order(&TeamRecord::own_keys(&store, &owners, "t").unwrap());
    let mut change = Change::new();
    store.settle_keys(&mut change, &Fallout::default(), &affected).unwrap();
    let indexed = started.elapsed();
    drop(owners);
    assert_eq!(affected.len(), 3, "the team's keys, no other");
    let regranted = change.writes.iter().filter(|write| write.tree == Tree::Grants).count();
    assert_eq!(regranted, 3, "each of them gets the team's tier");

    // What the change cost before the index: every key read and decoded.
    let started = Instant::now();
    let scanned = store
        .keys
        .iter()
        .filter(|entry| serde_json::from_slice::<KeyRecord>(&entry.as_ref().unwrap().1).is_ok())
        .count();
    let scan = started.elapsed();
    // Printed, not asserted: a timing bound fails on a loaded machine; the counts above are the proof.
    eprintln!("team change with {scanned} keys in the store: {indexed:?} (a scan of every key: {scan:?})");
}
