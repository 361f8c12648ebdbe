//! A deployment's credentials on one attempt: its key as configured, or, for a Vertex deployment, its
//! service account's cached access token or a new one from the account's `token_uri` (a signed JWT
//! exchanged under the `jwt-bearer` grant). Only Vertex deployments await here, so other requests take no
//! lock and no await for it; a fresh token costs one atomic load. A Bedrock deployment's request is signed
//! here (SigV4, CPU only).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use serde::Deserialize;

use super::ProxyError;
use crate::config::{Deployment, ServiceAccount, UpstreamCredential, MAX_TOKEN_LIFETIME};

/// How long the token endpoint gets to answer.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest token answer read (Google's are well under 2 KiB).
const TOKEN_ANSWER_LIMIT: usize = 64 * 1024;
/// The `jwt-bearer` grant, form-encoded.
const GRANT: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

/// Puts `deployment`'s credential in `request`'s headers (for a Bedrock deployment: its SigV4 signature over
/// `body`, the exact bytes sent). In place: a request moved by value is copied whole each time.
pub(super) async fn attach(
    request: &mut awc::ClientRequest,
    client: &awc::Client,
    deployment: &Deployment,
    body: &[u8],
) -> Result<(), ProxyError> {
    let (name, value) = match &deployment.credential {
        UpstreamCredential::Bearer(authorization) => (header::AUTHORIZATION, authorization.clone()),
        UpstreamCredential::KeyHeader(name, key) => (name.clone(), key.clone()),
        UpstreamCredential::ServiceAccount(account) => {
            // Boxed: the token fetch held inline made every upstream call's future a kilobyte larger.
            (header::AUTHORIZATION, Box::pin(authorization(client, account, deployment)).await?)
        }
        UpstreamCredential::Aws(aws) => {
            super::sigv4::sign(request, aws, body, SystemTime::now());
            return Ok(());
        }
        UpstreamCredential::Anonymous | UpstreamCredential::UnsetEnv(_) => return Ok(()),
    };
    request.headers_mut().insert(name, value);
    Ok(())
}

/// A 401 from a Vertex deployment drops its service account's token: the retry (or the next request)
/// fetches a new one instead of sending the refused one until it expires.
pub(super) fn answered(deployment: &Deployment, status: StatusCode) {
    if let (StatusCode::UNAUTHORIZED, UpstreamCredential::ServiceAccount(account)) = (status, &deployment.credential) {
        log::warn!("deployment {}: Vertex refused its access token (401); a new one will be fetched", deployment.id);
        account.forget();
    }
}

/// The `Authorization: Bearer …` value for `deployment`'s service account. One request refreshes a token
/// that is due (five minutes before it expires); the others wait for that refresh rather than each asking.
/// A failed refresh falls back on a token that has not expired yet; with none, the attempt fails (5xx,
/// retried and cooled down like an upstream that cannot be reached).
async fn authorization(
    client: &awc::Client,
    account: &ServiceAccount,
    deployment: &Deployment,
) -> Result<HeaderValue, ProxyError> {
    if let Some(fresh) = account.fresh(Instant::now()) {
        return Ok(fresh);
    }
    let _refreshing = account.refreshing.lock().await;
    // Another request may have refreshed it while this one waited.
    if let Some(fresh) = account.fresh(Instant::now()) {
        return Ok(fresh);
    }
    match fetch(client, account).await {
        Ok(authorization) => Ok(authorization),
        Err(problem) => {
            // Names the deployment and what went wrong; never the assertion, the key or a token.
            log::warn!("deployment {} got no Google access token from its token_uri: {problem}", deployment.id);
            account.unexpired(Instant::now()).ok_or_else(|| ProxyError::NoAccessToken {
                model: deployment.model_name.to_string(),
                deployment: deployment.id.to_string(),
            })
        }
    }
}

async fn fetch(client: &awc::Client, account: &ServiceAccount) -> Result<HeaderValue, String> {
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let assertion = account.assertion(unix_now).ok_or("the private key could not sign")?;
    let asked = Instant::now();
    let mut answer = client
        .post(&account.token_uri)
        .timeout(TOKEN_TIMEOUT)
        .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
        .insert_header((header::ACCEPT, "application/json"))
        .send_body(format!("{GRANT}{assertion}"))
        .await
        .map_err(|err| format!("the token endpoint could not be reached ({err})"))?;
    if !answer.status().is_success() {
        return Err(format!("the token endpoint answered HTTP {}", answer.status().as_u16()));
    }
    let body = answer.body().limit(TOKEN_ANSWER_LIMIT).await.map_err(|_| "the token answer was not read whole")?;
    let token: TokenAnswer = serde_json::from_slice(&body).map_err(|_| "the token answer has no access_token")?;
    // Google's tokens live an hour; an answer without a lifetime is taken as that, none as longer than a day.
    let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600)).min(MAX_TOKEN_LIFETIME);
    account
        .keep(&token.access_token, lifetime, asked)
        .ok_or_else(|| "the access token cannot be sent in a header".into())
}
