//! The OpenAI `chat.completion.chunk` events a translated stream writes (Gemini's, Bedrock's): one per delta,
//! serialised from borrowed parts (no copy of the id or model per delta), and the closing usage chunk and
//! `[DONE]`.

use actix_web::web::BytesMut;
use serde::Serialize;
use serde_json::{json, Value};

/// What every chunk of one stream repeats.
pub(super) struct ChunkHead<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
}

/// One chunk of choice `index` carrying `delta` (and the choice's `finish_reason` when it ends).
pub(super) fn write_chunk(
    head: &ChunkHead<'_>,
    index: usize,
    delta: &Value,
    finish_reason: Option<&str>,
    out: &mut BytesMut,
) {
    let chunk = Chunk {
        id: head.id,
        object: "chat.completion.chunk",
        created: head.created,
        model: head.model,
        choices: [ChunkChoice { index, delta, finish_reason }],
    };
    if let Ok(data) = serde_json::to_vec(&chunk) {
        crate::proxy::write_event(out, None, &data);
    }
}

/// The end of a stream: the usage chunk (when the client asked for it) and `data: [DONE]`.
pub(super) fn write_end(head: &ChunkHead<'_>, usage: Option<Value>, out: &mut BytesMut) {
    if let Some(usage) = usage {
        let chunk = json!({"id": head.id, "object": "chat.completion.chunk", "created": head.created,
                           "model": head.model, "choices": [], "usage": usage});
        crate::proxy::write_event(out, None, chunk.to_string().as_bytes());
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChunkChoice<'a>; 1],
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: usize,
    delta: &'a Value,
    finish_reason: Option<&'a str>,
}
