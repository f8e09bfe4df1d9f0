use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::MethodError;

/// `AND`, `OR` or `NOT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operator {
    And,
    Or,
    Not,
}

/// A /query filter: an operator over further filters, or a type-specific condition `C`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter<C> {
    Operator(FilterOperator<C>),
    Condition(C),
}

/// A FilterOperator (RFC 8620 §5.5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterOperator<C> {
    pub operator: Operator,
    pub conditions: Vec<Filter<C>>,
}

impl<C: DeserializeOwned> Filter<C> {
    /// Parses a filter; anything malformed is `invalidArguments`.
    pub fn from_json(value: Value) -> Result<Self, MethodError> {
        let Value::Object(mut object) = value else {
            return Err(MethodError::invalid_arguments("a filter must be an object"));
        };
        if !object.contains_key("operator") {
            return serde_json::from_value(Value::Object(object))
                .map(Filter::Condition)
                .map_err(|e| {
                    MethodError::invalid_arguments(format!("invalid filter condition: {e}"))
                });
        }
        let operator = match object.remove("operator") {
            Some(Value::String(op)) if op == "AND" => Operator::And,
            Some(Value::String(op)) if op == "OR" => Operator::Or,
            Some(Value::String(op)) if op == "NOT" => Operator::Not,
            other => {
                return Err(MethodError::invalid_arguments(format!(
                    "a filter operator must be \"AND\", \"OR\" or \"NOT\", not {}",
                    other.unwrap_or(Value::Null)
                )));
            }
        };
        let conditions = match object.remove("conditions") {
            Some(Value::Array(items)) => items
                .into_iter()
                .map(Filter::from_json)
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(MethodError::invalid_arguments(
                    "a FilterOperator needs a 'conditions' array",
                ));
            }
        };
        if let Some(unknown) = object.keys().next() {
            return Err(MethodError::invalid_arguments(format!(
                "unknown FilterOperator property '{unknown}'"
            )));
        }
        Ok(Filter::Operator(FilterOperator {
            operator,
            conditions,
        }))
    }
}

impl<C> Filter<C> {
    /// Evaluates the filter with `condition` deciding each leaf.
    pub fn matches(&self, condition: &mut impl FnMut(&C) -> bool) -> bool {
        match self {
            Filter::Condition(c) => condition(c),
            Filter::Operator(op) => match op.operator {
                Operator::And => op.conditions.iter().all(|f| f.matches(condition)),
                Operator::Or => op.conditions.iter().any(|f| f.matches(condition)),
                Operator::Not => !op.conditions.iter().any(|f| f.matches(condition)),
            },
        }
    }

    /// Every condition in the tree, for a handler that must check support up front.
    pub fn conditions(&self) -> Vec<&C> {
        let mut out = Vec::new();
        self.collect_conditions(&mut out);
        out
    }

    fn collect_conditions<'a>(&'a self, out: &mut Vec<&'a C>) {
        match self {
            Filter::Condition(c) => out.push(c),
            Filter::Operator(op) => op.conditions.iter().for_each(|f| f.collect_conditions(out)),
        }
    }
}

impl<C: Serialize> Serialize for Filter<C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Filter::Operator(op) => op.serialize(serializer),
            Filter::Condition(c) => c.serialize(serializer),
        }
    }
}

/// A sort Comparator (RFC 8620 §5.5).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparator {
    pub property: String,
    pub is_ascending: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
    /// Type-specific comparator properties (e.g. Email's `keyword`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Comparator {
    /// Parses one comparator; properties beyond the standard three must be in `allowed_extra`.
    pub fn from_json(value: Value, allowed_extra: &[&str]) -> Result<Self, MethodError> {
        let Value::Object(mut object) = value else {
            return Err(MethodError::invalid_arguments(
                "a Comparator must be an object",
            ));
        };
        let property = match object.remove("property") {
            Some(Value::String(property)) => property,
            _ => {
                return Err(MethodError::invalid_arguments(
                    "a Comparator needs a string 'property'",
                ));
            }
        };
        let is_ascending = match object.remove("isAscending") {
            None => true,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Err(MethodError::invalid_arguments(format!(
                    "a Comparator's 'isAscending' must be a boolean, not {other}"
                )));
            }
        };
        let collation = match object.remove("collation") {
            None => None,
            Some(Value::String(c)) => Some(c),
            Some(other) => {
                return Err(MethodError::invalid_arguments(format!(
                    "a Comparator's 'collation' must be a string, not {other}"
                )));
            }
        };
        if let Some(unknown) = object.keys().find(|k| !allowed_extra.contains(&k.as_str())) {
            return Err(MethodError::invalid_arguments(format!(
                "unknown Comparator property '{unknown}'"
            )));
        }
        Ok(Comparator {
            property,
            is_ascending,
            collation,
            extra: object,
        })
    }

    /// `unsupportedSort` unless the property is one of `sortable` and any collation is one of
    /// `collations` (the server's `collationAlgorithms`).
    pub fn check_supported(
        &self,
        sortable: &[&str],
        collations: &[String],
    ) -> Result<(), MethodError> {
        if !sortable.contains(&self.property.as_str()) {
            return Err(MethodError::unsupported_sort(format!(
                "cannot sort on '{}'",
                self.property
            )));
        }
        if let Some(collation) = &self.collation
            && !collations.iter().any(|c| c == collation)
        {
            return Err(MethodError::unsupported_sort(format!(
                "unknown collation '{collation}'"
            )));
        }
        Ok(())
    }
}
