use serde::Serialize;
use serde_json::{Map, Value};

use crate::{Arguments, CreatedIds, ExtraArguments, Id, IdRef, Limits, MethodError, NoExtra};

/// Arguments of `Foo/get` (RFC 8620 §5.1).
#[derive(Debug, Clone, PartialEq)]
pub struct GetRequest<E = NoExtra> {
    pub account_id: Id,
    /// `None` means every record of the type.
    pub ids: Option<Vec<IdRef>>,
    /// `None` means every property.
    pub properties: Option<Vec<String>>,
    pub extra: E,
}

impl<E: ExtraArguments> GetRequest<E> {
    pub fn from_arguments(arguments: Map<String, Value>) -> Result<Self, MethodError> {
        let mut args = Arguments::new(arguments);
        let request = GetRequest {
            account_id: args.required("accountId")?,
            ids: args.optional("ids")?,
            properties: args.optional("properties")?,
            extra: E::take(&mut args)?,
        };
        args.finish()?;
        Ok(request)
    }
}

impl<E> GetRequest<E> {
    /// The requested ids with `#creationId` references resolved and duplicates dropped (the
    /// RFC allows each id once in `list` or `notFound`); `None` when all records are wanted.
    /// A reference to a creation id this request has not created is `invalidArguments`.
    pub fn resolved_ids(&self, created: &CreatedIds) -> Result<Option<Vec<Id>>, MethodError> {
        let Some(ids) = &self.ids else {
            return Ok(None);
        };
        let mut out: Vec<Id> = Vec::with_capacity(ids.len());
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        for id in ids {
            let resolved = created.resolve(id).ok_or_else(|| {
                MethodError::invalid_arguments(format!("no record was created as {id}"))
            })?;
            if seen.insert(resolved.clone()) {
                out.push(resolved);
            }
        }
        Ok(Some(out))
    }

    /// `requestTooLarge` when `ids` is `null` (all records) and there are more than
    /// `maxObjectsInGet` of them (RFC 8620 §5.1); an explicit `ids` list is checked by the engine.
    pub fn check_fetch_all(&self, record_count: usize, limits: &Limits) -> Result<(), MethodError> {
        let max = limits.max_objects_in_get.get();
        if self.ids.is_none() && u64::try_from(record_count).unwrap_or(u64::MAX) > max {
            return Err(MethodError::request_too_large(format!(
                "all {record_count} records requested, more than maxObjectsInGet ({max})"
            )));
        }
        Ok(())
    }

    /// The properties to return: checked against `known` (an unknown one is
    /// `invalidArguments`), `id` always included; every known property when none were asked.
    pub fn properties_checked(&self, known: &[&str]) -> Result<Vec<String>, MethodError> {
        let Some(requested) = &self.properties else {
            return Ok(known.iter().map(|p| (*p).to_owned()).collect());
        };
        if let Some(unknown) = requested.iter().find(|p| !known.contains(&p.as_str())) {
            return Err(MethodError::invalid_arguments(format!(
                "unknown property '{unknown}'"
            )));
        }
        let mut out = Vec::with_capacity(requested.len() + 1);
        if !requested.iter().any(|p| p == "id") {
            out.push("id".to_owned());
        }
        for property in requested {
            if !out.contains(property) {
                out.push(property.clone());
            }
        }
        Ok(out)
    }
}

/// Response of `Foo/get`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetResponse<T = Map<String, Value>> {
    pub account_id: Id,
    pub state: String,
    pub list: Vec<T>,
    pub not_found: Vec<Id>,
}

impl<T: Serialize> GetResponse<T> {
    pub fn to_arguments(&self) -> Map<String, Value> {
        super::to_arguments(self)
    }
}
