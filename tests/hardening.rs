//! No input disables the gateway: absurd numbers from clients, admins and upstreams are refused or clamped,
//! and every part of the gateway keeps answering afterwards.

mod common;

use common::*;
use serde_json::{json, Value};

fn free_gateway(upstream: &FakeUpstream) -> Gateway {
    Gateway::start(&config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]))
}

async fn readiness(gateway: &Gateway) -> u16 {
    client().get(format!("{}/health/readiness", gateway.url)).send().await.unwrap().status().as_u16()
}

#[actix_web::test]
async fn durations_past_year_9999_are_refused_and_key_management_keeps_working() {
    let upstream = FakeUpstream::start("u");
    let gateway = free_gateway(&upstream);
    let key = gateway.mint_on_tier("free").await;
    for duration in ["3000000d", "18446744073709551615s", "36501d"] {
        let mut response = gateway
            .post("/key/generate", MASTER_KEY, &json!({"duration": duration, "metadata": {"tier": "free"}}))
            .await;
        let error = assert_error(&mut response, 400, "invalid_request_error").await;
        assert_eq!(error["param"], "duration", "{error}");
        assert!(error["message"].as_str().unwrap().contains("36500d"), "{error}");
        let mut response = gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "duration": duration})).await;
        assert_error(&mut response, 400, "invalid_request_error").await;
    }
    // The registry is alive: it mints, blocks, and readiness tells the truth.
    assert_eq!(readiness(&gateway).await, 200);
    let longest = gateway.mint(json!({"duration": "36500d", "metadata": {"tier": "free"}})).await;
    let mut response = gateway.post("/key/block", MASTER_KEY, &json!({"key": longest})).await;
    assert_eq!(json_of(&mut response).await["blocked"], true);
    let mut response = gateway.post("/v1/chat/completions", &longest, &chat_body("gpt-4")).await;
    assert_error(&mut response, 401, "auth_error").await;
}

#[actix_web::test]
async fn an_absurd_retry_after_cools_a_deployment_for_at_most_an_hour_and_health_still_answers() {
    let upstream = FakeUpstream::start("u");
    upstream.set_mode(json!({"mode": "status", "status": 429, "retry_after": 10_000_000_000_000_000u64})).await;
    let gateway = free_gateway(&upstream);
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(response.status(), 429, "{}", json_of(&mut response).await);
    for _ in 0..4 {
        let mut response =
            client().get(format!("{}/health", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let report: Value = json_of(&mut response).await;
        let until = report["unhealthy_endpoints"][0]["cooling_down_until"].as_str().unwrap().to_owned();
        let until = humantime::parse_rfc3339(&until).unwrap();
        let left = until.duration_since(std::time::SystemTime::now()).unwrap();
        assert!(left <= std::time::Duration::from_secs(3_601), "cooled for {left:?}");
    }
    assert_eq!(readiness(&gateway).await, 200);
}

#[test]
fn zero_workers_is_refused_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tiergate")).args(["--workers", "0"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--workers") && stderr.contains("1..=1024"), "{stderr}");
}

#[test]
fn infinite_weights_are_refused_at_start_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let entry = |name: &str| {
        format!("  - model_name: m\n    litellm_params: {{model: openai/{name}, api_key: k, api_base: http://127.0.0.1:9, weight: 1e308}}\n")
    };
    std::fs::write(&path, config(&[entry("a"), entry("b")])).unwrap();
    let output = gateway_command(&path, &dir.path().join("data"), &[]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("model_list[0].litellm_params.weight"), "{stderr}");
}

