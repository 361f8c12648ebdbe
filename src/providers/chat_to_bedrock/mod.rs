//! AWS Bedrock's Converse API (`/model/<id>/converse`, `/converse-stream`) and `invoke` embeddings for
//! OpenAI clients: the request translated on the way out ([`request`], [`embeddings`]), the answer on the
//! way back, whole ([`response`]) or streamed ([`stream`], read from AWS's binary [`eventstream`] framing,
//! one frame at a time). Signing is the transport's (`proxy::sigv4`); the URL is the deployment's.

mod embeddings;
pub mod eventstream;
mod request;
mod response;
mod stream;

use std::borrow::Cow;

use actix_web::http::{StatusCode, Uri};
use actix_web::web::{Bytes, BytesMut};
use serde_json::Value;

use super::Untranslatable;
use crate::proxy::{CutShort, Oversized, Reshape};

pub use embeddings::to_invoke as embeddings_to_bedrock;
pub use request::{from_chat, to_converse};

/// A fresh chat completion id (Converse answers carry none).
fn new_id() -> String {
    format!("chatcmpl-{:016x}", rand::random::<u64>())
}

/// Where a chat request goes: `converse` (the deployment's `…/model/<id>/converse` URL) as it is, or its
/// `converse-stream` twin, or, for a model `filled` in for this request (a wildcard deployment's), the same
/// base with that model.
pub fn chat_url<'a>(
    converse: &'a Uri,
    model: &str,
    filled: bool,
    stream: bool,
) -> Result<Cow<'a, Uri>, Untranslatable> {
    let method = if stream { "converse-stream" } else { "converse" };
    match (stream, filled) {
        (false, false) => Ok(Cow::Borrowed(converse)),
        _ => model_url(converse, model, filled, method).map(Cow::Owned),
    }
}

/// Where an embeddings request goes: the deployment's `…/invoke`, or a wildcard's model's.
pub fn invoke_url<'a>(invoke: &'a Uri, model: &str, filled: bool) -> Result<Cow<'a, Uri>, Untranslatable> {
    match filled {
        false => Ok(Cow::Borrowed(invoke)),
        true => model_url(invoke, model, true, "invoke").map(Cow::Owned),
    }
}

/// `…/model/<id>/<method>` on the base of `url`; the id is `url`'s unless `filled`.
fn model_url(url: &Uri, model: &str, filled: bool, method: &str) -> Result<Uri, Untranslatable> {
    let refused = || Untranslatable::new("model", "cannot be addressed on Bedrock");
    let text = url.to_string();
    let at = text.rfind("/model/").ok_or_else(refused)?;
    let id = match filled {
        true => {
            let id = crate::config::bedrock_model_path(model.strip_prefix("converse/").unwrap_or(model));
            // Empty, `.` or `..` would be no model: `/model/../converse` is the endpoint's `/converse`.
            if id.bytes().all(|byte| byte == b'.') {
                return Err(refused());
            }
            id
        }
        false => {
            let rest = &text[at + "/model/".len()..];
            rest.split('/').next().unwrap_or_default().to_owned()
        }
    };
    format!("{}/model/{id}/{method}", &text[..at]).parse::<Uri>().map_err(|_| refused())
}

/// Turns a Converse answer (JSON, or a ConverseStream event stream) into the chat completion an OpenAI
/// client expects.
pub struct ToChat {
    frames: eventstream::FrameReader,
    writer: stream::ChunkWriter,
    model: Box<str>,
    created: u64,
}

