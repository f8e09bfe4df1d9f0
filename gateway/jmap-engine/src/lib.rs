//! The JMAP method engine (RFC 8620): protocol types, request parsing with the request-level
//! errors, dispatch of method calls to registered handlers, result and creation-id references,
//! the standard-method argument types shared by every data type, PatchObject, /query windowing
//! and the Session and StateChange objects.
//!
//! Invariant: the engine does no I/O of its own and knows no HTTP framework. It takes bytes (or
//! a [`Request`]) and an authenticated user and gives back a [`Response`] or a
//! [`RequestError`]; handlers bring their own storage.

#![forbid(unsafe_code)]

mod arguments;
mod date;
mod dispatch;
mod id;
mod ijson;
mod method_error;
mod number;
mod patch;
pub mod pointer;
mod problem;
mod request;
mod result_reference;
mod session;
mod set_error;
pub mod standard;

pub use arguments::{Arguments, ExtraArguments, NoExtra};
pub use date::{Date, InvalidDate, UtcDate};
pub use dispatch::{
    AccountArguments, AccountDirectory, AccountError, Engine, FnHandler, Handler, HandlerFuture,
    HandlerResult, MethodCall, MethodKind, MethodOutput, MethodSpec,
};
pub use id::{Id, IdRef, InvalidId, MAX_ID_LEN};
pub use method_error::{MethodError, MethodErrorType};
pub use number::{Int, InvalidInt, MAX_SAFE_INTEGER, UnsignedInt};
pub use patch::{PatchError, PatchObject};
pub use pointer::{JsonPointer, PointerError};
pub use problem::{PROBLEM_CONTENT_TYPE, ProblemDetails, RequestError, RequestLimit};
pub use request::{CreatedIds, Invocation, Request, Response};
pub use result_reference::{ResultReference, resolve_references};
pub use session::{
    Account, CORE_CAPABILITY, Capabilities, CoreCapability, Limits, MAIL_CAPABILITY,
    SUBMISSION_CAPABILITY, Session, StateChange, VACATION_RESPONSE_CAPABILITY,
};
pub use set_error::{SetError, SetErrorType};

/// Parses bytes as I-JSON (RFC 7493): UTF-8 JSON without duplicate member names.
pub fn parse_ijson(bytes: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    ijson::parse(bytes)
}
