//! The bodies of `/model/new`, `/model/update` and `/model/delete` (LiteLLM's shapes), turned into the
//! model to store: a new one, or a stored one with what was sent merged in (sent non-null values win).

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Catalog, ModelError};
use crate::keys::{timestamp, StoredModel};

/// The longest `model_info.id`.
const MAX_ID_BYTES: usize = 256;

/// `{"model_name", "litellm_params": {"model", "api_base", "api_key", …}, "model_info": {"id"?, "tier"?, …}}`.
#[derive(Deserialize, Default)]
pub struct ModelRequest {
    pub model_name: Option<String>,
    pub litellm_params: Option<Map<String, Value>>,
    pub model_info: Option<Map<String, Value>>,
}

/// `{"id": …}`.
#[derive(Deserialize, Default)]
pub struct DeleteRequest {
    pub id: Option<String>,
}

impl ModelRequest {
    /// `model_info.id`, if sent.
    fn id(&self) -> Result<Option<String>, ModelError> {
        match self.model_info.as_ref().and_then(|info| info.get("id")) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(id)) if !id.trim().is_empty() && id.len() <= MAX_ID_BYTES => Ok(Some(id.clone())),
            Some(_) => {
                Err(ModelError::Invalid(format!("`model_info.id` must be a string of 1 to {MAX_ID_BYTES} bytes")))
            }
        }
    }
}

impl Catalog {
    /// The model `/model/new` would store, and its id (the given one, else a random uuid), checked.
    pub fn new_model(&self, request: ModelRequest) -> Result<(String, StoredModel), ModelError> {
        let id = match request.id()? {
            Some(id) => id,
            None => uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string(),
        };
        if self.store.added_model(&id)?.is_some() {
            return Err(ModelError::IdTaken(id));
        }
        let model_name = request.model_name.filter(|name| !name.trim().is_empty());
        let model_name = model_name.ok_or_else(|| ModelError::Invalid("`model_name` is required".into()))?;
        let now = timestamp(SystemTime::now());
        let mut model = StoredModel {
            model_name,
            litellm_params: Map::new(),
            model_info: Map::new(),
            api_key: None,
            created_at: now.clone(),
            updated_at: now,
        };
        self.merge(&id, &mut model, request.litellm_params.unwrap_or_default(), request.model_info)?;
        self.admit(&id, &model, None)?;
        Ok((id, model))
    }

    /// The model `/model/update` would store in place of the stored one (whose bytes come back, for the
    /// compare-and-set), and its id: sent non-null values win, the rest stays.
    pub fn updated_model(&self, request: ModelRequest) -> Result<(String, StoredModel, Vec<u8>), ModelError> {
        let id = request.id()?.ok_or_else(|| ModelError::Invalid("`model_info.id` is required".into()))?;
        let (mut model, read) = self.stored(&id)?;
        if let Some(name) = request.model_name.filter(|name| !name.trim().is_empty()) {
            model.model_name = name;
        }
        self.merge(&id, &mut model, request.litellm_params.unwrap_or_default(), request.model_info)?;
        model.updated_at = timestamp(SystemTime::now());
        self.admit(&id, &model, Some(&id))?;
        Ok((id, model, read))
    }

    /// The stored bytes of the added model `/model/delete` would remove.
    pub fn doomed_model(&self, request: DeleteRequest) -> Result<(String, Vec<u8>), ModelError> {
        let id = request.id.ok_or_else(|| ModelError::Invalid("`id` is required".into()))?;
        let (_, read) = self.stored(&id)?;
        Ok((id, read))
    }

    /// The added model `id` and its stored bytes; a config model's id is refused as one.
    fn stored(&self, id: &str) -> Result<(StoredModel, Vec<u8>), ModelError> {
        match self.store.added_model(id)? {
            Some((model, read)) => Ok((model, read.to_vec())),
            None if self.lock().config.iter().any(|deployment| &*deployment.id == id) => {
                Err(ModelError::InConfig(id.to_owned()))
            }
            None => Err(ModelError::NotFound(id.to_owned())),
        }
    }

    /// Sets the non-null values of `params` and `info` on `model`; `api_key` is sealed and kept apart. Every
    /// other credential (`api_base`'s `user:password@`, `…secret…`, `…token…`, `extra_headers`, …) is kept
    /// only as `/model/info` shows it: tiergate sends none of them upstream, so the clear value would be a
    /// secret in sled, in Redis and in exports that nothing needs.
    fn merge(
        &self,
        id: &str,
        model: &mut StoredModel,
        mut params: Map<String, Value>,
        info: Option<Map<String, Value>>,
    ) -> Result<(), ModelError> {
        match params.remove("api_key") {
            None | Some(Value::Null) => {}
            Some(Value::String(key)) => {
                model.api_key = Some(self.sealer.seal(id, &key).ok_or(ModelError::Unsealable)?);
            }
            Some(_) => return Err(ModelError::Invalid("`litellm_params.api_key` must be a string".into())),
        }
        model.litellm_params.extend(crate::config::shown_params(&params));
        let info = info.into_iter().flatten().filter(|(field, value)| !value.is_null() && field != "id");
        model.model_info.extend(info);
        model.model_info.insert("id".into(), Value::String(id.to_owned()));
        Ok(())
    }
}
