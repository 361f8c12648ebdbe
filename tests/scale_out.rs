//! Replicas sharing one real redis-server: keys minted, blocked, deleted and regenerated on one replica take
//! effect on the others within a second; an acknowledged key survives kill -9 of the replica and of Redis;
//! with Redis down, known keys are served for `redis_cache_ttl`, changes fail fast with 503 and readiness
//! turns unready, and everything recovers when Redis is back.

mod common;

use std::time::{Duration, Instant};

use common::redis::{admin, chat_status, readiness, shared_config, until_status, RedisServer, PROPAGATION};
use common::*;
use serde_json::json;

/// Runs `tiergate keys <args>`; what it printed on stderr (its report), once it succeeded.
fn tiergate_keys(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tiergate")).arg("keys").args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[actix_rt::test]
async fn a_key_change_on_one_replica_reaches_the_others_within_a_second() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));

    let key = a.mint(json!({"metadata": {"tier": "free"}, "key_alias": "shared"})).await;
    assert_eq!(chat_status(&a, &key).await, 200, "the minting replica reads its own write at once");
    until_status(&b, &key, 200, PROPAGATION).await;

    // Aliases are unique across replicas: the check runs in Redis, not in a replica's copy.
    let (status, answer) =
        admin(&b, "/key/generate", json!({"metadata": {"tier": "free"}, "key_alias": "shared"})).await;
    assert_eq!(status, 400, "{answer}");

    assert_eq!(admin(&a, "/key/block", json!({"key": key})).await.0, 200);
    until_status(&b, &key, 401, PROPAGATION).await;
    assert_eq!(admin(&b, "/key/unblock", json!({"key": key})).await.0, 200);
    until_status(&a, &key, 200, PROPAGATION).await;

    let (status, regenerated) = admin(&b, &format!("/key/{key}/regenerate"), json!({})).await;
    assert_eq!(status, 200, "{regenerated}");
    let fresh = regenerated["key"].as_str().unwrap().to_owned();
    until_status(&a, &key, 401, PROPAGATION).await;
    until_status(&a, &fresh, 200, PROPAGATION).await;
    let mut info =
        client().get(format!("{}/key/info?key={fresh}", a.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    assert_eq!(json_of(&mut info).await["info"]["key_alias"], "shared", "the alias moved with the key");

    assert_eq!(admin(&a, "/key/delete", json!({"keys": [fresh]})).await.0, 200);
    until_status(&b, &fresh, 401, PROPAGATION).await;

    // Every replica shows the same audit trail, in the same order.
    let trail = |gateway: &Gateway| {
        let url = format!("{}/audit", gateway.url);
        async move {
            let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
            let body = json_of(&mut response).await;
            body["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["id"].clone(), e["action"].clone()))
                .collect::<Vec<_>>()
        }
    };
    let on_a = trail(&a).await;
    assert!(on_a.len() >= 5, "{on_a:?}");
    assert_eq!(on_a, trail(&b).await);
    let stored: u64 = redis.command("HLEN tiergate:keys").trim_start_matches(':').parse().unwrap();
    assert_eq!(stored, 0, "every key minted here was deleted, in Redis too");
    assert!(redis.command("HLEN tiergate:aliases") == ":0", "and its alias");
}

/// #22: every worker of a replica keeps the grants it decoded while no grant changes. A change copied from
/// Redis must reach all of them: each request below comes on a new connection, which actix-server hands to
/// the replica's two workers in turn (its round robin; not observable from here), so both have served (and
/// kept) the key before it is blocked. Red without the raise on copied changes.
#[actix_rt::test]
async fn a_change_from_another_replica_reaches_every_worker_that_kept_the_grant() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint(json!({"metadata": {"tier": "free"}})).await;
    until_status(&b, &key, 200, PROPAGATION).await;
    for _ in 0..4 {
        assert_eq!(chat_status(&b, &key).await, 200);
    }
    assert_eq!(admin(&a, "/key/block", json!({"key": key})).await.0, 200);
    until_status(&b, &key, 401, PROPAGATION).await;
    for _ in 0..4 {
        assert_eq!(chat_status(&b, &key).await, 401, "no worker serves the grant it kept");
    }
    assert_eq!(admin(&a, "/key/unblock", json!({"key": key})).await.0, 200);
    until_status(&b, &key, 200, PROPAGATION).await;
    for _ in 0..4 {
        assert_eq!(chat_status(&b, &key).await, 200, "nor the block it kept");
    }
}

/// #22, found by a hostile pass: a whole copy of the shared store that fails half way (here the models hash
/// is not a hash) has already written the grants it copied; the replica's workers must read them, not keep
/// serving the grants they decoded before. The store is replaced while the replica is stopped, with its key
/// blocked; the copy then fails on every try.
#[actix_rt::test]
async fn grants_written_by_a_whole_copy_that_fails_half_way_are_served() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let replica = Gateway::start(&shared_config(&upstream, &redis, ""));
    let key = replica.mint(json!({"metadata": {"tier": "free"}})).await;
    for _ in 0..4 {
        assert_eq!(chat_status(&replica, &key).await, 200, "every worker serves (and keeps) the key's grant");
    }
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("keys.jsonl");
    tiergate_keys(&["export", "--redis-url", &redis.url(), "--out", dump.to_str().unwrap()]);
    let exported = std::fs::read_to_string(&dump).unwrap();
    let blocked = exported.replace("\"blocked\":false", "\"blocked\":true");
    assert_ne!(blocked, exported, "the export names the key's block: {exported}");
    std::fs::write(&dump, blocked).unwrap();

    let signal = |signal: &str| {
        let status = std::process::Command::new("kill").args([signal, &replica.pid().to_string()]).status().unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    redis.command("FLUSHALL");
    tiergate_keys(&["import", dump.to_str().unwrap(), "--redis-url", &redis.url()]);
    redis.command("SET tiergate:models not-a-hash");
    signal("-CONT");
    until_status(&replica, &key, 401, PROPAGATION * 3).await;
    for _ in 0..4 {
        assert_eq!(chat_status(&replica, &key).await, 401, "no worker serves the grant it kept");
    }
}

#[actix_rt::test]
async fn an_acknowledged_key_survives_kill_9_of_the_replica_and_of_redis() {
    let (upstream, mut redis) = (FakeUpstream::start("u"), RedisServer::start());
    let mut gateway = Gateway::start(&shared_config(&upstream, &redis, ""));
    let key = gateway.mint_on_tier("free").await;
    redis.kill9();
    gateway.kill9();
    redis.start_again();
    gateway.restart();
    until_status(&gateway, &key, 200, Duration::from_secs(5)).await;
    // Not just the replica's own copy: a new replica with an empty data dir gets the key from Redis.
    let fresh = Gateway::start(&shared_config(&upstream, &redis, ""));
    until_status(&fresh, &key, 200, Duration::from_secs(3)).await;
    let log = gateway.log();
    assert!(log.contains("fsyncs every write"), "the start-up check saw appendfsync always:\n{log}");
}

#[actix_rt::test]
async fn with_redis_down_known_keys_are_served_for_the_cache_ttl_and_changes_fail_fast() {
    let (upstream, mut redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "  redis_cache_ttl: 5\n");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint_on_tier("free").await;
    let (s, blocked) = admin(&a, "/key/generate", json!({"metadata": {"tier": "free"}, "blocked": true})).await;
    assert_eq!(s, 200, "{}", a.log());
    let blocked = blocked["key"].as_str().unwrap().to_owned();
    until_status(&b, &key, 200, PROPAGATION).await;
    until_status(&b, &blocked, 401, PROPAGATION).await;
    let limited = a.mint(json!({"metadata": {"tier": "free"}, "rpm_limit": 2})).await;
    until_status(&b, &limited, 200, PROPAGATION).await;
    assert_eq!(readiness(&b).await, 200);

    redis.kill9();
    assert_eq!(chat_status(&b, &key).await, 200, "a known key is served from the replica's copy");
    assert_eq!(chat_status(&b, &blocked).await, 401, "a blocked key stays blocked");
    // Limits fall back to this replica's own count: the window in Redis is out of reach.
    let local: Vec<u16> =
        [chat_status(&b, &limited).await, chat_status(&b, &limited).await, chat_status(&b, &limited).await].into();
    assert_eq!(local, [200, 200, 429]);
    let start = Instant::now();
    let (mut status, mut answer) = admin(&b, "/key/generate", json!({"metadata": {"tier": "free"}})).await;
    while status != 503 && start.elapsed() < Duration::from_secs(5) {
        (status, answer) = admin(&b, "/key/generate", json!({"metadata": {"tier": "free"}})).await;
    }
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("Redis"), "{answer}");
    let fast = Instant::now();
    assert_eq!(admin(&b, "/key/block", json!({"key": key})).await.0, 503);
    assert!(fast.elapsed() < Duration::from_millis(500), "a change fails fast once Redis is known down");
    assert!(!b.log().contains(&key), "no plaintext key in the log");
    // Redis is known down, but the copy is within its TTL: still ready (degraded), so a load balancer keeps
    // the fleet while the copies serve; /health and /metrics say so.
    let ready = |path: &'static str| {
        let url = format!("{}{path}", b.url);
        async move {
            let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
            let status = response.status().as_u16();
            (status, String::from_utf8_lossy(&response.body().await.unwrap()).into_owned())
        }
    };
    let (status, body) = ready("/health/readiness").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"degraded\"") && body.contains("\"shared_store\":\"degraded\""), "{body}");
    assert!(ready("/health").await.1.contains("\"shared_store\":\"degraded\""));
    assert!(ready("/metrics").await.1.contains("tiergate_shared_store_state 1"));
    assert_eq!(chat_status(&b, &key).await, 200);
    // Past the cache TTL, keys can no longer be vouched for, and the replica is unready.
    until_status(&b, &key, 503, Duration::from_secs(8)).await;
    assert_eq!(readiness(&b).await, 503);
    assert!(ready("/metrics").await.1.contains("tiergate_shared_store_state 2"));
    assert_eq!(chat_status(&b, MASTER_KEY).await, 200, "the master key needs no shared store");

    redis.start_again();
    until_status(&b, &key, 200, Duration::from_secs(5)).await;
    let back = Instant::now();
    loop {
        let (status, body) = ready("/health/readiness").await;
        if status == 200 && body.contains("\"status\":\"healthy\"") {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(5), "readiness never recovered: {body}");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready("/metrics").await.1.contains("tiergate_shared_store_state 0"));
    let (s, minted) = admin(&b, "/key/generate", json!({"metadata": {"tier": "free"}})).await;
    assert_eq!(s, 200, "{}", b.log());
    let minted = minted["key"].as_str().unwrap().to_owned();
    until_status(&a, &minted, 200, Duration::from_secs(3)).await;
}

