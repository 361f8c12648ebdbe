//! The shared store misbehaving under running replicas: a key changed in Redis behind a replica's back is
//! not overwritten by a stale update (409); a damaged change in the stream makes the replicas copy the
//! store again instead of applying it; a Redis emptied under them never wipes their copies (keys keep
//! working, changes are refused) until the store is restored from a replica's copy.

mod common;

use std::time::Duration;

use common::redis::{admin, chat_status, shared_config, until_status, RedisServer, PROPAGATION};
use common::*;
use serde_json::json;

#[actix_rt::test]
async fn an_update_computed_from_a_stale_copy_is_refused_not_applied() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let gateway = Gateway::start(&shared_config(&upstream, &redis, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "blocked": true})).await;
    // Another writer changes the record in Redis; this replica's copy has not seen it.
    let changed = "EVAL \"local k = redis.call('HKEYS', 'tiergate:keys')[1]; redis.call('HSET', 'tiergate:keys', k, '{}'); return 1\" 0";
    assert_eq!(redis.command(changed), ":1");
    let (status, answer) =
        admin(&gateway, "/key/update", json!({"key": key, "metadata": {"tier": "free", "note": "x"}})).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("changed by another"), "{answer}");
    assert_eq!(chat_status(&gateway, &key).await, 401, "the key stays blocked");
    // A delete computed from the stale copy is refused too: the key it names is not what it read.
    let (status, answer) = admin(&gateway, "/key/delete", json!({"keys": [key]})).await;
    assert_eq!(status, 409, "{answer}");

    // A budget gone from Redis (this copy still has it) cannot be linked to.
    let budget = gateway.post("/budget/new", MASTER_KEY, &json!({"budget_id": "gone", "max_budget": 1})).await;
    assert_eq!(budget.status(), 200);
    assert_eq!(redis.command("HDEL tiergate:budgets gone"), ":1");
    let (status, answer) =
        admin(&gateway, "/key/generate", json!({"metadata": {"tier": "free"}, "budget_id": "gone"})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("gone"), "{answer}");
}

#[actix_rt::test]
async fn a_damaged_change_makes_replicas_copy_the_store_again() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint_on_tier("free").await;
    until_status(&b, &key, 200, PROPAGATION).await;
    // The next change number, with writes no replica can read.
    let seq: u64 = redis.command("INCR tiergate:seq").trim_start_matches(':').parse().unwrap();
    assert!(!redis.command(&format!("XADD tiergate:changes {seq}-1 writes garbage audit x")).starts_with('-'));
    let later = a.mint_on_tier("free").await;
    until_status(&b, &later, 200, Duration::from_secs(3)).await;
    assert_eq!(chat_status(&b, &key).await, 200);
    assert!(b.log().contains("copying the whole store"), "{}", b.log());

    // An entry that is not one of ours at the head's number: skipped, not copied for again and again.
    let seq: u64 = redis.command("INCR tiergate:seq").trim_start_matches(':').parse().unwrap();
    assert!(!redis.command(&format!("XADD tiergate:changes {seq}-2 writes garbage audit x")).starts_with('-'));
    let before = b.log().matches("copied the shared key store").count();
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let copies = b.log().matches("copied the shared key store").count() - before;
    assert!(copies <= 1, "{copies} copies in 2 s:\n{}", b.log());
    let last = a.mint_on_tier("free").await;
    until_status(&b, &last, 200, Duration::from_secs(3)).await;
}

