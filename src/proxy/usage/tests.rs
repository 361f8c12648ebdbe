//! Reading usage: whole answers, streams split anywhere, the usage chunk stripped, estimates, bounds.

use super::member::last_usage_key;
use super::*;
use crate::proxy::sse::event_end;

pub(super) const CHUNK: &str =
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello there\"}}],\"usage\":null}\n\n";
pub(super) const USAGE: &str =
    "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n";
pub(super) const DONE: &str = "data: [DONE]\n\n";

pub(super) fn run(reader: &mut UsageReader, pieces: &[&[u8]]) -> Vec<u8> {
    pieces.iter().flat_map(|piece| reader.feed(Bytes::copy_from_slice(piece)).to_vec()).collect()
}

#[test]
fn a_client_that_asked_for_usage_gets_the_stream_unchanged() {
    let stream = format!("{CHUNK}{USAGE}{DONE}");
    let mut reader = UsageReader::new(true, false, 0, None);
    let sent = run(&mut reader, &[stream.as_bytes()]);
    assert_eq!(sent, stream.as_bytes());
    assert!(!reader.finish().1.estimated);
}

#[test]
fn a_stream_without_usage_is_estimated_from_its_text() {
    let mut reader = UsageReader::new(true, false, 400, None);
    run(&mut reader, &[CHUNK.as_bytes(), DONE.as_bytes()]);
    let usage = reader.finish().1;
    assert_eq!(
        usage,
        TokenUsage { prompt_tokens: 100, completion_tokens: 3, estimated: true, ..TokenUsage::default() }
    );
}

#[test]
fn an_event_that_never_ends_passes_unread_once_it_is_too_long() {
    let mut reader = UsageReader::new(true, true, 0, None);
    let sent = run(&mut reader, &[b"data: {", &vec![b'x'; crate::proxy::EVENT_LIMIT], b"more"]);
    assert_eq!(sent.len(), "data: {".len() + crate::proxy::EVENT_LIMIT + 4, "everything went on");
    let usage = reader.finish().1;
    assert!(usage.estimated && usage.completion_tokens > 0);
}

#[test]
fn events_end_at_any_blank_line() {
    for stream in [
        "data: 1\n\ndata: 2\n\n",
        "data: 1\r\n\r\ndata: 2\r\n\r\n",
        "data: 1\r\rdata: 2\r\r",
        "data: 1\n\r\ndata: 2\n\n",
    ] {
        let end = event_end(stream.as_bytes()).unwrap();
        assert!(stream[end..].starts_with("data: 2"), "{stream:?}");
    }
    assert_eq!(event_end(b"data: 1\r\n\r"), None, "the CRLF may still be arriving");
    assert_eq!(event_end(b"data: 1\r\ndata"), None);
}

#[test]
fn the_last_usage_member_is_read_alone_and_escaped_text_cannot_fake_it() {
    let answer = br#"{"choices":[{"message":{"content":"\"usage\": {\"prompt_tokens\": 0}"}}], "usage" : {"prompt_tokens":5,"completion_tokens":7}}"#;
    assert_eq!(usage_of_json(answer).map(|u| (u.prompt_tokens, u.completion_tokens)), Some((5, 7)));
    let faked = br#"{"usage":{"prompt_tokens":5,"completion_tokens":7},"choices":[{"message":{"content":"\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":0}"}}]}"#;
    assert_eq!(usage_of_json(faked).map(|u| (u.prompt_tokens, u.completion_tokens)), Some((5, 7)));
}

