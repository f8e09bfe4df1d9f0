//! PatchObject (RFC 8620 §5.3): an unordered set of JSON Pointer → value replacements used by
//! every /set update.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::SetError;
use crate::pointer::{JsonPointer, kind_of};

/// A patch as the client sent it. Applying it checks the RFC's rules; any violation is an
/// `invalidPatch` SetError and leaves the record untouched.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatchObject(Map<String, Value>);

/// Why a patch cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("{path:?} is not a valid pointer: {why}")]
    BadPointer { path: String, why: String },
    #[error("{prefix:?} is a prefix of {path:?} in the same patch")]
    Overlap { prefix: String, path: String },
    #[error("{path:?} points inside an array; replace the whole array instead")]
    InsideArray { path: String },
    #[error("{path:?}: {missing:?} does not exist on the object")]
    MissingParent { path: String, missing: String },
    #[error("{path:?}: {at:?} is a {kind}, not an object")]
    NotAnObject {
        path: String,
        at: String,
        kind: &'static str,
    },
    #[error("the record to patch is not an object")]
    TargetNotObject,
}

impl From<PatchError> for SetError {
    fn from(error: PatchError) -> Self {
        SetError::invalid_patch(error.to_string())
    }
}

impl PatchObject {
    pub fn new(patch: Map<String, Value>) -> Self {
        PatchObject(patch)
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The top-level properties the patch touches, so a handler can reject server-set ones.
    pub fn properties(&self) -> BTreeSet<String> {
        self.0
            .keys()
            .filter_map(|key| JsonPointer::parse_patch_path(key).ok())
            .filter_map(|pointer| pointer.tokens().first().cloned())
            .collect()
    }

    /// The patch's pointers, checked for syntax and for one being a prefix of another.
    pub fn pointers(&self) -> Result<Vec<(JsonPointer, &Value)>, PatchError> {
        let mut parsed = self
            .0
            .iter()
            .map(|(key, value)| {
                JsonPointer::parse_patch_path(key)
                    .map(|pointer| (pointer, value))
                    .map_err(|e| PatchError::BadPointer {
                        path: key.clone(),
                        why: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Sorted by tokens, a prefix comes right before the paths it is a prefix of.
        parsed.sort_by(|a, b| a.0.tokens().cmp(b.0.tokens()));
        for pair in parsed.windows(2) {
            if let [(prefix, _), (path, _)] = pair
                && prefix.is_prefix_of(path)
            {
                return Err(PatchError::Overlap {
                    prefix: patch_key(prefix),
                    path: patch_key(path),
                });
            }
        }
        Ok(parsed)
    }

    /// Applies the patch to a copy of `target`; `null` removes the property.
    pub fn apply(&self, target: &Value) -> Result<Value, PatchError> {
        self.apply_with_defaults(target, |_| None)
    }

    /// Like [`PatchObject::apply`], but `null` sets the property to `default(pointer)` when that
    /// is `Some` (RFC 8620: "set to the default value if specified for this property").
    pub fn apply_with_defaults(
        &self,
        target: &Value,
        default: impl Fn(&JsonPointer) -> Option<Value>,
    ) -> Result<Value, PatchError> {
        let mut patched = target.clone();
        if !patched.is_object() {
            return Err(PatchError::TargetNotObject);
        }
        for (pointer, value) in self.pointers()? {
            let value = if value.is_null() {
                default(&pointer).unwrap_or(Value::Null)
            } else {
                value.clone()
            };
            set(&mut patched, &pointer, value)?;
        }
        Ok(patched)
    }
}

/// The pointer as a PatchObject key (no leading `/`).
fn patch_key(pointer: &JsonPointer) -> String {
    let text = pointer.to_string();
    text.strip_prefix('/').unwrap_or(&text).to_owned()
}

fn set(root: &mut Value, pointer: &JsonPointer, value: Value) -> Result<(), PatchError> {
    let path = patch_key(pointer);
    let Some((last, parents)) = pointer.tokens().split_last() else {
        return Err(PatchError::BadPointer {
            path,
            why: "empty pointer".into(),
        });
    };
    let mut current = root;
    let mut walked = String::new();
    for token in parents {
        if !walked.is_empty() {
            walked.push('/');
        }
        walked.push_str(token);
        current = match current {
            Value::Object(members) => {
                members
                    .get_mut(token)
                    .ok_or_else(|| PatchError::MissingParent {
                        path: path.clone(),
                        missing: walked.clone(),
                    })?
            }
            Value::Array(_) => return Err(PatchError::InsideArray { path }),
            other => {
                return Err(PatchError::NotAnObject {
                    path,
                    at: walked,
                    kind: kind_of(other),
                });
            }
        };
    }
    match current {
        Value::Object(members) => {
            if value.is_null() {
                members.remove(last);
            } else {
                members.insert(last.clone(), value);
            }
            Ok(())
        }
        Value::Array(_) => Err(PatchError::InsideArray { path }),
        other => Err(PatchError::NotAnObject {
            path,
            at: walked,
            kind: kind_of(other),
        }),
    }
}

impl Serialize for PatchObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PatchObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(PatchObject)
    }
}
