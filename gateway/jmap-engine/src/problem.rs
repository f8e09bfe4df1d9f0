//! Request-level errors (RFC 8620 §3.6.1): the whole request is refused with an HTTP error and
//! an RFC 7807 problem-details body.

use serde::Serialize;

/// Media type of the problem-details body (RFC 7807 §6.1).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Names of the request limits a `limit` problem may cite (RFC 8620 §2, §3.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RequestLimit {
    MaxSizeRequest,
    MaxCallsInRequest,
    MaxConcurrentRequests,
    MaxSizeUpload,
    MaxConcurrentUpload,
}

impl RequestLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestLimit::MaxSizeRequest => "maxSizeRequest",
            RequestLimit::MaxCallsInRequest => "maxCallsInRequest",
            RequestLimit::MaxConcurrentRequests => "maxConcurrentRequests",
            RequestLimit::MaxSizeUpload => "maxSizeUpload",
            RequestLimit::MaxConcurrentUpload => "maxConcurrentUpload",
        }
    }
}

/// A request the engine refuses as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not `application/json`, or not I-JSON (bad syntax, bad UTF-8, duplicate member names).
    #[error("the request is not valid I-JSON: {0}")]
    NotJson(String),
    /// Valid JSON that does not have the shape of a Request object.
    #[error("the request is not a JMAP Request object: {0}")]
    NotRequest(String),
    /// `using` names a capability this server does not support.
    #[error("the request uses unsupported capability {0:?}")]
    UnknownCapability(String),
    /// The request exceeds one of the request limits.
    #[error("{detail}")]
    Limit { limit: RequestLimit, detail: String },
}

/// An RFC 7807 problem-details object as JMAP uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProblemDetails {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<RequestLimit>,
}

impl RequestError {
    /// The `limit` problem for a body larger than `maxSizeRequest`.
    pub fn too_large(size: usize, max: u64) -> Self {
        RequestError::Limit {
            limit: RequestLimit::MaxSizeRequest,
            detail: format!(
                "The request is {size} octets, larger than the server is willing to process ({max})."
            ),
        }
    }

    /// The `limit` problem the HTTP layer returns when a user has too many requests in flight.
    pub fn too_many_concurrent(max: u64) -> Self {
        RequestError::Limit {
            limit: RequestLimit::MaxConcurrentRequests,
            detail: format!("More than {max} concurrent requests to the API endpoint."),
        }
    }

    /// The `notJSON` problem for a request whose Content-Type is not `application/json`.
    pub fn wrong_content_type(content_type: &str) -> Self {
        RequestError::NotJson(format!(
            "the content type is {content_type:?}, not application/json"
        ))
    }

    /// The problem type URI, `urn:ietf:params:jmap:error:…`.
    pub fn type_uri(&self) -> &'static str {
        match self {
            RequestError::NotJson(_) => "urn:ietf:params:jmap:error:notJSON",
            RequestError::NotRequest(_) => "urn:ietf:params:jmap:error:notRequest",
            RequestError::UnknownCapability(_) => "urn:ietf:params:jmap:error:unknownCapability",
            RequestError::Limit { .. } => "urn:ietf:params:jmap:error:limit",
        }
    }

    /// The HTTP status the response must carry.
    pub fn status(&self) -> u16 {
        400
    }

    pub fn problem(&self) -> ProblemDetails {
        let detail = match self {
            RequestError::UnknownCapability(capability) => format!(
                "The Request object used capability '{capability}', which is not supported by this server."
            ),
            other => other.to_string(),
        };
        ProblemDetails {
            problem_type: self.type_uri().to_owned(),
            status: self.status(),
            detail,
            limit: match self {
                RequestError::Limit { limit, .. } => Some(*limit),
                _ => None,
            },
        }
    }

    /// The problem-details body as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.problem()).unwrap_or(serde_json::Value::Null)
    }
}
