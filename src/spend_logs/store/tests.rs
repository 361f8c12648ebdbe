//! The spend-log store's tests: rows read back as written, either format, the bounds, and damaged tails.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::config::Deployment;
use crate::endpoint::Endpoint;
use crate::keys::KeyHash;
use crate::proxy::TokenUsage;
use crate::spend_logs::codec::BlockWriter;
use crate::spend_logs::wall_clock::WallClock;
use crate::spend_logs::{Finished, Pending};
use crate::tier::Tier;

/// A chat answered by a deployment (upstream model `fake`, provider `openai`): the row a busy gateway writes
/// most, started at `at`.
fn answered(at: SystemTime, end_user: &str) -> Answered {
    let started = Instant::now();
    let mut pending = Pending::new(started, Some(KeyHash::of("sk-user")), Some(Tier::Free), Endpoint::ChatCompletions);
    pending.asked(&Arc::from("gpt-4"), Some(end_user), &["team-a".into()]);
    let response = actix_web::HttpResponse::Ok()
        .insert_header(("x-litellm-call-id", "8c7f4a52-3d1e-4b7a-9f0e-2a6c1d5e9b30"))
        .finish();
    pending.answered_by(&response, Duration::from_millis(3), Some(deployment()));
    let usage = TokenUsage { prompt_tokens: 9, completion_tokens: 3, ..TokenUsage::default() };
    let finished = pending.finish(Duration::from_millis(5), Some((usage, 0.25)), Some("chatcmpl-1"));
    Answered { finished, clock: WallClock::reading(at, started) }
}

/// A finished row and the wall clock its start is read on.
struct Answered {
    finished: Finished,
    clock: WallClock,
}

impl Answered {
    fn write_into(&self, block: &mut BlockWriter, master: &KeyHash) {
        self.finished.write_into(block, master, &self.clock);
    }
}

fn deployment() -> Arc<Deployment> {
    let yaml = r#"
model_list:
  - model_name: gpt-4
    litellm_params: {model: openai/fake, api_base: "http://127.0.0.1:4010", api_key: sk-upstream}
    model_info: {id: gpt-4-free-0, tier: free}
general_settings: {master_key: sk-master}
"#;
    Arc::new(crate::config::parse(yaml, &|_| None).unwrap().settings.deployments.remove(0))
}

fn store() -> (tempfile::TempDir, SpendStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SpendStore::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn a_row_is_stored_in_under_60_percent_of_its_json_line_and_reads_back_as_written() {
    let (_dir, store) = store();
    let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_770_000_123_456);
    let mut block = BlockWriter::new();
    answered(at, "customer-7").write_into(&mut block, &KeyHash::of("m"));
    let start = 1_764_770_000_123;
    store.append(block.bytes(), (start, start), 1).unwrap();
    let row = store.by_request_id("chatcmpl-1").unwrap().expect("found by the answer's id");
    let json = serde_json::to_vec(&codec::rows(block.bytes()).next().unwrap()).unwrap();
    assert!(block.bytes().len() * 5 < json.len() * 3, "binary {} bytes, JSON line {}", block.bytes().len(), json.len());
    assert_eq!(
        (row.request_id.as_str(), row.litellm_call_id.as_str()),
        ("chatcmpl-1", "8c7f4a52-3d1e-4b7a-9f0e-2a6c1d5e9b30")
    );
    assert_eq!((row.call_type.as_str(), row.api_key.clone()), ("acompletion", KeyHash::of("sk-user").to_hex()));
    assert_eq!(
        (row.model.as_str(), row.custom_llm_provider.as_str(), row.model_id.as_str()),
        ("fake", "openai", "gpt-4-free-0")
    );
    assert_eq!((row.model_group.as_str(), row.api_base.as_str()), ("gpt-4", "http://127.0.0.1:4010"));
    assert_eq!(
        (row.end_user.as_str(), row.request_tags.clone(), row.tier.as_deref()),
        ("customer-7", vec!["team-a".to_owned()], Some("free"))
    );
    assert_eq!((row.prompt_tokens, row.completion_tokens, row.spend, row.status_code), (9, 3, 0.25, 200));
    assert_eq!(
        (row.start_time.as_str(), row.completion_start_time.as_str()),
        ("2025-12-03T13:53:20.123Z", "2025-12-03T13:53:20.126Z")
    );
    assert_eq!(row.request_duration_ms, 5);
}

