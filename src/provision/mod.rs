//! `tiergate keys apply keys.yaml`: idempotent key provisioning against a running gateway, over HTTP.
//!
//! Creates the keys the file lists and the gateway lacks, updates those that differ, leaves the rest.
//! A new key's plaintext is minted here, appended as one JSON line (`alias`, `key`, `token`) to a file only
//! the owner can read (mode 0600) and fsynced, and only then sent to `/key/generate` as `key`. So a lost
//! answer or an interrupted run never loses a plaintext; the worst case is a line whose key was never
//! created (the gateway does not know its token), and the error says so.

mod plan;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use awc::error::{ConnectError, SendRequestError};
use serde::Serialize;
use serde_json::{json, Value};

pub use plan::{Action, KeySpec, KeysFile};

use crate::keys::VirtualKey;

/// What `keys apply` needs.
#[derive(Debug)]
pub struct ApplyOptions {
    pub file: PathBuf,
    /// Base URL of the gateway, e.g. `http://localhost:4000`.
    pub url: String,
    pub master_key: String,
    /// Where new plaintext keys are appended (created with mode 0600).
    pub keys_out: PathBuf,
    pub json: bool,
}

/// Why `keys apply` stopped; each message says what was and was not done.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot read {path}: {source}")]
    Unreadable { path: String, source: std::io::Error },
    #[error("{path}: {problem}")]
    InvalidFile { path: String, problem: String },
    #[error("cannot open {path} for new keys: {source}")]
    KeysOutUnusable { path: String, source: std::io::Error },
    #[error("{path} is readable by others (mode {mode:o}); new keys are only written to a private file: chmod 600 it or pick another --keys-out")]
    KeysOutNotPrivate { path: String, mode: u32 },
    #[error("cannot write {path}: {source}; the key `{alias}` was not created")]
    KeysOutWrite { path: String, alias: String, source: std::io::Error },
    /// A `/key/generate` failed after the key's plaintext line was saved; the text says whether it is live.
    #[error("{0}")]
    CreateUnconfirmed(String),
    #[error("{0}")]
    Gateway(String),
}

/// What `keys apply` did for one key, as printed.
#[derive(Debug, Serialize)]
pub struct Applied {
    pub alias: String,
    /// `created`, `updated` or `unchanged`.
    pub action: &'static str,
    pub tier: Option<String>,
    pub changed: Vec<&'static str>,
}

/// Applies the file; returns the text to print, or an error that says what went wrong.
pub async fn apply(options: &ApplyOptions) -> Result<String, ProvisionError> {
    let path = || options.file.display().to_string();
    let yaml =
        std::fs::read_to_string(&options.file).map_err(|source| ProvisionError::Unreadable { path: path(), source })?;
    let file = KeysFile::parse(&yaml).map_err(|problem| ProvisionError::InvalidFile { path: path(), problem })?;
    let gateway = Gateway::new(options);
    let mut keys_out: Option<File> = None;
    let mut outcomes = Vec::with_capacity(file.keys.len());
    for spec in &file.keys {
        let existing = gateway.find(&spec.alias).await?;
        let (action, changed) = match spec.plan(existing.as_ref()) {
            Action::Create(mut fields) => {
                let out = match &mut keys_out {
                    Some(out) => out,
                    None => keys_out.insert(open_private(&options.keys_out)?),
                };
                // The plaintext is on disk before the gateway hears of it: a key whose plaintext could be
                // lost must not exist.
                let key = VirtualKey::mint();
                let token = key.hash().to_hex();
                let line = json!({"alias": spec.alias, "key": key.expose(), "token": token});
                writeln!(out, "{line}").and_then(|()| out.sync_all()).map_err(|source| {
                    let (path, alias) = (options.keys_out.display().to_string(), spec.alias.clone());
                    ProvisionError::KeysOutWrite { path, alias, source }
                })?;
                fields.insert("key".into(), json!(key.expose()));
                gateway
                    .call("/key/generate", &Value::Object(fields))
                    .await
                    .map_err(|err| err.after_saving(&spec.alias, &token, &options.keys_out))?;
                ("created", Vec::new())
            }
            Action::Update(mut fields, changed) => {
                let token = existing.as_ref().and_then(|record| record["token"].as_str()).unwrap_or_default();
                fields.insert("key".into(), json!(token));
                gateway.call("/key/update", &Value::Object(fields)).await?;
                ("updated", changed)
            }
            Action::Unchanged => ("unchanged", Vec::new()),
        };
        outcomes.push(Applied {
            alias: spec.alias.clone(),
            action,
            tier: spec.resulting_tier(existing.as_ref()),
            changed,
        });
    }
    let created = outcomes.iter().filter(|outcome| outcome.action == "created").count();
    Ok(match options.json {
        true => serde_json::to_string_pretty(&outcomes).unwrap_or_default(),
        false => table(&outcomes, created, &options.keys_out),
    })
}

