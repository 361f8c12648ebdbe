//! Teams (issue 21, slice 1): LiteLLM's `/team/*` over real HTTP, team keys that inherit the team's tier and
//! models and never reach another tier, blocked and deleted teams, members, team admins' scope, kill -9.

mod common;

use common::*;
use serde_json::{json, Value};

/// The seed: `gpt-4` free and paid (each on its own fake upstream), `mini` on free only.
fn gateway(free: &FakeUpstream, paid: &FakeUpstream) -> Gateway {
    Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&format!("{}/", free.url)), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&format!("{}/", paid.url)), Some("paid")),
        deployment("mini", "openai/mini", "k", Some(&format!("{}/", free.url)), Some("free")),
    ]))
}

async fn call(gateway: &Gateway, path: &str, key: &str, body: Value) -> (u16, Value) {
    let mut response = gateway.post(path, key, &body).await;
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

async fn get(gateway: &Gateway, path_and_query: &str, key: &str) -> (u16, Value) {
    let mut response = client().get(format!("{}{path_and_query}", gateway.url)).bearer_auth(key).send().await.unwrap();
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

async fn chat(gateway: &Gateway, key: &str, model: &str) -> (u16, Value) {
    call(gateway, "/v1/chat/completions", key, chat_body(model)).await
}

#[actix_web::test]
async fn an_admin_creates_reads_updates_lists_and_deletes_a_team_as_in_litellm() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let (status, team) = call(
        &gateway,
        "/team/new",
        MASTER_KEY,
        json!({
            "team_id": "eng", "team_alias": "Engineering", "metadata": {"tier": "free"},
            "members_with_roles": [{"role": "admin", "user_id": "ana"}],
        }),
    )
    .await;
    assert_eq!(status, 200, "{team}");
    assert_eq!(team["team_id"], "eng");
    assert_eq!(team["members_with_roles"][0]["role"], "admin");
    assert_eq!(team["max_budget"], Value::Null, "limit fields are shown, unset");

    let (status, again) = call(&gateway, "/team/new", MASTER_KEY, json!({"team_id": "eng"})).await;
    assert_eq!(status, 400, "{again}");
    assert_eq!(again["error"]["message"], "Team id = eng already exists. Please use a different team id.");

    let (status, updated) =
        call(&gateway, "/team/update", MASTER_KEY, json!({"team_id": "eng", "team_alias": "Eng"})).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["team_alias"], "Eng");
    assert_eq!(updated["data"]["metadata"]["tier"], "free", "fields not sent are unchanged");

    let (status, info) = get(&gateway, "/team/info?team_id=eng", MASTER_KEY).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["team_info"]["team_alias"], "Eng");
    let (status, list) = get(&gateway, "/team/list?user_id=ana", MASTER_KEY).await;
    assert_eq!((status, list.as_array().unwrap().len()), (200, 1), "{list}");
    assert_eq!(get(&gateway, "/team/list?user_id=bob", MASTER_KEY).await.1, json!([]));

    let (status, deleted) = call(&gateway, "/team/delete", MASTER_KEY, json!({"team_ids": ["eng"]})).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deleted_teams"], json!(["eng"]));
    let (status, gone) = get(&gateway, "/team/info?team_id=eng", MASTER_KEY).await;
    assert_eq!(status, 404, "{gone}");
    let (status, gone) = call(&gateway, "/team/delete", MASTER_KEY, json!({"team_ids": ["eng"]})).await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(gone["error"]["message"], "Team not found, passed team_id=eng");
}

#[actix_web::test]
async fn bad_team_input_is_a_4xx_naming_the_field() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    for (body, param) in [
        (json!({"team_id": "a b"}), "team_id"),
        (json!({"team_id": "x".repeat(129)}), "team_id"),
        (json!({"team_id": "t", "max_budget": -10}), "max_budget"),
        (json!({"team_id": "t", "rpm_limit": "five"}), "rpm_limit"),
        (json!({"team_id": "t", "team_member_budget": 1}), "team_member_budget"),
        (json!({"team_id": "t", "metadata": {"tier": "gold"}}), "metadata.tier"),
        (json!({"team_id": "t", "models": ["nope"]}), "models"),
        (json!({"team_id": "t", "organization_id": "missing"}), "organization_id"),
        (json!({"team_id": "t", "colour": "red"}), "colour"),
        (
            json!({"team_id": "t", "members_with_roles": [{"role": "owner", "user_id": "a"}]}),
            "members_with_roles[0].role",
        ),
    ] {
        let mut response = gateway.post("/team/new", MASTER_KEY, &body).await;
        let error = assert_error(&mut response, 400, &error_type(&body)).await;
        assert_eq!(error["param"], param, "{body}: {error}");
    }
    // Issue 21 slice 2: a team's limits are stored (and stack with its keys', tests/stacking.rs).
    let (status, team) = call(&gateway, "/team/new", MASTER_KEY, json!({"team_id": "t", "max_budget": 10})).await;
    assert_eq!((status, &team["max_budget"]), (200, &json!(10.0)), "{team}");
}

