//! The engine under test: a directory of accounts for two users, scripted handlers for the
//! RFC's abstract examples (`Foo/*`, `method1`…), and the in-memory Todo type of RFC 8620 §5.8.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use jmap_engine::{
    AccountDirectory, AccountError, CORE_CAPABILITY, Capabilities, CoreCapability, Engine,
    FnHandler, HandlerResult, Id, Limits, MAIL_CAPABILITY, MethodCall, MethodOutput, MethodSpec,
    UnsignedInt,
};
use serde_json::{Map, Value, json};

pub const TODO: &str = "urn:example:todo";
pub const CONTACTS: &str = "urn:ietf:params:jmap:contacts";
pub const SESSION_STATE: &str = "75128aab4b1b";

/// What a handler receives for an account.
#[derive(Debug, Clone, PartialEq)]
pub struct TestAccount {
    pub id: Id,
    pub read_only: bool,
}

/// `john` has A1, x and y (read-write), ro (read-only) and c1 (contacts only); `jane` has J1.
#[derive(Debug)]
pub struct Directory;

fn accounts_of(user: &str) -> &'static [(&'static str, bool, &'static [&'static str])] {
    match user {
        "john" => &[
            ("A1", false, &[MAIL_CAPABILITY, TODO]),
            ("x", false, &[MAIL_CAPABILITY, TODO]),
            ("y", false, &[TODO]),
            ("ro", true, &[MAIL_CAPABILITY, TODO]),
            ("c1", false, &[CONTACTS]),
        ],
        "jane" => &[("J1", false, &[MAIL_CAPABILITY, TODO])],
        _ => &[],
    }
}

impl AccountDirectory for Directory {
    type User = String;
    type Account = TestAccount;

    fn resolve(
        &self,
        user: &String,
        account_id: &Id,
        capability: &str,
    ) -> Result<TestAccount, AccountError> {
        let (_, read_only, capabilities) = accounts_of(user)
            .iter()
            .find(|(id, _, _)| *id == account_id.as_str())
            .ok_or(AccountError::NotFound)?;
        if capability != CORE_CAPABILITY && !capabilities.contains(&capability) {
            return Err(AccountError::NotSupportedByMethod);
        }
        Ok(TestAccount {
            id: account_id.clone(),
            read_only: *read_only,
        })
    }

    fn is_read_only(&self, account: &TestAccount) -> bool {
        account.read_only
    }
}

/// Small limits so the limit checks are cheap to hit.
pub fn limits() -> Limits {
    Limits {
        max_calls_in_request: UnsignedInt::saturating(16),
        max_objects_in_get: UnsignedInt::saturating(10),
        max_objects_in_set: UnsignedInt::saturating(8),
        max_size_request: UnsignedInt::saturating(20_000),
        ..Limits::default()
    }
}

pub fn capabilities() -> Capabilities {
    let mut capabilities = Capabilities {
        core: CoreCapability {
            limits: limits(),
            ..CoreCapability::default()
        },
        others: BTreeMap::new(),
    };
    for extra in [MAIL_CAPABILITY, TODO, CONTACTS] {
        capabilities.others.insert(extra.to_owned(), json!({}));
    }
    capabilities
}

/// Answers by method call id from `script`: an object is the one response (named like the
/// call), an array is a list of `[name, arguments]` responses. Unscripted calls echo their
/// arguments after reference resolution, which shows what a reference resolved to.
fn scripted(script: Value) -> impl Fn(MethodCall<'_, Directory>) -> HandlerResult + Send + Sync {
    move |call| match script.get(&call.call_id) {
        Some(Value::Object(arguments)) => Ok(call.reply(arguments.clone())),
        Some(Value::Array(responses)) => {
            let mut output = MethodOutput::default();
            for response in responses {
                let name = response[0].as_str().unwrap_or_default().to_owned();
                let arguments = response[1].as_object().cloned().unwrap_or_default();
                output.responses.push((name, arguments));
            }
            Ok(output)
        }
        _ => Ok(call.reply(call.arguments.clone())),
    }
}

/// The engine with the scripted methods and the Todo type.
pub fn engine_with(script: Value) -> Engine<Directory> {
    let mut engine = Engine::new(Directory, capabilities());
    for name in ["Foo/changes", "Foo/get", "Foo/set", "Foo/copy", "Foo/query"] {
        engine.register(name, TODO, FnHandler(scripted(script.clone())));
    }
    for name in ["Email/query", "Email/get", "Thread/get", "Email/import"] {
        engine.register(name, MAIL_CAPABILITY, FnHandler(scripted(script.clone())));
    }
    for name in ["method1", "method2"] {
        engine.register_spec(
            name,
            MethodSpec::infer(name, MAIL_CAPABILITY).without_account(),
            FnHandler(scripted(script.clone())),
        );
    }
    crate::todo::register(&mut engine);
    engine
}

pub fn engine() -> Engine<Directory> {
    engine_with(json!({}))
}

/// Polls a future that never waits on anything outside itself.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// The request a bare `methodCalls` array stands for.
pub fn request_of(method_calls: Value) -> Value {
    json!({
        "using": [CORE_CAPABILITY, MAIL_CAPABILITY, TODO],
        "methodCalls": method_calls,
    })
}

/// Runs a raw body as `user`: the Response, or the problem details of a refused request.
pub fn run_body(engine: &Engine<Directory>, user: &str, body: &[u8]) -> Value {
    match block_on(engine.handle(&user.to_owned(), body, SESSION_STATE)) {
        Ok(response) => serde_json::to_value(&response).unwrap(),
        Err(problem) => problem.to_json(),
    }
}

/// Runs `input` as john. An array is the `methodCalls` of a request using core, mail and todo,
/// and yields `methodResponses`; an object is a whole request and yields the whole response.
pub fn run(engine: &Engine<Directory>, input: Value) -> Value {
    match input {
        Value::Array(_) => {
            let response = run_body(engine, "john", request_of(input).to_string().as_bytes());
            response["methodResponses"].clone()
        }
        other => run_body(engine, "john", other.to_string().as_bytes()),
    }
}

/// The data-driven check: `input` (see [`run`]) gives exactly `expected`.
#[track_caller]
pub fn check(input: Value, expected: Value) {
    check_with(&engine(), input, expected);
}

#[track_caller]
pub fn check_with(engine: &Engine<Directory>, input: Value, expected: Value) {
    let actual = run(engine, input);
    assert_eq!(
        actual,
        expected,
        "\nactual:   {}\nexpected: {}",
        serde_json::to_string_pretty(&actual).unwrap(),
        serde_json::to_string_pretty(&expected).unwrap()
    );
}

/// A one-call check that expects an `error` response of `error_type`.
#[track_caller]
pub fn check_error(call: Value, error_type: &str) {
    let responses = run(&engine(), json!([call]));
    assert_eq!(responses[0][0], "error", "{responses}");
    assert_eq!(responses[0][1]["type"], error_type, "{responses}");
}

pub fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}
