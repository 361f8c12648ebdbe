//! Models added at run time (`/model/new`), as the key store keeps them: one record per id in the `models`
//! tree, written by the KeyRegistry as a [`Change`], so each is durable before it is acknowledged, audited,
//! and replicated through Redis exactly like a key. The catalog (`src/catalog`) reads them back and merges
//! them with the config's deployments.

use actix::{Context, Handler, Message, ResponseFuture};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::audit::AuditEntry;
use super::change::{Change, Tree};
use super::store::Conflict;
use super::{KeyError, KeyRegistry, KeyStore, StoreError};

/// A stored added model. `api_key` is kept apart from the other params, sealed (by the catalog), so no
/// code that shows `litellm_params` can show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredModel {
    pub model_name: String,
    /// `litellm_params` as sent, less `api_key`.
    pub litellm_params: Map<String, Value>,
    /// `model_info` as sent, with its `id`.
    pub model_info: Map<String, Value>,
    /// `litellm_params.api_key`, sealed; never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl StoredModel {
    /// The model as `/model/*` answers and the audit trail show it: `api_key` left out (LiteLLM removes it
    /// from `/model/info` too), with whether one is set, and other credentials masked as `/model/info` masks
    /// them (the audit trail is kept for good and must hold no secret).
    pub fn shown(&self, id: &str) -> Value {
        json!({
            "model_id": id,
            "model_name": self.model_name,
            "litellm_params": crate::config::shown_params(&self.litellm_params),
            "model_info": self.model_info,
            "api_key_set": self.api_key.is_some(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}

/// Stores an added model: a new one (`read: None`, refused if the id is taken meanwhile) or a new version of
/// one (`read`: the stored bytes it was computed from, which must still be there). `action`: `model_new` or
/// `model_update`, for the audit trail.
#[derive(Message)]
#[rtype(result = "Result<(), KeyError>")]
pub struct SaveModel {
    pub id: String,
    pub model: StoredModel,
    pub read: Option<Vec<u8>>,
    pub action: &'static str,
}

/// Deletes an added model, found as `read` (its stored bytes).
#[derive(Message)]
#[rtype(result = "Result<(), KeyError>")]
pub struct DeleteModel {
    pub id: String,
    pub read: Vec<u8>,
}

/// A model change the catalog refused before it reached the store (invalid, clashing): recorded in the
/// audit trail as a refused key change is. `reason` must hold no secret.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ModelChangeRefused {
    pub action: &'static str,
    pub reason: String,
}

impl KeyStore {
    /// Every added model, in id order, with its stored bytes.
    pub fn added_models(&self) -> Result<Vec<(String, StoredModel, sled::IVec)>, StoreError> {
        let mut models = Vec::new();
        for entry in self.models.iter() {
            let (id, bytes) = entry?;
            models.push((String::from_utf8_lossy(&id).into_owned(), serde_json::from_slice(&bytes)?, bytes));
        }
        Ok(models)
    }

    /// The added model with `id` and its stored bytes.
    pub fn added_model(&self, id: &str) -> Result<Option<(StoredModel, sled::IVec)>, StoreError> {
        match self.models.get(id.as_bytes())? {
            Some(bytes) => Ok(Some((serde_json::from_slice(&bytes)?, bytes))),
            None => Ok(None),
        }
    }

    /// Every write to the added models from now on, however it came (this gateway's API, or another
    /// replica's through the change stream): what the catalog rebuilds the routing table on.
    pub fn watch_models(&self) -> sled::Subscriber {
        self.models.watch_prefix(Vec::new())
    }

    pub(super) fn write_model(
        &self,
        id: &str,
        model: Option<&StoredModel>,
        read: Option<&[u8]>,
        entry: AuditEntry,
    ) -> Result<Result<(), Conflict>, StoreError> {
        let mut change = Change::new();
        match read {
            Some(read) => change.check_unchanged(Tree::Models, id.as_bytes(), read),
            None => change.check(Tree::Models, id.as_bytes(), &[], Conflict::ChangedMeanwhile),
        }
        match model {
            Some(model) => change.put(Tree::Models, id.as_bytes(), serde_json::to_vec(model)?),
            None => change.remove(Tree::Models, id.as_bytes()),
        }
        change.audit.push(entry);
        self.commit(change)
    }
}

/// The audit entry of a model change: the model as shown (never its api key).
fn model_entry(action: &'static str, id: &str, model: Option<&StoredModel>) -> AuditEntry {
    let mut changed = Map::new();
    changed.insert("model_id".into(), Value::String(id.to_owned()));
    if let Some(Value::Object(shown)) = model.map(|model| model.shown(id)) {
        changed.extend(shown.into_iter().filter(|(field, _)| !matches!(field.as_str(), "created_at" | "updated_at")));
    }
    AuditEntry { changed, ..AuditEntry::new(action) }
}

impl Handler<SaveModel> for KeyRegistry {
    type Result = ResponseFuture<Result<(), KeyError>>;

    fn handle(&mut self, msg: SaveModel, ctx: &mut Context<Self>) -> Self::Result {
        let entry = model_entry(msg.action, &msg.id, Some(&msg.model));
        let outcome = match self.store.write_model(&msg.id, Some(&msg.model), msg.read.as_deref(), entry) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(conflict)) => Err(KeyError::from(conflict)),
            Err(err) => Err(err.into()),
        };
        if let Err(err) = &outcome {
            self.refused(model_entry(msg.action, &msg.id, None), err);
        }
        self.when_durable(ctx, outcome)
    }
}

impl Handler<ModelChangeRefused> for KeyRegistry {
    type Result = ();

    fn handle(&mut self, msg: ModelChangeRefused, _: &mut Context<Self>) {
        let entry = AuditEntry { refused: Some(msg.reason), ..AuditEntry::new(msg.action) };
        if let Err(err) = self.store.append_audit(&entry) {
            log::warn!("could not record a refused {} in the audit trail: {err}", msg.action);
        }
    }
}

impl Handler<DeleteModel> for KeyRegistry {
    type Result = ResponseFuture<Result<(), KeyError>>;

    fn handle(&mut self, msg: DeleteModel, ctx: &mut Context<Self>) -> Self::Result {
        let entry = model_entry("model_delete", &msg.id, None);
        let outcome = match self.store.write_model(&msg.id, None, Some(&msg.read), entry.clone()) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(conflict)) => Err(KeyError::from(conflict)),
            Err(err) => Err(err.into()),
        };
        if let Err(err) = &outcome {
            self.refused(entry, err);
        }
        self.when_durable(ctx, outcome)
    }
}