#[test]
fn usage_without_counts_is_no_usage() {
    assert_eq!(usage_of_json(br#"{"usage":{"total_tokens":12}}"#), None);
    assert_eq!(usage_of_json(br#"{"usage":{}}"#), None);
}

#[test]
fn absurd_token_counts_are_bounded() {
    let answer = format!(r#"{{"usage":{{"prompt_tokens":{},"completion_tokens":1}}}}"#, u64::MAX);
    assert_eq!(usage_of_json(answer.as_bytes()).unwrap().prompt_tokens, MAX_TOKENS_PER_ANSWER);
}

#[test]
fn whole_answers_state_their_usage_or_are_estimated() {
    let answer = br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
    assert_eq!(
        usage_or_estimate(answer, 0, true),
        TokenUsage { prompt_tokens: 5, completion_tokens: 7, estimated: false, ..TokenUsage::default() }
    );
    let bare = usage_or_estimate(br#"{"choices":[]}"#, 8, true);
    assert!(bare.estimated && bare.prompt_tokens == 2);
    let mut reader = UsageReader::new(false, false, 0, None);
    run(&mut reader, &[&answer[..10], &answer[10..]]);
    assert_eq!(reader.finish().1.completion_tokens, 7);
}

#[test]
fn only_the_top_level_usage_counts_wherever_it_is() {
    let nested_last = br#"{"usage":{"prompt_tokens":1000,"completion_tokens":1000},"choices":[{"message":{},"usage":{"prompt_tokens":0,"completion_tokens":1}}]}"#;
    assert_eq!(usage_of_json(nested_last).map(|u| (u.prompt_tokens, u.completion_tokens)), Some((1000, 1000)));
    let meta_last = br#"{"usage":{"prompt_tokens":7,"completion_tokens":7},"x_meta":{"usage":{}}}"#;
    assert_eq!(usage_of_json(meta_last).map(|u| u.prompt_tokens), Some(7));
}

#[test]
fn a_last_event_without_its_blank_line_is_read() {
    for end in ["\r", "\n", ""] {
        let mut reader = UsageReader::new(true, true, 0, None);
        let stream = format!("{}{}", USAGE.trim_end(), end);
        let sent = run(&mut reader, &[stream.as_bytes()]);
        let (rest, usage) = reader.finish();
        assert!(sent.is_empty() && rest.is_empty(), "the usage chunk is stripped ({end:?})");
        assert_eq!((usage.prompt_tokens, usage.estimated), (9, false), "{end:?}");
    }
}

#[test]
fn the_usual_answer_takes_the_fast_path() {
    let answer =
        br#"{"id":"c","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
    assert!(last_usage_member(answer).is_some());
    // OpenAI's own order: the usage (with its details), then the service tier and the fingerprint.
    let openai = br#"{"id":"chatcmpl-B9","object":"chat.completion","created":1741569952,"model":"gpt-4.1","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":null}
"#;
    let usage = last_usage_member(openai).and_then(StatedUsage::tokens).unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.cache_read_tokens), (19, 10, 4));
}

#[test]
fn a_long_answer_in_openais_order_is_read_from_its_tail() {
    // Only the tail of a long answer is kept, so no serde reading of the whole is possible: before, a usage
    // with the service tier after it was estimated.
    let content = "word ".repeat(300_000);
    let answer = format!(
        r#"{{"id":"c","choices":[{{"message":{{"content":"{content}"}}}}],"usage":{{"prompt_tokens":7,"completion_tokens":9}},"service_tier":"default","system_fingerprint":"fp_1"}}"#
    );
    let mut reader = UsageReader::new(false, false, 0, None);
    let pieces: Vec<&[u8]> = answer.as_bytes().chunks(16 * 1024).collect();
    run(&mut reader, &pieces);
    let usage = reader.finish().1;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.estimated), (7, 9, false));
}

const MESSAGE_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n";
const MESSAGE_DELTA: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\n";

fn text_delta(text: &str) -> String {
    format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\n")
}

#[test]
fn an_anthropic_stream_is_counted_from_its_start_and_final_usage() {
    let stream = format!("{MESSAGE_START}{}{MESSAGE_DELTA}", text_delta("Hello"));
    let mut reader = UsageReader::new(true, false, 400, None);
    run(&mut reader, &[stream.as_bytes()]);
    assert_eq!(
        reader.finish().1,
        TokenUsage { prompt_tokens: 10, completion_tokens: 5, estimated: false, ..TokenUsage::default() }
    );
}

#[test]
fn a_stream_cut_before_its_final_usage_costs_at_least_what_was_seen() {
    // The client leaves after 4,000 bytes of text: the preliminary `output_tokens: 1` cannot stand.
    let stream = format!("{MESSAGE_START}{}", text_delta(&"x".repeat(4000)));
    let mut reader = UsageReader::new(true, false, 400, None);
    run(&mut reader, &[stream.as_bytes()]);
    let usage = reader.finish().1;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (10, 1000));
}

/// #19 item 15: the cache counts every API states are read with the prompt they are part of.
#[test]
fn cache_reads_and_writes_are_read_from_every_api() {
    let cached = |usage: TokenUsage| (usage.prompt_tokens, usage.cache_read_tokens, usage.cache_write_tokens);
    let hour = br#"{"usage":{"input_tokens":9,"cache_creation_input_tokens":20,"cache_creation":{"ephemeral_5m_input_tokens":15,"ephemeral_1h_input_tokens":5},"output_tokens":3}}"#;
    assert_eq!(usage_of_json(hour).unwrap().cache_write_1h_tokens, 5);
    let anthropic = br#"{"type":"message","usage":{"input_tokens":9,"cache_read_input_tokens":100,"cache_creation_input_tokens":20,"output_tokens":3}}"#;
    assert_eq!(cached(usage_of_json(anthropic).unwrap()), (129, 100, 20));
    let chat = br#"{"choices":[],"usage":{"prompt_tokens":50,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":40,"audio_tokens":0}}}"#;
    assert_eq!(cached(usage_of_json(chat).unwrap()), (50, 40, 0));
    let responses = br#"{"object":"response","usage":{"input_tokens":50,"input_tokens_details":{"cached_tokens":32},"output_tokens":3}}"#;
    assert_eq!(cached(usage_of_json(responses).unwrap()), (50, 32, 0));
    let absurd =
        br#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":9000}}}"#;
    assert_eq!(cached(usage_of_json(absurd).unwrap()), (5, 5, 0), "never more cached than prompt");
    let odd = br#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":-1}}}"#;
    assert_eq!(cached(usage_of_json(odd).unwrap()), (5, 0, 0), "odd details never hide the counts");
    // A stream: the cache counts come with `message_start`'s prompt and stay when `message_delta` states
    // only the output.
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"cache_read_input_tokens\":100,\"cache_creation_input_tokens\":20,\"output_tokens\":1}}}\n\n";
    let stream = format!("{start}{MESSAGE_DELTA}");
    let mut reader = UsageReader::new(true, false, 0, None);
    run(&mut reader, &[stream.as_bytes()]);
    let usage = reader.finish().1;
    assert_eq!((cached(usage), usage.completion_tokens), ((129, 100, 20), 5));
}

#[test]
fn cache_reads_and_writes_are_prompt_tokens() {
    let body = br#"{"type":"message","usage":{"input_tokens":3,"cache_read_input_tokens":20,"cache_creation_input_tokens":50000,"output_tokens":1}}"#;
    assert_eq!(usage_of_json(body).unwrap().prompt_tokens, 50023);
    let huge = br#"{"usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":5,"output_tokens":1}}"#;
    assert_eq!(usage_of_json(huge).unwrap().prompt_tokens, MAX_TOKENS_PER_ANSWER);
}

#[test]
fn completion_text_and_reasoning_count_toward_an_estimate() {
    let completion = "data: {\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"abcdefgh\"}]}\n\n";
    let reasoning = "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"abcdefgh\"}}]}\n\n";
    let thinking = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"abcdefgh\"}}\n\n";
    for stream in [completion, reasoning, thinking] {
        let mut reader = UsageReader::new(true, false, 0, None);
        run(&mut reader, &[stream.as_bytes()]);
        assert_eq!(reader.finish().1.completion_tokens, 2, "{stream}");
    }
}

#[test]
fn a_passed_through_stream_with_one_event_of_any_size_arrives_whole_and_counted() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let limit = crate::proxy::EVENT_LIMIT;
    let mut payloads = vec![1_200_000, limit - 100, limit + 1];
    payloads.extend((0..3).map(|_| rng.gen_range(limit - 4096..limit + 4096)));
    for payload in payloads {
        let big = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
            "x".repeat(payload)
        );
        let stream = [CHUNK, &big, USAGE, DONE].concat().into_bytes();
        let mut reader = UsageReader::new(true, false, 0, None);
        let mut sent = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let end = (at + rng.gen_range(1..(3 << 20))).min(stream.len());
            sent.extend_from_slice(&reader.feed(Bytes::copy_from_slice(&stream[at..end])));
            at = end;
        }
        let (rest, usage) = reader.finish();
        sent.extend_from_slice(&rest);
        assert!(sent == stream, "payload {payload}: every byte went on, in order");
        match big.len() > limit {
            // Past an oversized event the stream passes unread: estimated, at least its text.
            true => assert!(usage.estimated && usage.completion_tokens as usize >= payload / 4, "payload {payload}"),
            false => assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.estimated), (9, 3, false)),
        }
    }
}

