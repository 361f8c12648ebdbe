//! `tiergate keys apply keys.yaml`: idempotent key provisioning against a running gateway, over HTTP.
//!
//! Creates the keys the file lists and the gateway lacks, updates those that differ, leaves the rest.
//! New plaintext keys are appended, one JSON line each, to a file only the owner can read (mode 0600),
//! written right after each key is created so an interrupted run loses none.

mod plan;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

pub use plan::{Action, KeySpec, KeysFile};

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

/// The outcome for one key, as printed.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub alias: String,
    /// `created`, `updated` or `unchanged`.
    pub action: &'static str,
    pub tier: Option<String>,
    pub changed: Vec<&'static str>,
}

/// Applies the file; returns the text to print, or an error that says what went wrong.
pub async fn apply(options: &ApplyOptions) -> Result<String, String> {
    let yaml = std::fs::read_to_string(&options.file)
        .map_err(|err| format!("cannot read {}: {err}", options.file.display()))?;
    let file = KeysFile::parse(&yaml).map_err(|err| format!("{}: {err}", options.file.display()))?;
    let gateway = Gateway::new(options);
    let mut keys_out: Option<File> = None;
    let mut outcomes = Vec::with_capacity(file.keys.len());
    for spec in &file.keys {
        let existing = gateway.find(&spec.alias).await?;
        let (action, changed) = match spec.plan(existing.as_ref()) {
            Action::Create(body) => {
                // Open the private file before minting: a key whose plaintext cannot be saved must not exist.
                let out = match &mut keys_out {
                    Some(out) => out,
                    None => keys_out.insert(open_private(&options.keys_out)?),
                };
                let created = gateway.call("/key/generate", &body).await?;
                let line = json!({"alias": spec.alias, "key": created["key"], "token": created["token"]});
                writeln!(out, "{line}")
                    .and_then(|()| out.sync_all())
                    .map_err(|err| format!("cannot write {}: {err}", options.keys_out.display()))?;
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
        outcomes.push(Outcome { alias: spec.alias.clone(), action, tier: spec.tier_label(), changed });
    }
    let created = outcomes.iter().filter(|outcome| outcome.action == "created").count();
    Ok(match options.json {
        true => serde_json::to_string_pretty(&outcomes).unwrap_or_default(),
        false => table(&outcomes, created, &options.keys_out),
    })
}

/// Opens `path` for appending, creating it with mode 0600; refuses a file others can read.
fn open_private(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| format!("cannot open {} for new keys: {err}", path.display()))?;
    let mode = file.metadata().map_err(|err| err.to_string())?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by others (mode {:o}); new keys are only written to a private file: chmod 600 it or pick another --keys-out",
            path.display(),
            mode & 0o777
        ));
    }
    Ok(file)
}

fn table(outcomes: &[Outcome], created: usize, keys_out: &Path) -> String {
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
    async fn find(&self, alias: &str) -> Result<Option<Value>, String> {
        let url = format!("{}/key/list", self.options.url.trim_end_matches('/'));
        let query = [("key_alias", alias), ("return_full_object", "true")];
        let request =
            self.client.get(&url).bearer_auth(&self.options.master_key).query(&query).map_err(|err| err.to_string())?;
        let answer = Self::answer(request.send().await, &url).await?;
        Ok(answer["keys"].as_array().and_then(|keys| keys.first()).cloned())
    }

    async fn call(&self, path: &str, body: &Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.options.url.trim_end_matches('/'));
        let sent = self.client.post(&url).bearer_auth(&self.options.master_key).send_json(body).await;
        Self::answer(sent, &url).await
    }

    async fn answer(
        sent: Result<awc::ClientResponse, awc::error::SendRequestError>,
        url: &str,
    ) -> Result<Value, String> {
        let mut response = sent.map_err(|err| format!("cannot reach the gateway at {url}: {err}"))?;
        let body: Value =
            response.json().limit(16 * 1024 * 1024).await.map_err(|err| format!("{url}: unreadable answer: {err}"))?;
        if !response.status().is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            return Err(format!("{url} answered {}: {message}", response.status().as_u16()));
        }
        Ok(body)
    }
}
