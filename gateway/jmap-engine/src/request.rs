//! The Request, Invocation and Response objects (RFC 8620 §3.2–§3.4).

use std::collections::BTreeMap;

use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{Id, IdRef, RequestError};

/// A method call or a method response: `[name, arguments, methodCallId]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub name: String,
    pub arguments: Map<String, Value>,
    pub call_id: String,
}

impl Invocation {
    pub fn new(
        name: impl Into<String>,
        arguments: Map<String, Value>,
        call_id: impl Into<String>,
    ) -> Self {
        Invocation {
            name: name.into(),
            arguments,
            call_id: call_id.into(),
        }
    }

    /// Reads one element of `methodCalls`; the error text says what is wrong with it.
    pub fn from_json(value: Value) -> Result<Self, String> {
        let Value::Array(items) = value else {
            return Err("an Invocation must be a 3-element array".into());
        };
        let [name, arguments, call_id]: [Value; 3] =
            items.try_into().map_err(|items: Vec<Value>| {
                format!("an Invocation has 3 elements, not {}", items.len())
            })?;
        let Value::String(name) = name else {
            return Err("the method name of an Invocation must be a string".into());
        };
        let Value::Object(arguments) = arguments else {
            return Err(format!("the arguments of {name:?} must be an object"));
        };
        let Value::String(call_id) = call_id else {
            return Err(format!("the method call id of {name:?} must be a string"));
        };
        Ok(Invocation {
            name,
            arguments,
            call_id,
        })
    }

    pub fn to_json(&self) -> Value {
        Value::Array(vec![
            Value::String(self.name.clone()),
            Value::Object(self.arguments.clone()),
            Value::String(self.call_id.clone()),
        ])
    }
}

impl Serialize for Invocation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(3)?;
        tuple.serialize_element(&self.name)?;
        tuple.serialize_element(&self.arguments)?;
        tuple.serialize_element(&self.call_id)?;
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Invocation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Invocation::from_json(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The request-wide map of creation id to server-assigned id (RFC 8620 §3.3, §5.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedIds(BTreeMap<Id, Id>);

impl CreatedIds {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a creation; a reused creation id maps to the most recent record (RFC 8620 §5.3).
    pub fn insert(&mut self, creation_id: Id, id: Id) {
        self.0.insert(creation_id, id);
    }

    pub fn get(&self, creation_id: &str) -> Option<&Id> {
        self.0.get(creation_id)
    }

    /// The real id an [`IdRef`] stands for, or `None` for an unknown creation id.
    pub fn resolve(&self, id: &IdRef) -> Option<Id> {
        match id {
            IdRef::Id(id) => Some(id.clone()),
            IdRef::Creation(creation_id) => self.0.get(creation_id).cloned(),
        }
    }

    /// Resolves an id string that may be `#creationId`.
    pub fn resolve_str(&self, value: &str) -> Option<Id> {
        IdRef::parse(value).ok().and_then(|id| self.resolve(&id))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Id, &Id)> {
        self.0.iter()
    }

    pub fn extend(&mut self, other: impl IntoIterator<Item = (Id, Id)>) {
        self.0.extend(other);
    }
}

impl FromIterator<(Id, Id)> for CreatedIds {
    fn from_iter<T: IntoIterator<Item = (Id, Id)>>(iter: T) -> Self {
        CreatedIds(iter.into_iter().collect())
    }
}

/// A JMAP Request object. Unknown top-level properties are ignored (RFC 8620 §3.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub using: Vec<String>,
    pub method_calls: Vec<Invocation>,
    pub created_ids: Option<CreatedIds>,
}

impl Request {
    /// Checks the type signature of a parsed body; failures are `notRequest`.
    pub fn from_json(value: Value) -> Result<Self, RequestError> {
        let not_request = |detail: String| RequestError::NotRequest(detail);
        let Value::Object(mut object) = value else {
            return Err(not_request("the request body must be a JSON object".into()));
        };
        let using = match object.remove("using") {
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(capability) => Ok(capability),
                    other => Err(not_request(format!(
                        "'using' must hold strings, found {other}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(not_request("'using' must be an array of strings".into())),
            None => return Err(not_request("the 'using' property is missing".into())),
        };
        let method_calls = match object.remove("methodCalls") {
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| {
                    Invocation::from_json(item)
                        .map_err(|why| not_request(format!("methodCalls[{index}]: {why}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(not_request("'methodCalls' must be an array".into())),
            None => return Err(not_request("the 'methodCalls' property is missing".into())),
        };
        let created_ids = match object.remove("createdIds") {
            None => None,
            Some(value) => Some(
                serde_json::from_value::<CreatedIds>(value)
                    .map_err(|e| not_request(format!("'createdIds' must map Id to Id: {e}")))?,
            ),
        };
        Ok(Request {
            using,
            method_calls,
            created_ids,
        })
    }
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Shape<'a> {
            using: &'a [String],
            method_calls: &'a [Invocation],
            #[serde(skip_serializing_if = "Option::is_none")]
            created_ids: Option<&'a CreatedIds>,
        }
        Shape {
            using: &self.using,
            method_calls: &self.method_calls,
            created_ids: self.created_ids.as_ref(),
        }
        .serialize(serializer)
    }
}

/// A JMAP Response object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub method_responses: Vec<Invocation>,
    /// Present exactly when the request carried `createdIds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_ids: Option<CreatedIds>,
    pub session_state: String,
}

impl Response {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
