//! Budgets and limits stack (issue 21, slice 2): a request is admitted only if every level it belongs to
//! admits it — its key, team, organization, user (personal keys), team membership and end user — and the
//! refusal names the level in LiteLLM's words; the answer's spend lands on each level once, each level's
//! budget resets by its own `budget_duration`, survives kill -9 and is shared by replicas through Redis.

mod common;

use std::time::{Duration, Instant};

use common::redis::{RedisServer, PROPAGATION};
use common::*;
use serde_json::{json, Value};

/// USD per token; the fake upstream reports 9 prompt and 3 completion tokens for every answer.
const INPUT_PRICE: f64 = 0.001;
const OUTPUT_PRICE: f64 = 0.002;
const ANSWER_COST: f64 = 9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE;

/// One priced free model group, `gpt-4`; `extra` goes on at the end (settings).
fn priced_config(upstream: &FakeUpstream, extra: &str) -> String {
    format!(
        "model_list:
  - model_name: gpt-4
    litellm_params:
      model: openai/fake
      api_key: k
      api_base: {url}
      input_cost_per_token: {INPUT_PRICE}
      output_cost_per_token: {OUTPUT_PRICE}
    model_info:
      tier: free
general_settings:
  master_key: {MASTER_KEY}
  default_key_tier: free
{extra}",
        url = upstream.url
    )
}

