//! A spend-log row as the store reads it back (`Stored`, either format) and as the API serves it
//! (`SpendRow`, with LiteLLM's field names).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::keys::timestamp;

/// A row as stored and served. tiergate has no internal users: `user` is the end user too, so `?user_id=`
/// finds a customer's rows. The key's alias is joined from the key store when rows are read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpendRow {
    pub request_id: String,
    pub call_type: String,
    /// The key's SHA-256 as hex (LiteLLM's `token`); the master key's for master-key requests.
    pub api_key: String,
    pub spend: f64,
    pub total_tokens: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    #[serde(rename = "startTime")]
    pub start_time: String,
    #[serde(rename = "endTime")]
    pub end_time: String,
    #[serde(rename = "completionStartTime")]
    pub completion_start_time: String,
    /// The deployment's upstream model (`litellm_params.model`, without its provider prefix).
    pub model: String,
    pub model_id: String,
    /// The model name the client asked for.
    pub model_group: String,
    pub custom_llm_provider: String,
    pub api_base: String,
    pub user: String,
    pub end_user: String,
    /// The key's team and organization (the key's, else its team's), joined from the key store when rows are read.
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    pub request_tags: Vec<String>,
    pub cache_hit: String,
    /// `success` or `failure`; `status_code` is the HTTP status the client got.
    pub status: String,
    pub status_code: u16,
    pub tier: Option<String>,
    pub litellm_call_id: String,
    pub request_duration_ms: u64,
    pub metadata: Value,
}

/// A stored row, read back (from a binary row, or a JSON line of format 1, whose short names these are).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Stored {
    #[serde(rename = "r")]
    pub(super) request_id: String,
    #[serde(rename = "c")]
    pub(super) call_id: String,
    #[serde(rename = "t")]
    pub(super) call_type: String,
    #[serde(rename = "k")]
    pub(super) key: String,
    #[serde(rename = "s")]
    pub(super) start_us: u64,
    #[serde(rename = "f")]
    pub(super) first_byte_us: u64,
    #[serde(rename = "d")]
    pub(super) total_us: u64,
    #[serde(rename = "m")]
    pub(super) model: String,
    #[serde(rename = "i")]
    pub(super) model_id: String,
    #[serde(rename = "g")]
    pub(super) model_group: String,
    #[serde(rename = "p")]
    pub(super) provider: String,
    #[serde(rename = "b")]
    pub(super) api_base: String,
    #[serde(rename = "u")]
    pub(super) end_user: String,
    #[serde(rename = "a")]
    pub(super) tags: Vec<String>,
    #[serde(rename = "h")]
    pub(super) status: u16,
    #[serde(rename = "l")]
    pub(super) tier: Option<String>,
    /// Prompt, completion, cache-read and cache-write tokens.
    #[serde(rename = "n")]
    pub(super) tokens: [u64; 4],
    #[serde(rename = "$")]
    pub(super) cost: f64,
}

impl Stored {
    /// When the request started, in ms since the epoch.
    pub(super) fn start_ms(&self) -> u64 {
        self.start_us / 1000
    }

    /// The row as LiteLLM shows it.
    pub(super) fn into_row(self) -> SpendRow {
        let at = |micros: u64| timestamp(SystemTime::UNIX_EPOCH + Duration::from_micros(micros));
        let [prompt, completion, cache_read, cache_write] = self.tokens;
        let total_tokens = prompt.saturating_add(completion);
        let metadata = json!({
            "user_api_key": self.key,
            "user_api_key_alias": null,
            "user_api_key_team_id": null,
            "user_api_key_org_id": null,
            "user_api_key_user_id": null,
            "usage_object": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": total_tokens,
                "prompt_tokens_details": {"cached_tokens": cache_read},
                "cache_creation_input_tokens": cache_write,
            },
            "status_code": self.status,
            "tier": self.tier,
        });
        SpendRow {
            request_id: self.request_id,
            call_type: self.call_type,
            api_key: self.key,
            spend: self.cost,
            total_tokens,
            prompt_tokens: prompt,
            completion_tokens: completion,
            start_time: at(self.start_us),
            end_time: at(self.start_us.saturating_add(self.total_us)),
            completion_start_time: at(self.start_us.saturating_add(self.first_byte_us)),
            model: self.model,
            model_id: self.model_id,
            model_group: self.model_group,
            custom_llm_provider: self.provider,
            api_base: self.api_base,
            user: self.end_user.clone(),
            end_user: self.end_user,
            team_id: None,
            organization_id: None,
            request_tags: self.tags,
            cache_hit: "False".to_owned(),
            status: if (200..400).contains(&self.status) { "success" } else { "failure" }.to_owned(),
            status_code: self.status,
            tier: self.tier,
            litellm_call_id: self.call_id,
            request_duration_ms: self.total_us / 1000,
            metadata,
        }
    }
}
