//! Organizations (issue 21, slice 1): LiteLLM's `/organization/*` with its methods over real HTTP; an
//! organization's tier reaches its teams' keys last; deleting one takes its teams and their keys.

mod common;

use common::*;
use serde_json::{json, Value};

fn gateway(free: &FakeUpstream, paid: &FakeUpstream) -> Gateway {
    Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&format!("{}/", free.url)), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&format!("{}/", paid.url)), Some("paid")),
    ]))
}

async fn send(gateway: &Gateway, method: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{path}", gateway.url);
    let request = match method {
        "GET" => client().get(url),
        "PATCH" => client().patch(url),
        "DELETE" => client().delete(url),
        _ => client().post(url),
    };
    let mut response = request.bearer_auth(key).send_json(&body).await.unwrap();
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

#[actix_web::test]
async fn an_organization_is_created_changed_and_deleted_with_litellm_methods_and_its_tier_reaches_team_keys() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let (status, org) = send(
        &gateway,
        "POST",
        "/organization/new",
        MASTER_KEY,
        json!({"organization_id": "acme", "organization_alias": "Acme", "metadata": {"tier": "paid"}}),
    )
    .await;
    assert_eq!(status, 200, "{org}");
    assert_eq!(org["organization_alias"], "Acme");
    assert!(org["litellm_budget_table"].is_object(), "never null: {org}");
    let (status, refused) =
        send(&gateway, "POST", "/organization/new", MASTER_KEY, json!({"organization_id": "x"})).await;
    assert_eq!((status, refused["error"]["param"].as_str()), (400, Some("organization_alias")), "{refused}");
    let (status, refused) =
        send(&gateway, "POST", "/organization/new", MASTER_KEY, json!({"organization_alias": "B", "max_budget": 3}))
            .await;
    // Issue 21 slice 2: an organization's budget is stored and shown in its budget table.
    assert_eq!((status, &refused["litellm_budget_table"]["max_budget"]), (200, &json!(3.0)), "{refused}");
    let b = json!({"organization_ids": [refused["organization_id"]]});
    assert_eq!(send(&gateway, "DELETE", "/organization/delete", MASTER_KEY, b).await.0, 200);

    assert_eq!(
        send(&gateway, "POST", "/team/new", MASTER_KEY, json!({"team_id": "t", "organization_id": "acme"})).await.0,
        200
    );
    let team_key = gateway.mint(json!({"team_id": "t"})).await;
    let org_key = gateway.mint(json!({"organization_id": "acme"})).await;
    for key in [&team_key, &org_key] {
        assert_eq!(send(&gateway, "POST", "/v1/chat/completions", key, chat_body("gpt-4")).await.0, 200);
    }
    assert_eq!(paid.records().await.len(), 2, "the org's tier, through its team and directly");
    assert!(free.records().await.is_empty());

    let (status, updated) = send(
        &gateway,
        "PATCH",
        "/organization/update",
        MASTER_KEY,
        json!({"organization_id": "acme", "organization_alias": "Acme Inc"}),
    )
    .await;
    assert_eq!((status, &updated["organization_alias"]), (200, &json!("Acme Inc")), "{updated}");
    assert_eq!(send(&gateway, "POST", "/organization/update", MASTER_KEY, json!({})).await.0, 405, "PATCH, as LiteLLM");

    let (status, added) = send(
        &gateway,
        "POST",
        "/organization/member_add",
        MASTER_KEY,
        json!({"organization_id": "acme", "member": {"role": "org_admin", "user_id": "ana"}}),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["updated_organization_memberships"][0]["user_role"], "org_admin");
    let (status, changed) = send(
        &gateway,
        "PATCH",
        "/organization/member_update",
        MASTER_KEY,
        json!({"organization_id": "acme", "user_id": "ana", "role": "internal_user"}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        send(
            &gateway,
            "PATCH",
            "/organization/member_update",
            MASTER_KEY,
            json!({"organization_id": "acme", "user_id": "bo"})
        )
        .await
        .0,
        404
    );
    let (_, info) = send(&gateway, "GET", "/organization/info?organization_id=acme", MASTER_KEY, json!({})).await;
    assert_eq!(info["members"][0]["user_role"], "internal_user", "{info}");
    assert_eq!(info["teams"][0]["team_id"], "t", "{info}");
    assert_eq!(
        send(
            &gateway,
            "DELETE",
            "/organization/member_delete",
            MASTER_KEY,
            json!({"organization_id": "acme", "user_id": "ana"})
        )
        .await
        .0,
        200
    );
    let (_, list) = send(&gateway, "GET", "/organization/list", MASTER_KEY, json!({})).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    let other = gateway.mint_on_tier("free").await;
    assert_eq!(
        send(&gateway, "DELETE", "/organization/delete", &other, json!({"organization_ids": ["acme"]})).await.0,
        401,
        "admins only"
    );
    let (status, deleted) =
        send(&gateway, "DELETE", "/organization/delete", MASTER_KEY, json!({"organization_ids": ["acme"]})).await;
    assert_eq!(status, 200, "{deleted}");
    for key in [&team_key, &org_key] {
        assert_eq!(send(&gateway, "POST", "/v1/chat/completions", key, chat_body("gpt-4")).await.0, 401, "its keys go");
    }
    assert_eq!(send(&gateway, "GET", "/team/info?team_id=t", MASTER_KEY, json!({})).await.0, 404, "and its teams");
    assert_eq!(send(&gateway, "GET", "/organization/info?organization_id=acme", MASTER_KEY, json!({})).await.0, 404);
    assert_eq!(send(&gateway, "POST", "/v1/chat/completions", &other, chat_body("gpt-4")).await.0, 200);
    let (status, refused) =
        send(&gateway, "POST", "/key/generate", MASTER_KEY, json!({"organization_id": "acme"})).await;
    assert_eq!((status, refused["error"]["param"].as_str()), (400, Some("organization_id")), "{refused}");
}

#[actix_web::test]
async fn entities_and_their_keys_move_with_an_export_and_import() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let mut gateway = gateway(&free, &paid);
    assert_eq!(
        send(
            &gateway,
            "POST",
            "/organization/new",
            MASTER_KEY,
            json!({"organization_id": "o", "organization_alias": "O"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        send(
            &gateway,
            "POST",
            "/team/new",
            MASTER_KEY,
            json!({"team_id": "t", "organization_id": "o", "metadata": {"tier": "paid"}})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        send(&gateway, "POST", "/user/new", MASTER_KEY, json!({"user_id": "u", "auto_create_key": false})).await.0,
        200
    );
    let key = gateway.mint(json!({"team_id": "t", "user_id": "u"})).await;
    gateway.terminate();
    let keys = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tiergate")).arg("keys").args(args).output().unwrap()
    };
    let export = keys(&["export", "--data-dir", gateway.data_dir().to_str().unwrap()]);
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let lines = String::from_utf8(export.stdout).unwrap();
    assert_eq!(lines.lines().filter(|line| line.starts_with("{\"entity\"")).count(), 3, "{lines}");

    let mut fresh = self::gateway(&free, &paid);
    fresh.terminate();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &lines).unwrap();
    let import = keys(&["import", file.to_str().unwrap(), "--data-dir", fresh.data_dir().to_str().unwrap()]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    assert!(String::from_utf8_lossy(&import.stderr).contains("3 users/teams/organizations"));
    fresh.restart();
    assert_eq!(send(&fresh, "POST", "/v1/chat/completions", &key, chat_body("gpt-4")).await.0, 200);
    assert_eq!(paid.records().await.len(), 1, "the imported key kept its team's tier");
    assert_eq!(send(&fresh, "GET", "/team/info?team_id=t", MASTER_KEY, json!({})).await.0, 200);
}

/// Hostile pass: an import file with a key before its owners (reordered, or cut to the keys) gave the key a
/// grant without the tier it takes from them, so a free team's key reached the paid deployment.
#[actix_web::test]
async fn an_import_with_keys_before_or_without_their_owners_never_leaves_a_key_untiered() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    // `big` is on paid only: an untiered key reaches it, a free one is refused.
    let with_big = |free: &FakeUpstream, paid: &FakeUpstream| {
        Gateway::start(&config(&[
            deployment("gpt-4", "openai/fake", "k", Some(&format!("{}/", free.url)), Some("free")),
            deployment("big", "openai/gpt-4o", "k", Some(&format!("{}/", paid.url)), Some("paid")),
        ]))
    };
    let mut gateway = with_big(&free, &paid);
    let team = json!({"team_id": "t", "metadata": {"tier": "free"}});
    assert_eq!(send(&gateway, "POST", "/team/new", MASTER_KEY, team).await.0, 200);
    let user = json!({"user_id": "u", "metadata": {"tier": "free"}, "auto_create_key": false});
    assert_eq!(send(&gateway, "POST", "/user/new", MASTER_KEY, user).await.0, 200);
    let team_key = gateway.mint(json!({"team_id": "t"})).await;
    let user_key = gateway.mint(json!({"user_id": "u"})).await;
    gateway.terminate();
    let keys = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tiergate")).arg("keys").args(args).output().unwrap()
    };
    let export = keys(&["export", "--data-dir", gateway.data_dir().to_str().unwrap()]);
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let lines = String::from_utf8(export.stdout).unwrap();
    let (entities, others): (Vec<&str>, Vec<&str>) = lines.lines().partition(|line| line.starts_with("{\"entity\""));
    let dir = tempfile::tempdir().unwrap();
    let import = |fresh: &Gateway, lines: Vec<&str>| {
        let file = dir.path().join("import.jsonl");
        std::fs::write(&file, lines.join("\n")).unwrap();
        keys(&["import", file.to_str().unwrap(), "--data-dir", fresh.data_dir().to_str().unwrap()])
    };

    // Keys without their team: refused, naming it, rather than imported with no tier.
    let mut fresh = with_big(&free, &paid);
    fresh.terminate();
    let refused = import(&fresh, others.clone());
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("team_id=t"), "{refused:?}");

    // The team first, the user after the keys: every key ends on its owners' tier.
    let team_first: Vec<&str> = entities.iter().copied().filter(|line| line.contains("team:")).collect();
    let user_last: Vec<&str> = entities.iter().copied().filter(|line| line.contains("user:")).collect();
    let reordered = [team_first, others, user_last].concat();
    let imported = import(&fresh, reordered);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    fresh.restart();
    for key in [&team_key, &user_key] {
        let (status, answer) = send(&fresh, "POST", "/v1/chat/completions", key, chat_body("gpt-4")).await;
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = send(&fresh, "POST", "/v1/chat/completions", key, chat_body("big")).await;
        assert_eq!(status, 403, "an imported free key reached the paid deployment: {answer}");
    }
    assert!(paid.records().await.is_empty(), "an imported free key reached the paid deployment");
}

