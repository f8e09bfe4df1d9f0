//! Result references (RFC 8620 §3.7): an argument `#name` whose value points into the response
//! of an earlier call in the same request.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::pointer::JsonPointer;
use crate::{Invocation, MethodError};

/// A ResultReference object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResultReference {
    pub result_of: String,
    pub name: String,
    pub path: String,
}

impl ResultReference {
    /// Evaluates the reference against the responses emitted so far in this request.
    pub fn resolve(&self, responses: &[Invocation]) -> Result<Value, MethodError> {
        let response = responses
            .iter()
            .find(|r| r.call_id == self.result_of)
            .ok_or_else(|| {
                MethodError::invalid_result_reference(format!(
                    "no earlier response has method call id {:?}",
                    self.result_of
                ))
            })?;
        if response.name != self.name {
            return Err(MethodError::invalid_result_reference(format!(
                "the response to {:?} is {:?}, not {:?}",
                self.result_of, response.name, self.name
            )));
        }
        let pointer = JsonPointer::parse(&self.path)
            .map_err(|e| MethodError::invalid_result_reference(e.to_string()))?;
        pointer
            .evaluate_in_object(&response.arguments)
            .map_err(|e| MethodError::invalid_result_reference(e.to_string()))
    }
}

/// Replaces every `#name` argument by the value its reference resolves to. Both `name` and
/// `#name` present is `invalidArguments`; a reference that does not resolve is
/// `invalidResultReference`.
pub fn resolve_references(
    arguments: Map<String, Value>,
    responses: &[Invocation],
) -> Result<Map<String, Value>, MethodError> {
    if !arguments.keys().any(|k| k.starts_with('#')) {
        return Ok(arguments);
    }
    let mut resolved = Map::with_capacity(arguments.len());
    let mut references = Vec::new();
    for (key, value) in arguments {
        match key.strip_prefix('#') {
            Some(name) => references.push((name.to_owned(), value)),
            None => {
                resolved.insert(key, value);
            }
        }
    }
    for (name, value) in references {
        if resolved.contains_key(&name) {
            return Err(MethodError::invalid_arguments(format!(
                "both '{name}' and '#{name}' are given"
            )));
        }
        let reference: ResultReference = serde_json::from_value(value).map_err(|e| {
            MethodError::invalid_result_reference(format!(
                "'#{name}' is not a ResultReference: {e}"
            ))
        })?;
        let value = reference.resolve(responses)?;
        resolved.insert(name, value);
    }
    Ok(resolved)
}
