//! #20 (Requests, bullet 3): images, moderations, transcriptions and speech through the gateway: routed on
//! the key's tier and allowlist, counted against its limits, priced per image, second or character, and the
//! upload and the audio streamed rather than buffered.

mod common;

use std::time::Duration;

use actix_web::web::Bytes;
use common::*;
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

const IMAGE_FREE: f64 = 0.04;
const IMAGE_PAID: f64 = 0.08;
const PER_SECOND: f64 = 0.0001;
const PER_CHARACTER: f64 = 0.000015;

/// A deployment with one media price in `litellm_params`.
fn priced(model_name: &str, model: &str, url: &str, tier: &str, price: Option<(&str, f64)>) -> String {
    let entry = deployment(model_name, model, "k", Some(url), Some(tier));
    match price {
        None => entry,
        Some((field, value)) => entry.replace("    model_info:", &format!("      {field}: {value}\n    model_info:")),
    }
}

struct Setup {
    gateway: Gateway,
    free: FakeUpstream,
    paid: FakeUpstream,
}

fn start() -> Setup {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let (f, p) = (free.url.as_str(), paid.url.as_str());
    let config = config(&[
        priced("dall-e-3", "openai/free-dalle", f, "free", Some(("output_cost_per_image", IMAGE_FREE))),
        priced("dall-e-3", "openai/paid-dalle", p, "paid", Some(("output_cost_per_image", IMAGE_PAID))),
        priced("omni-moderation-latest", "openai/free-moderation", f, "free", None),
        priced("whisper-1", "openai/free-whisper", f, "free", Some(("input_cost_per_second", PER_SECOND))),
        priced("whisper-1", "openai/paid-whisper", p, "paid", Some(("input_cost_per_second", PER_SECOND))),
        priced("tts-1", "openai/free-tts", f, "free", Some(("input_cost_per_character", PER_CHARACTER))),
        priced("tts-1-hd", "openai/paid-tts", p, "paid", Some(("input_cost_per_character", PER_CHARACTER))),
        priced("claude", "anthropic/claude-3-5-haiku", f, "free", None),
    ]);
    // Room for the 8 MiB upload.
    let config = format!("{config}  max_request_size_mb: 16\n");
    Setup { gateway: Gateway::start(&config), free, paid }
}