/// Hostile pass: an import line holding no team record under `team:` was stored as it was, and every
/// `/team/list` after it answered 503 until the store was fixed by hand.
#[actix_web::test]
async fn an_import_line_that_is_no_user_team_or_organization_is_refused_and_teams_stay_listable() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let mut fresh = gateway(&free, &paid);
    fresh.terminate();
    let dir = tempfile::tempdir().unwrap();
    let bad_lines = [
        r#"{"entity":{"key":"team:evil","record":{"x":1}}}"#,
        r#"{"entity":{"key":"team:evil","record":{"team_id":"other","members_with_roles":[],"metadata":{},"models":[],"blocked":false,"created_at":"","updated_at":""}}}"#,
        r#"{"entity":{"key":"keys-of:team:evil","record":"mark"}}"#,
    ];
    for line in bad_lines {
        let file = dir.path().join("import.jsonl");
        std::fs::write(&file, line).unwrap();
        let import = std::process::Command::new(env!("CARGO_BIN_EXE_tiergate"))
            .args(["keys", "import", file.to_str().unwrap(), "--data-dir", fresh.data_dir().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!import.status.success(), "{line} was imported");
    }
    fresh.restart();
    let (status, teams) = send(&fresh, "GET", "/team/list", MASTER_KEY, json!({})).await;
    assert_eq!((status, teams), (200, json!([])));
}

