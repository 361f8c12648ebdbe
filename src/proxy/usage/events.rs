//! Reading one Server-Sent Event of any API for its usage and the text it carries (for an estimate).

use serde::Deserialize;

use super::chunk_scan::plain_chunk_text_bytes;
use super::stated::{Lenient, Stated, StatedUsage};

#[derive(Debug, Default, PartialEq)]
pub(super) struct EventRead {
    /// The counts the event states.
    pub(super) usage: Stated,
    /// The event is a chunk with no choices and a usage: the one `include_usage` adds.
    pub(super) usage_only: bool,
    /// The usage it states is final (not under `message`, where Anthropic's `message_start` states it).
    pub(super) final_usage: bool,
    pub(super) content_bytes: usize,
    /// The event is the end its reader was told of: after it, nothing is the client's answer.
    pub(super) ends: bool,
}

/// Where an upstream's event stream ends for the client, so that what an upstream writes after it is never
/// billed: a client never reads it, or a translation never passes it on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamEnd {
    /// At the end of the body: every event counts (a stream passed through whose client reads on).
    #[default]
    Body,
    /// At OpenAI's `[DONE]`: its SDKs stop reading there, and so does the translation to Anthropic's events.
    Done,
    /// At Anthropic's `message_stop`, where its translation to OpenAI chunks ends with `[DONE]`.
    MessageStop,
}

/// Reads one event: an OpenAI chunk (usage at the top), an Anthropic event (`message_start` has it in
/// `message`, `message_delta` at the top), a Responses API event (`response.completed` has it in
/// `response`) or a Gemini one (`usageMetadata`); the text it carries, for an estimate.
pub(super) fn read_event(event: &[u8], end: StreamEnd) -> EventRead {
    // The event's data as SSE defines it (every `data:` line, joined; any line ending), read by the one SSE
    // parser: an upstream may split one JSON value over several `data:` lines or end lines with a lone CR.
    // The usual event, one `data:` line, is read in place.
    let joined;
    let data = match crate::proxy::sse::single_line_data(event) {
        Some(data) => data,
        None => {
            joined = crate::proxy::sse::fields(event).1;
            &joined
        }
    };
    let ends = match end {
        StreamEnd::Body => false,
        StreamEnd::Done => crate::proxy::sse::is_done(data),
        StreamEnd::MessageStop => is_message_stop(data),
    };
    if ends {
        return EventRead { ends, ..EventRead::default() };
    }
    let data = data.trim_ascii();
    match plain_chunk_text_bytes(data) {
        Some(content_bytes) => EventRead { content_bytes, ..EventRead::default() },
        None => parsed_event(data),
    }
}

/// Whether an event's data is Anthropic's `{"type":"message_stop"}` (only events naming it are parsed).
fn is_message_stop(data: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
    }
    memchr::memmem::find(data, b"message_stop").is_some()
        && serde_json::from_slice::<Typed>(data).is_ok_and(|typed| typed.kind == Some("message_stop"))
}

/// Reads an event's `data` with serde: any event of any API.
pub(super) fn parsed_event(data: &[u8]) -> EventRead {
    #[derive(Deserialize)]
    struct Chunk {
        #[serde(default)]
        choices: Vec<Choice>,
        usage: Option<StatedUsage>,
        message: Option<Holder>,
        response: Option<Holder>,
        delta: Option<EventDelta>,
        /// Gemini's running totals, on every event of a stream.
        #[serde(rename = "usageMetadata")]
        usage_metadata: Option<StatedUsage>,
    }
    #[derive(Deserialize)]
    struct Holder {
        usage: Option<StatedUsage>,
    }
    /// Anthropic's `{"text": …}` / `{"partial_json": …}`, or the Responses API's text.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum EventDelta {
        Text(String),
        Block { text: Option<String>, partial_json: Option<String>, thinking: Option<String> },
    }
    /// A chat chunk's choice (`delta`), or a text completion chunk's (`text`).
    #[derive(Deserialize)]
    struct Choice {
        #[serde(default)]
        delta: Option<Delta>,
        text: Option<String>,
    }
    #[derive(Deserialize)]
    struct Delta {
        content: Option<String>,
        reasoning_content: Option<String>,
        #[serde(default)]
        tool_calls: Option<Lenient<Vec<ToolCall>>>,
        /// The legacy single function call (`functions`), shaped as a tool call's `function`.
        #[serde(default)]
        function_call: Option<Lenient<Function>>,
    }
    #[derive(Deserialize)]
    struct ToolCall {
        function: Option<Function>,
    }
    #[derive(Deserialize)]
    struct Function {
        name: Option<String>,
        arguments: Option<String>,
    }
    let mut read = EventRead::default();
    if let Ok(chunk) = serde_json::from_slice::<Chunk>(data) {
        read.usage_only = chunk.choices.is_empty() && chunk.usage.is_some() && chunk.delta.is_none();
        let preliminary = chunk.message.and_then(|holder| holder.usage);
        let last_word = chunk.usage.or(chunk.response.and_then(|holder| holder.usage)).or(chunk.usage_metadata);
        for (usage, is_final) in [(preliminary, false), (last_word, true)] {
            let Some(stated) = usage.map(|usage| usage.stated()) else { continue };
            if stated.counts_anything() {
                read.final_usage |= is_final;
            }
            read.usage = stated.over(read.usage);
        }
        read.content_bytes += match &chunk.delta {
            Some(EventDelta::Text(text)) => text.len(),
            Some(EventDelta::Block { text, partial_json, thinking }) => {
                [text, partial_json, thinking].iter().map(|part| part.as_ref().map_or(0, String::len)).sum()
            }
            None => 0,
        };
        let text_len = |text: &Option<String>| text.as_ref().map_or(0, String::len);
        // A tool call counts by the text the model wrote (its name and arguments), not by the chunk's JSON
        // around it: a call streamed a few bytes a chunk is mostly envelope.
        let function_len = |function: Option<&Function>| {
            function.map_or(0, |function| text_len(&function.name) + text_len(&function.arguments))
        };
        let calls_len = |calls: &Option<Lenient<Vec<ToolCall>>>| {
            calls
                .as_ref()
                .and_then(Lenient::read)
                .map_or(0, |calls| calls.iter().map(|call| function_len(call.function.as_ref())).sum())
        };
        let called_len = |called: &Option<Lenient<Function>>| function_len(called.as_ref().and_then(Lenient::read));
        read.content_bytes += chunk
            .choices
            .iter()
            .map(|choice| {
                let delta = choice.delta.as_ref().map_or(0, |delta| {
                    text_len(&delta.content)
                        + text_len(&delta.reasoning_content)
                        + calls_len(&delta.tool_calls)
                        + called_len(&delta.function_call)
                });
                delta + text_len(&choice.text)
            })
            .sum::<usize>();
    }
    read
}
