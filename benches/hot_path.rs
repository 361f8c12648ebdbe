//! Microbenchmarks of the hot path's pure pieces: key hashing, store lookup (10 and 100,000 keys), deployment
//! pick, the body rewrite (against a full JSON re-serialisation, the naive alternative), and one attempt's
//! preparation and answer for an openai/ deployment against an anthropic/ one (the translation's own cost),
//! and admission of a key with stacked levels against a plain key's.
//!
//! `cargo bench --bench hot_path`; scripts/bench.sh measures the whole gateway over HTTP.

use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tiergate::config;
use tiergate::config::LimitSet;
use tiergate::config::RoutingPolicy;
use tiergate::endpoint::Endpoint;
use tiergate::http::parse_request;
use tiergate::keys::{abbreviate, Grant, KeyChanges, KeyHash, KeyRecord, KeyStore, Owned};
use tiergate::meter::{KeyUse, Ledger, Level, LevelUse, Meter, Moment, Worst};
use tiergate::pool::{RoutingTable, Tried};
use tiergate::providers;
use tiergate::tier::Tier;

const SEED: &str = "
model_list:
  - model_name: gpt-4
    litellm_params: {model: openai/fake, api_key: k, api_base: 'http://127.0.0.1:1/'}
    model_info: {tier: free}
  - model_name: gpt-4
    litellm_params: {model: openai/gpt-4o, api_key: k, api_base: 'http://127.0.0.1:2/'}
    model_info: {tier: paid}
  - model_name: gpt-4o-mini
    litellm_params: {model: openai/gpt-4o-mini, api_key: k, api_base: 'http://127.0.0.1:3/'}
general_settings: {master_key: sk-bench}
";

fn key_hashing(c: &mut Criterion) {
    c.bench_function("key_hash", |b| b.iter(|| KeyHash::of(black_box("sk-inxzoSurQsjog9gPrVOCcA"))));
}

