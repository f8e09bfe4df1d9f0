//! SetError (RFC 8620 §5.3, §5.4; RFC 8621's extra types): why one record of a /set, /copy or
//! /import was not created, updated or destroyed.

use std::fmt;

use serde::de::Deserializer;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::Id;

/// The `type` of a SetError. RFC 8621's types are named; any other stays open as `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetErrorType {
    // RFC 8620 §5.3 and §5.4.
    Forbidden,
    OverQuota,
    TooLarge,
    RateLimit,
    NotFound,
    InvalidPatch,
    WillDestroy,
    InvalidProperties,
    Singleton,
    AlreadyExists,
    // RFC 8621.
    MailboxHasChild,
    MailboxHasEmail,
    BlobNotFound,
    TooManyKeywords,
    TooManyMailboxes,
    InvalidEmail,
    TooManyRecipients,
    NoRecipients,
    InvalidRecipients,
    ForbiddenMailFrom,
    ForbiddenFrom,
    ForbiddenToSend,
    CannotUnsend,
    Other(String),
}

const NAMED: &[(SetErrorType, &str)] = &[
    (SetErrorType::Forbidden, "forbidden"),
    (SetErrorType::OverQuota, "overQuota"),
    (SetErrorType::TooLarge, "tooLarge"),
    (SetErrorType::RateLimit, "rateLimit"),
    (SetErrorType::NotFound, "notFound"),
    (SetErrorType::InvalidPatch, "invalidPatch"),
    (SetErrorType::WillDestroy, "willDestroy"),
    (SetErrorType::InvalidProperties, "invalidProperties"),
    (SetErrorType::Singleton, "singleton"),
    (SetErrorType::AlreadyExists, "alreadyExists"),
    (SetErrorType::MailboxHasChild, "mailboxHasChild"),
    (SetErrorType::MailboxHasEmail, "mailboxHasEmail"),
    (SetErrorType::BlobNotFound, "blobNotFound"),
    (SetErrorType::TooManyKeywords, "tooManyKeywords"),
    (SetErrorType::TooManyMailboxes, "tooManyMailboxes"),
    (SetErrorType::InvalidEmail, "invalidEmail"),
    (SetErrorType::TooManyRecipients, "tooManyRecipients"),
    (SetErrorType::NoRecipients, "noRecipients"),
    (SetErrorType::InvalidRecipients, "invalidRecipients"),
    (SetErrorType::ForbiddenMailFrom, "forbiddenMailFrom"),
    (SetErrorType::ForbiddenFrom, "forbiddenFrom"),
    (SetErrorType::ForbiddenToSend, "forbiddenToSend"),
    (SetErrorType::CannotUnsend, "cannotUnsend"),
];

impl SetErrorType {
    pub fn as_str(&self) -> &str {
        if let SetErrorType::Other(other) = self {
            return other;
        }
        NAMED
            .iter()
            .find(|(named, _)| named == self)
            .map_or("serverFail", |(_, name)| name)
    }

    /// The named type for `name`, or `Other` when no specification we know defines it.
    pub fn from_name(name: &str) -> Self {
        NAMED
            .iter()
            .find(|(_, known)| *known == name)
            .map_or_else(|| SetErrorType::Other(name.to_owned()), |(t, _)| t.clone())
    }
}

impl fmt::Display for SetErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SetErrorType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SetErrorType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(SetErrorType::from_name(&String::deserialize(deserializer)?))
    }
}

/// A SetError object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetError {
    #[serde(rename = "type")]
    pub error_type: SetErrorType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// For `invalidProperties`: every invalid property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Vec<String>>,
    /// For `alreadyExists`: the record that already exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<Id>,
    /// Further properties other specifications define (e.g. RFC 8621 `notFound` blob ids,
    /// `maxRecipients`, `invalidRecipients`, `maxSize`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl std::error::Error for SetError {}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.description {
            Some(description) => write!(f, "{}: {description}", self.error_type),
            None => write!(f, "{}", self.error_type),
        }
    }
}

impl From<SetErrorType> for SetError {
    fn from(error_type: SetErrorType) -> Self {
        SetError::new(error_type)
    }
}

impl SetError {
    pub fn new(error_type: SetErrorType) -> Self {
        SetError {
            error_type,
            description: None,
            properties: None,
            existing_id: None,
            extra: Map::new(),
        }
    }

    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    pub fn with_property(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    pub fn forbidden() -> Self {
        SetError::new(SetErrorType::Forbidden)
    }
    pub fn over_quota() -> Self {
        SetError::new(SetErrorType::OverQuota)
    }
    pub fn too_large() -> Self {
        SetError::new(SetErrorType::TooLarge)
    }
    pub fn rate_limit() -> Self {
        SetError::new(SetErrorType::RateLimit)
    }
    pub fn not_found() -> Self {
        SetError::new(SetErrorType::NotFound)
    }
    pub fn invalid_patch(description: impl Into<String>) -> Self {
        SetError::new(SetErrorType::InvalidPatch).with_description(description)
    }
    pub fn will_destroy() -> Self {
        SetError::new(SetErrorType::WillDestroy)
    }
    pub fn singleton() -> Self {
        SetError::new(SetErrorType::Singleton)
    }

    /// `invalidProperties` listing every invalid property.
    pub fn invalid_properties<I, S>(properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut error = SetError::new(SetErrorType::InvalidProperties);
        error.properties = Some(properties.into_iter().map(Into::into).collect());
        error
    }

    /// `alreadyExists` naming the existing record.
    pub fn already_exists(existing_id: Id) -> Self {
        let mut error = SetError::new(SetErrorType::AlreadyExists);
        error.existing_id = Some(existing_id);
        error
    }
}