#[actix_web::test]
async fn an_org_admin_creates_teams_and_members_in_its_organization_only() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    for org in ["acme", "other"] {
        let body = json!({"organization_id": org, "organization_alias": org});
        assert_eq!(send(&gateway, "POST", "/organization/new", MASTER_KEY, body).await.0, 200);
    }
    let member = json!({"organization_id": "acme", "member": {"role": "org_admin", "user_id": "ana"}});
    assert_eq!(send(&gateway, "POST", "/organization/member_add", MASTER_KEY, member).await.0, 200);
    let ana = gateway.mint(json!({"user_id": "ana", "metadata": {"tier": "free"}})).await;

    let (status, team) =
        send(&gateway, "POST", "/team/new", &ana, json!({"team_id": "acme-eng", "organization_id": "acme"})).await;
    assert_eq!(status, 200, "{team}");
    for body in [json!({"team_id": "x", "organization_id": "other"}), json!({"team_id": "y"})] {
        let (status, refused) = send(&gateway, "POST", "/team/new", &ana, body.clone()).await;
        assert_eq!(status, 401, "{body}: {refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("Route=/team/new"), "{refused}");
    }
    let bo = json!({"organization_id": "acme", "member": {"role": "internal_user", "user_id": "bo"}});
    assert_eq!(send(&gateway, "POST", "/organization/member_add", &ana, bo).await.0, 200);
    let bo = json!({"organization_id": "other", "member": {"role": "internal_user", "user_id": "bo"}});
    assert_eq!(send(&gateway, "POST", "/organization/member_add", &ana, bo).await.0, 401);
    assert_eq!(send(&gateway, "GET", "/organization/info?organization_id=acme", &ana, json!({})).await.0, 200);
    assert_eq!(send(&gateway, "GET", "/organization/info?organization_id=other", &ana, json!({})).await.0, 401);
    let user = json!({"user_id": "cy", "organizations": ["acme"], "auto_create_key": false});
    assert_eq!(send(&gateway, "POST", "/user/new", &ana, user).await.0, 200);
    assert_eq!(
        send(&gateway, "POST", "/user/new", &ana, json!({"user_id": "dee", "auto_create_key": false})).await.0,
        401
    );
    assert_eq!(
        send(&gateway, "DELETE", "/organization/delete", &ana, json!({"organization_ids": ["acme"]})).await.0,
        401
    );
}

