//! The end of an OpenAI stream (`[DONE]`: what follows is passed on, never billed; other APIs' streams read on)
//! and the `"usage":null` member taken back out of a chunk.

use super::tests::{run, CHUNK, DONE, USAGE};
use super::*;

/// Split anywhere, with or without the usage chunk the client did not ask for: the usage is the one before
/// `[DONE]`; what follows it (a late usage claiming 1000 tokens, garbage) passes on as it came, unread.
#[test]
fn a_stream_split_anywhere_is_counted_up_to_its_done_and_loses_only_what_its_client_did_not_ask_for() {
    let late = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":7}}\n\ngarbage\n\n";
    let stream = format!("{CHUNK}{USAGE}{DONE}{late}{CHUNK}");
    for (strip, cut) in [true, false].into_iter().flat_map(|strip| (1..stream.len()).map(move |cut| (strip, cut))) {
        let mut reader = UsageReader::new(true, strip, 100, None).ending_at(StreamEnd::Done);
        let mut sent = run(&mut reader, &[&stream.as_bytes()[..cut], &stream.as_bytes()[cut..]]);
        let (rest, usage) = reader.finish();
        sent.extend_from_slice(&rest);
        assert_eq!(
            usage,
            TokenUsage { prompt_tokens: 9, completion_tokens: 3, estimated: false, ..TokenUsage::default() }
        );
        let answer = match strip {
            true => format!("{}{DONE}", CHUNK.replace(",\"usage\":null", "")),
            false => format!("{CHUNK}{USAGE}{DONE}"),
        };
        assert_eq!(String::from_utf8(sent).unwrap(), format!("{answer}{late}{CHUNK}"), "cut at {cut}");
    }
}

#[test]
fn a_stream_ends_where_its_reader_was_told_and_what_follows_is_never_read() {
    const STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let reader = |end| UsageReader::new(true, false, 0, None).ending_at(end);
    for (end, ending, counted) in [
        (StreamEnd::Body, DONE, 9),
        (StreamEnd::Done, DONE, 0),
        (StreamEnd::Done, "data: [DONE] x\n\n", 0), // as OpenAI's SDKs test it: data starting with [DONE]
        (StreamEnd::Done, "data:  [DONE]\n\n", 9),  // which they cannot read, and read on past
        (StreamEnd::Done, STOP, 9),
        (StreamEnd::MessageStop, STOP, 0),
        (StreamEnd::MessageStop, DONE, 9),
    ] {
        let mut reader = reader(end);
        run(&mut reader, &[ending.as_bytes(), USAGE.as_bytes()]);
        assert_eq!(reader.finish().1.prompt_tokens, counted, "{end:?} {ending:?}");
    }
    // An event past the size a reader frames, after [DONE]: passed on whole, and the usage before stands.
    let mut reader = UsageReader::new(true, false, 0, None).ending_at(StreamEnd::Done);
    let big = format!("data: {}\n\n", "x".repeat(crate::proxy::EVENT_LIMIT + 1));
    let sent = run(&mut reader, &[USAGE.as_bytes(), DONE.as_bytes(), big.as_bytes(), USAGE.as_bytes()]);
    assert_eq!(sent.len(), USAGE.len() * 2 + DONE.len() + big.len());
    let usage = reader.finish().1;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.estimated), (9, 3, false));
}

#[test]
fn only_the_chunks_own_null_usage_is_taken_out() {
    let nested = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"logprobs\":{\"a\":1,\"usage\":null}}],\"usage\":null}\n\n";
    let obfuscated = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null,\"obfuscation\":\"x5K\"}\n\n";
    let crlf = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\r\n\r\n";
    let then_nested = "data: {\"choices\":[],\"usage\":null,\"x\":{\"y\":[1]}}\n\n";
    for (event, expected) in [
        (nested, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"logprobs\":{\"a\":1,\"usage\":null}}]}\n\n"),
        (obfuscated, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"obfuscation\":\"x5K\"}\n\n"),
        (crlf, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n"),
        (then_nested, then_nested),
        (CHUNK, &CHUNK.replace(",\"usage\":null", "")),
    ] {
        assert_eq!(String::from_utf8_lossy(&without_null_usage(event.as_bytes())), expected);
    }
}
