//! Google's Gemini API (`generateContent`, `streamGenerateContent?alt=sse`, `embedContent`,
//! `batchEmbedContents`) for OpenAI clients: the request translated on the way out ([`request`], with
//! [`schema`] for tool and response schemas; [`embeddings`]), the answer on the way back, whole
//! ([`response`]) or streamed ([`stream`]). The URL is the deployment's (`…/models/<model>:<method>`), so the
//! same translation serves any base that addresses Gemini models that way (AI Studio, Vertex AI).

mod embeddings;
mod request;
mod response;
mod schema;
mod stream;

use std::borrow::Cow;

use actix_web::http::{StatusCode, Uri};
use actix_web::web::{Bytes, BytesMut};
use serde_json::Value;

use super::Untranslatable;
use crate::proxy::{event_fields, CutShort, EventBuffer, Oversized, Reshape};

pub use embeddings::to_gemini as embeddings_to_gemini;
pub use request::{from_chat, to_gemini};

/// Between a tool call's id and the thought signature Gemini gave the call (LiteLLM's convention), so the
/// signature comes back with the client's next turn.
pub const THOUGHT_SEPARATOR: &str = "__thought__";

/// Where a chat request goes: `generate` (the deployment's `…:generateContent` URL) as it is, or, for a
/// stream or a model `filled` in for this request (a wildcard deployment's), the same base with that model and
/// method.
pub fn chat_url<'a>(
    generate: &'a Uri,
    model: &str,
    filled: bool,
    stream: bool,
) -> Result<Cow<'a, Uri>, Untranslatable> {
    match (stream, filled) {
        (false, false) => Ok(Cow::Borrowed(generate)),
        (false, true) => method_url(generate, model, "generateContent").map(Cow::Owned),
        (true, _) => method_url(generate, model, "streamGenerateContent?alt=sse").map(Cow::Owned),
    }
}

/// Where an embeddings request goes: `embed` (the deployment's `…:embedContent` URL), or its
/// `batchEmbedContents` twin for a list.
pub fn embed_url<'a>(embed: &'a Uri, model: &str, filled: bool, batch: bool) -> Result<Cow<'a, Uri>, Untranslatable> {
    match (batch, filled) {
        (false, false) => Ok(Cow::Borrowed(embed)),
        (false, true) => method_url(embed, model, "embedContent").map(Cow::Owned),
        (true, _) => method_url(embed, model, "batchEmbedContents").map(Cow::Owned),
    }
}

/// `…/models/<model>:<method>` on the base of `url` (a URL of the same shape; Vertex AI's too).
pub(super) fn method_url(url: &Uri, model: &str, method: &str) -> Result<Uri, Untranslatable> {
    // `@`: Vertex AI's model versions (`claude-sonnet-4@20250514`).
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._@".contains(&b);
    let refused = || Untranslatable::new("model", "is not a model name (letters, digits, `-`, `.`, `_`, `@`)");
    if model.is_empty() || !model.bytes().all(plain) {
        return Err(refused());
    }
    let text = url.to_string();
    let base = text.rfind("/models/").map(|at| &text[..at]).ok_or_else(refused)?;
    format!("{base}/models/{model}:{method}").parse::<Uri>().map_err(|_| refused())
}

/// Turns a Gemini answer into the chat completion an OpenAI client expects.
pub struct ToChat {
    events: EventBuffer,
    writer: stream::ChunkWriter,
    model: Box<str>,
    created: u64,
}

impl ToChat {
    /// `model`: the answer's model unless Gemini names its version; `include_usage`: the client asked for a
    /// stream's usage chunk.
    pub fn new(model: &str, include_usage: bool) -> Self {
        let created = super::chat_to_anthropic::unix_now();
        let writer = stream::ChunkWriter::new(model, created, include_usage);
        Self { events: EventBuffer::default(), writer, model: model.into(), created }
    }
}