async fn admin(gateway: &Gateway, path: &str, body: Value) -> Value {
    let mut response = gateway.post(path, MASTER_KEY, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{path}: {answer}");
    answer
}

async fn get(gateway: &Gateway, path_and_query: &str) -> Value {
    let url = format!("{}{path_and_query}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{path_and_query}: {answer}");
    answer
}

async fn key_of(gateway: &Gateway, body: Value) -> String {
    admin(gateway, "/key/generate", body).await["key"].as_str().unwrap().to_owned()
}

/// One chat through `key` (as end user `user` when given): its status and body.
async fn chat(gateway: &Gateway, key: &str, user: Option<&str>) -> (u16, Value) {
    let mut body = chat_body("gpt-4");
    if let Some(user) = user {
        body["user"] = json!(user);
    }
    let mut response = gateway.post("/v1/chat/completions", key, &body).await;
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

/// Chats through `key` until one is refused (at most `most` served): how many were served, and the refusal.
async fn served_until_refused(gateway: &Gateway, key: &str, most: usize) -> (usize, Value) {
    for served in 0..=most {
        let (status, answer) = chat(gateway, key, None).await;
        if status != 200 {
            assert_eq!(status, 429, "{answer}");
            return (served, answer);
        }
    }
    panic!("{} requests were served, none refused", most + 1);
}

fn message(refusal: &Value) -> &str {
    refusal["error"]["message"].as_str().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[actix_web::test]
async fn a_team_budget_refuses_every_team_key_naming_the_team_while_each_key_alone_would_pass() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    admin(&gateway, "/team/new", json!({"team_id": "t1", "max_budget": ANSWER_COST * 1.5})).await;
    let (first, second) =
        (key_of(&gateway, json!({"team_id": "t1"})).await, key_of(&gateway, json!({"team_id": "t1"})).await);
    assert_eq!(chat(&gateway, &first, None).await.0, 200);
    // The second key has spent nothing of its own: the team's budget, shared by both, refuses it.
    let (served, refusal) = served_until_refused(&gateway, &second, 3).await;
    assert_eq!(served, 1, "{refusal}");
    assert_eq!(refusal["error"]["type"], "budget_exceeded", "{refusal}");
    assert!(message(&refusal).starts_with("Budget has been exceeded! Team=t1 Current cost: "), "{refusal}");
    let plain = gateway.mint_on_tier("free").await;
    assert_eq!(chat(&gateway, &plain, None).await.0, 200, "a key outside the team is not touched");
}

#[actix_web::test]
async fn each_levels_rate_limit_refuses_naming_the_level() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    admin(
        &gateway,
        "/organization/new",
        json!({"organization_id": "o-tpm", "organization_alias": "O", "tpm_limit": 5}),
    )
    .await;
    admin(&gateway, "/team/new", json!({"team_id": "t-rpm", "rpm_limit": 1})).await;
    admin(&gateway, "/team/new", json!({"team_id": "t-in-org", "organization_id": "o-tpm"})).await;
    admin(&gateway, "/team/new", json!({"team_id": "t-members"})).await;
    admin(&gateway, "/user/new", json!({"user_id": "u-rpm", "rpm_limit": 1, "auto_create_key": false})).await;
    let member = json!({"team_id": "t-members", "member": {"user_id": "m1", "role": "user"}, "rpm_limit": 1});
    admin(&gateway, "/team/member_add", member).await;
    let cases = [
        (json!({"team_id": "t-rpm"}), "Rate limit exceeded for team: t-rpm"),
        // 12 tokens per answer against 5 per minute: the organization's (the team's) window refuses the next.
        (json!({"team_id": "t-in-org"}), "Rate limit exceeded for organization: o-tpm"),
        (json!({"user_id": "u-rpm"}), "Rate limit exceeded for user: u-rpm"),
        (json!({"team_id": "t-members", "user_id": "m1"}), "Rate limit exceeded for team_member: t-members/m1"),
    ];
    for (owners, expected) in cases {
        let key = key_of(&gateway, owners.clone()).await;
        let (served, refusal) = served_until_refused(&gateway, &key, 2).await;
        assert_eq!(served, 1, "{owners}: {refusal}");
        assert!(message(&refusal).starts_with(expected), "{owners}: {refusal}");
        assert_eq!(refusal["error"]["type"], "rate_limit_error", "{refusal}");
    }
    // The member's limit is its own in that team: another member's key is served.
    let other = json!({"team_id": "t-members", "member": {"user_id": "m2", "role": "user"}});
    admin(&gateway, "/team/member_add", other).await;
    let key = key_of(&gateway, json!({"team_id": "t-members", "user_id": "m2"})).await;
    assert_eq!(chat(&gateway, &key, None).await.0, 200);
}

#[actix_web::test]
async fn org_user_and_member_budgets_refuse_in_litellms_words_and_a_users_budget_spares_its_team_keys() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    let budget = ANSWER_COST * 0.5;
    admin(
        &gateway,
        "/organization/new",
        json!({"organization_id": "o1", "organization_alias": "O", "max_budget": budget}),
    )
    .await;
    admin(&gateway, "/team/new", json!({"team_id": "t-org", "organization_id": "o1"})).await;
    admin(&gateway, "/team/new", json!({"team_id": "t2"})).await;
    admin(&gateway, "/user/new", json!({"user_id": "u1", "max_budget": budget, "auto_create_key": false})).await;
    let member = json!({"team_id": "t2", "member": {"user_id": "m1", "role": "user"}, "max_budget_in_team": budget});
    admin(&gateway, "/team/member_add", member).await;
    admin(&gateway, "/team/member_add", json!({"team_id": "t2", "member": {"user_id": "u1", "role": "user"}})).await;
    let cases = [
        (json!({"team_id": "t-org"}), "Budget has been exceeded! Organization=o1 Current cost: "),
        (json!({"user_id": "u1"}), "ExceededBudget: User=u1 over budget. Spend="),
        (json!({"team_id": "t2", "user_id": "m1"}), "Budget has been exceeded! User=m1 in Team=t2 Current cost: "),
    ];
    for (owners, expected) in cases {
        let key = key_of(&gateway, owners.clone()).await;
        let (served, refusal) = served_until_refused(&gateway, &key, 2).await;
        assert_eq!(served, 1, "{owners}: {refusal}");
        assert!(message(&refusal).starts_with(expected), "{owners}: {refusal}");
        assert_eq!(refusal["error"]["type"], "budget_exceeded", "{refusal}");
    }
    // LiteLLM without `apply_user_budget_to_team_keys`: u1 is over its budget, its team key is still served,
    // and what it spends there still counts to u1.
    let team_key = key_of(&gateway, json!({"team_id": "t2", "user_id": "u1"})).await;
    let before = get(&gateway, "/user/info?user_id=u1").await["user_info"]["spend"].as_f64().unwrap();
    assert_eq!(chat(&gateway, &team_key, None).await.0, 200);
    let after = get(&gateway, "/user/info?user_id=u1").await["user_info"]["spend"].as_f64().unwrap();
    assert!(close(after - before, ANSWER_COST), "{before} → {after}");
}