fn error_type(_body: &Value) -> String {
    "invalid_request_error".into()
}

#[actix_web::test]
async fn a_team_key_inherits_the_team_tier_and_never_reaches_the_other_tier() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    assert_eq!(
        call(&gateway, "/team/new", MASTER_KEY, json!({"team_id": "free-team", "metadata": {"tier": "free"}})).await.0,
        200
    );
    let key = gateway.mint(json!({"team_id": "free-team"})).await;
    for _ in 0..4 {
        let (status, answer) = chat(&gateway, &key, "gpt-4").await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(free.records().await.len(), 4);
    assert!(paid.records().await.is_empty(), "a free team's key reached the paid deployment");
    let (_, info) = get(&gateway, &format!("/key/info?key={key}"), MASTER_KEY).await;
    assert_eq!(info["info"]["team_id"], "free-team");
    assert_eq!(info["info"]["metadata"].get("tier"), None, "the key has no tier of its own: it inherits");

    // A key may not say otherwise than its team.
    let (status, refused) =
        call(&gateway, "/key/generate", MASTER_KEY, json!({"team_id": "free-team", "metadata": {"tier": "paid"}}))
            .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "metadata.tier");
    let (status, refused) =
        call(&gateway, "/key/update", MASTER_KEY, json!({"key": key, "metadata": {"tier": "paid"}})).await;
    assert_eq!(status, 400, "{refused}");

    // The team moves to paid: its inheriting key follows at once, on every request.
    assert_eq!(
        call(&gateway, "/team/update", MASTER_KEY, json!({"team_id": "free-team", "metadata": {"tier": "paid"}}))
            .await
            .0,
        200
    );
    assert_eq!(chat(&gateway, &key, "gpt-4").await.0, 200);
    assert_eq!(paid.records().await.len(), 1);
    assert_eq!(free.records().await.len(), 4);
    assert_eq!(chat(&gateway, &key, "mini").await.0, 403, "mini has no paid deployment");

    // A key with its own tier pins the team's: a change of the team's tier that contradicts it is refused.
    let pinned = gateway.mint(json!({"team_id": "free-team", "metadata": {"tier": "paid"}})).await;
    let (status, refused) =
        call(&gateway, "/team/update", MASTER_KEY, json!({"team_id": "free-team", "metadata": {"tier": "free"}})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "metadata.tier");
    assert!(refused["error"]["message"].as_str().unwrap().contains("1 key(s)"), "{refused}");
    assert_eq!(chat(&gateway, &pinned, "gpt-4").await.0, 200);
    assert_eq!(chat(&gateway, &key, "gpt-4").await.0, 200);
    assert_eq!(free.records().await.len(), 4, "nothing moved to free");

    // Metadata is replaced whole (as LiteLLM): one without `tier` would leave the inheriting key with no tier,
    // reaching every tier; refused, fail closed.
    let (status, refused) =
        call(&gateway, "/team/update", MASTER_KEY, json!({"team_id": "free-team", "metadata": {}})).await;
    assert_eq!((status, refused["error"]["param"].as_str()), (400, Some("metadata.tier")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("1 key(s)"), "{refused}");
    let (_, team) = get(&gateway, "/team/info?team_id=free-team", MASTER_KEY).await;
    assert_eq!(team["team_info"]["metadata"]["tier"], "paid", "nothing changed: {team}");
}