/// Hostile pass: an org admin's `/user/new` joined the new user to any team (as its admin, too), and the key
/// it answered was that team's: a free organization's admin got a paid team's key and its admin rights.
#[actix_web::test]
async fn an_org_admin_cannot_put_a_new_user_in_a_team_outside_its_organization() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let org = json!({"organization_id": "acme", "organization_alias": "Acme", "metadata": {"tier": "free"}});
    assert_eq!(send(&gateway, "POST", "/organization/new", MASTER_KEY, org).await.0, 200);
    let inside = json!({"team_id": "acme-eng", "organization_id": "acme"});
    assert_eq!(send(&gateway, "POST", "/team/new", MASTER_KEY, inside).await.0, 200);
    let outside = json!({"team_id": "paid-team", "metadata": {"tier": "paid"}});
    assert_eq!(send(&gateway, "POST", "/team/new", MASTER_KEY, outside).await.0, 200);
    let member = json!({"organization_id": "acme", "member": {"role": "org_admin", "user_id": "ana"}});
    assert_eq!(send(&gateway, "POST", "/organization/member_add", MASTER_KEY, member).await.0, 200);
    let ana = gateway.mint(json!({"user_id": "ana", "metadata": {"tier": "free"}})).await;

    let sneaky = [
        json!({"user_id": "s1", "organizations": ["acme"], "teams": [{"team_id": "paid-team", "user_role": "admin"}]}),
        json!({"user_id": "s2", "organizations": ["acme"], "team_id": "paid-team"}),
    ];
    for body in sneaky {
        let (status, refused) = send(&gateway, "POST", "/user/new", &ana, body.clone()).await;
        assert_eq!(status, 401, "{body}: {refused}");
    }
    let (_, team) = send(&gateway, "GET", "/team/info?team_id=paid-team", MASTER_KEY, json!({})).await;
    assert_eq!(team["team_info"]["members_with_roles"], json!([]), "{team}");
    let (status, users) = send(&gateway, "GET", "/user/list", MASTER_KEY, json!({})).await;
    assert_eq!((status, users["total"].as_u64()), (200, Some(0)), "{users}");

    // A team of its organization is fine.
    let body = json!({"user_id": "s3", "organizations": ["acme"], "team_id": "acme-eng"});
    let (status, created) = send(&gateway, "POST", "/user/new", &ana, body).await;
    assert_eq!(status, 200, "{created}");
}