#[actix_web::test]
async fn an_answers_spend_lands_on_every_level_exactly_once() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    admin(&gateway, "/organization/new", json!({"organization_id": "o1", "organization_alias": "O"})).await;
    admin(&gateway, "/team/new", json!({"team_id": "t1", "organization_id": "o1", "max_budget": 100})).await;
    admin(&gateway, "/user/new", json!({"user_id": "u1", "max_budget": 100, "auto_create_key": false})).await;
    let member = json!({"team_id": "t1", "member": {"user_id": "u1", "role": "user"}, "max_budget_in_team": 100});
    admin(&gateway, "/team/member_add", member).await;
    admin(&gateway, "/end_user/new", json!({"user_id": "e1"})).await;
    let key = key_of(&gateway, json!({"team_id": "t1", "user_id": "u1", "max_budget": 100})).await;
    assert_eq!(chat(&gateway, &key, Some("e1")).await.0, 200);
    assert_eq!(chat(&gateway, &key, Some("e1")).await.0, 200);
    let twice = 2.0 * ANSWER_COST;
    let team = get(&gateway, "/team/info?team_id=t1").await;
    assert!(close(team["team_info"]["spend"].as_f64().unwrap(), twice), "{team}");
    let org = get(&gateway, "/organization/info?organization_id=o1").await;
    assert!(close(org["spend"].as_f64().unwrap(), twice), "{org}");
    let user = get(&gateway, "/user/info?user_id=u1").await;
    assert!(close(user["user_info"]["spend"].as_f64().unwrap(), twice), "{user}");
    let end_user = get(&gateway, "/end_user/info?end_user_id=e1").await;
    assert!(close(end_user["spend"].as_f64().unwrap(), twice), "{end_user}");
    let info = get(&gateway, &format!("/key/info?key={key}")).await;
    assert!(close(info["info"]["spend"].as_f64().unwrap(), twice), "{info}");
    // Item 3: the membership's own spend and budget row, in /user/info's teams and /team/info.
    let membership = &user["teams"][0]["team_memberships"][0];
    assert_eq!((&membership["team_id"], &membership["user_id"]), (&json!("t1"), &json!("u1")), "{user}");
    assert!(close(membership["spend"].as_f64().unwrap(), twice), "{membership}");
    assert_eq!(membership["litellm_budget_table"]["max_budget"], 100.0, "{membership}");
    assert_eq!(team["team_memberships"][0], *membership, "{team}");
    // Item 2: each spend-log row names the levels it was charged to.
    let deadline = Instant::now() + Duration::from_secs(5);
    let row = loop {
        let rows = get(&gateway, "/spend/logs").await;
        if let Some(row) = rows.as_array().and_then(|rows| rows.first()) {
            break row.clone();
        }
        assert!(Instant::now() < deadline, "no spend-log row");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    };
    let levels = (&row["team_id"], &row["organization_id"], &row["user"], &row["end_user"]);
    assert_eq!(levels, (&json!("t1"), &json!("o1"), &json!("u1"), &json!("e1")), "{row}");
    assert_eq!(row["metadata"]["user_api_key_org_id"], "o1", "{row}");
}