#[test]
fn rows_written_as_json_lines_before_the_binary_format_still_read_and_prune() {
    let (_dir, store) = store();
    let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    // Format 1: a block of JSON lines, as main wrote them.
    let mut old = Vec::new();
    for user in ["old-1", "old-2"] {
        let mut block = BlockWriter::new();
        answered(at(1_000), user).write_into(&mut block, &KeyHash::of("m"));
        let mut row = codec::rows(block.bytes()).next().unwrap();
        row.request_id = format!("req-{user}");
        serde_json::to_writer(&mut old, &row).unwrap();
        old.push(b'\n');
    }
    store.append(&old, (1_000, 1_000), 2).unwrap();
    let mut new = BlockWriter::new();
    for user in ["new-1", "new-2"] {
        answered(at(2_000), user).write_into(&mut new, &KeyHash::of("m"));
    }
    store.append(new.bytes(), (2_000, 2_000), 2).unwrap();
    let users = |store: &SpendStore| {
        let page = store.page((0, u64::MAX), |_| true, 0, 10).unwrap();
        page.rows.into_iter().map(|row| row.end_user).collect::<Vec<_>>()
    };
    assert_eq!(users(&store), ["new-2", "new-1", "old-2", "old-1"], "newest first, across formats");
    assert_eq!(store.by_request_id("req-old-1").unwrap().map(|row| row.end_user).as_deref(), Some("old-1"));
    assert_eq!(store.rows(), 4);
    // The row cap cuts the oldest rows of either format.
    store.prune(0, 3).unwrap();
    assert_eq!(users(&store), ["new-2", "new-1", "old-2"]);
    store.prune(0, 1).unwrap();
    assert_eq!(users(&store), ["new-2"]);
}

/// kill -9 (or a full disk) midway through a write leaves part of a record at a segment's end: the store
/// opens, reads every whole block before it, never the rest, and appends to a segment of its own.
#[test]
fn a_half_written_block_is_never_read_and_the_next_writes_go_to_a_new_segment() {
    let (dir, store) = store();
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(5_000);
    let mut block = BlockWriter::new();
    answered(at, "before").write_into(&mut block, &KeyHash::of("m"));
    store.append(block.bytes(), (5_000, 5_000), 1).unwrap();
    drop(store);
    let file = std::fs::read_dir(dir.path().join(DIR)).unwrap().next().unwrap().unwrap().path();
    let mut half = segment::record(block.bytes(), BlockHead { rows: 1, earliest_ms: 6_000, latest_ms: 6_000 });
    half.truncate(half.len() / 2);
    std::fs::write(&file, [std::fs::read(&file).unwrap(), half].concat()).unwrap();
    let store = SpendStore::open(dir.path()).unwrap();
    assert_eq!(store.rows(), 1, "the whole block only");
    let mut after = BlockWriter::new();
    answered(at, "after").write_into(&mut after, &KeyHash::of("m"));
    store.append(after.bytes(), (5_000, 5_000), 1).unwrap();
    drop(store);
    let store = SpendStore::open(dir.path()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join(DIR)).unwrap().count(), 2, "a new segment after a restart");
    let page = store.page((0, u64::MAX), |_| true, 0, 10).unwrap();
    let users: Vec<String> = page.rows.into_iter().map(|row| row.end_user).collect();
    assert_eq!(users, ["after", "before"]);
}

/// A flipped byte in an older segment (damage, not a crash) hides that block and the rest of its segment
/// from reads, and nothing else: no file is cut, and later segments read as before.
#[test]
fn a_damaged_block_in_an_older_segment_hides_only_what_follows_it_there() {
    let (dir, store) = store();
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(5_000);
    for user in ["first", "second"] {
        let mut block = BlockWriter::new();
        answered(at, user).write_into(&mut block, &KeyHash::of("m"));
        store.append(block.bytes(), (5_000, 5_000), 1).unwrap();
    }
    drop(store);
    let file = std::fs::read_dir(dir.path().join(DIR)).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&file).unwrap();
    let length = bytes.len();
    bytes[length - 3] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let store = SpendStore::open(dir.path()).unwrap();
    let mut block = BlockWriter::new();
    answered(at, "third").write_into(&mut block, &KeyHash::of("m"));
    store.append(block.bytes(), (5_000, 5_000), 1).unwrap();
    let page = store.page((0, u64::MAX), |_| true, 0, 10).unwrap();
    let users: Vec<String> = page.rows.into_iter().map(|row| row.end_user).collect();
    assert_eq!(users, ["third", "first"]);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), length as u64, "no file is cut");
}