/// Hostile pass: `/key/update` moving an inheriting key out of its team (or to a team, or a user, with no
/// tier) left it with no tier at all, reaching the paid deployment on a gateway that refuses untiered keys.
#[actix_web::test]
async fn a_key_moved_off_the_owner_it_takes_its_tier_from_keeps_a_tier_or_is_refused() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    for team in [json!({"team_id": "free-team", "metadata": {"tier": "free"}}), json!({"team_id": "no-tier"})] {
        assert_eq!(call(&gateway, "/team/new", MASTER_KEY, team).await.0, 200);
    }
    let user = json!({"user_id": "ana", "metadata": {"tier": "free"}, "auto_create_key": false});
    assert_eq!(call(&gateway, "/user/new", MASTER_KEY, user).await.0, 200);
    let team_key = gateway.mint(json!({"team_id": "free-team"})).await;
    let user_key = gateway.mint(json!({"user_id": "ana"})).await;

    let moves = [
        (&team_key, json!({"team_id": null})),
        (&team_key, json!({"team_id": "no-tier"})),
        (&user_key, json!({"user_id": null})),
        (&user_key, json!({"user_id": "not-created-yet"})),
    ];
    for (key, mut change) in moves {
        change["key"] = json!(key);
        let (status, refused) = call(&gateway, "/key/update", MASTER_KEY, change.clone()).await;
        assert_eq!((status, refused["error"]["param"].as_str()), (400, Some("metadata.tier")), "{change}: {refused}");
    }
    for key in [&team_key, &user_key] {
        assert_eq!(chat(&gateway, key, "gpt-4").await.0, 200);
    }
    assert!(paid.records().await.is_empty(), "an inheriting free key reached the paid deployment");

    // Naming the tier with the move settles it: kept, or dropped on purpose.
    let keep = json!({"key": team_key, "team_id": null, "metadata": {"tier": "free"}});
    assert_eq!(call(&gateway, "/key/update", MASTER_KEY, keep).await.0, 200);
    let untier = json!({"key": user_key, "user_id": null, "metadata": {"tier": null}});
    assert_eq!(call(&gateway, "/key/update", MASTER_KEY, untier).await.0, 200);
    assert_eq!(chat(&gateway, &team_key, "gpt-4").await.0, 200);
    assert!(paid.records().await.is_empty());
}

#[actix_web::test]
async fn a_key_for_an_unknown_team_is_refused_and_team_models_bound_its_keys() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let (status, refused) =
        call(&gateway, "/key/generate", MASTER_KEY, json!({"team_id": "ghost", "metadata": {"tier": "free"}})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "team_id");
    assert!(refused["error"]["message"].as_str().unwrap().starts_with("Team not found for team_id=ghost"));

    let team = json!({"team_id": "minis", "models": ["mini"], "metadata": {"tier": "free"}});
    assert_eq!(call(&gateway, "/team/new", MASTER_KEY, team).await.0, 200);
    let inheriting = gateway.mint(json!({"team_id": "minis", "models": []})).await;
    assert_eq!(chat(&gateway, &inheriting, "mini").await.0, 200);
    let (status, denied) = chat(&gateway, &inheriting, "gpt-4").await;
    assert_eq!(status, 403, "models: [] on a team key is the team's models: {denied}");
    let own = gateway.mint(json!({"team_id": "minis", "models": ["gpt-4", "mini"]})).await;
    let (status, denied) = chat(&gateway, &own, "gpt-4").await;
    assert_eq!(status, 403, "the key's own list is bounded by the team's: {denied}");
    assert_eq!(denied["error"]["type"], "team_model_access_denied");
    assert_eq!(chat(&gateway, &own, "mini").await.0, 200);
    // /team/model/add widens every key of the team at once.
    assert_eq!(
        call(&gateway, "/team/model/add", MASTER_KEY, json!({"team_id": "minis", "models": ["gpt-4"]})).await.0,
        200
    );
    assert_eq!(chat(&gateway, &own, "gpt-4").await.0, 200);
    assert_eq!(chat(&gateway, &inheriting, "gpt-4").await.0, 200);
}