#[actix_rt::test]
async fn a_single_node_store_moves_into_redis_and_back_while_replicas_run() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let single = config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]);
    let mut source = Gateway::start(&single);
    assert_eq!(
        source.post("/budget/new", MASTER_KEY, &json!({"budget_id": "starter", "max_budget": 9})).await.status(),
        200
    );
    let key = source.mint(json!({"metadata": {"tier": "free"}, "key_alias": "moved", "budget_id": "starter"})).await;
    source.terminate();
    let dir = tempfile::tempdir().unwrap();
    let (file, back) = (dir.path().join("single.jsonl"), dir.path().join("shared.jsonl"));
    let data_dir = source.data_dir().to_str().unwrap().to_owned();
    tiergate_keys(&["export", "--data-dir", &data_dir, "--out", file.to_str().unwrap()]);

    let replica = Gateway::start(&shared_config(&upstream, &redis, ""));
    let imported = tiergate_keys(&["import", file.to_str().unwrap(), "--redis-url", &redis.url()]);
    assert!(imported.contains("imported 1 keys and 1 budgets"), "{imported}");
    until_status(&replica, &key, 200, PROPAGATION).await;
    let again = tiergate_keys(&["import", file.to_str().unwrap(), "--redis-url", &redis.url()]);
    assert!(again.contains("2 already there, skipped"), "{again}");

    tiergate_keys(&["export", "--redis-url", &redis.url(), "--out", back.to_str().unwrap()]);
    let (there, home) = (std::fs::read_to_string(&file).unwrap(), std::fs::read_to_string(&back).unwrap());
    assert_eq!(home.lines().count(), 2, "{home}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&back).unwrap().permissions().mode() & 0o777, 0o600, "an export is the owner's only");
    assert!(home.contains("\"moved\"") && home.contains("\"starter\"") && !home.contains(&key), "{home}");
    assert_eq!(there.lines().count(), home.lines().count());
}