fn store_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_get");
    for count in [10usize, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let metadata = serde_json::json!({"tier": "free"}).as_object().cloned().unwrap();
        store
            .import((0..count).map(|i| {
                let key = format!("sk-bench-{i:020}");
                let changes = KeyChanges { metadata: Some(metadata.clone()), ..KeyChanges::default() };
                let hash = KeyHash::of(&key);
                (hash, KeyRecord::new(hash.to_hex(), abbreviate(&key), changes, SystemTime::now()).unwrap())
            }))
            .unwrap();
        let hashes: Vec<KeyHash> =
            (0..1000).map(|i| KeyHash::of(&format!("sk-bench-{:020}", i * 7919 % count))).collect();
        let mut next = 0;
        // What authorising used to read (the whole JSON record) and what it reads now (the binary grant).
        group.bench_with_input(BenchmarkId::new("record", count), &count, |b, _| {
            b.iter(|| {
                next = (next + 1) % hashes.len();
                store.get(&hashes[next]).unwrap().unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("grant", count), &count, |b, _| {
            b.iter(|| {
                next = (next + 1) % hashes.len();
                store.grant(&hashes[next]).unwrap().unwrap()
            })
        });
    }
    group.finish();
}

fn deployment_pick(c: &mut Criterion) {
    let settings = config::parse(SEED, &|_| None).unwrap().settings;
    let deployments: Vec<_> = settings.deployments.into_iter().map(Arc::new).collect();
    let table = RoutingTable::new(&deployments, Arc::new(RoutingPolicy::default()));
    c.bench_function("pick_free_tier", |b| {
        b.iter(|| {
            table.pick(black_box("gpt-4"), Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap()
        })
    });
}

fn body_rewrite(c: &mut Criterion) {
    let mut group = c.benchmark_group("rewrite");
    let small = r#"{"model":"gpt-4","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Hello, Claude gm!"}],"temperature":0.2,"stream":false}"#.to_owned();
    let large = small.replace("Hello, Claude gm!", &"lorem ipsum dolor sit amet ".repeat(1200));
    for (name, body) in [("small", small), ("32KiB", large)] {
        let bytes = Bytes::from(body);
        group.bench_with_input(BenchmarkId::new("splice", name), &bytes, |b, bytes| {
            b.iter(|| {
                parse_request(Endpoint::ChatCompletions, bytes.clone()).unwrap().rewritten_body("\"fake\"", false)
            })
        });
        group.bench_with_input(BenchmarkId::new("reserialise", name), &bytes, |b, bytes| {
            b.iter(|| {
                let mut value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
                value["model"] = "fake".into();
                serde_json::to_vec(&value).unwrap()
            })
        });
    }
    group.finish();
}

/// A chat request prepared for an openai/ deployment (spliced) and for an anthropic/ one (translated), and
/// an Anthropic answer translated back: what translating adds to one call, without the network.
fn translation(c: &mut Criterion) {
    let yaml = "model_list:
  - {model_name: gpt, litellm_params: {model: openai/gpt-4o, api_key: k, api_base: 'http://127.0.0.1:1/v1'}}
  - {model_name: claude, litellm_params: {model: anthropic/claude-sonnet-4-5, api_key: k, api_base: 'http://127.0.0.1:2'}}
  - {model_name: flash, litellm_params: {model: gemini/gemini-2.0-flash, api_key: k, api_base: 'http://127.0.0.1:3'}}
general_settings: {master_key: sk-bench}
";
    let deployments = config::parse(yaml, &|_| None).unwrap().settings.deployments;
    let body = |model: &str| {
        let text = format!(
            r#"{{"model":"{model}","messages":[{{"role":"system","content":"You are helpful."}},{{"role":"user","content":"Hello, Claude gm!"}}],"temperature":0.2}}"#
        );
        parse_request(Endpoint::ChatCompletions, Bytes::from(text)).unwrap()
    };
    let (gpt, claude, flash) = (body("gpt"), body("claude"), body("flash"));
    let answer = br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello from claude"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":3}}"#;
    let mut group = c.benchmark_group("translation");
    group.bench_function("prepare_openai", |b| {
        b.iter(|| providers::prepare(&gpt, &deployments[0], true).unwrap().outgoing.body)
    });
    group.bench_function("prepare_anthropic", |b| {
        b.iter(|| providers::prepare(&claude, &deployments[1], true).unwrap().outgoing.body)
    });
    group.bench_function("answer_anthropic", |b| {
        b.iter(|| providers::reshaper(&claude, &deployments[1]).unwrap().whole(StatusCode::OK, black_box(answer)))
    });
    // #23: a Gemini chat, request and answer translated (the issue's bound: 20 µs at p50), and a streamed
    // answer of five events translated chunk by chunk.
    let gemini_answer = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hello from gemini"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":3,"totalTokenCount":12},"modelVersion":"gemini-2.0-flash","responseId":"r1"}"#;
    group.bench_function("prepare_gemini", |b| {
        b.iter(|| providers::prepare(&flash, &deployments[2], true).unwrap().outgoing.body)
    });
    group.bench_function("answer_gemini", |b| {
        b.iter(|| providers::reshaper(&flash, &deployments[2]).unwrap().whole(StatusCode::OK, black_box(gemini_answer)))
    });
    group.bench_function("gemini_request_and_answer", |b| {
        b.iter(|| {
            let call = providers::prepare(&flash, &deployments[2], true).unwrap();
            black_box(call.outgoing.body);
            call.reshape.unwrap().whole(StatusCode::OK, black_box(gemini_answer))
        })
    });
    let event = |text: &str, last: bool| {
        let finish = if last { r#","finishReason":"STOP""# } else { "" };
        format!(
            "data: {{\"candidates\":[{{\"content\":{{\"role\":\"model\",\"parts\":[{{\"text\":\"{text}\"}}]}}{finish},\"index\":0}}],\"usageMetadata\":{{\"promptTokenCount\":9,\"candidatesTokenCount\":3}}}}\r\n\r\n"
        )
    };
    let stream: String = ["Hello ", "from ", "gemini, ", "streamed ", "whole."]
        .iter()
        .enumerate()
        .map(|(at, text)| event(text, at == 4))
        .collect();
    group.bench_function("gemini_stream_5_events", |b| {
        b.iter(|| {
            let mut reshape = providers::reshaper(&flash, &deployments[2]).unwrap();
            let piece = reshape.piece(black_box(stream.as_bytes())).unwrap();
            (piece, reshape.finish().unwrap())
        })
    });
    group.finish();
}

