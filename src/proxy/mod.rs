//! The transport to upstreams: one attempt through awc ([`send`]), the answer passed back as it arrives
//! ([`respond`]), hop-by-hop rules, and reading an error body when the router must look inside it.
//!
//! The router (`pool::router`) decides which deployment each attempt goes to; this module makes one call.
//! The providers issue adds one module per wire format here, each turning a [`ChatRequest`] into one call.

mod forward;
mod inspect;
mod request;
mod respond;
mod transport;
mod usage;

use std::time::Duration;

pub use forward::{idle_timeout, pass_on, send, upstream_client, Attempts, UpstreamBody};
pub use inspect::{decoded, read_up_to, Read};
pub use request::{ChatRequest, StreamOptions};
pub use respond::{respond, respond_buffered};
pub use usage::{Metering, Settled, Tally, TokenUsage, BYTES_PER_TOKEN};

/// Why an upstream gave no usable response (an upstream error *response* is passed through, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("The upstream serving model `{model}` could not be reached or closed the connection; retry later.")]
    Unreachable { model: String },
    #[error("The upstream serving model `{model}` did not answer within {}s; retry later, or ask the operator to raise litellm_params.timeout.", .after.as_secs_f64())]
    Timeout { model: String, after: Duration },
    /// The upstream answered 401/403: the operator's credentials for it were refused. Its body (which may
    /// echo a masked api key) is never shown.
    #[error("The upstream of deployment `{deployment}` (model `{model}`) refused the gateway's credentials (HTTP {status}). Your request and key are fine; the operator must fix that deployment's api_key.")]
    CredentialsRejected { model: String, deployment: String, status: u16 },
}