#[actix_web::test]
async fn a_blocked_team_keys_are_refused_until_it_is_unblocked_and_a_deleted_team_keys_go() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    assert_eq!(
        call(&gateway, "/team/new", MASTER_KEY, json!({"team_id": "t1", "metadata": {"tier": "free"}})).await.0,
        200
    );
    let key = gateway.mint(json!({"team_id": "t1"})).await;
    let (status, team) = call(&gateway, "/team/block", MASTER_KEY, json!({"team_id": "t1"})).await;
    assert_eq!((status, &team["blocked"]), (200, &json!(true)), "{team}");
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    let error = assert_error(&mut response, 401, "auth_error").await;
    assert_eq!(
        error["message"],
        "Authentication Error, Team=t1 is blocked. Update via `/team/unblock` if you're an admin."
    );
    assert_eq!(call(&gateway, "/team/unblock", MASTER_KEY, json!({"team_id": "t1"})).await.0, 200);
    assert_eq!(chat(&gateway, &key, "gpt-4").await.0, 200);

    let other = gateway.mint_on_tier("free").await;
    assert_eq!(call(&gateway, "/team/delete", MASTER_KEY, json!({"team_ids": ["t1"]})).await.0, 200);
    assert_eq!(chat(&gateway, &key, "gpt-4").await.0, 401, "a deleted team's keys stop working");
    assert_eq!(get(&gateway, &format!("/key/info?key={key}"), MASTER_KEY).await.0, 404, "and are gone");
    assert_eq!(chat(&gateway, &other, "gpt-4").await.0, 200, "other keys stay");
    let (_, audit) = get(&gateway, "/audit", MASTER_KEY).await;
    let actions: Vec<&str> = audit["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["team_new", "team_block", "team_unblock", "team_delete", "delete"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[actix_web::test]
async fn members_are_added_updated_and_removed_and_a_removed_member_keys_in_the_team_go() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    assert_eq!(
        call(&gateway, "/team/new", MASTER_KEY, json!({"team_id": "t", "metadata": {"tier": "free"}})).await.0,
        200
    );
    let (status, added) = call(&gateway, "/team/member_add", MASTER_KEY, json!({"team_id": "t", "member": [{"role": "user", "user_id": "bo"}, {"role": "user", "user_email": "cy@x.io"}]})).await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["members_with_roles"].as_array().unwrap().len(), 2);
    let (status, again) = call(
        &gateway,
        "/team/member_add",
        MASTER_KEY,
        json!({"team_id": "t", "member": {"role": "user", "user_id": "bo"}}),
    )
    .await;
    assert_eq!((status, again["error"]["type"].as_str()), (400, Some("team_member_already_in_team")), "{again}");
    let (status, updated) =
        call(&gateway, "/team/member_update", MASTER_KEY, json!({"team_id": "t", "user_id": "bo", "role": "admin"}))
            .await;
    assert_eq!((status, &updated["role"]), (200, &json!("admin")), "{updated}");

    let bos_team_key = gateway.mint(json!({"team_id": "t", "user_id": "bo"})).await;
    let bos_own_key = gateway.mint(json!({"user_id": "bo", "metadata": {"tier": "free"}})).await;
    let (status, team) =
        call(&gateway, "/team/member_delete", MASTER_KEY, json!({"team_id": "t", "user_id": "bo"})).await;
    assert_eq!(status, 200, "{team}");
    assert_eq!(team["members_with_roles"].as_array().unwrap().len(), 1);
    assert_eq!(chat(&gateway, &bos_team_key, "gpt-4").await.0, 401, "its keys in the team go");
    assert_eq!(chat(&gateway, &bos_own_key, "gpt-4").await.0, 200, "its other keys stay");
    let (status, missing) =
        call(&gateway, "/team/member_delete", MASTER_KEY, json!({"team_id": "t", "user_id": "bo"})).await;
    assert_eq!(status, 400, "{missing}");
}