#[actix_web::test]
async fn a_key_minted_without_a_tier_never_reaches_a_paid_deployment() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let deployments = config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&free.url), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&paid.url), Some("paid")),
    ]);
    // No default: a forgotten tier is refused, naming the field and the setting.
    let gateway = Gateway::start(&deployments);
    let mut response = gateway.post("/key/generate", MASTER_KEY, &json!({"key_alias": "forgot"})).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert_eq!(error["param"], "metadata.tier");
    assert!(error["message"].as_str().unwrap().contains("default_key_tier"), "{error}");
    // An explicit null is a deliberate untiered key.
    gateway.mint(json!({"metadata": {"tier": null}})).await;
    drop(gateway);

    // With a default, keys minted without a tier get it.
    let gateway = Gateway::start(&format!("{deployments}  default_key_tier: free\n"));
    let mut response = gateway.post("/key/generate", MASTER_KEY, &json!({})).await;
    let minted = json_of(&mut response).await;
    assert_eq!(minted["metadata"]["tier"], "free", "{minted}");
    let key = minted["key"].as_str().unwrap();
    for _ in 0..4 {
        assert_eq!(gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await.status(), 200);
    }
    assert_eq!(free.records().await.len(), 4);
    assert!(paid.records().await.is_empty(), "a key minted without a tier reached the paid tier");
}