/// A store whose keys belong to a team and to a user moves into Redis whole: the import reads each owner it
/// has just written (before, its scratch copy never saw its own writes: a team's key was refused for a
/// missing team, a user's skipped as "already there"; found by a hostile pass).
#[actix_rt::test]
async fn a_store_with_team_and_user_keys_moves_into_redis_with_every_key() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let single = config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]);
    let mut source = Gateway::start(&single);
    let team = json!({"team_id": "t1", "metadata": {"tier": "free"}});
    assert_eq!(source.post("/team/new", MASTER_KEY, &team).await.status(), 200);
    let team_key = source.mint(json!({"team_id": "t1"})).await;
    let mut user = source.post("/user/new", MASTER_KEY, &json!({"user_id": "ana", "metadata": {"tier": "free"}})).await;
    let user = json_of(&mut user).await;
    let user_key = user["key"].as_str().unwrap_or_else(|| panic!("{user}")).to_owned();
    source.terminate();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("single.jsonl");
    tiergate_keys(&["export", "--data-dir", source.data_dir().to_str().unwrap(), "--out", file.to_str().unwrap()]);
    let imported = tiergate_keys(&["import", file.to_str().unwrap(), "--redis-url", &redis.url()]);
    assert!(imported.contains("imported 2 keys"), "{imported}");
    let replica = Gateway::start(&shared_config(&upstream, &redis, ""));
    until_status(&replica, &team_key, 200, PROPAGATION).await;
    until_status(&replica, &user_key, 200, PROPAGATION).await;
}