#[actix_web::test]
async fn a_team_admin_manages_its_team_keys_and_no_other() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    for team in ["mine", "theirs"] {
        let body = json!({"team_id": team, "metadata": {"tier": "free"}, "members_with_roles": [{"role": "admin", "user_id": format!("admin-of-{team}")}]});
        assert_eq!(call(&gateway, "/team/new", MASTER_KEY, body).await.0, 200);
    }
    let admin = gateway.mint(json!({"team_id": "mine", "user_id": "admin-of-mine"})).await;
    let theirs = gateway.mint(json!({"team_id": "theirs"})).await;

    let (status, minted) = call(&gateway, "/key/generate", &admin, json!({"team_id": "mine", "key_alias": "m1"})).await;
    assert_eq!(status, 200, "{minted}");
    assert_eq!(minted["user_id"], "admin-of-mine", "a team admin's key is its own unless it names another user");
    let mine = minted["key"].as_str().unwrap().to_owned();
    assert_eq!(chat(&gateway, &mine, "gpt-4").await.0, 200);

    let (status, refused) = call(&gateway, "/key/generate", &admin, json!({"team_id": "theirs"})).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Call not allowed. User not proxy admin OR team admin"));
    assert_eq!(
        call(&gateway, "/key/generate", &admin, json!({"metadata": {"tier": "free"}})).await.0,
        403,
        "nor a key of no team"
    );
    assert_eq!(call(&gateway, "/key/update", &admin, json!({"key": theirs, "key_alias": "x"})).await.0, 403);
    assert_eq!(call(&gateway, "/key/delete", &admin, json!({"keys": [theirs]})).await.0, 403);
    assert_eq!(call(&gateway, "/key/block", &admin, json!({"key": theirs})).await.0, 403);
    assert_eq!(
        call(&gateway, "/key/update", &admin, json!({"key": mine, "team_id": "theirs"})).await.0,
        403,
        "nor move a key out"
    );
    assert_eq!(chat(&gateway, &theirs, "gpt-4").await.0, 200);

    let (status, listed) = get(&gateway, "/key/list?return_full_object=true", &admin).await;
    assert_eq!(status, 200, "{listed}");
    let teams: Vec<&Value> = listed["keys"].as_array().unwrap().iter().map(|k| &k["team_id"]).collect();
    assert!(!teams.is_empty() && teams.iter().all(|team| *team == "mine"), "{listed}");
    assert_eq!(get(&gateway, "/key/list?team_id=theirs", &admin).await.0, 403);
    assert_eq!(call(&gateway, "/key/update", &admin, json!({"key": mine, "key_alias": "m2"})).await.0, 200);
    assert_eq!(call(&gateway, "/key/delete", &admin, json!({"keys": [mine]})).await.0, 200);
    assert_eq!(chat(&gateway, &mine, "gpt-4").await.0, 401);

    // Everything else about teams needs the master key (LiteLLM's 401 for the route).
    let (status, refused) = call(&gateway, "/team/new", &admin, json!({"team_id": "new"})).await;
    assert_eq!(status, 401, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("Only proxy admin"), "{refused}");
    // A key whose user administers no team is refused as before.
    assert_eq!(call(&gateway, "/key/generate", &theirs, json!({"team_id": "theirs"})).await.0, 403);

    // Master key filters, as LiteLLM's.
    let (_, by_team) = get(&gateway, "/key/list?team_id=theirs&return_full_object=true", MASTER_KEY).await;
    assert_eq!(by_team["total_count"], 1, "{by_team}");
    let (_, by_user) = get(&gateway, "/key/list?user_id=admin-of-mine", MASTER_KEY).await;
    assert_eq!(by_user["total_count"], 1, "{by_user}");
}

/// Hostile pass: a team admin minted a key of its own team naming the user who administers another team (or
/// an organization), and that key then managed the other team's keys: a key acts with its user's rights.
#[actix_web::test]
async fn a_team_admin_cannot_make_itself_a_key_with_another_admins_rights() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let teams = [("mine", "free", "admin-of-mine"), ("theirs", "paid", "admin-of-theirs")];
    for (team, tier, admin) in teams {
        let body = json!({"team_id": team, "metadata": {"tier": tier}, "members_with_roles": [{"role": "admin", "user_id": admin}, {"role": "user", "user_id": "bob"}]});
        assert_eq!(call(&gateway, "/team/new", MASTER_KEY, body).await.0, 200);
    }
    let org = json!({"organization_id": "acme", "organization_alias": "Acme"});
    assert_eq!(call(&gateway, "/organization/new", MASTER_KEY, org).await.0, 200);
    let boss = json!({"organization_id": "acme", "member": {"role": "org_admin", "user_id": "boss"}});
    assert_eq!(call(&gateway, "/organization/member_add", MASTER_KEY, boss).await.0, 200);
    let admin = gateway.mint(json!({"team_id": "mine", "user_id": "admin-of-mine"})).await;
    let victim = gateway.mint(json!({"team_id": "mine", "user_id": "admin-of-theirs"})).await;

    for user in ["admin-of-theirs", "boss"] {
        let (status, refused) =
            call(&gateway, "/key/generate", &admin, json!({"team_id": "mine", "user_id": user})).await;
        assert_eq!((status, refused["error"]["param"].as_str()), (403, Some("user_id")), "{user}: {refused}");
    }
    let (status, refused) = call(&gateway, "/key/regenerate", &admin, json!({"key": victim})).await;
    assert_eq!(status, 403, "the regenerated plaintext would act as admin-of-theirs: {refused}");
    let mine = gateway.mint(json!({"team_id": "mine", "user_id": "bob"})).await;
    let (status, refused) =
        call(&gateway, "/key/update", &admin, json!({"key": mine, "user_id": "admin-of-theirs"})).await;
    assert_eq!(status, 403, "{refused}");

    // A member who administers nothing more is fine, as before.
    let (status, minted) = call(&gateway, "/key/generate", &admin, json!({"team_id": "mine", "user_id": "bob"})).await;
    assert_eq!(status, 200, "{minted}");
    let (status, listed) = get(&gateway, "/key/list?team_id=theirs", minted["key"].as_str().unwrap()).await;
    assert_eq!(status, 403, "{listed}");
}

