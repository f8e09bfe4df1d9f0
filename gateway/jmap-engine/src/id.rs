//! The `Id` data type (RFC 8620 §1.2) and the `#creationId` form an id argument may take.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest id, in octets (RFC 8620 §1.2).
pub const MAX_ID_LEN: usize = 255;

/// A record id, creation id or account id: 1–255 characters of the URL-safe base64 alphabet
/// (`A-Za-z0-9`, `-`, `_`). Validated when constructed, so holding one proves the syntax.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(String);

/// Why a string is not an [`Id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    #[error("an Id must not be empty")]
    Empty,
    #[error("an Id must be at most 255 octets, this one has {0}")]
    TooLong(usize),
    #[error("an Id may only contain A-Z a-z 0-9 - _, found {0:?}")]
    BadChar(char),
}

impl Id {
    /// Checks the RFC 8620 §1.2 syntax.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
        let value = value.into();
        validate(&value)?;
        Ok(Id(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Checks `value` against the RFC 8620 §1.2 Id syntax without allocating.
pub fn validate(value: &str) -> Result<(), InvalidId> {
    if value.is_empty() {
        return Err(InvalidId::Empty);
    }
    if value.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong(value.len()));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(bad) => Err(InvalidId::BadChar(bad)),
        None => Ok(()),
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for Id {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Id::new(s)
    }
}

impl TryFrom<String> for Id {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Id::new(value)
    }
}

impl TryFrom<&str> for Id {
    type Error = InvalidId;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Id::new(value)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Id::new(raw).map_err(serde::de::Error::custom)
    }
}

/// An id argument that may instead name a record created earlier in the same request
/// (`"#k15"`, RFC 8620 §5.3). Resolve it against [`crate::CreatedIds`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdRef {
    Id(Id),
    /// The creation id, without its `#`.
    Creation(Id),
}

impl IdRef {
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        match value.strip_prefix('#') {
            Some(creation) => Ok(IdRef::Creation(Id::new(creation)?)),
            None => Ok(IdRef::Id(Id::new(value)?)),
        }
    }
}

impl From<Id> for IdRef {
    fn from(id: Id) -> Self {
        IdRef::Id(id)
    }
}

impl fmt::Display for IdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRef::Id(id) => write!(f, "{id}"),
            IdRef::Creation(cid) => write!(f, "#{cid}"),
        }
    }
}

impl Serialize for IdRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IdRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        IdRef::parse(&raw).map_err(serde::de::Error::custom)
    }
}