/// Opens `path` for appending, creating it with mode 0600; refuses a file others can read.
fn open_private(path: &Path) -> Result<File, ProvisionError> {
    let unusable = |source| ProvisionError::KeysOutUnusable { path: path.display().to_string(), source };
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(unusable)?;
    // The file's own entry must be durable too, or a crash could lose the file with its keys.
    let directory = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(directory).and_then(|dir| dir.sync_all()).map_err(unusable)?;
    let mode = file.metadata().map_err(unusable)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(ProvisionError::KeysOutNotPrivate { path: path.display().to_string(), mode: mode & 0o777 });
    }
    Ok(file)
}

fn table(outcomes: &[Applied], created: usize, keys_out: &Path) -> String {
    let width = outcomes.iter().map(|outcome| outcome.alias.len()).max().unwrap_or(5).max(5);
    let mut text = format!("{:width$}  {:9}  {:8}  CHANGED\n", "ALIAS", "ACTION", "TIER");
    for outcome in outcomes {
        let tier = outcome.tier.as_deref().unwrap_or("-");
        text.push_str(&format!(
            "{:width$}  {:9}  {:8}  {}\n",
            outcome.alias,
            outcome.action,
            tier,
            outcome.changed.join(",")
        ));
    }
    if created > 0 {
        text.push_str(&format!("{created} new key(s) written to {} (mode 0600)\n", keys_out.display()));
    }
    text
}

/// Why a call to the gateway's key API failed.
#[derive(Debug)]
enum CallError {
    /// The request never reached the gateway, or the gateway refused it (a 4xx answer): nothing changed.
    NotMade(String),
    /// No clear answer (unreachable, connection lost, a 5xx or an unreadable body): the change may or may not
    /// have been made.
    Unclear(String),
}

impl CallError {
    /// The error of a `/key/generate` whose plaintext line (with `token`) was already saved to `keys_out`: says
    /// whether that line's key exists, so the operator knows whether the line is live or unused.
    fn after_saving(self, alias: &str, token: &str, keys_out: &Path) -> ProvisionError {
        let file = keys_out.display();
        ProvisionError::CreateUnconfirmed(match self {
            Self::NotMade(err) => format!(
                "{err}\nThe key `{alias}` was not created. Its plaintext had already been written to {file} \
                 (the line with token {token}); that line is unused."
            ),
            Self::Unclear(err) => format!(
                "{err}\nThe plaintext of the key `{alias}` was written to {file} (the line with token {token}) \
                 before it was sent, but the gateway did not confirm creating it. Run `tiergate keys apply` again: \
                 if `{alias}` is then unchanged, that line's key is live; if it is created again, the line is unused."
            ),
        })
    }
}

impl From<CallError> for ProvisionError {
    fn from(err: CallError) -> Self {
        match err {
            CallError::NotMade(message) | CallError::Unclear(message) => Self::Gateway(message),
        }
    }
}

/// The gateway's key API, with the master key.
struct Gateway<'a> {
    client: awc::Client,
    options: &'a ApplyOptions,
}

impl<'a> Gateway<'a> {
    fn new(options: &'a ApplyOptions) -> Self {
        Self { client: awc::Client::builder().timeout(Duration::from_secs(30)).finish(), options }
    }

    /// The full record of the key with `alias`, if there is one.
    async fn find(&self, alias: &str) -> Result<Option<Value>, CallError> {
        let url = format!("{}/key/list", self.options.url.trim_end_matches('/'));
        let query = [("key_alias", alias), ("return_full_object", "true")];
        let request = self
            .client
            .get(&url)
            .bearer_auth(&self.options.master_key)
            .query(&query)
            .map_err(|err| CallError::NotMade(format!("cannot build the request to {url}: {err}")))?;
        let answer = Self::answer(request.send().await, &url).await?;
        Ok(answer["keys"].as_array().and_then(|keys| keys.first()).cloned())
    }

    async fn call(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("{}{path}", self.options.url.trim_end_matches('/'));
        let sent = self.client.post(&url).bearer_auth(&self.options.master_key).send_json(body).await;
        Self::answer(sent, &url).await
    }

    async fn answer(sent: Result<awc::ClientResponse, SendRequestError>, url: &str) -> Result<Value, CallError> {
        let mut response = sent.map_err(|err| match err {
            // awc also reports a connection closed after the request was sent as `Disconnected`.
            SendRequestError::Connect(ConnectError::Disconnected) => {
                CallError::Unclear(format!("no answer from the gateway at {url}: {err}"))
            }
            SendRequestError::Connect(_) => CallError::NotMade(format!("cannot reach the gateway at {url}: {err}")),
            _ => CallError::Unclear(format!("no answer from the gateway at {url}: {err}")),
        })?;
        let status = response.status();
        let message = match response.json::<Value>().limit(16 * 1024 * 1024).await {
            Ok(body) if status.is_success() => return Ok(body),
            Ok(body) => body["error"]["message"].as_str().unwrap_or("no message").to_owned(),
            Err(err) => format!("unreadable answer: {err}"),
        };
        let error = format!("{url} answered {}: {message}", status.as_u16());
        Err(match status.is_client_error() {
            true => CallError::NotMade(error),
            false => CallError::Unclear(error),
        })
    }
}