/// Hostile pass: an org admin whose key is free created a paid team in its organization, made itself its
/// admin and minted paid keys (or created a paid user, whose key `/user/new` answers).
#[actix_web::test]
async fn an_org_admin_cannot_create_a_team_or_user_on_a_tier_beyond_its_own_key() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let org = json!({"organization_id": "acme", "organization_alias": "Acme", "metadata": {"tier": "free"}});
    assert_eq!(send(&gateway, "POST", "/organization/new", MASTER_KEY, org).await.0, 200);
    let member = json!({"organization_id": "acme", "member": {"role": "org_admin", "user_id": "ana"}});
    assert_eq!(send(&gateway, "POST", "/organization/member_add", MASTER_KEY, member).await.0, 200);
    let ana = gateway.mint(json!({"user_id": "ana", "metadata": {"tier": "free"}})).await;

    for tier in [json!("paid"), Value::Null] {
        let team = json!({"team_id": "t", "organization_id": "acme", "metadata": {"tier": tier},
            "members_with_roles": [{"role": "admin", "user_id": "ana"}]});
        let (status, refused) = send(&gateway, "POST", "/team/new", &ana, team).await;
        assert_eq!((status, refused["error"]["param"].as_str()), (403, Some("metadata.tier")), "{tier}: {refused}");
    }
    let user = json!({"user_id": "u", "organizations": ["acme"], "metadata": {"tier": "paid"}});
    let (status, refused) = send(&gateway, "POST", "/user/new", &ana, user).await;
    assert_eq!(status, 403, "the key answered would inherit paid: {refused}");
    let team = json!({"team_id": "t", "organization_id": "acme", "metadata": {"tier": "free"}});
    assert_eq!(send(&gateway, "POST", "/team/new", &ana, team).await.0, 200);
}

/// Hostile pass: a team admin minted a key of its team naming another organization: a key's organization
/// is its own before its team's, so the key escaped its team's organization's budget (here 0) and charged
/// an organization the admin does not administer.
#[actix_web::test]
async fn a_team_admin_cannot_put_its_team_keys_under_another_organization() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    for org in [
        json!({"organization_id": "acme", "organization_alias": "Acme", "max_budget": 0,
            "metadata": {"tier": "free"}}),
        json!({"organization_id": "other", "organization_alias": "Other"}),
    ] {
        assert_eq!(send(&gateway, "POST", "/organization/new", MASTER_KEY, org).await.0, 200);
    }
    let team = json!({"team_id": "eng", "organization_id": "acme",
        "members_with_roles": [{"role": "admin", "user_id": "ana"}]});
    assert_eq!(send(&gateway, "POST", "/team/new", MASTER_KEY, team).await.0, 200);
    let ana = gateway.mint(json!({"user_id": "ana", "team_id": "eng"})).await;

    let body = json!({"team_id": "eng", "organization_id": "other"});
    let (status, refused) = send(&gateway, "POST", "/key/generate", &ana, body).await;
    assert_eq!((status, refused["error"]["param"].as_str()), (403, Some("organization_id")), "{refused}");
    let body = json!({"key": ana, "organization_id": "other"});
    let (status, refused) = send(&gateway, "POST", "/key/update", &ana, body).await;
    assert_eq!((status, refused["error"]["param"].as_str()), (403, Some("organization_id")), "{refused}");

    // Its team's own organization may be named, and binds the key.
    let body = json!({"team_id": "eng", "organization_id": "acme"});
    let (status, minted) = send(&gateway, "POST", "/key/generate", &ana, body).await;
    assert_eq!(status, 200, "{minted}");
    let chat = json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]});
    let key = minted["key"].as_str().unwrap();
    let (status, refused) = send(&gateway, "POST", "/v1/chat/completions", key, chat).await;
    assert_eq!(status, 429, "acme's budget of 0 binds the key: {refused}");
}