impl Reshape for ToChat {
    fn whole(&mut self, status: StatusCode, body: &[u8]) -> Option<(StatusCode, Bytes)> {
        if !status.is_success() {
            let (status, error) = response::to_openai_error(status, body);
            return Some((status, Bytes::from(error.to_string())));
        }
        let answer = serde_json::from_slice::<Value>(body).ok()?;
        let chat = response::to_chat_completion(&answer, &self.model, self.created)?;
        Some((status, Bytes::from(chat.to_string())))
    }

    fn piece(&mut self, piece: &[u8]) -> Result<Bytes, Oversized> {
        let writer = &mut self.writer;
        self.events.map_events(piece, |event, out| translate(writer, event, out))
    }

    /// Gemini ends a stream by closing it after the last candidate's finish reason (no `[DONE]`): one that
    /// ends before a finish reason was cut short.
    fn finish(&mut self) -> Result<Bytes, CutShort> {
        let mut out = BytesMut::new();
        translate(&mut self.writer, &self.events.rest(), &mut out);
        if !self.writer.is_whole() {
            return Err(CutShort { before: out.freeze() });
        }
        self.writer.finish(&mut out);
        Ok(out.freeze())
    }
}

fn translate(writer: &mut stream::ChunkWriter, event: &[u8], out: &mut BytesMut) {
    let (_, data) = event_fields(event);
    if let Ok(data) = serde_json::from_slice::<Value>(&data) {
        writer.event(&data, out);
    }
}

/// Turns a Gemini embedding answer into OpenAI's list (never a stream).
pub struct ToEmbeddings {
    model: Box<str>,
    asked: embeddings::Asked,
}

impl ToEmbeddings {
    pub fn new(model: &str, request: &[u8]) -> Self {
        Self { model: model.into(), asked: embeddings::Asked::of(request) }
    }
}

impl Reshape for ToEmbeddings {
    fn whole(&mut self, status: StatusCode, body: &[u8]) -> Option<(StatusCode, Bytes)> {
        if !status.is_success() {
            let (status, error) = response::to_openai_error(status, body);
            return Some((status, Bytes::from(error.to_string())));
        }
        let answer = serde_json::from_slice::<Value>(body).ok()?;
        let list = embeddings::to_openai(&answer, &self.model, &self.asked)?;
        Some((status, Bytes::from(list.to_string())))
    }

    /// Gemini's embeddings never stream; an event stream here is passed on as it came.
    fn piece(&mut self, piece: &[u8]) -> Result<Bytes, Oversized> {
        Ok(Bytes::copy_from_slice(piece))
    }

    fn finish(&mut self) -> Result<Bytes, CutShort> {
        Ok(Bytes::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_batches_and_wildcards_get_their_own_method_urls() {
        let generate: Uri = "http://h/v1beta/models/gemini-2.0-flash:generateContent".parse().unwrap();
        let model = "gemini-2.0-flash";
        assert!(matches!(chat_url(&generate, model, false, false), Ok(Cow::Borrowed(_))));
        assert_eq!(
            chat_url(&generate, model, false, true).unwrap().to_string(),
            "http://h/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            chat_url(&generate, "gemini-2.5-pro", true, false).unwrap().to_string(),
            "http://h/v1beta/models/gemini-2.5-pro:generateContent"
        );
        let embed: Uri = "http://h/v1beta/models/text-embedding-004:embedContent".parse().unwrap();
        assert_eq!(
            embed_url(&embed, "text-embedding-004", false, true).unwrap().to_string(),
            "http://h/v1beta/models/text-embedding-004:batchEmbedContents"
        );
        assert!(chat_url(&generate, "x?key=1", true, false).is_err());
    }

    #[test]
    fn a_stream_cut_before_its_finish_reason_is_cut_short() {
        let mut reshape = ToChat::new("m", false);
        let first =
            reshape.piece(b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}]}\r\n\r\n").unwrap();
        assert!(String::from_utf8_lossy(&first).contains("\"content\":\"Hi\""));
        assert!(reshape.finish().is_err());
        let mut reshape = ToChat::new("m", false);
        let whole = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]},\"finishReason\":\"STOP\"}]}";
        reshape.piece(whole).unwrap();
        assert!(reshape.finish().is_ok_and(|last| last.ends_with(b"data: [DONE]\n\n")));
    }
}