/// Hostile pass: in a team without a tier, a free team admin minted paid and untiered keys, and moved its own
/// key to paid: nothing bounded the tier it named.
#[actix_web::test]
async fn a_team_admin_cannot_name_a_tier_beyond_its_own_key() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let team = json!({"team_id": "open", "members_with_roles": [{"role": "admin", "user_id": "ana"}]});
    assert_eq!(call(&gateway, "/team/new", MASTER_KEY, team).await.0, 200);
    let admin = gateway.mint(json!({"team_id": "open", "user_id": "ana", "metadata": {"tier": "free"}})).await;

    for tier in [json!("paid"), Value::Null] {
        let body = json!({"team_id": "open", "metadata": {"tier": tier}});
        let (status, refused) = call(&gateway, "/key/generate", &admin, body).await;
        assert_eq!((status, refused["error"]["param"].as_str()), (403, Some("metadata.tier")), "{tier}: {refused}");
        let body = json!({"key": admin, "metadata": {"tier": tier}});
        let (status, refused) = call(&gateway, "/key/update", &admin, body).await;
        assert_eq!(status, 403, "{tier}: {refused}");
    }
    assert_eq!(chat(&gateway, &admin, "gpt-4").await.0, 200);
    assert!(paid.records().await.is_empty(), "the free admin's key reached the paid deployment");

    // Its own tier is fine, as is leaving the tier to the master key.
    let body = json!({"team_id": "open", "metadata": {"tier": "free"}});
    assert_eq!(call(&gateway, "/key/generate", &admin, body).await.0, 200);
    let body = json!({"key": admin, "metadata": {"tier": "paid"}});
    assert_eq!(call(&gateway, "/key/update", MASTER_KEY, body).await.0, 200);
}

/// Hostile pass: a team admin minted a key for a user id nobody had yet; when an admin later made that user
/// another (paid) team's admin, the squatted key managed that team and minted its paid keys.
#[actix_web::test]
async fn a_team_admin_makes_keys_for_members_of_the_team_only() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let team = json!({"team_id": "mine", "metadata": {"tier": "free"},
        "members_with_roles": [{"role": "admin", "user_id": "ana"}, {"role": "user", "user_id": "bob"}]});
    assert_eq!(call(&gateway, "/team/new", MASTER_KEY, team).await.0, 200);
    let admin = gateway.mint(json!({"team_id": "mine", "user_id": "ana"})).await;

    let (status, refused) =
        call(&gateway, "/key/generate", &admin, json!({"team_id": "mine", "user_id": "carol"})).await;
    assert_eq!((status, refused["error"]["param"].as_str()), (403, Some("user_id")), "{refused}");
    let own = gateway.mint(json!({"team_id": "mine", "user_id": "ana"})).await;
    let (status, refused) = call(&gateway, "/key/update", &admin, json!({"key": own, "user_id": "carol"})).await;
    assert_eq!(status, 403, "{refused}");
    let (status, minted) = call(&gateway, "/key/generate", &admin, json!({"team_id": "mine", "user_id": "bob"})).await;
    assert_eq!(status, 200, "a member: {minted}");
}

#[actix_web::test]
async fn a_team_acknowledged_before_kill_9_is_there_after_restart_with_its_keys_tier() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let mut gateway = gateway(&free, &paid);
    assert_eq!(
        call(&gateway, "/team/new", MASTER_KEY, json!({"team_id": "durable", "metadata": {"tier": "paid"}})).await.0,
        200
    );
    let key = gateway.mint(json!({"team_id": "durable"})).await;
    assert_eq!(call(&gateway, "/team/block", MASTER_KEY, json!({"team_id": "durable"})).await.0, 200);
    gateway.kill9();
    gateway.restart();
    let (status, info) = get(&gateway, "/team/info?team_id=durable", MASTER_KEY).await;
    assert_eq!((status, &info["team_info"]["blocked"]), (200, &json!(true)), "{info}");
    assert_eq!(chat(&gateway, &key, "gpt-4").await.0, 401, "still blocked");
    assert_eq!(call(&gateway, "/team/unblock", MASTER_KEY, json!({"team_id": "durable"})).await.0, 200);
    assert_eq!(chat(&gateway, &key, "gpt-4").await.0, 200);
    assert_eq!(paid.records().await.len(), 1, "still on the team's tier");
    assert!(free.records().await.is_empty());
}

