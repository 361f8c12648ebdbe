//! The transport to upstreams: one attempt through awc ([`send`]), the answer passed back as it arrives
//! ([`respond`]), hop-by-hop rules, and reading an error body when the router must look inside it.
//!
//! The router (`pool::router`) decides which deployment each attempt goes to; `providers` says what to send
//! (an [`Outgoing`]) and how to translate the answer back (a [`Reshape`]); this module makes the call.

mod amounts;
mod answer_id;
mod credential;
mod forward;
mod inspect;
mod relay;
mod request;
mod respond;
mod sigv4;
mod sse;
mod timing;
mod transport;
mod upload;
mod upstream_body;
mod usage;

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;

pub use amounts::{amount_value, KEY_SPEND_HEADER};
pub use answer_id::{answer_id, answer_id_bytes};
pub use forward::{idle_timeout, pass_on, send, upstream_client, Attempts, Outgoing};
pub use inspect::{decoded, read_up_to, Read};
pub use request::{ApiRequest, ClientOptions, StreamOptions};
pub use respond::{respond, respond_buffered, respond_reshaped};
pub use sigv4::{signature_headers as sigv4_headers, BEDROCK_SERVICE};
pub use sse::{fields as event_fields, is_done as is_done_event, write_event};
#[cfg(test)]
pub use sse::{whole_stream_events, EVENT_LIMIT};
pub use sse::{CutShort, EventBuffer, EventDialect, Oversized};
pub use timing::add_timing_headers;
pub use upload::{BodyStream, Upload};
pub use upstream_body::UpstreamBody;
pub use usage::{
    usage_or_estimate, Metering, Settled, Tally, TokenUsage, BYTES_PER_TOKEN, MAX_TOKENS_PER_ANSWER, READ_LATER_UP_TO,
};

/// A provider's translation of an upstream's answer into the format the client asked in (`providers`
/// implements it for each pair of formats).
pub trait Reshape {
    /// A whole answer (a JSON answer, or an error body of any status): the client's status and body;
    /// `None` for a successful answer that cannot be read (a failed attempt, never counted).
    fn whole(&mut self, status: StatusCode, body: &[u8]) -> Option<(StatusCode, Bytes)>;
    /// The next piece of a successful event stream: the complete events it translates to, if any yet;
    /// [`Oversized`] when an event outgrew [`EVENT_LIMIT`] (the stream is then broken off).
    fn piece(&mut self, piece: &[u8]) -> Result<Bytes, Oversized>;
    /// The end of the stream: what is left to send (closing events, `data: [DONE]`); [`CutShort`] when the
    /// upstream ended it before its last event (the stream is then broken off, never ended cleanly).
    fn finish(&mut self) -> Result<Bytes, CutShort>;
    /// The API the client reads a broken-off stream's error event in, when the deployment's shape does not
    /// tell (a translation of a translation); `None`: told by the shape.
    fn dialect(&self) -> Option<EventDialect> {
        None
    }
}

/// A [`Reshape`] for one answer.
pub type Reshaper = Box<dyn Reshape>;

/// Why an upstream gave no usable response (an upstream error *response* is passed through, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("The upstream serving model `{model}` could not be reached or closed the connection; retry later.")]
    Unreachable { model: String },
    /// No answer, or a stream that stalled, within the timeout in force: the deployment's, or (mid-stream) the
    /// request's own `stream_timeout` / `x-litellm-stream-timeout`.
    #[error("The upstream serving model `{model}` did not answer within {}s; retry later, or allow more time: the request's stream_timeout (a stream) or the deployment's litellm_params.timeout / stream_timeout (the operator's).", .after.as_secs_f64())]
    Timeout { model: String, after: Duration },
    /// No answer within the per-attempt timeout the request itself set (`timeout`, `x-litellm-timeout`).
    #[error("The upstream serving model `{model}` did not answer within the {}s your request allowed (timeout); retry, or allow more time.", .after.as_secs_f64())]
    ClientTimeout { model: String, after: Duration },
    /// A successful answer to a translated call that could not be translated: too large or unreadable.
    #[error(
        "The upstream serving model `{model}` gave an answer the gateway could not translate ({problem}); retry later."
    )]
    Untranslatable { model: String, problem: &'static str },
    /// The upstream answered 401/403: the operator's credentials for it were refused. Its body (which may
    /// echo a masked api key) is never shown.
    #[error("The upstream of deployment `{deployment}` (model `{model}`) refused the gateway's credentials (HTTP {status}). Your request and key are fine; the operator must fix that deployment's api_key.")]
    CredentialsRejected { model: String, deployment: String, status: u16 },
    /// A Vertex deployment's service account got no access token from its token endpoint (unreachable,
    /// refused, or an unusable answer); the log line says which.
    #[error("The deployment `{deployment}` (model `{model}`) could not get an access token for its Google service account; retry later, or ask the operator to check that deployment's vertex_credentials.")]
    NoAccessToken { model: String, deployment: String },
}
