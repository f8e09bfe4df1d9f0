//! Strict reading of a method's arguments object: each argument is taken out by name and
//! type-checked, and whatever is left over is an unknown argument (`invalidArguments`).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Int, MethodError, UnsignedInt};

/// A method's arguments, consumed argument by argument.
#[derive(Debug, Clone, Default)]
pub struct Arguments {
    map: Map<String, Value>,
}

impl Arguments {
    pub fn new(map: Map<String, Value>) -> Self {
        Arguments { map }
    }

    /// Takes a required argument; absent or `null` is `invalidArguments`.
    pub fn required<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, MethodError> {
        self.optional(name)?.ok_or_else(|| {
            MethodError::invalid_arguments(format!("the '{name}' argument is required"))
        })
    }

    /// Takes an optional argument; absent and `null` are both `None` (RFC 8620 §3.5).
    pub fn optional<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, MethodError> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value(value).map(Some).map_err(|e| {
                MethodError::invalid_arguments(format!("the '{name}' argument is invalid: {e}"))
            }),
        }
    }

    /// Takes an argument with a default value.
    pub fn or_default<T: DeserializeOwned + Default>(
        &mut self,
        name: &str,
    ) -> Result<T, MethodError> {
        Ok(self.optional(name)?.unwrap_or_default())
    }

    /// Takes a Boolean argument whose default is `default`.
    pub fn flag(&mut self, name: &str, default: bool) -> Result<bool, MethodError> {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    /// Takes an `Int` argument (default 0).
    pub fn int(&mut self, name: &str) -> Result<Int, MethodError> {
        self.or_default(name)
    }

    /// Takes an `UnsignedInt|null` argument that, when given, must be greater than 0.
    pub fn positive(&mut self, name: &str) -> Result<Option<UnsignedInt>, MethodError> {
        match self.optional::<UnsignedInt>(name)? {
            Some(n) if n.get() == 0 => Err(MethodError::invalid_arguments(format!(
                "the '{name}' argument must be greater than 0"
            ))),
            other => Ok(other),
        }
    }

    /// Takes an argument as raw JSON, `null` included.
    pub fn raw(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Fails with `invalidArguments` naming every argument nobody took.
    pub fn finish(self) -> Result<(), MethodError> {
        let unknown: Vec<String> = self.map.keys().map(|k| format!("'{k}'")).collect();
        match unknown.len() {
            0 => Ok(()),
            1 => Err(MethodError::invalid_arguments(format!(
                "unknown argument {}",
                unknown.join(", ")
            ))),
            _ => Err(MethodError::invalid_arguments(format!(
                "unknown arguments {}",
                unknown.join(", ")
            ))),
        }
    }
}

/// Type-specific extra arguments a standard method accepts (e.g. Email/get's `bodyProperties`,
/// Mailbox/set's `onDestroyRemoveEmails`). Take them from the [`Arguments`]; what is left over
/// after the standard ones and these is an unknown argument.
pub trait ExtraArguments: Sized {
    fn take(arguments: &mut Arguments) -> Result<Self, MethodError>;

    /// Properties besides `property`, `isAscending` and `collation` a Comparator may carry for
    /// this type (e.g. `keyword` for Email/query). Only meaningful for /query.
    fn comparator_properties() -> &'static [&'static str] {
        &[]
    }
}

/// No extra arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NoExtra {}

impl ExtraArguments for NoExtra {
    fn take(_: &mut Arguments) -> Result<Self, MethodError> {
        Ok(NoExtra {})
    }
}
