//! A Google service account (Vertex AI's credential): its JSON key file read and checked at load, the
//! RS256-signed JWT it proves itself with at its `token_uri`, and the access token that exchange yields,
//! cached on the account so every request in the token's life costs one atomic load.
//!
//! Signing uses `ring` (already in the tree for rustls and the sealed model keys): `RsaKeyPair` with
//! PKCS#1 v1.5 SHA-256 is exactly RS256, so no second RSA or JWT crate is needed. The network exchange lives
//! with the transport (`proxy`); this module holds no socket.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use awc::http::header::HeaderValue;
use awc::http::Uri;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The one scope Vertex AI needs (the one LiteLLM asks for).
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// How long a signed assertion is valid: Google's maximum, one hour.
const ASSERTION_LIFETIME_SECONDS: u64 = 3600;
/// A token is refreshed this long before it expires (or a quarter of its life, if shorter), so no request
/// carries one that expires on its way.
const REFRESH_EARLY: Duration = Duration::from_secs(300);
/// The longest token life believed from a token endpoint (Google's are one hour).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);
/// The longest access token accepted (Google's are a few hundred bytes).
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The fields of a service-account key file tiergate reads (the file has more; they are ignored).
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: String,
    private_key: String,
    token_uri: Option<String>,
    project_id: Option<String>,
}

/// A service account: who it is, where it gets tokens, its private key, and its current access token.
/// Deployments with the same key file share one (so one token, one refresh).
pub struct ServiceAccount {
    pub client_email: Box<str>,
    pub token_uri: Uri,
    /// The file's `project_id`: a deployment's project when neither `vertex_project` nor `VERTEXAI_PROJECT`
    /// says one.
    pub project_id: Option<Box<str>>,
    key: RsaKeyPair,
    token: ArcSwapOption<AccessToken>,
    /// Held by the one request that refreshes the token; the others wait for its result instead of each
    /// asking the token endpoint (no thundering herd when the token runs out under load).
    pub refreshing: tokio::sync::Mutex<()>,
}

/// An access token as sent (`Bearer …`, marked sensitive) and when to replace it.
struct AccessToken {
    authorization: HeaderValue,
    refresh_after: Instant,
    expires: Instant,
}

impl fmt::Debug for ServiceAccount {
    /// Who, never the key or the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceAccount({}, token_uri {})", self.client_email, self.token_uri)
    }
}

impl ServiceAccount {
    /// The cached `Authorization` value while it is fresh (not within its refresh margin).
    pub fn fresh(&self, now: Instant) -> Option<HeaderValue> {
        let token = self.token.load();
        token.as_ref().filter(|token| now < token.refresh_after).map(|token| token.authorization.clone())
    }

    /// The cached `Authorization` value while it has not expired (a refresh that failed may still use it).
    pub fn unexpired(&self, now: Instant) -> Option<HeaderValue> {
        let token = self.token.load();
        token.as_ref().filter(|token| now < token.expires).map(|token| token.authorization.clone())
    }

    /// Keeps `access_token`, valid for `lifetime` from `now` (bounded by [`MAX_TOKEN_LIFETIME`]), and returns
    /// its `Authorization` value; `None` if it cannot be sent in a header or is longer than
    /// [`MAX_TOKEN_BYTES`].
    pub fn keep(&self, access_token: &str, lifetime: Duration, now: Instant) -> Option<HeaderValue> {
        if access_token.is_empty() || access_token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {access_token}")).ok()?;
        authorization.set_sensitive(true);
        let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
        let early = REFRESH_EARLY.min(lifetime / 4);
        let token = AccessToken {
            authorization: authorization.clone(),
            refresh_after: now + (lifetime - early),
            expires: now + lifetime,
        };
        self.token.store(Some(Arc::new(token)));
        Some(authorization)
    }

    /// Drops the cached token (the upstream refused it: revoked, or a clock was wrong), so the next request
    /// fetches a new one.
    pub fn forget(&self) {
        self.token.store(None);
    }