/// #19 item 17: 40 KB of tool-call arguments streamed 10 bytes a chunk are about 10k tokens, not the
/// 150k the chunks' JSON would make.
#[test]
fn a_tool_call_stream_without_usage_is_estimated_from_its_arguments_not_its_envelope() {
    let first = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"write_file\",\"arguments\":\"\"}}]}}]}\n\n";
    let piece = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"0123456789\"}}]}}]}\n\n";
    let legacy = "data: {\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"arguments\":\"abcd\"}}}]}\n\n";
    let odd = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":\"??\",\"content\":\"abcd\"}}]}\n\n";
    let stream = format!("{first}{}{legacy}{odd}{DONE}", piece.repeat(4000));
    let mut reader = UsageReader::new(true, false, 0, None);
    run(&mut reader, &[stream.as_bytes()]);
    let usage = reader.finish().1;
    let written = "write_file".len() + 40_000 + "abcd".len() + "abcd".len();
    assert_eq!(usage.completion_tokens, (written as u64).div_ceil(BYTES_PER_TOKEN), "{usage:?}");
    assert!(usage.estimated);
}

/// Hostile pass on #19: an event's data split over several `data:` lines (as SSE allows), or lines ended by a
/// lone CR, is still read for its usage; before, each line was parsed alone and split on LF only, so the
/// final `output_tokens` went uncounted and the answer was billed at its preliminary count.
#[test]
fn usage_split_over_data_lines_or_ended_by_lone_crs_is_counted() {
    let split_delta =
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\n\
                       data: \"usage\":{\"output_tokens\":2000}}\n\n";
    let lone_crs = format!("{MESSAGE_START}{}{MESSAGE_DELTA}", text_delta("Hello")).replace('\n', "\r");
    let expected = |completion_tokens| TokenUsage {
        prompt_tokens: 10,
        completion_tokens,
        estimated: false,
        ..TokenUsage::default()
    };
    for (stream, completion_tokens) in
        [(format!("{MESSAGE_START}{}{split_delta}", text_delta("Hello")), 2000), (lone_crs, 5)]
    {
        let mut reader = UsageReader::new(true, false, 400, None);
        run(&mut reader, &[stream.as_bytes()]);
        assert_eq!(reader.finish().1, expected(completion_tokens), "{stream:?}");
    }
}

