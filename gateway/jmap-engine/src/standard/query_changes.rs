use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::query::take_filter_and_sort;
use super::{Comparator, Filter};
use crate::{Arguments, ExtraArguments, Id, MethodError, NoExtra, UnsignedInt};

/// Arguments of `Foo/queryChanges` (RFC 8620 §5.6).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryChangesRequest<C, E = NoExtra> {
    pub account_id: Id,
    pub filter: Option<Filter<C>>,
    pub sort: Option<Vec<Comparator>>,
    pub since_query_state: String,
    pub max_changes: Option<UnsignedInt>,
    pub up_to_id: Option<Id>,
    pub calculate_total: bool,
    pub extra: E,
}

impl<C: DeserializeOwned, E: ExtraArguments> QueryChangesRequest<C, E> {
    pub fn from_arguments(arguments: Map<String, Value>) -> Result<Self, MethodError> {
        let mut args = Arguments::new(arguments);
        let account_id = args.required("accountId")?;
        let (filter, sort) = take_filter_and_sort(&mut args, E::comparator_properties())?;
        let request = QueryChangesRequest {
            account_id,
            filter,
            sort,
            since_query_state: args.required("sinceQueryState")?,
            max_changes: args.positive("maxChanges")?,
            up_to_id: args.optional("upToId")?,
            calculate_total: args.flag("calculateTotal", false)?,
            extra: E::take(&mut args)?,
        };
        args.finish()?;
        Ok(request)
    }
}

impl<C, E> QueryChangesRequest<C, E> {
    /// `tooManyChanges` when `removed` + `added` exceed the client's `maxChanges`.
    pub fn check_max_changes(&self, removed: usize, added: usize) -> Result<(), MethodError> {
        match self.max_changes {
            Some(max)
                if u64::try_from(removed.saturating_add(added)).unwrap_or(u64::MAX) > max.get() =>
            {
                Err(MethodError::too_many_changes())
            }
            _ => Ok(()),
        }
    }
}

/// An entry of `added`: an id and its index in the new results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddedItem {
    pub id: Id,
    pub index: UnsignedInt,
}

/// Response of `Foo/queryChanges`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryChangesResponse {
    pub account_id: Id,
    pub old_query_state: String,
    pub new_query_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<UnsignedInt>,
    pub removed: Vec<Id>,
    /// Sorted by index, lowest first.
    pub added: Vec<AddedItem>,
}

impl QueryChangesResponse {
    pub fn to_arguments(&self) -> Map<String, Value> {
        super::to_arguments(self)
    }
}
