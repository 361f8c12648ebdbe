//! The admin page's server side: `/ui` and its files are served with a strict content security policy and no
//! secret in them, and `/usage/history` (master key only) gives the last hour per tier that the page plots.
//! `scripts/browser-check.sh` drives the page itself in headless Chromium.

mod common;

use common::*;

#[actix_web::test]
async fn the_page_is_served_locked_down_and_its_history_counts_per_tier() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&[
        deployment("gpt-4", "openai/small", "k", Some(&upstream.url), Some("free")),
        deployment("gpt-4", "openai/large", "k", Some(&upstream.url), Some("paid")),
    ]));
    for (path, kind) in [("/ui", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")] {
        let mut response = client().get(format!("{}{path}", gateway.url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(header(&response, "content-type").starts_with(kind), "{path}");
        let policy = header(&response, "content-security-policy");
        assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe"), "{policy}");
        let body = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
        assert!(!body.contains("http://") && !body.contains("https://"), "nothing from another origin: {path}");
        let forbidden = ["localStorage", "sessionStorage", "document.cookie =", "innerHTML"];
        assert!(forbidden.iter().all(|word| !body.contains(word)), "no web storage, cookie or innerHTML: {path}");
    }
    let free = gateway.mint_on_tier("free").await;
    let paid = gateway.mint_on_tier("paid").await;
    for key in [&free, &free, &paid] {
        assert_eq!(gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await.status(), 200);
    }
    let anonymous = client().get(format!("{}/usage/history", gateway.url)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let mut response =
        client().get(format!("{}/usage/history", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    let history = json_of(&mut response).await;
    let requests = |tier: &str| -> u64 {
        history["minutes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["tier"] == tier)
            .map(|m| m["requests"].as_u64().unwrap())
            .sum()
    };
    assert_eq!((requests("free"), requests("paid")), (2, 1), "{history}");
}
