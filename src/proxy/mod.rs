//! Forwarding to upstreams: the request rewrite, attempts with retries and fallbacks inside the key's tier,
//! and the awc passthrough of responses and streams.

mod attempts;
mod forward;
mod rewrite;
mod transport;

use std::time::Duration;

pub use attempts::{complete, Route};
pub use forward::upstream_client;
pub use rewrite::ChatRequest;

/// Why an upstream gave no response at all (an upstream error *response* is passed through, not an error).
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
