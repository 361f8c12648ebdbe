//! Deleting several users, teams or organizations at once (`/team/delete {team_ids}`, …): all of them in one
//! transaction, or none. An unknown id refuses the whole call naming it; a crash leaves every one or none.

use std::collections::HashSet;
use std::marker::PhantomData;

use actix::{Context, Handler, Message, ResponseFuture};
use serde_json::Value;

use super::super::audit::AuditEntry;
use super::super::change::Change;
use super::edit::{Apply, Falls};
use super::{Entity, OrgError};
use crate::keys::{KeyError, KeyRegistry};

/// Delete every level of `ids` (duplicates count once), in one transaction; answered once durable.
pub struct DeleteAll<E: Entity> {
    pub ids: Vec<String>,
    /// The audit trail's action for each: `team_delete`, …
    pub action: &'static str,
    /// The refusal naming an id that does not exist.
    pub not_found: fn(String) -> OrgError,
    kind: PhantomData<E>,
}

impl<E: Entity> DeleteAll<E> {
    pub fn new(ids: Vec<String>, action: &'static str, not_found: fn(String) -> OrgError) -> Self {
        Self { ids, action, not_found, kind: PhantomData }
    }
}

impl<E: Entity> Message for DeleteAll<E> {
    type Result = Result<(), KeyError>;
}

impl<E: Falls> Handler<DeleteAll<E>> for KeyRegistry {
    type Result = ResponseFuture<Result<(), KeyError>>;

    fn handle(&mut self, msg: DeleteAll<E>, ctx: &mut Context<Self>) -> Self::Result {
        let outcome = self.delete_all(&msg);
        if let Err(err) = &outcome {
            let mut entry = AuditEntry::new(msg.action);
            entry.changed.insert(E::ID_FIELD.into(), Value::String(msg.ids.join(",")));
            self.refused(entry, err);
        }
        self.when_durable(ctx, outcome)
    }
}

impl KeyRegistry {
    fn delete_all<E: Falls>(&self, msg: &DeleteAll<E>) -> Result<(), KeyError> {
        let mut seen = HashSet::new();
        let ids = msg.ids.iter().filter(|id| seen.insert(id.as_str()));
        let mut change = Change::new();
        let (mut fallouts, mut gone, mut taken) = (Vec::new(), Vec::new(), HashSet::new());
        {
            // Held while the change is built, as for one edit (see `edit.rs`).
            let owners = self.store.owners.read();
            for id in ids {
                let (missing, not_found) = (id.clone(), msg.not_found);
                let apply: Apply<E> = Box::new(move |current| match current {
                    Some(_) => Ok(None),
                    None => Err(not_found(missing)),
                });
                let staged = self.stage(&mut change, &owners, id.clone(), msg.action, apply, &taken)?;
                taken.extend(staged.gone.iter().copied());
                gone.extend(staged.gone);
                fallouts.push(staged.fallout);
            }
        }
        self.commit_staged(change, &fallouts, &gone)
    }
}
