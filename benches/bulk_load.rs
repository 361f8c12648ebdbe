//! Bulk loader for scripts/bench.sh: writes N keys straight into a data dir, bypassing HTTP.
//!
//! `cargo bench --bench bulk_load -- <data-dir> <N>` writes keys `sk-bench-<i, 20 digits>` for i in 0..N, on
//! tier `free`, each with the same record shape `/key/generate` writes, so the store is realistic.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use tiergate::keys::{abbreviate, KeyChanges, KeyHash, KeyRecord, KeyStore};

fn main() {
    // `cargo bench` adds `--bench`; everything else is ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let [dir, count] = &args[..] else {
        eprintln!("usage: cargo bench --bench bulk_load -- <data-dir> <N>");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("N is a number");
    let store = KeyStore::open(&PathBuf::from(dir)).expect("open the key store");
    let metadata = serde_json::json!({"tier": "free", "team": "bench"}).as_object().cloned().unwrap_or_default();
    let now = SystemTime::now();
    let started = Instant::now();
    let records = (0..count).map(|i| {
        let key = format!("sk-bench-{i:020}");
        let hash = KeyHash::of(&key);
        let changes = KeyChanges { metadata: Some(metadata.clone()), ..KeyChanges::default() };
        let record = KeyRecord::new(hash.to_hex(), abbreviate(&key), changes, now).expect("valid record");
        (hash, record)
    });
    let written = store.import(records).expect("import keys");
    println!("wrote {written} keys to {dir} in {:.1}s", started.elapsed().as_secs_f64());
}