/// A row that does not decode keeps its place: the row cap hides exactly the oldest rows.
#[test]
fn a_row_that_does_not_decode_keeps_its_place_under_the_row_cap() {
    let (_dir, store) = store();
    let line = |id: &str| {
        format!(
            "{{\"r\":\"{id}\",\"c\":\"c\",\"t\":\"acompletion\",\"k\":\"ab\",\"s\":1000000,\"f\":1,\"d\":2,\"m\":\"m\",\
             \"i\":\"d\",\"g\":\"g\",\"p\":\"p\",\"b\":\"\",\"u\":\"\",\"a\":[],\"h\":200,\"l\":null,\"n\":[1,2,0,0],\"$\":0.5}}\n"
        )
    };
    let block = [line("req-1"), "not a row\n".to_owned(), line("req-3"), line("req-4")].concat();
    store.append(block.as_bytes(), (1_000, 1_000), 4).unwrap();
    store.prune(0, 2).unwrap();
    let page = store.page((0, u64::MAX), |_| true, 0, 10).unwrap();
    let ids: Vec<String> = page.rows.into_iter().map(|row| row.request_id).collect();
    assert_eq!(ids, ["req-4", "req-3"]);
}

/// Rows past the retention are never read; a segment holding only such rows is deleted.
#[test]
fn rows_past_the_retention_are_not_read_and_their_segment_goes() {
    let (dir, store) = store();
    let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    for (ms, user) in [(1_000, "old"), (9_000, "new")] {
        let mut block = BlockWriter::new();
        answered(at(ms), user).write_into(&mut block, &KeyHash::of("m"));
        store.append(block.bytes(), (ms, ms), 1).unwrap();
    }
    store.prune(5_000, u64::MAX).unwrap();
    let page = store.page((0, u64::MAX), |_| true, 0, 10).unwrap();
    assert_eq!(page.rows.into_iter().map(|row| row.end_user).collect::<Vec<_>>(), ["new"]);
    store.prune(10_000, u64::MAX).unwrap();
    assert_eq!(store.rows(), 0, "a segment of expired rows only is deleted");
    assert_eq!(std::fs::read_dir(dir.path().join(DIR)).unwrap().count(), 0);
    let mut block = BlockWriter::new();
    answered(at(11_000), "later").write_into(&mut block, &KeyHash::of("m"));
    store.append(block.bytes(), (11_000, 11_000), 1).unwrap();
    assert_eq!(store.by_request_id("chatcmpl-1").unwrap().map(|row| row.end_user).as_deref(), Some("later"));
}

/// The log's directory deleted while the gateway runs: the next block makes it again and is read.
#[test]
fn rows_written_after_the_directory_was_deleted_are_kept() {
    let (dir, store) = store();
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(5_000);
    let append = |user: &str| {
        let mut block = BlockWriter::new();
        answered(at, user).write_into(&mut block, &KeyHash::of("m"));
        store.append(block.bytes(), (5_000, 5_000), 1)
    };
    append("before").unwrap();
    std::fs::remove_dir_all(dir.path().join(DIR)).unwrap();
    append("after").unwrap();
    let page = store.page((0, u64::MAX), |_| true, 0, 10).unwrap();
    assert_eq!(page.rows.into_iter().map(|row| row.end_user).collect::<Vec<_>>(), ["after"]);
    // Where no segment can be made at all, the append fails (and the writer counts its rows as dropped).
    std::fs::remove_dir_all(dir.path().join(DIR)).unwrap();
    std::fs::write(dir.path().join(DIR), b"not a directory").unwrap();
    assert!(append("lost").is_err());
}

/// Past four reads running or waiting, a read is refused as busy rather than queued without bound.
#[test]
fn a_fifth_read_at_once_is_refused_as_busy() {
    let (_dir, store) = store();
    let inner = &store.inner;
    let held: Vec<Read<'_>> = (0..MAX_READS).map(|_| Read::enter(inner).unwrap()).collect();
    let refused = store.page((0, u64::MAX), |_| true, 0, 10).err().expect("busy");
    assert!(is_busy(&refused), "{refused}");
    drop(held);
    assert!(store.page((0, u64::MAX), |_| true, 0, 10).is_ok());
}