#[actix_web::test]
async fn a_team_budget_starts_again_after_its_own_budget_duration() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    let team = json!({"team_id": "t1", "max_budget": ANSWER_COST * 0.5, "budget_duration": "2s"});
    admin(&gateway, "/team/new", team).await;
    let key = key_of(&gateway, json!({"team_id": "t1"})).await;
    let (served, refusal) = served_until_refused(&gateway, &key, 2).await;
    assert_eq!(served, 1, "{refusal}");
    let info = get(&gateway, "/team/info?team_id=t1").await;
    assert!(info["team_info"]["budget_reset_at"].is_string(), "{info}");
    let start = Instant::now();
    while chat(&gateway, &key, None).await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(5), "the team's budget never reset");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn an_acknowledged_team_limit_survives_kill_9() {
    let upstream = FakeUpstream::start("u");
    let mut gateway = Gateway::start(&priced_config(&upstream, ""));
    admin(&gateway, "/team/new", json!({"team_id": "t1"})).await;
    let key = key_of(&gateway, json!({"team_id": "t1"})).await;
    let updated = admin(&gateway, "/team/update", json!({"team_id": "t1", "rpm_limit": 1})).await;
    assert_eq!(updated["data"]["rpm_limit"], 1, "{updated}");
    gateway.kill9();
    gateway.restart();
    let (served, refusal) = served_until_refused(&gateway, &key, 2).await;
    assert_eq!(served, 1, "{refusal}");
    assert!(message(&refusal).starts_with("Rate limit exceeded for team: t1"), "{refusal}");
}

#[actix_web::test]
async fn level_limits_are_checked_by_name_and_unknown_fields_are_refused() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    for (body, param) in [
        (json!({"team_id": "t1", "rpm_limit": -1}), "rpm_limit"),
        (json!({"team_id": "t1", "budget_duration": "soon"}), "budget_duration"),
        (json!({"team_id": "t1", "team_member_budget": 5}), "team_member_budget"),
    ] {
        let mut response = gateway.post("/team/new", MASTER_KEY, &body).await;
        let refusal = assert_error(&mut response, 400, "invalid_request_error").await;
        assert_eq!(refusal["param"], param, "{refusal}");
    }
}

#[actix_rt::test]
async fn two_replicas_share_a_team_budget_through_redis() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = priced_config(&upstream, &format!("  redis_url: {}\n", redis.url()));
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    admin(&a, "/team/new", json!({"team_id": "shared", "max_budget": ANSWER_COST * 1.5})).await;
    let key = key_of(&a, json!({"team_id": "shared"})).await;
    let start = Instant::now();
    while chat(&b, &key, None).await.0 != 200 {
        assert!(start.elapsed() < PROPAGATION, "b never saw the key");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Once b's answer is exchanged (its hold released, its spend counted: one answer, under the budget), a is
    // admitted; asked sooner, a may still see b's worst-case hold in Redis and refuse (a timing race, not a bug).
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(chat(&a, &key, None).await.0, 200);
    // Each replica served one answer; once both have exchanged spend with Redis (every 250 ms) each refuses:
    // alone, each would have seen only its own answer, under the team's budget.
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    let (status, refusal) = chat(&a, &key, None).await;
    assert_eq!(status, 429, "a counts b's answer: {refusal}");
    assert!(message(&refusal).contains("Team=shared"), "{refusal}");
    assert_eq!(chat(&b, &key, None).await.0, 429, "b counts a's answer");
}

