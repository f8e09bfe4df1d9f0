//! The JMAP method engine (RFC 8620): protocol types, request parsing with the request-level
//! errors, dispatch of method calls to registered handlers, result and creation-id references,
//! the standard-method argument types shared by every data type, PatchObject, /query windowing
//! and the Session and StateChange objects.
//!
//! # Invariants
//!
//! - The engine does no I/O of its own and knows no HTTP framework or async runtime. It takes
//!   bytes (or a [`Request`]) and an authenticated user and gives back a [`Response`] or a
//!   [`RequestError`]; handlers bring their own storage and may await whatever they like.
//! - Everything a client controls is validated before use: request shape, ids, integers,
//!   dates, references, patches. Nothing here panics on client input.
//! - Capability checks, result references, account resolution and the maxObjectsIn* limits are
//!   done once, in [`Engine`], before any handler runs; handlers never repeat them.
//!
//! # Code map
//!
//! - `request`: Request, Invocation, Response, CreatedIds. `ijson`: the I-JSON parser.
//! - `problem`: request-level errors as RFC 7807 problem details.
//! - `method_error`, `set_error`: the method-level errors and SetErrors.
//! - `dispatch`: [`Engine`], [`Handler`], [`AccountDirectory`], [`MethodCall`].
//! - `result_reference`, [`pointer`]: `#name` arguments and JSON Pointer with `*`.
//! - [`standard`]: GetRequest/GetResponse … QueryChangesRequest/Response, Filter, Comparator,
//!   [`standard::paginate`].
//! - `patch`: [`PatchObject`]. `arguments`: strict argument reading ([`Arguments`],
//!   [`ExtraArguments`]).
//! - `id`, `number`, `date`: Id, Int/UnsignedInt, Date/UTCDate.
//! - `session`: Session, Limits, capabilities, StateChange.
//!
//! # Using it from the HTTP layer
//!
//! ```no_run
//! use jmap_engine::{
//!     AccountDirectory, AccountError, Capabilities, Engine, FnHandler, Id, MethodCall,
//!     MAIL_CAPABILITY, PROBLEM_CONTENT_TYPE,
//! };
//! use jmap_engine::standard::{GetRequest, GetResponse};
//!
//! struct Accounts; // backed by the gateway's user and account tables
//! struct Mailboxes; // a handle on one account's storage
//!
//! impl AccountDirectory for Accounts {
//!     type User = String;
//!     type Account = Mailboxes;
//!     fn resolve(&self, user: &String, id: &Id, capability: &str) -> Result<Mailboxes, AccountError> {
//!         let _ = (user, id, capability);
//!         Err(AccountError::NotFound)
//!     }
//! }
//!
//! fn engine() -> Engine<Accounts> {
//!     let mut engine = Engine::new(Accounts, Capabilities::default());
//!     engine.register("Mailbox/get", MAIL_CAPABILITY, FnHandler(|call: MethodCall<'_, Accounts>| {
//!         let request = GetRequest::<jmap_engine::NoExtra>::from_arguments(call.arguments.clone())?;
//!         let _mailboxes = call.account()?;
//!         let response: GetResponse = GetResponse {
//!             account_id: request.account_id,
//!             state: "0".into(),
//!             list: vec![],
//!             not_found: vec![],
//!         };
//!         Ok(call.reply(response.to_arguments()))
//!     }));
//!     engine
//! }
//!
//! // In the POST /api handler, after authentication and the Content-Type check:
//! async fn api(engine: &Engine<Accounts>, user: String, body: &[u8]) -> (u16, &'static str, String) {
//!     match engine.handle(&user, body, "session-state").await {
//!         Ok(response) => (200, "application/json", response.to_json().to_string()),
//!         Err(problem) => (problem.status(), PROBLEM_CONTENT_TYPE, problem.to_json().to_string()),
//!     }
//! }
//! ```

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