#[actix_rt::test]
async fn litellm_style_redis_settings_work_and_the_password_is_never_shown() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::with_password("pw-very-secret-1"));
    let base = config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]);
    let router = |password: &str| {
        format!(
            "{base}router_settings:\n  redis_host: 127.0.0.1\n  redis_port: {}\n  redis_password: {password}\n",
            redis.port
        )
    };
    let gateway = Gateway::start_with_env(&router("os.environ/REDIS_PW"), &[("REDIS_PW", "pw-very-secret-1")]);
    let key = gateway.mint_on_tier("free").await;
    assert_eq!(chat_status(&gateway, &key).await, 200);
    assert!(redis.command("HLEN tiergate:keys").starts_with("-NOAUTH"), "the server really requires the password");

    let wrong = Gateway::start(&router("pw-wrong-guess-2"));
    let (status, answer) = admin(&wrong, "/key/generate", json!({"metadata": {"tier": "free"}})).await;
    assert_eq!(status, 503, "{answer}");
    let log = format!("{}{}", gateway.log(), wrong.log());
    assert!(!log.contains("pw-very-secret-1") && !log.contains("pw-wrong-guess-2"), "{log}");
    assert!(!answer.to_string().contains("pw-wrong-guess-2"), "{answer}");
    assert_eq!(readiness(&wrong).await, 503, "a Redis that refuses the password is not ready");
    assert!(wrong.log().contains("refused the password"), "{}", wrong.log());
    assert!(wrong.log().matches("ERROR").count() < 5, "one failure, not a flood:\n{}", wrong.log());
}

#[actix_rt::test]
async fn a_replica_without_the_password_logs_the_refusal_once_not_a_flood() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::with_password("pw-very-secret-1"));
    let gateway = Gateway::start(&shared_config(&upstream, &redis, ""));
    // The follower retries several times a second; a mutation and readiness probes add their own calls.
    let (status, _) = admin(&gateway, "/key/generate", json!({"metadata": {"tier": "free"}})).await;
    assert_eq!(status, 503);
    for _ in 0..5 {
        assert_eq!(readiness(&gateway).await, 503);
        actix_rt::time::sleep(Duration::from_millis(400)).await;
    }
    let log = gateway.log();
    let refusals = log.lines().filter(|line| line.contains("NOAUTH") || line.contains("password")).count();
    assert!((1..=2).contains(&refusals), "{refusals} lines about the password in 2 s:\n{log}");
}