#[actix_web::test]
async fn the_spend_report_groups_by_team_user_and_organization() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    admin(&gateway, "/organization/new", json!({"organization_id": "o1", "organization_alias": "O"})).await;
    admin(&gateway, "/team/new", json!({"team_id": "t1", "organization_id": "o1"})).await;
    admin(&gateway, "/user/new", json!({"user_id": "u1", "auto_create_key": false})).await;
    let team_key = key_of(&gateway, json!({"team_id": "t1", "user_id": "u1"})).await;
    let loose_key = key_of(&gateway, json!({})).await;
    assert_eq!(chat(&gateway, &team_key, None).await.0, 200);
    assert_eq!(chat(&gateway, &team_key, None).await.0, 200);
    assert_eq!(chat(&gateway, &loose_key, Some("e9")).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let today = loop {
        let rows = get(&gateway, "/spend/logs").await;
        if rows.as_array().is_some_and(|rows| rows.len() == 3) {
            break rows[0]["startTime"].as_str().unwrap()[..10].to_owned();
        }
        assert!(Instant::now() < deadline, "three spend-log rows: {rows}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    };
    let spend_of = |report: &Value, list: &str, name: &str, group: &str| {
        let groups = report[0][list].as_array().unwrap_or_else(|| panic!("{report}"));
        let found = groups.iter().find(|each| each[name] == group).unwrap_or_else(|| panic!("{group}: {report}"));
        found["total_spend"].as_f64().unwrap()
    };
    let range = format!("start_date={today}&end_date={today}");
    let teams = get(&gateway, &format!("/global/spend/report?{range}&group_by=team")).await;
    assert!(close(spend_of(&teams, "teams", "team_name", "t1"), 2.0 * ANSWER_COST), "{teams}");
    assert!(close(spend_of(&teams, "teams", "team_name", "Unassigned Team"), ANSWER_COST), "{teams}");
    let users = get(&gateway, &format!("/global/spend/report?{range}&group_by=user")).await;
    assert!(close(spend_of(&users, "users", "user_id", "u1"), 2.0 * ANSWER_COST), "{users}");
    assert!(close(spend_of(&users, "users", "user_id", "e9"), ANSWER_COST), "a key without a user: its end user");
    let orgs = get(&gateway, &format!("/global/spend/report?{range}&group_by=organization")).await;
    assert!(close(spend_of(&orgs, "organizations", "organization_id", "o1"), 2.0 * ANSWER_COST), "{orgs}");
    assert!(close(spend_of(&orgs, "organizations", "organization_id", "Unassigned Organization"), ANSWER_COST));
}

/// Hostile pass: a team, user or organization deleted and created again under the same id started with the
/// deleted one's spend (its level account stayed), so its budget was partly used before its first request.
/// Deleting one deletes its spend, as deleting an end user does.
#[actix_web::test]
async fn a_team_user_or_organization_created_again_after_a_delete_starts_from_zero_spend() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    admin(&gateway, "/organization/new", json!({"organization_id": "o1", "organization_alias": "O"})).await;
    admin(&gateway, "/user/new", json!({"user_id": "u1", "auto_create_key": false})).await;
    admin(&gateway, "/team/new", json!({"team_id": "t1", "organization_id": "o1", "max_budget": ANSWER_COST * 1.5}))
        .await;
    let key = key_of(&gateway, json!({"team_id": "t1", "user_id": "u1"})).await;
    assert_eq!(chat(&gateway, &key, None).await.0, 200);
    let spent = |info: &Value, level: &str| info[level]["spend"].as_f64().unwrap_or(-1.0);
    assert!(close(spent(&get(&gateway, "/team/info?team_id=t1").await, "team_info"), ANSWER_COST));

    let mut response = client()
        .delete(format!("{}/organization/delete", gateway.url))
        .bearer_auth(MASTER_KEY)
        .send_json(&json!({"organization_ids": ["o1"]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", json_of(&mut response).await);
    admin(&gateway, "/user/delete", json!({"user_ids": ["u1"]})).await;
    admin(&gateway, "/organization/new", json!({"organization_id": "o1", "organization_alias": "O"})).await;
    admin(&gateway, "/user/new", json!({"user_id": "u1", "auto_create_key": false})).await;
    admin(&gateway, "/team/new", json!({"team_id": "t1", "organization_id": "o1", "max_budget": ANSWER_COST * 1.5}))
        .await;
    assert_eq!(spent(&get(&gateway, "/team/info?team_id=t1").await, "team_info"), 0.0);
    let org = get(&gateway, "/organization/info?organization_id=o1").await;
    assert_eq!(org["spend"].as_f64(), Some(0.0), "{org}");
    let user = get(&gateway, "/user/info?user_id=u1").await;
    assert_eq!(user["user_info"]["spend"].as_f64(), Some(0.0), "{user}");
    let key = key_of(&gateway, json!({"team_id": "t1", "user_id": "u1"})).await;
    assert_eq!(chat(&gateway, &key, None).await.0, 200, "the new team's budget is whole");
}

/// Hostile pass: a team admin whose membership has a budget minted a key with `"user_id": null`; the key
/// had no user, so no membership level, and spent past the budget the proxy admin gave its membership.
/// A null user is read as a missing one (LiteLLM's reading): the key is the admin's own.
#[actix_web::test]
async fn a_team_admin_cannot_escape_its_membership_budget_with_a_key_without_a_user() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    admin(&gateway, "/user/new", json!({"user_id": "ana", "auto_create_key": false})).await;
    admin(&gateway, "/team/new", json!({"team_id": "t1"})).await;
    let member = json!({"team_id": "t1", "member": {"user_id": "ana", "role": "admin"}, "max_budget_in_team": ANSWER_COST * 0.5});
    admin(&gateway, "/team/member_add", member).await;
    let ana = key_of(&gateway, json!({"team_id": "t1", "user_id": "ana"})).await;
    assert_eq!(chat(&gateway, &ana, None).await.0, 200);
    assert_eq!(chat(&gateway, &ana, None).await.0, 429, "the membership's budget is spent");

    let mut response = gateway.post("/key/generate", &ana, &json!({"team_id": "t1", "user_id": null})).await;
    let minted = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{minted}");
    assert_eq!(minted["user_id"], "ana", "{minted}");
    let (status, refusal) = chat(&gateway, minted["key"].as_str().unwrap(), None).await;
    assert_eq!(status, 429, "{refusal}");
    assert!(message(&refusal).contains("User=ana in Team=t1"), "{refusal}");
    // Nor may it take the user away from a key.
    let body = json!({"key": minted["key"], "user_id": null});
    let mut response = gateway.post("/key/update", &ana, &body).await;
    let refused = json_of(&mut response).await;
    assert_eq!((response.status().as_u16(), refused["error"]["param"].as_str()), (403, Some("user_id")), "{refused}");
}

/// A level's parallel slot is held while its request runs, and given back with the answer, or when no answer
/// comes (the upstream failed): a team and a user with `max_parallel_requests: 1` serve request after
/// request, and refuse only a second one in flight, naming the level.
#[actix_web::test]
async fn a_levels_parallel_slot_goes_back_with_the_answer_and_when_none_comes() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    let one = |id: &str, field: &str| json!({field: id, "max_parallel_requests": 1, "max_budget": 100.0});
    admin(&gateway, "/team/new", one("t-one", "team_id")).await;
    let mut user = one("u-one", "user_id");
    user["auto_create_key"] = json!(false);
    admin(&gateway, "/user/new", user).await;
    let key = key_of(&gateway, json!({"team_id": "t-one", "user_id": "u-one"})).await;
    for _ in 0..3 {
        let (status, answer) = chat(&gateway, &key, Some("eu-1")).await;
        assert_eq!(status, 200, "{answer}");
    }
    upstream.set_mode(json!({"mode": "status", "status": 500})).await;
    let (status, answer) = chat(&gateway, &key, None).await;
    assert!(status >= 500, "{status}: {answer}");
    upstream.set_mode(json!({"mode": "ok"})).await;
    assert_eq!(chat(&gateway, &key, None).await.0, 200);

    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    let mut streaming = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(streaming.status(), 200);
    let (status, refusal) = chat(&gateway, &key, None).await;
    assert_eq!(status, 429, "{refusal}");
    assert!(message(&refusal).starts_with("Rate limit exceeded for team: t-one"), "{refusal}");
    upstream.release().await;
    streaming.body().limit(1 << 20).await.unwrap();
    upstream.set_mode(json!({"mode": "ok"})).await;
    let (status, answer) = chat(&gateway, &key, None).await;
    assert_eq!(status, 200, "{answer}");
    let team = get(&gateway, "/team/info?team_id=t-one").await;
    let spend = team["team_info"]["spend"].as_f64().unwrap_or_else(|| team["spend"].as_f64().unwrap());
    assert!(close(spend, 6.0 * ANSWER_COST), "{team}");
}