    /// The signed JWT (RS256) that asks `token_uri` for a cloud-platform token, issued at `unix_now`.
    pub fn assertion(&self, unix_now: u64) -> Option<String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": &*self.client_email,
            "scope": CLOUD_PLATFORM_SCOPE,
            "aud": self.token_uri.to_string(),
            "iat": unix_now,
            "exp": unix_now + ASSERTION_LIFETIME_SECONDS,
        });
        let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signed.as_bytes(), &mut signature).ok()?;
        Some(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// Accounts already read, by what identifies them (email, token_uri, key): deployments naming the same key
/// file share one, and a reload keeps the token the gateway already has. Locked at load only.
static ACCOUNTS: LazyLock<Mutex<HashMap<[u8; 32], Weak<ServiceAccount>>>> = LazyLock::new(Default::default);

/// The service account in a key file's `text`; the error says what is wrong without quoting the file.
pub fn read(text: &str) -> Result<Arc<ServiceAccount>, String> {
    let file: KeyFile = serde_json::from_str(text).map_err(|err| {
        format!(
            "is not a service-account key file (JSON with client_email, private_key, token_uri): line {} column {}",
            err.line(),
            err.column()
        )
    })?;
    if file.kind.as_deref().is_some_and(|kind| kind != "service_account") {
        return Err("is a key file of another type; Vertex AI deployments need a service account's (\"type\": \"service_account\")".into());
    }
    let token_uri = file.token_uri.as_deref().unwrap_or("https://oauth2.googleapis.com/token");
    let token_uri = token_uri
        .parse::<Uri>()
        .ok()
        .filter(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some())
        .ok_or("has a token_uri that is not an http(s) URL")?;
    let key = private_key(&file.private_key)?;
    let identity: [u8; 32] = Sha256::new()
        .chain_update(file.client_email.as_bytes())
        .chain_update([0])
        .chain_update(token_uri.to_string())
        .chain_update([0])
        .chain_update(file.private_key.as_bytes())
        .finalize()
        .into();
    let mut accounts = ACCOUNTS.lock().unwrap_or_else(PoisonError::into_inner);
    accounts.retain(|_, account| account.strong_count() > 0);
    if let Some(account) = accounts.get(&identity).and_then(Weak::upgrade) {
        return Ok(account);
    }
    let account = Arc::new(ServiceAccount {
        client_email: file.client_email.into(),
        token_uri,
        project_id: file.project_id.filter(|id| !id.is_empty()).map(Into::into),
        key,
        token: ArcSwapOption::empty(),
        refreshing: tokio::sync::Mutex::new(()),
    });
    accounts.insert(identity, Arc::downgrade(&account));
    Ok(account)
}

/// An RSA private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what Google issues) or PKCS#1.
fn private_key(pem: &str) -> Result<RsaKeyPair, String> {
    let refused = || "has a private_key that is not an RSA private key in PEM".to_owned();
    let (label, body) = pem
        .split_once("-----BEGIN ")
        .and_then(|(_, rest)| rest.split_once("-----"))
        .and_then(|(label, rest)| Some((label, rest.split_once("-----END ")?.0)))
        .ok_or_else(refused)?;
    let der: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(der).map_err(|_| refused())?;
    let key = match label {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        _ => return Err(refused()),
    };
    key.map_err(|rejected| format!("has a private_key ring refuses ({rejected})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    fn fixture() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vertex-service-account.json"))
            .unwrap()
    }

    #[test]
    fn the_assertion_is_an_rs256_jwt_the_public_key_verifies() {
        let account = read(&fixture()).unwrap();
        let jwt = account.assertion(1_700_000_000).unwrap();
        let (signed, signature) = jwt.rsplit_once('.').unwrap();
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, account.key.public().as_ref().to_vec());
        public.verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
        let claims = signed.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["scope"], CLOUD_PLATFORM_SCOPE);
        assert_eq!(claims["aud"], account.token_uri.to_string());
        assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 3600);
    }

    #[test]
    fn a_token_is_fresh_until_its_refresh_margin_and_usable_until_it_expires() {
        let account = read(&fixture()).unwrap();
        let now = Instant::now();
        assert!(account.fresh(now).is_none());
        account.keep("ya29.a", Duration::from_secs(3600), now).unwrap();
        assert!(account.fresh(now + Duration::from_secs(3299)).is_some());
        assert!(account.fresh(now + Duration::from_secs(3301)).is_none(), "refreshed five minutes early");
        assert!(account.unexpired(now + Duration::from_secs(3599)).is_some());
        assert!(account.keep("bad\ntoken", Duration::from_secs(60), now).is_none());
        assert!(!format!("{:?}", account).contains("ya29"));
    }

    #[test]
    fn the_same_key_file_is_one_account_and_a_broken_one_is_refused_without_quoting_it() {
        assert!(Arc::ptr_eq(&read(&fixture()).unwrap(), &read(&fixture()).unwrap()));
        let broken = fixture().replace("MII", "XXX");
        let error = read(&broken).unwrap_err();
        assert!(error.contains("private_key") && !error.contains("XXX"), "{error}");
        assert!(read("{\"private_key\": \"sk-secret\"").unwrap_err().starts_with("is not a service-account"));
    }
}
