use serde::Serialize;
use serde_json::{Map, Value};

use crate::{Arguments, ExtraArguments, Id, MethodError, NoExtra, UnsignedInt};

/// Arguments of `Foo/changes` (RFC 8620 §5.2).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangesRequest<E = NoExtra> {
    pub account_id: Id,
    pub since_state: String,
    /// When given, greater than 0 (checked).
    pub max_changes: Option<UnsignedInt>,
    pub extra: E,
}

impl<E: ExtraArguments> ChangesRequest<E> {
    pub fn from_arguments(arguments: Map<String, Value>) -> Result<Self, MethodError> {
        let mut args = Arguments::new(arguments);
        let request = ChangesRequest {
            account_id: args.required("accountId")?,
            since_state: args.required("sinceState")?,
            max_changes: args.positive("maxChanges")?,
            extra: E::take(&mut args)?,
        };
        args.finish()?;
        Ok(request)
    }
}

/// Response of `Foo/changes`; `X` carries type-specific extras such as Mailbox's
/// `updatedProperties`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesResponse<X = NoExtra> {
    pub account_id: Id,
    pub old_state: String,
    pub new_state: String,
    pub has_more_changes: bool,
    pub created: Vec<Id>,
    pub updated: Vec<Id>,
    pub destroyed: Vec<Id>,
    #[serde(flatten)]
    pub extra: X,
}

impl<X: Serialize> ChangesResponse<X> {
    pub fn to_arguments(&self) -> Map<String, Value> {
        super::to_arguments(self)
    }
}