#[actix_web::test]
async fn tier_limits_apply_to_a_team_key_by_its_effective_tier() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let mut text = config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&format!("{}/", free.url)), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&format!("{}/", paid.url)), Some("paid")),
    ]);
    text.push_str("tier_limits:\n  free:\n    rpm_limit: 1\n");
    let gateway = Gateway::start(&text);
    assert_eq!(
        call(&gateway, "/team/new", MASTER_KEY, json!({"team_id": "f", "metadata": {"tier": "free"}})).await.0,
        200
    );
    assert_eq!(
        call(&gateway, "/team/new", MASTER_KEY, json!({"team_id": "p", "metadata": {"tier": "paid"}})).await.0,
        200
    );
    let (free_key, paid_key) =
        (gateway.mint(json!({"team_id": "f"})).await, gateway.mint(json!({"team_id": "p"})).await);
    assert_eq!(chat(&gateway, &free_key, "gpt-4").await.0, 200);
    assert_eq!(
        chat(&gateway, &free_key, "gpt-4").await.0,
        429,
        "the free tier's rpm_limit, inherited through the team"
    );
    for _ in 0..3 {
        assert_eq!(chat(&gateway, &paid_key, "gpt-4").await.0, 200, "the paid tier has no limit");
    }
}

#[actix_web::test]
async fn the_admin_page_has_teams_and_users_views_fed_by_the_list_endpoints() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let page = |path: &'static str| {
        let url = format!("{}{path}", gateway.url);
        async move { String::from_utf8(client().get(url).send().await.unwrap().body().await.unwrap().to_vec()).unwrap() }
    };
    let (html, script) = (page("/ui").await, page("/ui/app.js").await);
    assert!(html.contains("id=\"teams\"") && html.contains("id=\"users\""), "{html}");
    assert!(script.contains("\"/team/list\"") && script.contains("/user/list?page_size=100"));
    // What the views show: a team's tier, members, keys and spend; a user's role, tier and key count.
    let team = json!({"team_id": "t", "metadata": {"tier": "paid"}, "members_with_roles": [{"role": "admin", "user_id": "u"}]});
    assert_eq!(call(&gateway, "/team/new", MASTER_KEY, team).await.0, 200);
    let user = json!({"user_id": "u", "user_role": "internal_user", "metadata": {"tier": "paid"}, "team_id": "t"});
    assert_eq!(call(&gateway, "/user/new", MASTER_KEY, user).await.0, 200);
    let key = gateway.mint(json!({"team_id": "t"})).await;
    assert_eq!(chat(&gateway, &key, "gpt-4").await.0, 200);
    // The answer's spend is counted once the answer is done: polled briefly.
    let start = std::time::Instant::now();
    let teams = loop {
        let (_, teams) = get(&gateway, "/team/list", MASTER_KEY).await;
        if teams[0]["spend"].as_f64().unwrap() > 0.0 || start.elapsed() > std::time::Duration::from_secs(3) {
            break teams;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        (&teams[0]["metadata"]["tier"], teams[0]["keys"].as_array().unwrap().len()),
        (&json!("paid"), 2),
        "{teams}"
    );
    assert!(teams[0]["spend"].as_f64().unwrap() > 0.0, "its keys' spend: {teams}");
    let (_, users) = get(&gateway, "/user/list?page_size=100", MASTER_KEY).await;
    assert_eq!(
        (&users["users"][0]["user_role"], &users["users"][0]["key_count"]),
        (&json!("internal_user"), &json!(1)),
        "{users}"
    );
}