impl ToChat {
    pub fn new(model: &str, include_usage: bool) -> Self {
        let created = super::chat_to_anthropic::unix_now();
        let writer = stream::ChunkWriter::new(model, created, include_usage);
        Self { frames: eventstream::FrameReader::default(), writer, model: model.into(), created }
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

    /// A frame that fails its CRC breaks the stream off: nothing after it can be trusted.
    fn piece(&mut self, piece: &[u8]) -> Result<Bytes, Oversized> {
        let mut out = BytesMut::new();
        let writer = &mut self.writer;
        match self.frames.feed(piece, |frame| writer.frame(&frame, &mut out)) {
            Ok(()) => Ok(out.freeze()),
            Err(problem) => {
                log::warn!("a Bedrock event stream was broken off: {problem}");
                Err(Oversized { before: out.freeze() })
            }
        }
    }

    /// A stream that ends mid-frame or before `messageStop` was cut short.
    fn finish(&mut self) -> Result<Bytes, CutShort> {
        let mut out = BytesMut::new();
        if self.frames.is_mid_frame() || !self.writer.is_whole() {
            return Err(CutShort { before: out.freeze() });
        }
        self.writer.finish(&mut out);
        Ok(out.freeze())
    }
}

/// Turns a Titan or Cohere embedding answer into OpenAI's list (never a stream).
pub struct ToEmbeddings {
    model: Box<str>,
    text_bytes: usize,
    base64: bool,
}

impl ToEmbeddings {
    pub fn new(model: &str, request: &[u8]) -> Self {
        let (text_bytes, base64) = embeddings::asked(request);
        Self { model: model.into(), text_bytes, base64 }
    }
}

impl Reshape for ToEmbeddings {
    fn whole(&mut self, status: StatusCode, body: &[u8]) -> Option<(StatusCode, Bytes)> {
        if !status.is_success() {
            let (status, error) = response::to_openai_error(status, body);
            return Some((status, Bytes::from(error.to_string())));
        }
        let answer = serde_json::from_slice::<Value>(body).ok()?;
        let list = embeddings::to_openai(&answer, &self.model, self.text_bytes, self.base64)?;
        Some((status, Bytes::from(list.to_string())))
    }

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
    fn a_stream_of_frames_becomes_chunks_and_is_whole_after_message_stop() {
        use eventstream::event;
        let mut reshape = ToChat::new("m", true);
        let mut wire = event("messageStart", br#"{"role":"assistant"}"#);
        wire.extend(event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#));
        wire.extend(event("messageStop", br#"{"stopReason":"end_turn"}"#));
        wire.extend(event(
            "metadata",
            br#"{"usage":{"inputTokens":5,"outputTokens":2,"totalTokens":7},"metrics":{"latencyMs":1}}"#,
        ));
        let mut text = String::new();
        for piece in wire.chunks(7) {
            text.push_str(&String::from_utf8_lossy(&reshape.piece(piece).unwrap()));
        }
        text.push_str(&String::from_utf8_lossy(&reshape.finish().unwrap()));
        assert!(text.contains("\"content\":\"Hi\"") && text.contains("\"finish_reason\":\"stop\""), "{text}");
        assert!(text.contains("\"prompt_tokens\":5") && text.ends_with("data: [DONE]\n\n"), "{text}");
        let mut cut = ToChat::new("m", false);
        cut.piece(&event("messageStart", br#"{"role":"assistant"}"#)).unwrap();
        assert!(cut.finish().is_err());
    }

    #[test]
    fn streams_and_wildcards_get_their_own_urls() {
        let converse: Uri = "http://h/model/anthropic.claude-v1%3A0/converse".parse().unwrap();
        assert!(matches!(chat_url(&converse, "x", false, false), Ok(Cow::Borrowed(_))));
        assert_eq!(
            chat_url(&converse, "x", false, true).unwrap().to_string(),
            "http://h/model/anthropic.claude-v1%3A0/converse-stream"
        );
        assert_eq!(
            chat_url(&converse, "meta.llama3:1", true, false).unwrap().to_string(),
            "http://h/model/meta.llama3%3A1/converse"
        );
        for dots in ["..", ".", "", "converse/.."] {
            assert!(chat_url(&converse, dots, true, false).is_err(), "{dots}");
        }
    }
}