#[actix_web::test]
async fn a_custom_key_equal_to_the_master_key_is_refused() {
    let upstream = FakeUpstream::start("u");
    let gateway = free_gateway(&upstream);
    let mut response =
        gateway.post("/key/generate", MASTER_KEY, &json!({"key": MASTER_KEY, "metadata": {"tier": "free"}})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "key");
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/key/regenerate", MASTER_KEY, &json!({"key": key, "new_key": MASTER_KEY})).await;
    assert_error(&mut response, 400, "invalid_request_error").await;
    // The virtual key still works and the master key is still the master key.
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    let response = client().get(format!("{}/key/list", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[actix_web::test]
async fn the_data_dir_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let upstream = FakeUpstream::start("u");
    let gateway = free_gateway(&upstream);
    gateway.mint_on_tier("free").await;
    fn check(path: &std::path::Path) {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        if path.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            for entry in std::fs::read_dir(path).unwrap() {
                check(&entry.unwrap().path());
            }
        } else {
            assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
        }
    }
    check(gateway.data_dir());
}

#[actix_web::test]
async fn openai_api_key_is_never_sent_to_another_api_base() {
    let upstream = FakeUpstream::start("u");
    let config = config(&[
        "  - model_name: gpt-4\n    litellm_params:\n      model: openai/fake\n      api_base: URL\n    model_info:\n      tier: free\n"
            .replace("URL", &upstream.url),
    ]);
    let gateway = Gateway::start_with_env(&config, &[("OPENAI_API_KEY", "sk-real-openai-secret")]);
    let key = gateway.mint_on_tier("free").await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    let records = upstream.records().await;
    assert!(records[0]["headers"].get("authorization").is_none(), "{}", records[0]["headers"]);
}

#[actix_web::test]
async fn credentials_in_an_api_base_are_not_shown() {
    let upstream = FakeUpstream::start("u");
    let base = upstream.url.replace("http://", "http://bob:hunter2@");
    let gateway = Gateway::start(&config(&[deployment("gpt-4", "openai/fake", "k", Some(&base), Some("free"))]));
    let key = gateway.mint_on_tier("free").await;
    let response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(header(&response, "x-litellm-model-api-base"), upstream.url);
    let mut response = client().get(format!("{}/health", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    let report = json_of(&mut response).await.to_string();
    assert!(!report.contains("hunter2") && !report.contains("bob"), "{report}");
}

#[actix_web::test]
async fn an_upstream_refusing_the_operators_credentials_is_a_502_naming_the_deployment() {
    let (rejecting, paid) = (FakeUpstream::start("rejecting"), FakeUpstream::start("paid"));
    rejecting
        .set_mode(json!({"mode": "status", "status": 401, "message": "Incorrect API key provided: sk-proj-****abcd"}))
        .await;
    let gateway = Gateway::start(&format!(
        "model_list:\n  - model_name: gpt-4\n    litellm_params: {{model: openai/fake, api_key: k, api_base: {}}}\n    model_info: {{id: free-east, tier: free}}\n\
         \x20 - model_name: gpt-4\n    litellm_params: {{model: openai/fake, api_key: k, api_base: {}}}\n    model_info: {{id: paid-1, tier: paid}}\n\
         general_settings:\n  master_key: {MASTER_KEY}\n",
        rejecting.url, paid.url
    ));
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    let error = assert_error(&mut response, 502, "upstream_auth_error").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("free-east") && !message.contains("sk-proj"), "{message}");
    // It counts as a failure of the deployment: retried (then cooled down), never moved to another tier.
    assert_eq!(rejecting.records().await.len(), 3);
    assert!(paid.records().await.is_empty());
}

/// A gateway with one free deployment at `upstream_url` and extra `general_settings` lines.
fn gateway_with(upstream_url: &str, params: &str, general: &str) -> Gateway {
    Gateway::start(&format!(
        "model_list:\n  - model_name: gpt-4\n    litellm_params: {{model: openai/fake, api_key: k, api_base: {upstream_url}{params}}}\n\
         \x20   model_info: {{tier: free}}\ngeneral_settings:\n  master_key: {MASTER_KEY}\n{general}"
    ))
}

fn raw_connection(gateway: &Gateway) -> std::net::TcpStream {
    let address = gateway.url.trim_start_matches("http://");
    let stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    stream
}

#[test]
fn a_later_request_head_sent_a_byte_at_a_time_is_cut_off() {
    use std::io::{Read, Write};
    let upstream = RawUpstream::start("", std::time::Duration::ZERO);
    let gateway = gateway_with(&upstream.url, "", "  request_header_timeout: 1\n");
    let mut connection = raw_connection(&gateway);
    connection.write_all(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = [0u8; 512];
    assert!(connection.read(&mut answer).unwrap() > 0);
    // The second request's head trickles in: the gateway must close the connection (keep-alive 5 s + 1 s).
    let started = std::time::Instant::now();
    let trickle = b"GET /health/liveliness HTTP/1.1\r\nHost: a-very-long-host-name-sent-slowly.example\r\n";
    let cut = trickle.iter().any(|byte| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        connection.write_all(&[*byte]).is_err()
    });
    assert!(cut, "a trickled head held the connection for {:?}", started.elapsed());
    assert!(started.elapsed() < std::time::Duration::from_secs(12), "{:?}", started.elapsed());
}

#[test]
fn a_body_that_trickles_in_gets_408() {
    use std::io::{Read, Write};
    let upstream = RawUpstream::start("", std::time::Duration::ZERO);
    let gateway = gateway_with(&upstream.url, "", "  request_body_timeout: 1\n");
    let mut connection = raw_connection(&gateway);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\nContent-Length: 1000\r\n\r\n{{"
    );
    connection.write_all(head.as_bytes()).unwrap();
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if connection.write_all(b" ").is_err() {
            break;
        }
    }
    let mut answer = String::new();
    let _ = connection.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_body_timeout"), "{answer}");
    assert_eq!(upstream.requests(), 0);
}

/// The status line of the answer on a raw connection.
fn status_line(connection: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") && connection.read(&mut byte).unwrap_or(0) == 1 {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).trim_end().to_owned()
}

#[actix_web::test]
async fn malformed_requests_are_answered_400_and_not_logged_as_errors() {
    use std::io::Write;
    let upstream = RawUpstream::start("", std::time::Duration::ZERO);
    let gateway = gateway_with(&upstream.url, "", "");
    for _ in 0..3 {
        let mut connection = raw_connection(&gateway);
        connection.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01Header: y\r\n\r\n").unwrap();
        assert_eq!(status_line(&mut connection), "HTTP/1.1 400 Bad Request");
    }
    let mut connection = raw_connection(&gateway);
    let huge = format!("GET /health/liveliness HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(300_000));
    let _ = connection.write_all(huge.as_bytes());
    assert_eq!(status_line(&mut connection), "HTTP/1.1 431 Request Header Fields Too Large");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!gateway.log().contains("ERROR"), "{}", gateway.log());
}

#[test]
fn a_client_that_goes_away_stops_the_retries() {
    use std::io::Write;
    let upstream = FakeUpstream::start("u");
    actix_web::rt::System::new().block_on(async { upstream.set_mode(json!({"mode": "status", "status": 500})).await });
    let gateway = gateway_with(&upstream.url, "", "router_settings:\n  retry_after: 1\n  allowed_fails: 100\n");
    let body = chat_body("gpt-4").to_string();
    let mut connection = raw_connection(&gateway);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    connection.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(connection);
    // Without the client, the two retries (1 s, then at least 1 s more, apart) would make three attempts
    // within ~3 s. (A deployment that timed out is not retried at all, so a failing one is used here.)
    std::thread::sleep(std::time::Duration::from_secs(4));
    let records = actix_web::rt::System::new().block_on(async { upstream.records().await });
    assert_eq!(records.len(), 1, "attempts went on for a client that had left");
}

#[actix_web::test]
async fn sigterm_lets_a_stream_in_flight_finish_within_the_grace_period() {
    let upstream = FakeUpstream::start("u");
    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    let mut gateway = gateway_with(&upstream.url, "", "  shutdown_grace_period: 5\n");
    let key = gateway.mint_on_tier("free").await;
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let first = futures_util::StreamExt::next(&mut response).await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    let pid = gateway.pid();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    upstream.release().await;
    let rest = response.body().await.unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("data: [DONE]"), "{rest:?}");
    assert!(gateway.wait().success());
}

#[test]
fn closed_client_connections_give_back_their_descriptors_at_once() {
    use std::io::Write;
    let upstream = RawUpstream::start("", std::time::Duration::ZERO);
    let gateway = gateway_with(&upstream.url, "", "");
    let open_descriptors = || std::fs::read_dir(format!("/proc/{}/fd", gateway.pid())).unwrap().count();
    let connect_and_close = |times: usize| {
        for _ in 0..times {
            let mut connection = raw_connection(&gateway);
            connection.write_all(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            assert_eq!(status_line(&mut connection), "HTTP/1.1 200 OK");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    // The first connections create what each worker keeps (timers, wakers); count from there.
    connect_and_close(10);
    let before = open_descriptors();
    connect_and_close(50);
    let after = open_descriptors();
    assert!(after <= before + 3, "{before} descriptors before 50 closed connections, {after} half a second after");
}

#[actix_web::test]
async fn a_tier_given_twice_in_metadata_is_refused_not_guessed() {
    let upstream = FakeUpstream::start("u");
    let gateway = free_gateway(&upstream);
    let body = r#"{"metadata": {"tier": "free", "tier": null}}"#;
    let mut response = client()
        .post(format!("{}/key/generate", gateway.url))
        .bearer_auth(MASTER_KEY)
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .unwrap();
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert_eq!(error["param"], "metadata", "{error}");
    assert!(error["message"].as_str().unwrap().contains("`tier` appears twice"), "{error}");
}

#[actix_web::test]
async fn sigterm_cuts_what_is_still_running_after_the_grace_period() {
    let upstream = FakeUpstream::start("u");
    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    let mut gateway = gateway_with(&upstream.url, "", "  shutdown_grace_period: 1\n");
    let key = gateway.mint_on_tier("free").await;
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let _ = futures_util::StreamExt::next(&mut response).await;
    let started = std::time::Instant::now();
    std::process::Command::new("kill").args(["-TERM", &gateway.pid().to_string()]).status().unwrap();
    // The stream is held for good; the gateway gives it one second, not actix's default thirty.
    let status = gateway.wait();
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "exited after {:?}", started.elapsed());
    assert!(status.success(), "{status:?}");
}
