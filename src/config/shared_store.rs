//! Where replicas share their state: `general_settings.redis_url`, LiteLLM's
//! `router_settings.redis_host/redis_port/redis_password`, or the `REDIS_URL` / `REDIS_HOST` environment
//! variables. None of them: the embedded store alone (one replica).

use std::time::Duration;

use super::raw::{RawGeneralSettings, RawRouterSettings};
use super::{invalid, ConfigError, ENV_PREFIX};
use crate::secret::Secret;

/// How long a replica keeps serving the keys it knows while Redis is unreachable, when
/// `general_settings.redis_cache_ttl` is not set.
pub const DEFAULT_REDIS_CACHE_TTL: Duration = Duration::from_secs(60);
/// The longest `redis_cache_ttl` (one day), and the shortest: a replica confirms its copy about once a
/// second, so a shorter one would refuse keys while Redis is fine.
const MAX_REDIS_CACHE_TTL: Duration = Duration::from_secs(86_400);
const MIN_REDIS_CACHE_TTL: Duration = Duration::from_secs(5);

/// The Redis server replicas share.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host[:port][/db]`; a secret, since it may hold the password.
    pub url: Secret,
    /// The URL without its credentials, for log lines.
    pub shown: String,
    /// `general_settings.redis_cache_ttl`: how long keys are served from the replica's copy once Redis is
    /// unreachable (blocked keys stay blocked); after it, virtual keys get 503 until Redis is back.
    pub cache_ttl: Duration,
}

impl RedisSettings {
    /// Settings for a URL given on the command line (`--redis-url`).
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let shown = check_url("--redis-url", url)?;
        Ok(Self { url: Secret::new(url), shown, cache_ttl: DEFAULT_REDIS_CACHE_TTL })
    }
}

/// The Redis settings, if any; a value that cannot be a Redis address is refused at load.
pub(super) fn redis_settings(
    general: &RawGeneralSettings,
    router: &RawRouterSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<RedisSettings>, ConfigError> {
    let resolve = |field: &str, value: &str| match value.strip_prefix(ENV_PREFIX) {
        Some(var) => env(var)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| invalid(field, format!("is os.environ/{var} but {var} is not set"))),
        None => Ok(value.to_owned()),
    };
    let from_host = |field: &str, host: &str, port: Option<u16>, password: Option<String>| {
        let host = resolve(field, host)?;
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(invalid(field, "must be a host name or address, e.g. `localhost` or `10.0.0.5`"));
        }
        let credentials = password.map(|password| format!(":{}@", percent_encode(&password))).unwrap_or_default();
        Ok(format!("redis://{credentials}{host}:{}", port.unwrap_or(6379)))
    };
    let (field, url) = if let Some(url) = general.redis_url.as_deref() {
        ("general_settings.redis_url", resolve("general_settings.redis_url", url)?)
    } else if let Some(host) = router.redis_host.as_deref() {
        let password = router.redis_password.as_deref().map(|p| resolve("router_settings.redis_password", p));
        (
            "router_settings.redis_host",
            from_host("router_settings.redis_host", host, router.redis_port, password.transpose()?)?,
        )
    } else if let Some(url) = env("REDIS_URL").filter(|url| !url.is_empty()) {
        ("REDIS_URL", url)
    } else if let Some(host) = env("REDIS_HOST").filter(|host| !host.is_empty()) {
        let port = match env("REDIS_PORT") {
            Some(port) => Some(port.parse().map_err(|_| invalid("REDIS_PORT", "must be a port number"))?),
            None => None,
        };
        ("REDIS_HOST", from_host("REDIS_HOST", &host, port, env("REDIS_PASSWORD").filter(|p| !p.is_empty()))?)
    } else {
        return Ok(None);
    };
    let shown = check_url(field, &url)?;
    let cache_ttl = match general.redis_cache_ttl {
        None => DEFAULT_REDIS_CACHE_TTL,
        Some(seconds) => Duration::try_from_secs_f64(seconds)
            .ok()
            .filter(|ttl| (MIN_REDIS_CACHE_TTL..=MAX_REDIS_CACHE_TTL).contains(ttl))
            .ok_or_else(|| {
                invalid("general_settings.redis_cache_ttl", "must be a number of seconds from 5 to 86400")
            })?,
    };
    Ok(Some(RedisSettings { url: Secret::new(url), shown, cache_ttl }))
}

/// Checks the scheme and returns the URL without credentials. Errors never quote the URL (it may hold a
/// password).
fn check_url(field: &str, url: &str) -> Result<String, ConfigError> {
    let Some(rest) = url.strip_prefix("redis://") else {
        let problem = match url.starts_with("rediss://") {
            true => "uses rediss:// (TLS), which tiergate does not speak; reach Redis over a private network or a TLS tunnel with redis://",
            false => "must be a redis:// URL, e.g. redis://localhost:6379/0",
        };
        return Err(invalid(field, problem));
    };
    let address = rest.rsplit_once('@').map_or(rest, |(_, address)| address);
    if address.is_empty() || address.starts_with('/') {
        return Err(invalid(field, "has no host; write it as redis://host:port/db"));
    }
    Ok(format!("redis://{address}"))
}

/// Escapes everything but unreserved characters, so a password can sit in a URL.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(general: &str, router: &str, env: &[(&str, &str)]) -> Result<Option<RedisSettings>, String> {
        let general: RawGeneralSettings = serde_yaml::from_str(general).unwrap();
        let router: RawRouterSettings = serde_yaml::from_str(router).unwrap();
        let lookup = |name: &str| env.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string());
        redis_settings(&general, &router, &lookup).map_err(|err| err.to_string())
    }

    #[test]
    fn every_way_of_naming_redis_is_read_and_the_password_never_shown() {
        assert!(settings("{}", "{}", &[]).unwrap().is_none());
        let url = settings("redis_url: redis://:pw@h:1/2", "{}", &[]).unwrap().unwrap();
        assert_eq!((url.url.expose(), url.shown.as_str()), ("redis://:pw@h:1/2", "redis://h:1/2"));
        let host = settings("{}", "{redis_host: h, redis_port: 7, redis_password: os.environ/P}", &[("P", "a@b/c")]);
        let host = host.unwrap().unwrap();
        assert_eq!((host.url.expose(), host.shown.as_str()), ("redis://:a%40b%2Fc@h:7", "redis://h:7"));
        let env = settings("{}", "{}", &[("REDIS_URL", "redis://e:9")]).unwrap().unwrap();
        assert_eq!(env.url.expose(), "redis://e:9");
        let env = settings("{}", "{}", &[("REDIS_HOST", "e"), ("REDIS_PASSWORD", "s")]).unwrap().unwrap();
        assert_eq!(env.url.expose(), "redis://:s@e:6379");
        assert_eq!(env.cache_ttl, DEFAULT_REDIS_CACHE_TTL);
    }

    #[test]
    fn bad_addresses_are_refused_without_quoting_them() {
        let error = settings("redis_url: http://:secret@h", "{}", &[]).unwrap_err();
        assert!(error.contains("redis://") && !error.contains("secret"), "{error}");
        assert!(settings("redis_url: rediss://h", "{}", &[]).unwrap_err().contains("TLS"));
        assert!(settings("redis_url: os.environ/NOPE", "{}", &[]).unwrap_err().contains("NOPE is not set"));
        assert!(settings("{redis_url: redis://h, redis_cache_ttl: 0.5}", "{}", &[])
            .unwrap_err()
            .contains("redis_cache_ttl"));
    }
}