#[actix_rt::test]
async fn an_emptied_redis_never_wipes_the_copies_and_is_restored_from_one() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, mut b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint(json!({"metadata": {"tier": "free"}, "key_alias": "survivor"})).await;
    until_status(&b, &key, 200, PROPAGATION).await;

    assert_eq!(redis.command("FLUSHALL"), "+OK");
    let start = std::time::Instant::now();
    loop {
        let (status, answer) = admin(&a, "/key/generate", json!({"metadata": {"tier": "free"}})).await;
        if status == 503 {
            assert!(answer["error"]["message"].as_str().unwrap().contains("lost its data"), "{answer}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "a change was accepted by an emptied Redis: {answer}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(chat_status(&a, &key).await, 200, "the copy still serves its keys");
    assert_eq!(chat_status(&b, &key).await, 200);
    assert!(a.log().contains("holds none of the shared key store"), "{}", a.log());

    // The restore the log describes: one replica stopped, its copy exported, imported into Redis.
    b.terminate();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("restore.jsonl");
    let copy = b.data_dir().join("redis-copy");
    for args in [
        vec!["export", "--data-dir", copy.to_str().unwrap(), "--out", file.to_str().unwrap()],
        vec!["import", file.to_str().unwrap(), "--redis-url", &redis.url()],
    ] {
        let output =
            std::process::Command::new(env!("CARGO_BIN_EXE_tiergate")).arg("keys").args(&args).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    b.restart();
    until_status(&b, &key, 200, Duration::from_secs(3)).await;
    let start = std::time::Instant::now();
    while admin(&a, "/key/generate", json!({"metadata": {"tier": "free"}, "key_alias": "after"})).await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(3), "changes never resumed after the restore");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(chat_status(&a, &key).await, 200, "the restored key works on the replica that kept running");
}

#[actix_rt::test]
async fn a_lost_change_counter_neither_replays_history_nor_half_writes_a_key() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint_on_tier("free").await;
    assert_eq!(admin(&a, "/key/block", json!({"key": key})).await.0, 200);
    until_status(&b, &key, 401, PROPAGATION).await;

    assert_eq!(redis.command("DEL tiergate:seq"), ":1");
    let (status, answer) = admin(&a, "/key/generate", json!({"metadata": {"tier": "free"}, "key_alias": "next"})).await;
    assert_eq!(status, 200, "{answer}");
    let next = answer["key"].as_str().unwrap().to_owned();
    until_status(&b, &next, 200, PROPAGATION).await;
    for _ in 0..20 {
        assert_eq!(chat_status(&b, &key).await, 401, "replaying old changes would unblock the key");
    }
    assert!(b.log().matches("copied the shared key store").count() <= 2, "{}", b.log());

    // A counter that is not a number: the change is refused whole, nothing half-written.
    assert_eq!(redis.command("SET tiergate:seq abc"), "+OK");
    let (status, _) = admin(&a, "/key/generate", json!({"metadata": {"tier": "free"}, "key_alias": "half"})).await;
    assert_eq!(status, 503);
    assert_eq!(redis.command("HEXISTS tiergate:aliases half"), ":0", "no alias without its change");
    // Nor one that is a number but not a change number (a fraction, or beyond what Lua counts exactly).
    for odd in ["3.5", "99999999999999999"] {
        assert_eq!(redis.command(&format!("SET tiergate:seq {odd}")), "+OK");
        let (status, _) = admin(&a, "/key/generate", json!({"metadata": {"tier": "free"}, "key_alias": "odd"})).await;
        assert_eq!(status, 503, "{odd}");
        assert_eq!(redis.command("HEXISTS tiergate:aliases odd"), ":0", "{odd}: no alias without its change");
    }
}

#[actix_rt::test]
async fn change_numbers_from_1e14_on_are_written_whole_and_reach_every_replica() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint_on_tier("free").await;
    until_status(&b, &key, 200, PROPAGATION).await;
    // The next change is number 1e14, which Lua would print as `1e+14`.
    assert_eq!(redis.command("SET tiergate:seq 99999999999999"), "+OK");
    let (status, answer) = admin(&a, "/key/generate", json!({"metadata": {"tier": "free"}, "key_alias": "big"})).await;
    assert_eq!(status, 200, "{answer}");
    let big = answer["key"].as_str().unwrap().to_owned();
    assert_eq!(redis.command("GET tiergate:seq"), "$15", "the counter is an integer");
    assert_eq!(redis.command("XLEN tiergate:changes"), ":2", "the change is in the stream");
    until_status(&b, &big, 200, Duration::from_secs(3)).await;
    until_status(&a, &big, 200, PROPAGATION).await;
}

#[test]
fn a_budget_deleted_on_one_replica_while_another_links_a_key_to_it_is_refused() {
    use std::sync::Arc;
    use tiergate::keys::{copy_once, AuditEntry, BudgetRecord, KeyChanges, KeyHash, KeyRecord, KeyStore, SharedKeys};
    let redis = RedisServer::start();
    let settings = tiergate::config::RedisSettings::from_url(&redis.url()).unwrap();
    let replica = |dir: &std::path::Path| {
        // Not followed: this copy stands still, like one that has not applied another replica's change yet.
        let link = tiergate::redis_link::Redis::new(&settings).unwrap();
        KeyStore::open_replica(dir, SharedKeys::new(Arc::clone(&link), false)).unwrap()
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica(dir_a.path());
    let now = tiergate::keys::timestamp(std::time::SystemTime::now());
    let budget =
        BudgetRecord { budget_id: "team".into(), limits: Default::default(), created_at: now.clone(), updated_at: now };
    a.write_budget("team", Some(&budget), None, &AuditEntry::new("budget_new")).unwrap().unwrap();
    let b = replica(dir_b.path());
    copy_once(&b).unwrap();
    let (_, read) = b.budget_versioned("team").unwrap().expect("b's copy has the budget");

    // a links a key to it; b's copy has not seen that and finds the budget unused.
    let changes = KeyChanges { budget_id: Some(Some("team".into())), ..KeyChanges::default() };
    let record =
        KeyRecord::new("sk-linked".into(), "sk-...nked".into(), changes, std::time::SystemTime::now()).unwrap();
    a.insert(&KeyHash::of("sk-linked"), &record, None, &AuditEntry::new("generate")).unwrap().unwrap();
    let deleted = b.delete_unlinked_budget("team", &read, &AuditEntry::new("budget_delete")).unwrap();
    assert!(deleted.is_err(), "the delete is checked against the link in Redis");
    assert_eq!(redis.command("HEXISTS tiergate:budgets team"), ":1", "the linked key keeps its budget");

    // With the link in its copy, b refuses for the reason a user can act on.
    copy_once(&b).unwrap();
    let refused = b.delete_unlinked_budget("team", &read, &AuditEntry::new("budget_delete")).unwrap();
    assert!(format!("{refused:?}").contains("BudgetInUse"), "{refused:?}");
}
