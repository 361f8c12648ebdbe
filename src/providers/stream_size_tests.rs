//! No upstream byte sequence panics a translation: streams with one event of random size around
//! [`EVENT_LIMIT`], cut into pieces at random points, through both translations. An event up to the limit
//! is translated whole; a longer one breaks the stream off with what came before it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::chat_to_anthropic::ToChat;
use super::messages_to_chat::ToMessages;
use crate::proxy::{whole_stream_events, Reshape, EVENT_LIMIT};

/// What a reshaper made of a stream: its output, and whether it broke the stream off.
fn run(reshape: &mut dyn Reshape, stream: &[u8], rng: &mut StdRng) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        // Mostly small pieces, some large, so cuts fall everywhere, including inside line endings.
        let size = match rng.gen_range(0..4) {
            0 => rng.gen_range(1..8),
            1 => rng.gen_range(1..4096),
            _ => rng.gen_range(1..(3 * 1024 * 1024)),
        };
        let end = (at + size).min(stream.len());
        match reshape.piece(&stream[at..end]) {
            Ok(piece) => out.extend_from_slice(&piece),
            Err(oversized) => {
                out.extend_from_slice(&oversized.before);
                return (out, true);
            }
        }
        at = end;
    }
    match reshape.piece(b"") {
        Ok(piece) => out.extend_from_slice(&piece),
        Err(oversized) => {
            out.extend_from_slice(&oversized.before);
            return (out, true);
        }
    }
    match reshape.finish() {
        Ok(last) => out.extend_from_slice(&last),
        Err(cut) => {
            out.extend_from_slice(&cut.before);
            return (out, true);
        }
    }
    (out, false)
}

/// Sizes of the big event's payload: right at the limit's edges and random around it.
fn sizes(rng: &mut StdRng) -> Vec<usize> {
    let mut sizes = vec![1_200_000, EVENT_LIMIT - 200, EVENT_LIMIT + 1];
    sizes.extend((0..3).map(|_| rng.gen_range(EVENT_LIMIT - 4096..EVENT_LIMIT + 4096)));
    sizes
}

fn line_ending(rng: &mut StdRng) -> &'static str {
    ["\n", "\r\n", "\r"][rng.gen_range(0..3)]
}

/// A stream whose second event carries `payload` bytes, and that event's length.
fn openai_stream(payload: usize, rng: &mut StdRng) -> (Vec<u8>, usize) {
    let end = line_ending(rng);
    let chunk = |delta: Value, finish: Value| {
        let chunk =
            json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}{end}{end}")
    };
    let mut stream = chunk(json!({"role": "assistant", "content": "start "}), Value::Null);
    let big = chunk(json!({"content": "x".repeat(payload)}), Value::Null);
    stream += &big;
    stream += &chunk(json!({"content": " end"}), json!("stop"));
    stream += &format!("data: [DONE]{end}{end}");
    (stream.into_bytes(), big.len())
}

/// A stream whose tool call's arguments carry `payload` bytes in one event, and that event's length.
fn anthropic_stream(payload: usize, rng: &mut StdRng) -> (Vec<u8>, usize) {
    let end = line_ending(rng);
    let event = |name: &str, data: Value| format!("event: {name}{end}data: {data}{end}{end}");
    let usage = json!({"input_tokens": 5, "output_tokens": 1});
    let message =
        json!({"id": "msg", "type": "message", "role": "assistant", "model": "m", "content": [], "usage": usage});
    let tool = json!({"type": "tool_use", "id": "t", "name": "f", "input": {}});
    let arguments = format!("{{\"a\":\"{}\"}}", "y".repeat(payload));
    let mut stream = event("message_start", json!({"type": "message_start", "message": message}));
    stream += &event("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": tool}));
    let delta = json!({"type": "input_json_delta", "partial_json": arguments});
    let big = event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": delta}));
    stream += &big;
    stream += &event("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
    let delta = json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}});
    stream += &event("message_delta", delta);
    stream += &event("message_stop", json!({"type": "message_stop"}));
    (stream.into_bytes(), big.len())
}

/// The data of every event in a translated output.
fn datas(out: &[u8]) -> Vec<Value> {
    whole_stream_events(out).iter().filter_map(|(_, data)| serde_json::from_slice(data).ok()).collect()
}

#[test]
fn messages_clients_get_big_openai_deltas_whole_or_a_broken_stream() {
    let mut rng = StdRng::seed_from_u64(19);
    for payload in sizes(&mut rng) {
        let (stream, big) = openai_stream(payload, &mut rng);
        let (out, broken) = run(&mut ToMessages::default(), &stream, &mut rng);
        assert_eq!(broken, big > EVENT_LIMIT, "payload {payload}: broken off exactly when its event is too long");
        let events = datas(&out);
        let text: usize = events.iter().filter_map(|e| e["delta"]["text"].as_str()).map(str::len).sum();
        if broken {
            assert!(!events.iter().any(|e| e["type"] == "message_stop"), "a broken stream never ends cleanly");
        } else {
            assert_eq!(text, "start ".len() + payload + " end".len(), "payload {payload} arrived whole");
            assert!(events.iter().any(|e| e["type"] == "message_stop"));
        }
    }
}

#[test]
fn chat_clients_get_big_anthropic_deltas_whole_or_a_broken_stream() {
    let mut rng = StdRng::seed_from_u64(14);
    for payload in sizes(&mut rng) {
        let (stream, big) = anthropic_stream(payload, &mut rng);
        let (out, broken) = run(&mut ToChat::new(true), &stream, &mut rng);
        assert_eq!(broken, big > EVENT_LIMIT, "payload {payload}: broken off exactly when its event is too long");
        let text = String::from_utf8_lossy(&out);
        let arguments: usize = datas(&out)
            .iter()
            .filter_map(|chunk| chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .map(str::len)
            .sum();
        if broken {
            assert!(!text.contains("[DONE]") && !text.contains("\"tool_calls\"}"), "no clean end, no finish reason");
        } else {
            assert_eq!(arguments, payload + "{\"a\":\"\"}".len(), "payload {payload}: the arguments arrived whole");
            assert!(text.contains("\"finish_reason\":\"tool_calls\"") && text.contains("data: [DONE]"));
        }
    }
}

#[test]
fn garbage_of_any_shape_never_panics_a_translation() {
    let mut rng = StdRng::seed_from_u64(0);
    for _ in 0..200 {
        let length = rng.gen_range(0..4096);
        let alphabet = b"\r\n:data event{}\"[]DONE x";
        let stream: Vec<u8> = (0..length).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect();
        run(&mut ToMessages::default(), &stream, &mut rng);
        run(&mut ToChat::new(rng.gen()), &stream, &mut rng);
    }
}