/// #23 (gemini): Gemini's `usageMetadata` counts, whole or streamed: thinking tokens are output, the
/// cached content part of the prompt.
#[test]
fn gemini_usage_metadata_is_read_with_its_thoughts_and_cache() {
    let whole = br#"{"candidates":[],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":4,"thoughtsTokenCount":6,"cachedContentTokenCount":3}}"#;
    let usage = usage_of_json(whole).unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.cache_read_tokens), (10, 10, 3));
    let stream = "data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":9}}\r\n\r\n\
                  data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":3}}\r\n\r\n";
    let mut reader = UsageReader::new(true, false, 400, None);
    run(&mut reader, &[stream.as_bytes()]);
    let usage = reader.finish().1;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.estimated), (9, 3, false));
}

/// The scan of a usage object reads what serde's reader reads, or leaves it to serde.
#[test]
fn a_scanned_usage_reads_as_serde_reads_it() {
    let samples = [
        r#"{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}"#,
        r#"{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#,
        r#"{"input_tokens":5,"cache_creation_input_tokens":7,"cache_read_input_tokens":3,"cache_creation":{"ephemeral_5m_input_tokens":2,"ephemeral_1h_input_tokens":5},"output_tokens":11,"service_tier":"standard"}"#,
        r#"{"input_tokens":8,"input_tokens_details":{"cached_tokens":2},"output_tokens":4,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":12}"#,
        r#"{"promptTokenCount":6,"toolUsePromptTokenCount":1,"candidatesTokenCount":2,"thoughtsTokenCount":3,"cachedContentTokenCount":1}"#,
        r#"{"prompt_tokens":null,"completion_tokens":3}"#,
        r#"{"prompt_tokens":1,"prompt_tokens_details":null,"input_tokens_details":{"cached_tokens":1}}"#,
        r#"{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":null},"input_tokens_details":{"cached_tokens":1}}"#,
        r#"{"prompt_tokens":9,"prompt_tokens_details":7,"input_tokens_details":{"cached_tokens":1}}"#,
        r#"{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":"3"},"input_tokens_details":{"cached_tokens":1}}"#,
        r#"{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":3,"cached_tokens":4}}"#,
        r#"{"prompt_tokens":9,"prompt_tokens":10}"#,
        r#"{"prompt_tokens":null,"prompt_tokens":10}"#,
        r#"{"prompt_tokens":"9","completion_tokens":3}"#,
        r#"{"prompt_tokens":{"a":1},"completion_tokens":3}"#,
        r#"{"prompt_tokens":9.5,"completion_tokens":3}"#,
        r#"{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":1},"prompt_tokens_details":{"cached_tokens":2}}"#,
        r#"{"prompt_tokens":999999999999,"completion_tokens":3,"extra":{"deep":{"er":1}}}"#,
        r#"{"completion_tokens":3,"weird":"a\"b"}"#,
        r#"{}"#,
        r#"{"total_tokens":4}"#,
    ];
    for sample in samples {
        let by_serde = serde_json::from_str::<StatedUsage>(sample).ok().and_then(StatedUsage::tokens);
        if let Some((usage, taken)) = StatedUsage::scanned(sample.as_bytes()) {
            assert_eq!(taken, sample.len(), "{sample}");
            assert_eq!(usage.tokens(), by_serde, "{sample}");
        }
        // Whichever reads it, the answer's usage is serde's.
        let answer = format!(r#"{{"id":"x","usage":{sample}}}"#);
        assert_eq!(usage_of_json(answer.as_bytes()), by_serde.or_else(|| usage_of_json_by_serde(&answer)), "{sample}");
    }
    // Not UTF-8: left to serde, which refuses some such texts and skips others.
    for broken in
        [&b"{\"prompt_tokens\":9,\"completion_tokens\":3,\"\xff\":0}"[..], b"{\"prompt_tokens\":9,\"x\":\"\xff\"}"]
    {
        assert!(StatedUsage::scanned(broken).is_none());
        let answer = [&b"{\"usage\":"[..], broken, b"}"].concat();
        let by_serde = serde_json::from_slice::<StatedUsage>(broken).ok().and_then(StatedUsage::tokens);
        assert_eq!(usage_of_json(&answer), by_serde);
    }
    for scanned in [samples[0], samples[1], samples[2], samples[3], samples[4], samples[6], samples[8]] {
        assert!(StatedUsage::scanned(scanned.as_bytes()).is_some(), "the usual shapes are scanned: {scanned}");
    }
}

/// The whole answer read by serde alone (what `usage_of_json` falls back to).
fn usage_of_json_by_serde(answer: &str) -> Option<TokenUsage> {
    #[derive(serde::Deserialize)]
    struct Answer {
        usage: Option<StatedUsage>,
    }
    serde_json::from_str::<Answer>(answer).ok()?.usage?.tokens()
}

#[test]
fn the_last_usage_key_is_found_as_a_substring_search_finds_it() {
    let finder = memchr::memmem::FinderRev::new(b"\"usage\"");
    for body in [
        &b""[..],
        b"usage",
        b"\"usage\"",
        b"u\"usage\"",
        b"{\"usage\":{},\"usage\":{\"u\":1}}",
        b"{\"usage\":{\"audio_tokens\":0,\"cached_tokens\":0}}",
        b"{\"content\":\"usage uuu \\\"usage\\\"\",\"x\":\"uusage\"}",
        b"\"usageu\"usag\"usage",
    ] {
        assert_eq!(last_usage_key(body), finder.rfind(body), "{}", String::from_utf8_lossy(body));
    }
}
