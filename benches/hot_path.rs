//! Microbenchmarks of the hot path's pure pieces: key hashing, store lookup (10 and 100,000 keys), deployment
//! pick, and the body rewrite (against a full JSON re-serialisation, the naive alternative).
//!
//! `cargo bench --bench hot_path`; scripts/bench.sh measures the whole gateway over HTTP.

use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::web::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tiergate::config;
use tiergate::config::RoutingPolicy;
use tiergate::endpoint::Endpoint;
use tiergate::http::parse_request;
use tiergate::keys::{abbreviate, KeyChanges, KeyHash, KeyRecord, KeyStore};
use tiergate::pool::{RoutingTable, Tried};
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

criterion_group!(benches, key_hashing, store_lookup, deployment_pick, body_rewrite);
criterion_main!(benches);
