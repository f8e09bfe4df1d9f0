use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Comparator, Filter};
use crate::{Arguments, ExtraArguments, Id, Int, MethodError, NoExtra, UnsignedInt};

/// Arguments of `Foo/query` (RFC 8620 §5.5), with `C` the type's FilterCondition.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest<C, E = NoExtra> {
    pub account_id: Id,
    pub filter: Option<Filter<C>>,
    pub sort: Option<Vec<Comparator>>,
    pub position: Int,
    pub anchor: Option<Id>,
    pub anchor_offset: Int,
    pub limit: Option<UnsignedInt>,
    pub calculate_total: bool,
    pub extra: E,
}

pub(super) type FilterAndSort<C> = (Option<Filter<C>>, Option<Vec<Comparator>>);

/// Reads `filter` and `sort`, shared by /query and /queryChanges.
pub(super) fn take_filter_and_sort<C: DeserializeOwned>(
    args: &mut Arguments,
    comparator_properties: &[&str],
) -> Result<FilterAndSort<C>, MethodError> {
    let filter = match args.raw("filter") {
        None | Some(Value::Null) => None,
        Some(value) => Some(Filter::from_json(value)?),
    };
    let sort = match args.raw("sort") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .into_iter()
                .map(|item| Comparator::from_json(item, comparator_properties))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(MethodError::invalid_arguments(
                "the 'sort' argument must be an array of Comparators",
            ));
        }
    };
    Ok((filter, sort))
}

impl<C: DeserializeOwned, E: ExtraArguments> QueryRequest<C, E> {
    pub fn from_arguments(arguments: Map<String, Value>) -> Result<Self, MethodError> {
        let mut args = Arguments::new(arguments);
        let account_id = args.required("accountId")?;
        let (filter, sort) = take_filter_and_sort(&mut args, E::comparator_properties())?;
        let request = QueryRequest {
            account_id,
            filter,
            sort,
            position: args.int("position")?,
            anchor: args.optional("anchor")?,
            anchor_offset: args.int("anchorOffset")?,
            limit: args.optional("limit")?,
            calculate_total: args.flag("calculateTotal", false)?,
            extra: E::take(&mut args)?,
        };
        args.finish()?;
        Ok(request)
    }
}

impl<C, E> QueryRequest<C, E> {
    /// Windows the full, filtered and sorted result list as this request asks; see [`paginate`].
    pub fn paginate(
        &self,
        results: &[Id],
        max_limit: Option<u64>,
    ) -> Result<QueryPage, MethodError> {
        paginate(
            results,
            self.position,
            self.anchor.as_ref(),
            self.anchor_offset,
            self.limit,
            max_limit,
        )
    }

    /// The response for a page, with `total` only when the client asked for it.
    pub fn respond(
        &self,
        page: QueryPage,
        query_state: String,
        can_calculate_changes: bool,
    ) -> QueryResponse {
        QueryResponse {
            account_id: self.account_id.clone(),
            query_state,
            can_calculate_changes,
            position: page.position,
            ids: page.ids,
            total: self.calculate_total.then_some(page.total),
            limit: page.limit,
        }
    }
}

/// One window of query results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPage {
    /// Index of the first id of `ids` in the full results.
    pub position: UnsignedInt,
    pub ids: Vec<Id>,
    pub total: UnsignedInt,
    /// The limit to report in the response: set only when the server clamped the client's.
    pub limit: Option<UnsignedInt>,
}

/// Applies position/anchor/anchorOffset/limit to the full ordered results (RFC 8620 §5.5):
/// a negative position counts from the end and clamps to 0; an anchor overrides position and
/// must be in the results (else `anchorNotFound`); the limit is clamped to `max_limit`, and the
/// clamped value is reported.
pub fn paginate(
    results: &[Id],
    position: Int,
    anchor: Option<&Id>,
    anchor_offset: Int,
    limit: Option<UnsignedInt>,
    max_limit: Option<u64>,
) -> Result<QueryPage, MethodError> {
    let total = i64::try_from(results.len()).unwrap_or(i64::MAX);
    let start = match anchor {
        Some(anchor) => {
            let index = results
                .iter()
                .position(|id| id == anchor)
                .ok_or_else(MethodError::anchor_not_found)?;
            (i64::try_from(index).unwrap_or(i64::MAX) + anchor_offset.get()).max(0)
        }
        None if position.get() < 0 => (total + position.get()).max(0),
        None => position.get(),
    };
    let (effective_limit, reported_limit) = match (limit.map(UnsignedInt::get), max_limit) {
        (Some(asked), Some(max)) if asked > max => (Some(max), Some(max)),
        (None, Some(max)) => (Some(max), Some(max)),
        (asked, _) => (asked, None),
    };
    let start_index = usize::try_from(start)
        .unwrap_or(usize::MAX)
        .min(results.len());
    let end_index = match effective_limit {
        Some(limit) => start_index.saturating_add(usize::try_from(limit).unwrap_or(usize::MAX)),
        None => results.len(),
    }
    .min(results.len());
    Ok(QueryPage {
        position: UnsignedInt::saturating(start.unsigned_abs()),
        ids: results[start_index..end_index].to_vec(),
        total: UnsignedInt::from_usize(results.len()),
        limit: reported_limit.map(UnsignedInt::saturating),
    })
}

/// Response of `Foo/query`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResponse {
    pub account_id: Id,
    pub query_state: String,
    pub can_calculate_changes: bool,
    pub position: UnsignedInt,
    pub ids: Vec<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<UnsignedInt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<UnsignedInt>,
}

impl QueryResponse {
    pub fn to_arguments(&self) -> Map<String, Value> {
        super::to_arguments(self)
    }
}
