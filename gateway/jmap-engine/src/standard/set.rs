use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{Arguments, ExtraArguments, Id, IdRef, MethodError, NoExtra, PatchObject, SetError};

/// Arguments of `Foo/set` (RFC 8620 §5.3). Created records stay JSON objects so that a bad
/// record becomes that record's `invalidProperties` SetError, not a failure of the whole call.
#[derive(Debug, Clone, PartialEq)]
pub struct SetRequest<E = NoExtra> {
    pub account_id: Id,
    pub if_in_state: Option<String>,
    /// Creation id → record.
    pub create: Option<BTreeMap<Id, Map<String, Value>>>,
    /// Id (or `#creationId`) → patch.
    pub update: Option<BTreeMap<IdRef, PatchObject>>,
    pub destroy: Option<Vec<IdRef>>,
    pub extra: E,
}

impl<E: ExtraArguments> SetRequest<E> {
    pub fn from_arguments(arguments: Map<String, Value>) -> Result<Self, MethodError> {
        let mut args = Arguments::new(arguments);
        let request = SetRequest {
            account_id: args.required("accountId")?,
            if_in_state: args.optional("ifInState")?,
            create: args.optional("create")?,
            update: args.optional("update")?,
            destroy: args.optional("destroy")?,
            extra: E::take(&mut args)?,
        };
        args.finish()?;
        Ok(request)
    }
}

impl<E> SetRequest<E> {
    /// Creates + updates + destroys, the number `maxObjectsInSet` bounds.
    pub fn object_count(&self) -> usize {
        self.create.as_ref().map_or(0, BTreeMap::len)
            + self.update.as_ref().map_or(0, BTreeMap::len)
            + self.destroy.as_ref().map_or(0, Vec::len)
    }

    /// `stateMismatch` unless `ifInState` is absent or equals `current_state`.
    pub fn check_state(&self, current_state: &str) -> Result<(), MethodError> {
        match &self.if_in_state {
            Some(expected) if expected != current_state => Err(MethodError::state_mismatch()),
            _ => Ok(()),
        }
    }
}

/// Response of `Foo/set`. Empty maps and lists are left out, as the RFC's `null` default.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetResponse<T = Map<String, Value>> {
    pub account_id: Id,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_state: Option<String>,
    pub new_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<BTreeMap<Id, T>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<BTreeMap<Id, Option<T>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destroyed: Option<Vec<Id>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_created: Option<BTreeMap<Id, SetError>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_updated: Option<BTreeMap<IdRef, SetError>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_destroyed: Option<BTreeMap<IdRef, SetError>>,
}

impl<T> SetResponse<T> {
    pub fn new(account_id: Id, old_state: Option<String>, new_state: String) -> Self {
        SetResponse {
            account_id,
            old_state,
            new_state,
            created: None,
            updated: None,
            destroyed: None,
            not_created: None,
            not_updated: None,
            not_destroyed: None,
        }
    }

    pub fn add_created(&mut self, creation_id: Id, server_set: T) {
        self.created
            .get_or_insert_with(BTreeMap::new)
            .insert(creation_id, server_set);
    }

    /// `changed` holds what changed other than as the patch asked, or `None`.
    pub fn add_updated(&mut self, id: Id, changed: Option<T>) {
        self.updated
            .get_or_insert_with(BTreeMap::new)
            .insert(id, changed);
    }

    pub fn add_destroyed(&mut self, id: Id) {
        self.destroyed.get_or_insert_with(Vec::new).push(id);
    }

    pub fn add_not_created(&mut self, creation_id: Id, error: SetError) {
        self.not_created
            .get_or_insert_with(BTreeMap::new)
            .insert(creation_id, error);
    }

    pub fn add_not_updated(&mut self, id: IdRef, error: SetError) {
        self.not_updated
            .get_or_insert_with(BTreeMap::new)
            .insert(id, error);
    }

    pub fn add_not_destroyed(&mut self, id: IdRef, error: SetError) {
        self.not_destroyed
            .get_or_insert_with(BTreeMap::new)
            .insert(id, error);
    }
}

impl<T: Serialize> SetResponse<T> {
    pub fn to_arguments(&self) -> Map<String, Value> {
        super::to_arguments(self)
    }
}