async fn spend_of(gateway: &Gateway, key: &str) -> f64 {
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    json_of(&mut response).await["info"]["spend"].as_f64().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A multipart form of `fields` (in order) with `file` after them, or before them with `file_first`.
fn form(fields: &[(&str, &str)], file: &[u8], file_first: bool) -> (String, Vec<u8>) {
    let boundary = "----tiergate-test-7f3a";
    let mut body = Vec::new();
    let file_part = |body: &mut Vec<u8>| {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n");
    };
    if file_first {
        file_part(&mut body);
    }
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    if !file_first {
        file_part(&mut body);
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Bytes that do not repeat with any short period (a buffer bug that drops or repeats a piece shows).
fn audio(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn upload(gateway: &Gateway, path: &str, key: &str, form: (String, Vec<u8>)) -> awc::ClientResponse {
    let url = format!("{}{path}", gateway.url);
    client().post(url).bearer_auth(key).content_type(form.0).send_body(form.1).await.unwrap()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[actix_rt::test]
async fn images_go_to_the_keys_tier_and_cost_the_price_per_image_times_n() {
    let Setup { gateway, free, paid } = start();
    let free_key = gateway.mint_on_tier("free").await;
    let paid_key = gateway.mint_on_tier("paid").await;
    let body = json!({"model": "dall-e-3", "prompt": "a lighthouse", "n": 3, "size": "1024x1024"});
    let mut response = gateway.post("/v1/images/generations", &free_key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["data"].as_array().unwrap().len(), 3, "{answer}");
    assert!(answer["data"][0]["url"].as_str().unwrap().contains("/free/"), "{answer}");
    assert!(close(spend_of(&gateway, &free_key).await, 3.0 * IMAGE_FREE));
    // Without `/v1` too, and a paid key reaches the paid deployment at its price.
    let mut response =
        gateway.post("/images/generations", &paid_key, &json!({"model": "dall-e-3", "prompt": "x"})).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert!(close(spend_of(&gateway, &paid_key).await, IMAGE_PAID));
    let (free_seen, paid_seen) = (free.records().await, paid.records().await);
    assert_eq!(free_seen.len(), 1);
    assert_eq!(free_seen[0]["body"]["model"], "free-dalle");
    assert_eq!(free_seen[0]["body"]["n"], 3);
    assert_eq!(paid_seen[0]["body"]["model"], "paid-dalle");
}

#[actix_rt::test]
async fn moderations_answer_and_are_free_unless_priced() {
    let Setup { gateway, free, paid: _paid } = start();
    let key = gateway.mint_on_tier("free").await;
    let body = json!({"model": "omni-moderation-latest", "input": ["hello", "world"]});
    let mut response = gateway.post("/v1/moderations", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["results"].as_array().unwrap().len(), 2, "{answer}");
    assert_eq!(spend_of(&gateway, &key).await, 0.0);
    assert_eq!(free.records().await[0]["body"]["model"], "free-moderation");
    // `input` is what a moderation is of.
    let mut response = gateway.post("/moderations", &key, &json!({"model": "omni-moderation-latest"})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "input");
}

#[actix_rt::test]
async fn speech_streams_back_as_it_is_made_and_costs_the_price_per_character() {
    let Setup { gateway, free, paid: _paid } = start();
    let key = gateway.mint_on_tier("free").await;
    free.set_mode(json!({"mode": "hold_stream"})).await;
    let input = "Hello, wörld!";
    let body = json!({"model": "tts-1", "input": input, "voice": "alloy"});
    let mut response = gateway.post("/v1/audio/speech", &key, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "audio/mpeg");
    // The upstream holds everything after its first chunk: that chunk must already be here.
    let mut received = Vec::new();
    while received.len() < 8 * 1024 {
        let next = actix_rt::time::timeout(Duration::from_secs(5), response.next()).await;
        let chunk: Bytes = next.expect("the first audio arrives before the upstream finishes").unwrap().unwrap();
        received.extend_from_slice(&chunk);
    }
    free.release().await;
    while let Some(chunk) = response.next().await {
        received.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(received.len(), 8 * 8 * 1024);
    assert!(received.iter().enumerate().all(|(at, &byte)| byte == (at % 251) as u8), "the audio arrives intact");
    let expected = input.chars().count() as f64 * PER_CHARACTER;
    assert!(close(spend_of(&gateway, &key).await, expected), "{} != {expected}", spend_of(&gateway, &key).await);
    assert_eq!(free.records().await[0]["body"]["model"], "free-tts");
}

#[actix_rt::test]
async fn an_8_mib_upload_arrives_intact_with_its_model_rewritten_and_costs_its_seconds() {
    let Setup { gateway, free, paid } = start();
    let key = gateway.mint_on_tier("free").await;
    let file = audio(8 * 1024 * 1024 + 123);
    let fields = [("model", "whisper-1"), ("response_format", "verbose_json"), ("language", "en")];
    let mut response = upload(&gateway, "/v1/audio/transcriptions", &key, form(&fields, &file, false)).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    let duration = answer["duration"].as_f64().unwrap();
    assert!(close(duration, file.len() as f64 / 16_000.0), "{answer}");
    let seen = free.records().await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["body"]["fields"]["model"], "free-whisper", "the model field is rewritten");
    assert_eq!(seen[0]["body"]["fields"]["language"], "en");
    assert_eq!(seen[0]["body"]["file"]["bytes"], file.len());
    assert_eq!(seen[0]["body"]["file"]["sha256"], hex(&file), "the file arrives byte for byte");
    // The client declared its length: the upstream gets one too, fitted to the rewritten model.
    let length = seen[0]["headers"]["content-length"].as_str().expect("a Content-Length upstream");
    assert_eq!(length, seen[0]["body"]["body_bytes"].to_string());
    assert!(paid.records().await.is_empty());
    // Priced by the duration the answer states.
    let expected = (duration * 1000.0).ceil() / 1000.0 * PER_SECOND;
    assert!(close(spend_of(&gateway, &key).await, expected), "{} != {expected}", spend_of(&gateway, &key).await);
}

#[actix_rt::test]
async fn a_plain_json_transcription_is_charged_by_the_uploads_size() {
    let Setup { gateway, free: _free, paid: _paid } = start();
    let key = gateway.mint_on_tier("free").await;
    let form = form(&[("model", "whisper-1")], &audio(320_000), false);
    let sent = form.1.len() as u64;
    let mut response = upload(&gateway, "/audio/transcriptions", &key, form).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer, json!({"text": "Hello from the fake transcription"}));
    // No duration stated: the upload's bytes at 16,000 a second.
    let expected = (sent * 1000 / 16_000) as f64 / 1000.0 * PER_SECOND;
    assert!(close(spend_of(&gateway, &key).await, expected), "{} != {expected}", spend_of(&gateway, &key).await);
}

#[actix_rt::test]
async fn a_form_whose_model_comes_after_a_large_file_is_refused_naming_model() {
    let Setup { gateway, free, paid: _paid } = start();
    let key = gateway.mint_on_tier("free").await;
    let late = form(&[("model", "whisper-1")], &audio(100 * 1024), true);
    let mut response = upload(&gateway, "/v1/audio/transcriptions", &key, late).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert_eq!(error["param"], "model", "{error}");
    assert!(error["message"].as_str().unwrap().contains("64 KiB"), "{error}");
    let missing = form(&[("language", "en")], b"tiny", false);
    let mut response = upload(&gateway, "/v1/audio/transcriptions", &key, missing).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "model");
    let json = gateway.post("/v1/audio/transcriptions", &key, &json!({"model": "whisper-1"})).await;
    assert_eq!(json.status(), 400);
    assert!(free.records().await.is_empty(), "nothing reached the upstream");
}

#[actix_rt::test]
async fn media_requests_keep_the_tier_rule_the_allowlist_and_the_request_limit() {
    let Setup { gateway, free, paid } = start();
    let free_key = gateway.mint_on_tier("free").await;
    // A paid-only model is refused to a free key, as on chat.
    let body = json!({"model": "tts-1-hd", "input": "hi", "voice": "alloy"});
    let mut response = gateway.post("/v1/audio/speech", &free_key, &body).await;
    assert_error(&mut response, 403, "tier_model_access_denied").await;
    let mut response =
        upload(&gateway, "/v1/audio/transcriptions", &free_key, form(&[("model", "tts-1-hd")], b"x", false)).await;
    assert_error(&mut response, 403, "tier_model_access_denied").await;
    // The key's `models` allowlist holds for media models too.
    let only_images = gateway.mint(json!({"metadata": {"tier": "free"}, "models": ["dall-e-3"]})).await;
    let body = json!({"model": "omni-moderation-latest", "input": "hi"});
    let mut response = gateway.post("/v1/moderations", &only_images, &body).await;
    assert_error(&mut response, 403, "key_model_access_denied").await;
    let mut response =
        upload(&gateway, "/v1/audio/transcriptions", &only_images, form(&[("model", "whisper-1")], b"x", false)).await;
    assert_error(&mut response, 403, "key_model_access_denied").await;
    // An Anthropic deployment has no images API.
    let mut response =
        gateway.post("/v1/images/generations", &free_key, &json!({"model": "claude", "prompt": "x"})).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("/v1/images/generations"), "{error}");
    // rpm counts media requests.
    let limited = gateway.mint(json!({"metadata": {"tier": "free"}, "rpm_limit": 1})).await;
    let body = json!({"model": "dall-e-3", "prompt": "x"});
    assert_eq!(gateway.post("/v1/images/generations", &limited, &body).await.status(), 200);
    let mut response = gateway.post("/v1/images/generations", &limited, &body).await;
    assert_error(&mut response, 429, "rate_limit_error").await;
    assert!(paid.records().await.is_empty(), "no free request reached a paid deployment");
    assert_eq!(free.records().await.len(), 1);
}

#[actix_rt::test]
async fn a_second_model_field_after_the_file_is_refused_and_its_model_never_served() {
    let Setup { gateway, free, paid: _paid } = start();
    let key = gateway.mint_on_tier("free").await;
    // The gateway routes on the first `model`; an upstream reading the last would serve `paid-whisper`.
    let (content_type, mut body) = form(&[("model", "whisper-1")], &audio(300 * 1024), false);
    let end = body.len() - b"--".len() - b"\r\n".len();
    let boundary = content_type.split_once("boundary=").unwrap().1.to_owned();
    body.truncate(end - boundary.len() - 2);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\npaid-whisper\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    let mut response = upload(&gateway, "/v1/audio/transcriptions", &key, (content_type, body)).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert_eq!(error["param"], "model", "{error}");
    assert!(free.records().await.is_empty(), "the upstream never got the whole form");
    assert_eq!(spend_of(&gateway, &key).await, 0.0);
}

#[actix_rt::test]
async fn an_upload_without_a_length_streams_through_and_is_still_bounded_by_the_request_size_limit() {
    let Setup { gateway, free, paid: _paid } = start();
    let key = gateway.mint_on_tier("free").await;
    // Sent chunked, with no Content-Length.
    let chunked = |size: usize| {
        let (content_type, body) = form(&[("model", "whisper-1")], &audio(size), false);
        let pieces: Vec<Result<Bytes, std::io::Error>> =
            body.chunks(256 * 1024).map(|piece| Ok(Bytes::copy_from_slice(piece))).collect();
        let url = format!("{}/v1/audio/transcriptions", gateway.url);
        let request = client().post(url).bearer_auth(&key).content_type(content_type);
        request.send_stream(futures_util::stream::iter(pieces))
    };
    let mut response = chunked(1024 * 1024).await.unwrap();
    assert_eq!(response.status(), 200, "{}", json_of(&mut response).await);
    let seen = free.records().await;
    assert_eq!(seen[0]["body"]["file"]["sha256"], hex(&audio(1024 * 1024)));
    let mut response = chunked(17 * 1024 * 1024).await.unwrap();
    assert_error(&mut response, 413, "invalid_request_error").await;
    assert_eq!(free.records().await.len(), 1, "the oversized upload never arrived whole");
}

#[actix_rt::test]
async fn an_upload_gets_one_attempt_and_its_failure_is_answered_not_retried_elsewhere() {
    let (first, second) = (FakeUpstream::start("first"), FakeUpstream::start("second"));
    let config = config(&[
        priced("whisper-1", "openai/first-whisper", &first.url, "free", None),
        priced("whisper-1", "openai/second-whisper", &second.url, "free", None),
    ]);
    let gateway = Gateway::start(&config);
    let key = gateway.mint_on_tier("free").await;
    for upstream in [&first, &second] {
        upstream.set_mode(json!({"mode": "status", "status": 503, "times": 1})).await;
    }
    // The stream cannot be replayed: whichever deployment took it answers, and no other sees a broken copy.
    let mut response =
        upload(&gateway, "/v1/audio/transcriptions", &key, form(&[("model", "whisper-1")], &audio(4096), false)).await;
    assert_eq!(response.status(), 503, "{}", json_of(&mut response).await);
    let attempts = first.records().await.len() + second.records().await.len();
    assert_eq!(attempts, 1, "one attempt");
}

/// hostile #20: a part named twice (`name="model"; name="language"`, then `name="language"; name="model"`)
/// is `model` to a parser whose last name wins (Python's) and something else to one whose first does: the
/// gateway refuses the form rather than route on one reading while the upstream serves the other.
#[actix_rt::test]
async fn a_form_whose_parts_are_named_twice_is_refused_before_it_reaches_the_upstream() {
    let Setup { gateway, free, paid: _paid } = start();
    let key = gateway.mint_on_tier("free").await;
    let boundary = "XyZhostile";
    let part = |names: &str, value: &str| {
        format!("--{boundary}\r\nContent-Disposition: form-data; {names}\r\n\r\n{value}\r\n")
    };
    let body = format!(
        "{}{}--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nAUDIO\r\n--{boundary}--\r\n",
        part("name=\"model\"; name=\"language\"", "whisper-1"),
        part("name=\"language\"; name=\"model\"", "paid-whisper"),
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let mut response = upload(&gateway, "/v1/audio/transcriptions", &key, (content_type, body.into_bytes())).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert_eq!(error["param"], "model", "{error}");
    assert!(free.records().await.is_empty(), "the upstream never got the form");
}

/// hostile #20: a content type naming two boundaries is refused: the gateway read the first, and a `model`
/// part framed by the second (which an upstream whose last parameter wins reads) went upstream unseen.
#[actix_rt::test]
async fn a_form_whose_content_type_names_two_boundaries_is_refused() {
    let Setup { gateway, free, paid: _paid } = start();
    let key = gateway.mint_on_tier("free").await;
    let body = "--a\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--a--\r\n\r\n\
                --b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\npaid-whisper\r\n\
                --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nAUDIO\r\n--b--\r\n";
    let content_type = "multipart/form-data; boundary=a; boundary=b".to_owned();
    let mut response =
        upload(&gateway, "/v1/audio/transcriptions", &key, (content_type, body.as_bytes().to_vec())).await;
    assert_error(&mut response, 400, "invalid_request_error").await;
    assert!(free.records().await.is_empty(), "the upstream never got the form");
}