/// #21 slice 2 item 4 (part): `/team/list` pages as LiteLLM (`page`, `page_size` ≤ 100), reading the keys of
/// the page's teams only.
#[actix_web::test]
async fn team_list_is_paged_within_litellms_bounds() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    for id in ["a", "b", "c"] {
        assert_eq!(call(&gateway, "/team/new", MASTER_KEY, json!({"team_id": id})).await.0, 200);
    }
    let (status, all) = get(&gateway, "/team/list", MASTER_KEY).await;
    assert_eq!((status, all.as_array().map(Vec::len)), (200, Some(3)), "no page asked: every team");
    let (status, second) = get(&gateway, "/team/list?page=2&page_size=2", MASTER_KEY).await;
    assert_eq!(status, 200, "{second}");
    let ids: Vec<&str> = second.as_array().unwrap().iter().map(|team| team["team_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["c"]);
    for bad in ["page_size=101", "page=0", "page_size=0"] {
        let (status, refused) = get(&gateway, &format!("/team/list?{bad}"), MASTER_KEY).await;
        assert_eq!(status, 400, "{bad}: {refused}");
    }
}

/// Hostile pass: a member with an unknown role (or a field of the wrong type) was refused with "data did not
/// match any variant of untagged enum Members", which does not say what to fix.
#[actix_web::test]
async fn a_member_with_an_unknown_role_is_refused_naming_the_roles() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let team = json!({"team_id": "t1", "metadata": {"tier": "free"}});
    assert_eq!(call(&gateway, "/team/new", MASTER_KEY, team).await.0, 200);
    for member in [json!({"user_id": "u1", "role": "owner"}), json!([{"user_id": "u1", "role": "owner"}])] {
        let body = json!({"team_id": "t1", "member": member});
        let (status, refused) = call(&gateway, "/team/member_add", MASTER_KEY, body).await;
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{refused}");
        assert!(message.contains("owner") && message.contains("admin"), "{refused}");
    }
    let org = json!({"organization_id": "o1", "organization_alias": "O"});
    assert_eq!(call(&gateway, "/organization/new", MASTER_KEY, org).await.0, 200);
    let body = json!({"organization_id": "o1", "member": {"user_id": "u1", "role": "proxy_admin"}});
    let (status, refused) = call(&gateway, "/organization/member_add", MASTER_KEY, body).await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(status, 400, "{refused}");
    assert!(message.contains("proxy_admin") && message.contains("org_admin"), "{refused}");
}

/// Hostile pass: in a team without a tier, a free team admin minted a key for a member whose user is paid;
/// the key inherited paid from its user, and the admin held a paid key. Nor may it move a free key (free
/// from its team's organization) to that user.
#[actix_web::test]
async fn a_team_admin_cannot_mint_a_key_that_inherits_a_tier_beyond_its_own() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    for user in [json!({"user_id": "bob", "metadata": {"tier": "paid"}}), json!({"user_id": "ana"})] {
        let mut user = user;
        user["auto_create_key"] = json!(false);
        assert_eq!(call(&gateway, "/user/new", MASTER_KEY, user).await.0, 200);
    }
    let org = json!({"organization_id": "o1", "organization_alias": "O", "metadata": {"tier": "free"}});
    assert_eq!(call(&gateway, "/organization/new", MASTER_KEY, org).await.0, 200);
    // The team has no tier; its organization's (free) comes after a key's user's (paid for bob).
    let team = json!({"team_id": "t1", "organization_id": "o1", "members_with_roles": [
        {"user_id": "ana", "role": "admin"}, {"user_id": "bob", "role": "user"}]});
    assert_eq!(call(&gateway, "/team/new", MASTER_KEY, team).await.0, 200);
    let ana = gateway.mint(json!({"user_id": "ana", "team_id": "t1", "metadata": {"tier": "free"}})).await;

    let (status, refused) = call(&gateway, "/key/generate", &ana, json!({"team_id": "t1", "user_id": "bob"})).await;
    assert_eq!((status, refused["error"]["param"].as_str()), (403, Some("metadata.tier")), "{refused}");
    let (status, minted) = call(&gateway, "/key/generate", &ana, json!({"team_id": "t1"})).await;
    assert_eq!(status, 200, "{minted}");
    let key = minted["key"].as_str().unwrap();
    let moved = json!({"key": key, "user_id": "bob"});
    let (status, refused) = call(&gateway, "/key/update", &ana, moved).await;
    assert_eq!(status, 403, "{refused}");
    // Naming its own tier is fine: the key's own tier wins over its user's.
    let body = json!({"team_id": "t1", "user_id": "bob", "metadata": {"tier": "free"}});
    let (status, minted) = call(&gateway, "/key/generate", &ana, body).await;
    assert_eq!(status, 200, "{minted}");
    let (status, _) = chat(&gateway, minted["key"].as_str().unwrap(), "gpt-4").await;
    assert_eq!(status, 200);
    assert_eq!(free.records().await.len(), 1, "served on free");
}
