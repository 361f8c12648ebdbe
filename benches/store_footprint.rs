//! Where a big key store's memory and disk go (issue #22): opens a data dir the way the gateway does, reads
//! 1,000 random keys, and prints RSS (anonymous and file-backed), glibc's heap in use, the disk size, and
//! each tree's entries and key/value bytes.
//!
//! `cargo bench --bench store_footprint -- <data-dir> <N>`, on a dir written by
//! `cargo bench --bench bulk_load -- <data-dir> <N>` (keys `sk-bench-<i, 20 digits>`, i in 0..N).

use std::path::PathBuf;
use std::time::Instant;

use tiergate::keys::{KeyHash, KeyStore};

/// glibc's heap statistics (the fields are `size_t`s, in this order).
#[repr(C)]
#[derive(Default)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

extern "C" {
    fn mallinfo2() -> MallInfo2;
    fn malloc_trim(pad: usize) -> i32;
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// VmRSS, RssAnon and RssFile of this process, in MB.
fn rss(stage: &str) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    // SAFETY: mallinfo2 only reads glibc's allocator statistics.
    let heap = unsafe { mallinfo2() };
    println!(
        "{stage:<24} RSS {:7.1} MB (anon {:7.1}, file {:6.1})  heap in use {:7.1} MB (mmapped {:6.1}, arena {:7.1})",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        mb(heap.uordblks + heap.hblkhd),
        mb(heap.hblkhd),
        mb(heap.arena),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let [dir, count] = &args[..] else {
        eprintln!("usage: cargo bench --bench store_footprint -- <data-dir> <N>");
        std::process::exit(2);
    };
    let count: u64 = count.parse().expect("N is a number");
    let dir = PathBuf::from(dir);
    rss("before open");
    let started = Instant::now();
    let store = KeyStore::open(&dir).expect("open the key store");
    println!("open took {:.2}s", started.elapsed().as_secs_f64());
    rss("after open");
    if std::env::var_os("FOOTPRINT_TRIM").is_some() {
        // SAFETY: malloc_trim only returns free heap pages to the OS.
        unsafe { malloc_trim(0) };
        rss("after malloc_trim");
    }
    // The bench's 1,000 random keys (a fixed LCG, so runs compare): grant and record, as authorise and
    // /key/info read them.
    let mut seed = 7u64;
    let started = Instant::now();
    for _ in 0..1000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let hash = KeyHash::of(&format!("sk-bench-{:020}", (seed >> 33) % count.max(1)));
        assert!(store.grant(&hash).expect("grant").is_some(), "a bulk-loaded key is missing");
        assert!(store.get(&hash).expect("record").is_some(), "a bulk-loaded record is missing");
    }
    println!("1,000 lookups took {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    rss("after 1,000 lookups");
    drop(store);
    rss("after close");
    if std::env::var_os("FOOTPRINT_NO_SIZES").is_some() {
        return; // memory profiling: the scan below would only add noise
    }

    // Sizes, per tree, read with sled itself (after the RSS figures: a full scan fills the cache).
    let db = sled::Config::new().path(dir.join("keys.sled")).cache_capacity(16 << 20).open().expect("reopen");
    println!("size on disk {:.1} MB", mb(db.size_on_disk().expect("size") as usize));
    println!("{:<12} {:>10} {:>12} {:>12} {:>8}", "tree", "entries", "key bytes", "value bytes", "B/entry");
    for name in db.tree_names() {
        let tree = db.open_tree(&name).expect("tree");
        let (mut entries, mut keys, mut values) = (0usize, 0usize, 0usize);
        for entry in tree.iter() {
            let (key, value) = entry.expect("entry");
            entries += 1;
            keys += key.len();
            values += value.len();
        }
        let per = (keys + values).checked_div(entries).unwrap_or(0);
        println!("{:<12} {entries:>10} {keys:>12} {values:>12} {per:>8}", String::from_utf8_lossy(&name));
    }
}
