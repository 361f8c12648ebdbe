//! LiteLLM's `user_role` over real HTTP (#21 item 2): a proxy_admin's key acts as the master key on admin
//! routes, a proxy_admin_viewer's reads and writes nothing, internal users (and viewers) manage nothing
//! beyond their own; only an admin makes an admin; and no role moves a key off its own tier.

mod common;

use common::*;
use serde_json::{json, Value};

fn gateway(free: &FakeUpstream, paid: &FakeUpstream) -> Gateway {
    Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&format!("{}/", free.url)), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&format!("{}/", paid.url)), Some("paid")),
    ]))
}

async fn send(gateway: &Gateway, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let request = client().request(method.parse().unwrap(), format!("{}{path}", gateway.url)).bearer_auth(key);
    let mut response = match body {
        Some(body) => request.send_json(&body).await.unwrap(),
        None => request.send().await.unwrap(),
    };
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

/// A user with `role` (none: no role), on the free tier, and the key `/user/new` made for it.
async fn user_with(gateway: &Gateway, id: &str, role: Option<&str>) -> String {
    let mut body = json!({"user_id": id, "metadata": {"tier": "free"}});
    if let Some(role) = role {
        body["user_role"] = json!(role);
    }
    let (status, user) = send(gateway, "POST", "/user/new", MASTER_KEY, Some(body)).await;
    assert_eq!(status, 200, "{user}");
    user["key"].as_str().unwrap().to_owned()
}

/// One admin action of the table, by `key` (`n` keeps ids apart); its status.
async fn act(gateway: &Gateway, action: &str, key: &str, n: usize) -> (u16, Value) {
    match action {
        "key generate" => {
            send(gateway, "POST", "/key/generate", key, Some(json!({"metadata": {"tier": "free"}}))).await
        }
        "key delete of another's key" => {
            let theirs = gateway.mint(json!({"user_id": "someone-else", "metadata": {"tier": "free"}})).await;
            send(gateway, "POST", "/key/delete", key, Some(json!({"keys": [theirs]}))).await
        }
        "team new" => {
            let body = json!({"team_id": format!("team-{n}"), "metadata": {"tier": "free"}});
            send(gateway, "POST", "/team/new", key, Some(body)).await
        }
        "user update role" => {
            let body = json!({"user_id": format!("target-{n}"), "user_role": "proxy_admin"});
            send(gateway, "POST", "/user/update", key, Some(body)).await
        }
        "spend report" => {
            send(gateway, "GET", "/global/spend/report?start_date=2020-01-01&end_date=2030-01-01", key, None).await
        }
        "model new" => {
            let body = json!({
                "model_name": format!("added-{n}"),
                "litellm_params": {"model": "openai/x", "api_base": "http://127.0.0.1:9/", "api_key": "k"},
                "model_info": {"id": format!("added-{n}"), "tier": "free"},
            });
            send(gateway, "POST", "/model/new", key, Some(body)).await
        }
        other => panic!("no action {other}"),
    }
}

const ACTIONS: [&str; 6] =
    ["key generate", "key delete of another's key", "team new", "user update role", "spend report", "model new"];

#[actix_web::test]
async fn each_role_may_do_what_litellm_lets_it_and_nothing_more() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    // Expected statuses, in ACTIONS order. Non-admins get what a plain virtual key always got on these
    // routes (403, or LiteLLM's 401 "Only proxy admin…" on team and user writes); viewers 403 on every write.
    let table: [(&str, Option<&str>, [u16; 6]); 6] = [
        ("master", None, [200, 200, 200, 200, 200, 200]),
        ("admin", Some("proxy_admin"), [200, 200, 200, 200, 200, 200]),
        ("viewer", Some("proxy_admin_viewer"), [403, 403, 403, 403, 200, 403]),
        ("internal", Some("internal_user"), [403, 403, 401, 401, 403, 403]),
        ("internal-viewer", Some("internal_user_viewer"), [403, 403, 403, 403, 403, 403]),
        ("no-role", None, [403, 403, 401, 401, 403, 403]),
    ];
    let mut n = 0;
    let mut wrong = Vec::new();
    for (who, role, expected) in table {
        let key = match who {
            "master" => MASTER_KEY.to_owned(),
            _ => user_with(&gateway, who, role).await,
        };
        for (action, expected) in ACTIONS.iter().zip(expected) {
            n += 1;
            let (status, answer) = act(&gateway, action, &key, n).await;
            if status != expected {
                wrong.push(format!("{who} × {action}: {status}, expected {expected}: {answer}"));
            }
            if status >= 400 {
                assert!(answer["error"]["message"].is_string(), "an OpenAI-style error body: {answer}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[actix_web::test]
async fn only_an_admin_makes_an_admin_and_an_unknown_role_is_a_400_listing_the_roles() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let admin = user_with(&gateway, "admin", Some("proxy_admin")).await;
    let (status, made) = send(
        &gateway,
        "POST",
        "/user/new",
        &admin,
        Some(json!({"user_id": "second", "user_role": "proxy_admin", "metadata": {"tier": "free"}})),
    )
    .await;
    assert_eq!(status, 200, "a proxy admin makes another: {made}");

    // An org admin may make users in its organization, but not admins.
    let (status, org) = send(
        &gateway,
        "POST",
        "/organization/new",
        MASTER_KEY,
        Some(json!({"organization_id": "acme", "organization_alias": "Acme"})),
    )
    .await;
    assert_eq!(status, 200, "{org}");
    let org_admin = user_with(&gateway, "ana", None).await;
    let member = json!({"organization_id": "acme", "member": {"role": "org_admin", "user_id": "ana"}});
    assert_eq!(send(&gateway, "POST", "/organization/member_add", MASTER_KEY, Some(member)).await.0, 200);
    let plain = json!({"user_id": "plain", "organizations": ["acme"], "metadata": {"tier": "free"}});
    let (status, answer) = send(&gateway, "POST", "/user/new", &org_admin, Some(plain)).await;
    assert_eq!(status, 200, "an org admin makes users of its organization: {answer}");
    for role in ["proxy_admin", "proxy_admin_viewer"] {
        let body = json!({"user_id": format!("climber-{role}"), "user_role": role, "organizations": ["acme"], "metadata": {"tier": "free"}});
        let (status, refused) = send(&gateway, "POST", "/user/new", &org_admin, Some(body)).await;
        assert_eq!((status, refused["error"]["param"].as_str()), (403, Some("user_role")), "{refused}");
    }
    let climber = send(&gateway, "GET", "/user/info?user_id=climber-proxy_admin", MASTER_KEY, None).await;
    assert_eq!(climber.0, 404, "nothing was made: {}", climber.1);

    let (status, refused) =
        send(&gateway, "POST", "/user/new", MASTER_KEY, Some(json!({"user_id": "x", "user_role": "root"}))).await;
    assert_eq!(status, 400, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    for role in ["proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer"] {
        assert!(message.contains(role), "the roles are listed: {message}");
    }
}

#[actix_web::test]
async fn a_proxy_admins_key_still_routes_on_its_own_tier_only() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let admin = user_with(&gateway, "admin", Some("proxy_admin")).await;
    for _ in 0..3 {
        let mut response = gateway.post("/v1/chat/completions", &admin, &chat_body("gpt-4")).await;
        assert_eq!(response.status().as_u16(), 200, "{}", json_of(&mut response).await);
    }
    assert_eq!(free.records().await.len(), 3);
    assert!(paid.records().await.is_empty(), "an admin's free key reached the paid deployment");
}

#[actix_web::test]
async fn a_team_admin_cannot_mint_move_or_regenerate_a_key_of_a_proxy_admin_member() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    user_with(&gateway, "boss", Some("proxy_admin")).await;
    user_with(&gateway, "watcher", Some("proxy_admin_viewer")).await;
    let lead = user_with(&gateway, "lead", None).await;
    let members = json!([{"user_id": "lead", "role": "admin"}, {"user_id": "boss", "role": "user"},
        {"user_id": "watcher", "role": "user"}]);
    let team = json!({"team_id": "t", "members_with_roles": members, "metadata": {"tier": "free"}});
    assert_eq!(send(&gateway, "POST", "/team/new", MASTER_KEY, Some(team)).await.0, 200);
    let lead_key = send(&gateway, "POST", "/key/generate", &lead, Some(json!({"team_id": "t"}))).await;
    assert_eq!(lead_key.0, 200, "the team admin mints its own team key: {}", lead_key.1);
    let lead_key = lead_key.1["key"].as_str().unwrap().to_owned();

    for user in ["boss", "watcher"] {
        // A key for an admin member would act as the master key (or read everything).
        let body = json!({"team_id": "t", "user_id": user});
        let (status, answer) = send(&gateway, "POST", "/key/generate", &lead, Some(body)).await;
        assert_eq!(status, 403, "a team admin minted a key of {user}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
        // ... as would its own team key moved to that user.
        let body = json!({"key": lead_key, "user_id": user});
        let (status, answer) = send(&gateway, "POST", "/key/update", &lead, Some(body)).await;
        assert_eq!(status, 403, "a team admin moved a key to {user}: {answer}");
        // ... or the plaintext of that user's team key, regenerated.
        let theirs = gateway.mint(json!({"team_id": "t", "user_id": user})).await;
        let (status, answer) = send(&gateway, "POST", "/key/regenerate", &lead, Some(json!({"key": theirs}))).await;
        assert_eq!(status, 403, "a team admin regenerated {user}'s key: {answer}");
    }
    let (status, answer) =
        send(&gateway, "POST", "/user/update", &lead_key, Some(json!({"user_id": "lead", "user_role": "proxy_admin"})))
            .await;
    assert_ne!(status, 200, "the team admin's key stays no admin: {answer}");
}