/// #23 Bedrock: a chat translated to Converse and its answer back (the issue's bound: 20 µs at p50), a
/// ConverseStream answer of five event-stream frames decoded (CRCs checked) and translated, and the SigV4
/// signature each bedrock/ request carries.
fn bedrock(c: &mut Criterion) {
    let yaml = "model_list:
  - {model_name: claude, litellm_params: {model: bedrock/anthropic.claude-3-haiku-20240307-v1:0, aws_access_key_id: AKID, aws_secret_access_key: s, aws_region_name: us-east-1, api_base: 'http://127.0.0.1:4'}}
general_settings: {master_key: sk-bench}
";
    let deployments = config::parse(yaml, &|_| None).unwrap().settings.deployments;
    let text = r#"{"model":"claude","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Hello, Claude gm!"}],"temperature":0.2}"#;
    let request = parse_request(Endpoint::ChatCompletions, Bytes::from(text)).unwrap();
    let answer = br#"{"output":{"message":{"role":"assistant","content":[{"text":"Hello from bedrock"}]}},"stopReason":"end_turn","usage":{"inputTokens":9,"outputTokens":3,"totalTokens":12},"metrics":{"latencyMs":12}}"#;
    let mut group = c.benchmark_group("bedrock");
    group.bench_function("bedrock_request_and_answer", |b| {
        b.iter(|| {
            let call = providers::prepare(&request, &deployments[0], true).unwrap();
            black_box(call.outgoing.body);
            call.reshape.unwrap().whole(StatusCode::OK, black_box(answer))
        })
    });
    use providers::chat_to_bedrock::eventstream::event;
    let mut stream = event("messageStart", br#"{"role":"assistant"}"#);
    for word in ["Hello ", "from ", "bedrock."] {
        stream.extend(event(
            "contentBlockDelta",
            format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"{word}"}}}}"#).as_bytes(),
        ));
    }
    stream.extend(event("messageStop", br#"{"stopReason":"end_turn"}"#));
    group.bench_function("bedrock_stream_5_frames", |b| {
        b.iter(|| {
            let mut reshape = providers::reshaper(&request, &deployments[0]).unwrap();
            let piece = reshape.piece(black_box(&stream)).unwrap();
            (piece, reshape.finish().unwrap())
        })
    });
    let config::UpstreamCredential::Aws(signer) = &deployments[0].credential else { panic!("a bedrock signer") };
    let body = providers::prepare(&request, &deployments[0], true).unwrap().outgoing.body;
    let url = "http://127.0.0.1:4/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
    group.bench_function("sigv4_sign", |b| {
        b.iter(|| {
            tiergate::proxy::sigv4_headers(
                url,
                "127.0.0.1:4",
                "application/json",
                black_box(&body),
                signer,
                SystemTime::now(),
            )
        })
    });
    group.finish();
}

/// What a team key's grant costs to read on every request beside a plain key's (issue 21: its owners'
/// effective tier, blocked state and models ride in the grant; nothing else is read).
fn owned_grant(c: &mut Criterion) {
    let record = KeyRecord::new(
        KeyHash::of("sk-bench").to_hex(),
        "sk-...ench".into(),
        KeyChanges { metadata: serde_json::json!({"tier": "free"}).as_object().cloned(), ..KeyChanges::default() },
        SystemTime::now(),
    )
    .unwrap();
    let plain = Grant::of(&record).encode();
    let owned = Owned { team_id: Some("engineering".into()), ..Owned::default() };
    let team = Grant { owned, ..Grant::of(&record) }.encode();
    let mut group = c.benchmark_group("grant_decode");
    group.bench_function("plain", |b| b.iter(|| Grant::decode(black_box(&plain)).unwrap()));
    group.bench_function("team_key", |b| b.iter(|| Grant::decode(black_box(&team)).unwrap()));
    group.finish();
}

/// What admitting a request costs for a key with team + user + end-user limits (issue 21 slice 2: each is a
/// level the meter admits after the key) beside a plain key with the same limit of its own. One replica, no
/// Redis; each iteration admits one request and drops its tallies (as a refused upstream would).
fn stacked_admission(c: &mut Criterion) {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let ledger = Ledger::new(db.open_tree("spend").unwrap());
    let meter = Arc::new(Meter::new(ledger, Default::default(), Default::default()));
    let limits = LimitSet { rpm_limit: Some(u64::MAX / 2), max_budget: Some(1e9), ..LimitSet::default() };
    let model: Arc<str> = Arc::from("gpt-4");
    let worst = Worst::default;
    let key =
        |key| KeyUse { key, own: &limits, budget_id: None, tier: None, model: &model, fallbacks: &[], worst: &worst };
    let levels = [(Level::Team, "engineering"), (Level::User, "ana"), (Level::EndUser, "customer-1")];
    let runtime = actix_rt::Runtime::new().unwrap();
    let mut group = c.benchmark_group("admission");
    group.bench_function("plain_key", |b| {
        b.iter(|| runtime.block_on(meter.admit_across(key([1; 32]), Moment::now())).unwrap())
    });
    group.bench_function("key_team_user_end_user", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let admitted = meter.admit_across(key([2; 32]), Moment::now()).await.unwrap();
                let uses = levels.iter().map(|&(level, id)| {
                    let account = level.account(id);
                    LevelUse { level, id, account, own: &limits, budget_id: None }
                });
                (admitted, meter.admit_levels(uses, &model, &worst, Moment::now()).await.unwrap())
            })
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    key_hashing,
    store_lookup,
    owned_grant,
    stacked_admission,
    deployment_pick,
    body_rewrite,
    translation,
    bedrock
);
criterion_main!(benches);
