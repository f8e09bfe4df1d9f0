use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{Arguments, CreatedIds, ExtraArguments, Id, MethodError, NoExtra, SetError};

/// Arguments of `Foo/copy` (RFC 8620 §5.4).
#[derive(Debug, Clone, PartialEq)]
pub struct CopyRequest<E = NoExtra> {
    pub from_account_id: Id,
    pub if_from_in_state: Option<String>,
    pub account_id: Id,
    pub if_in_state: Option<String>,
    /// Creation id → record, whose `id` names the original in the from-account.
    pub create: BTreeMap<Id, Map<String, Value>>,
    pub on_success_destroy_original: bool,
    pub destroy_from_if_in_state: Option<String>,
    pub extra: E,
}

impl<E: ExtraArguments> CopyRequest<E> {
    pub fn from_arguments(arguments: Map<String, Value>) -> Result<Self, MethodError> {
        let mut args = Arguments::new(arguments);
        let request = CopyRequest {
            from_account_id: args.required("fromAccountId")?,
            if_from_in_state: args.optional("ifFromInState")?,
            account_id: args.required("accountId")?,
            if_in_state: args.optional("ifInState")?,
            create: args.required("create")?,
            on_success_destroy_original: args.flag("onSuccessDestroyOriginal", false)?,
            destroy_from_if_in_state: args.optional("destroyFromIfInState")?,
            extra: E::take(&mut args)?,
        };
        args.finish()?;
        if request.account_id == request.from_account_id {
            return Err(MethodError::invalid_arguments(
                "accountId must differ from fromAccountId",
            ));
        }
        Ok(request)
    }
}

impl<E> CopyRequest<E> {
    /// The id of the original a create entry copies (its `id`, which may be `#creationId`),
    /// or the entry's `invalidProperties` SetError.
    pub fn source_id(record: &Map<String, Value>, created: &CreatedIds) -> Result<Id, SetError> {
        match record.get("id") {
            Some(Value::String(id)) => created
                .resolve_str(id)
                .ok_or_else(|| SetError::invalid_properties(["id"])),
            _ => Err(SetError::invalid_properties(["id"])
                .with_description("a copied record must name its original in 'id'")),
        }
    }
}

/// Response of `Foo/copy`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyResponse<T = Map<String, Value>> {
    pub from_account_id: Id,
    pub account_id: Id,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_state: Option<String>,
    pub new_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<BTreeMap<Id, T>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_created: Option<BTreeMap<Id, SetError>>,
}

impl<T> CopyResponse<T> {
    pub fn new(
        from_account_id: Id,
        account_id: Id,
        old_state: Option<String>,
        new_state: String,
    ) -> Self {
        CopyResponse {
            from_account_id,
            account_id,
            old_state,
            new_state,
            created: None,
            not_created: None,
        }
    }

    pub fn add_created(&mut self, creation_id: Id, server_set: T) {
        self.created
            .get_or_insert_with(BTreeMap::new)
            .insert(creation_id, server_set);
    }

    pub fn add_not_created(&mut self, creation_id: Id, error: SetError) {
        self.not_created
            .get_or_insert_with(BTreeMap::new)
            .insert(creation_id, error);
    }
}

impl<T: Serialize> CopyResponse<T> {
    pub fn to_arguments(&self) -> Map<String, Value> {
        super::to_arguments(self)
    }
}
