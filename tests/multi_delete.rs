//! Deleting several teams, users, organizations or end users in one call (#21 item 4): all or nothing, an
//! unknown id refuses the call naming it, and kill -9 in the middle leaves every one or none; and two
//! concurrent `/user/new` with one `user_email` make one user; a repeated id counts once, and a call names at
//! most a thousand.

mod common;

use common::*;
use serde_json::{json, Value};

fn gateway(free: &FakeUpstream) -> Gateway {
    Gateway::start(&config(&[deployment("gpt-4", "openai/fake", "k", Some(&format!("{}/", free.url)), Some("free"))]))
}

async fn send(url: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let request = client().request(method.parse().unwrap(), format!("{url}{path}")).bearer_auth(MASTER_KEY);
    let mut response = match body {
        Some(body) => request.send_json(&body).await.unwrap(),
        None => request.send().await.unwrap(),
    };
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

async fn exists(gateway: &Gateway, path: &str) -> bool {
    let (status, answer) = send(&gateway.url, "GET", path, None).await;
    assert!(status == 200 || status == 404, "{status}: {answer}");
    status == 200
}

#[actix_web::test]
async fn an_unknown_id_among_several_deletes_none_of_them() {
    let free = FakeUpstream::start("free");
    let gateway = gateway(&free);
    let url = gateway.url.clone();
    for n in 0..2 {
        assert_eq!(
            send(&url, "POST", "/team/new", Some(json!({"team_id": format!("t{n}"), "metadata": {"tier": "free"}})))
                .await
                .0,
            200
        );
        assert_eq!(
            send(&url, "POST", "/user/new", Some(json!({"user_id": format!("u{n}"), "metadata": {"tier": "free"}})))
                .await
                .0,
            200
        );
        let org = json!({"organization_id": format!("o{n}"), "organization_alias": format!("O{n}")});
        assert_eq!(send(&url, "POST", "/organization/new", Some(org)).await.0, 200);
        assert_eq!(send(&url, "POST", "/end_user/new", Some(json!({"user_id": format!("e{n}")}))).await.0, 200);
    }
    let key = gateway.mint(json!({"team_id": "t0"})).await;
    let calls = [
        ("/team/delete", "team_ids", "t", "/team/info?team_id="),
        ("/user/delete", "user_ids", "u", "/user/info?user_id="),
        ("/organization/delete", "organization_ids", "o", "/organization/info?organization_id="),
        ("/end_user/delete", "user_ids", "e", "/end_user/info?end_user_id="),
    ];
    for (path, field, prefix, info) in calls {
        let ids = json!([format!("{prefix}0"), "nobody", format!("{prefix}1")]);
        let method = if path == "/organization/delete" { "DELETE" } else { "POST" };
        let (status, refused) = send(&url, method, path, Some(json!({ field: ids }))).await;
        assert_eq!(status, 404, "{path}: {refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("nobody"), "names the unknown id: {refused}");
        for n in 0..2 {
            assert!(
                exists(&gateway, &format!("{info}{prefix}{n}")).await,
                "{path} deleted {prefix}{n} though it refused"
            );
        }
        let ids = json!([format!("{prefix}0"), format!("{prefix}1"), format!("{prefix}0")]);
        let (status, answer) = send(&url, method, path, Some(json!({ field: ids }))).await;
        assert_eq!(status, 200, "{path}: {answer}");
        for n in 0..2 {
            assert!(!exists(&gateway, &format!("{info}{prefix}{n}")).await, "{path} left {prefix}{n}");
        }
    }
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(response.status().as_u16(), 401, "a deleted team's key: {}", json_of(&mut response).await);
}

/// kill -9 while one `/team/delete` of many teams is being made: after the restart every team is there or
/// none is (the delete was one transaction), never some.
#[actix_web::test]
async fn kill_9_during_a_delete_of_many_teams_leaves_all_or_none() {
    let free = FakeUpstream::start("free");
    let mut gateway = gateway(&free);
    let url = gateway.url.clone();
    const TEAMS: usize = 30;
    for n in 0..TEAMS {
        let team = format!("t{n}");
        assert_eq!(
            send(&url, "POST", "/team/new", Some(json!({"team_id": team, "metadata": {"tier": "free"}}))).await.0,
            200
        );
        gateway.mint(json!({"team_id": team})).await;
    }
    let ids: Vec<String> = (0..TEAMS).map(|n| format!("t{n}")).collect();
    let deleting = url.clone();
    actix_web::rt::spawn(async move {
        let _ = client()
            .post(format!("{deleting}/team/delete"))
            .bearer_auth(MASTER_KEY)
            .send_json(&json!({"team_ids": ids}))
            .await;
    });
    // Killed as soon as the first team is seen gone.
    for _ in 0..2000 {
        if !exists(&gateway, "/team/info?team_id=t0").await {
            break;
        }
    }
    gateway.kill9();
    gateway.restart();
    let mut left = 0;
    for n in 0..TEAMS {
        left += usize::from(exists(&gateway, &format!("/team/info?team_id=t{n}")).await);
    }
    assert!(left == 0 || left == TEAMS, "{left} of {TEAMS} teams left: a delete half made");
}

#[actix_web::test]
async fn concurrent_user_new_with_one_email_makes_one_user() {
    let free = FakeUpstream::start("free");
    let gateway = gateway(&free);
    let attempts = (0..8).map(|n| {
        let url = gateway.url.clone();
        async move {
            let body = json!({"user_id": format!("twin-{n}"), "user_email": "same@example.com", "metadata": {"tier": "free"}, "auto_create_key": false});
            send(&url, "POST", "/user/new", Some(body)).await
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let made = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(made, 1, "{answers:?}");
    for (status, answer) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 409, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("same@example.com"), "{answer}");
        assert_eq!(answer["error"]["param"], "user_email", "the clash is the email, not the id: {answer}");
    }
    let (_, list) = send(&gateway.url, "GET", "/user/list", None).await;
    let twins =
        list["users"].as_array().unwrap().iter().filter(|user| user["user_email"] == "same@example.com").count();
    assert_eq!(twins, 1, "{list}");
}

#[actix_web::test]
async fn a_repeated_id_is_deleted_and_listed_once_and_a_call_names_at_most_a_thousand() {
    let free = FakeUpstream::start("free");
    let gateway = gateway(&free);
    let url = gateway.url.clone();
    assert_eq!(
        send(&url, "POST", "/team/new", Some(json!({"team_id": "t", "metadata": {"tier": "free"}}))).await.0,
        200
    );
    assert_eq!(send(&url, "POST", "/end_user/new", Some(json!({"user_id": "e"}))).await.0, 200);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;

    let (status, answer) = send(&url, "POST", "/team/delete", Some(json!({"team_ids": ["t", "t", "t"]}))).await;
    assert_eq!((status, answer["deleted_teams"].clone()), (200, json!(["t"])), "{answer}");
    let (status, answer) = send(&url, "POST", "/end_user/delete", Some(json!({"user_ids": ["e", "e"]}))).await;
    assert_eq!((status, answer["deleted_customers"].clone()), (200, json!(1)), "{answer}");
    let (status, answer) = send(&url, "POST", "/key/delete", Some(json!({"keys": [key.clone(), key]}))).await;
    assert_eq!((status, answer["deleted_keys"].as_array().map(Vec::len)), (200, Some(1)), "{answer}");

    let many: Vec<String> = (0..1001).map(|n| format!("t{n}")).collect();
    for (path, field) in
        [("/team/delete", "team_ids"), ("/user/delete", "user_ids"), ("/organization/delete", "organization_ids")]
    {
        let method = if path == "/organization/delete" { "DELETE" } else { "POST" };
        let (status, answer) = send(&url, method, path, Some(json!({ field: many }))).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(field), "{path}: {answer}");
    }
}
