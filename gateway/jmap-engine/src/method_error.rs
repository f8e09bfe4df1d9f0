//! Method-level errors (RFC 8620 §3.6.2 and the per-method errors of §5): the call answers with
//! an `error` invocation and the request goes on.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// The `type` of a method-level error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MethodErrorType {
    ServerUnavailable,
    ServerFail,
    ServerPartialFail,
    UnknownMethod,
    InvalidArguments,
    InvalidResultReference,
    Forbidden,
    AccountNotFound,
    AccountNotSupportedByMethod,
    AccountReadOnly,
    RequestTooLarge,
    StateMismatch,
    CannotCalculateChanges,
    AnchorNotFound,
    UnsupportedSort,
    UnsupportedFilter,
    TooManyChanges,
    FromAccountNotFound,
    FromAccountNotSupportedByMethod,
    /// A type defined by another specification; clients treat unknown ones as `serverFail`.
    Other(String),
}

impl MethodErrorType {
    pub fn as_str(&self) -> &str {
        match self {
            MethodErrorType::ServerUnavailable => "serverUnavailable",
            MethodErrorType::ServerFail => "serverFail",
            MethodErrorType::ServerPartialFail => "serverPartialFail",
            MethodErrorType::UnknownMethod => "unknownMethod",
            MethodErrorType::InvalidArguments => "invalidArguments",
            MethodErrorType::InvalidResultReference => "invalidResultReference",
            MethodErrorType::Forbidden => "forbidden",
            MethodErrorType::AccountNotFound => "accountNotFound",
            MethodErrorType::AccountNotSupportedByMethod => "accountNotSupportedByMethod",
            MethodErrorType::AccountReadOnly => "accountReadOnly",
            MethodErrorType::RequestTooLarge => "requestTooLarge",
            MethodErrorType::StateMismatch => "stateMismatch",
            MethodErrorType::CannotCalculateChanges => "cannotCalculateChanges",
            MethodErrorType::AnchorNotFound => "anchorNotFound",
            MethodErrorType::UnsupportedSort => "unsupportedSort",
            MethodErrorType::UnsupportedFilter => "unsupportedFilter",
            MethodErrorType::TooManyChanges => "tooManyChanges",
            MethodErrorType::FromAccountNotFound => "fromAccountNotFound",
            MethodErrorType::FromAccountNotSupportedByMethod => "fromAccountNotSupportedByMethod",
            MethodErrorType::Other(other) => other,
        }
    }
}

impl fmt::Display for MethodErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MethodErrorType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A method-level error: its type, an optional debugging description and any further
/// properties the defining specification adds.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodError {
    pub error_type: MethodErrorType,
    pub description: Option<String>,
    pub properties: Map<String, Value>,
}

impl std::error::Error for MethodError {}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.description {
            Some(description) => write!(f, "{}: {description}", self.error_type),
            None => write!(f, "{}", self.error_type),
        }
    }
}

impl From<MethodErrorType> for MethodError {
    fn from(error_type: MethodErrorType) -> Self {
        MethodError::new(error_type)
    }
}

macro_rules! plain {
    ($($fn_name:ident => $variant:ident),* $(,)?) => {
        $(
            pub fn $fn_name() -> Self {
                MethodError::new(MethodErrorType::$variant)
            }
        )*
    };
}

macro_rules! described {
    ($($fn_name:ident => $variant:ident),* $(,)?) => {
        $(
            pub fn $fn_name(description: impl Into<String>) -> Self {
                MethodError::new(MethodErrorType::$variant).with_description(description)
            }
        )*
    };
}

impl MethodError {
    pub fn new(error_type: MethodErrorType) -> Self {
        MethodError {
            error_type,
            description: None,
            properties: Map::new(),
        }
    }

    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Adds a further property to the error object.
    pub fn with_property(mut self, name: impl Into<String>, value: Value) -> Self {
        self.properties.insert(name.into(), value);
        self
    }

    plain! {
        server_unavailable => ServerUnavailable,
        server_partial_fail => ServerPartialFail,
        unknown_method => UnknownMethod,
        forbidden => Forbidden,
        account_not_found => AccountNotFound,
        account_not_supported_by_method => AccountNotSupportedByMethod,
        account_read_only => AccountReadOnly,
        state_mismatch => StateMismatch,
        cannot_calculate_changes => CannotCalculateChanges,
        anchor_not_found => AnchorNotFound,
        unsupported_filter => UnsupportedFilter,
        too_many_changes => TooManyChanges,
        from_account_not_found => FromAccountNotFound,
        from_account_not_supported_by_method => FromAccountNotSupportedByMethod,
    }

    described! {
        server_fail => ServerFail,
        invalid_arguments => InvalidArguments,
        invalid_result_reference => InvalidResultReference,
        request_too_large => RequestTooLarge,
        unsupported_sort => UnsupportedSort,
    }

    /// The arguments object of the `error` response.
    pub fn to_arguments(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert(
            "type".into(),
            Value::String(self.error_type.as_str().into()),
        );
        if let Some(description) = &self.description {
            out.insert("description".into(), Value::String(description.clone()));
        }
        for (key, value) in &self.properties {
            if key != "type" && key != "description" {
                out.insert(key.clone(), value.clone());
            }
        }
        out
    }
}

impl MethodError {
    /// The `["error", {...}, callId]` invocation.
    pub fn to_invocation(&self, call_id: impl Into<String>) -> crate::Invocation {
        crate::Invocation::new("error", self.to_arguments(), call_id)
    }
}

impl Serialize for MethodError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_arguments().serialize(serializer)
    }
}
