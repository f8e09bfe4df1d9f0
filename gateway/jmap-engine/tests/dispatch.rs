//! Dispatch: capability checks, account resolution done once before the handler, limits, order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use jmap_engine::{
    AccountArguments, CORE_CAPABILITY, Engine, Handler, HandlerFuture, MAIL_CAPABILITY, MethodCall,
    MethodKind, MethodOutput, MethodSpec,
};
use serde_json::json;

use crate::fixture::{Directory, block_on, capabilities, check, check_error, engine, run_body};

#[test]
fn unknown_method() {
    check(
        json!([["Frobnicate/get", {"accountId": "A1"}, "0"]]),
        json!([["error", {"type": "unknownMethod", "description": "no method \"Frobnicate/get\""}, "0"]]),
    );
}

/// A method whose capability is missing from `using` is unknown (RFC 8620 §1.8, §3.3).
#[test]
fn method_needs_its_capability_in_using() {
    let body = json!({
        "using": [CORE_CAPABILITY],
        "methodCalls": [["Email/get", {"accountId": "A1", "ids": []}, "0"], ["Core/echo", {}, "1"]]
    });
    assert_eq!(
        run_body(&engine(), "john", body.to_string().as_bytes())["methodResponses"],
        json!([
            ["error", {"type": "unknownMethod", "description": "Email/get needs \"urn:ietf:params:jmap:mail\" in 'using'"}, "0"],
            ["Core/echo", {}, "1"]
        ])
    );
    let body = json!({"using": [MAIL_CAPABILITY], "methodCalls": [["Core/echo", {}, "0"]]});
    assert_eq!(
        run_body(&engine(), "john", body.to_string().as_bytes())["methodResponses"][0][1]["type"],
        "unknownMethod"
    );
}

#[test]
fn account_errors() {
    // Another user's account is simply not found.
    check_error(
        json!(["Todo/get", {"accountId": "J1", "ids": []}, "0"]),
        "accountNotFound",
    );
    check_error(
        json!(["Todo/get", {"accountId": "nope", "ids": []}, "0"]),
        "accountNotFound",
    );
    check_error(
        json!(["Todo/get", {"accountId": "c1", "ids": []}, "0"]),
        "accountNotSupportedByMethod",
    );
    check_error(
        json!(["Email/get", {"accountId": "y", "ids": []}, "0"]),
        "accountNotSupportedByMethod",
    );
    check_error(
        json!(["Todo/set", {"accountId": "ro", "destroy": ["a"]}, "0"]),
        "accountReadOnly",
    );
    // Reading a read-only account is fine.
    let responses = crate::fixture::run(
        &engine(),
        json!([["Todo/get", {"accountId": "ro", "ids": []}, "0"]]),
    );
    assert_eq!(responses[0][0], "Todo/get");
}

#[test]
fn account_id_argument_errors() {
    check(
        json!([
            ["Todo/get", {"ids": []}, "0"],
            ["Todo/get", {"accountId": 5}, "1"],
            ["Todo/get", {"accountId": "not/an/id"}, "2"],
            ["Todo/get", {"accountId": null}, "3"]
        ]),
        json!([
            ["error", {"type": "invalidArguments", "description": "the 'accountId' argument is required"}, "0"],
            ["error", {"type": "invalidArguments", "description": "the 'accountId' argument must be an Id string"}, "1"],
            ["error", {"type": "invalidArguments", "description": "the 'accountId' argument is invalid: an Id may only contain A-Z a-z 0-9 - _, found '/'"}, "2"],
            ["error", {"type": "invalidArguments", "description": "the 'accountId' argument must be an Id string"}, "3"]
        ]),
    );
}

#[test]
fn copy_resolves_both_accounts() {
    check_error(
        json!(["Todo/copy", {"fromAccountId": "nope", "accountId": "y", "create": {}}, "0"]),
        "fromAccountNotFound",
    );
    check_error(
        json!(["Todo/copy", {"fromAccountId": "c1", "accountId": "y", "create": {}}, "0"]),
        "fromAccountNotSupportedByMethod",
    );
    check_error(
        json!(["Todo/copy", {"fromAccountId": "x", "accountId": "nope", "create": {}}, "0"]),
        "accountNotFound",
    );
    check_error(
        json!(["Todo/copy", {"fromAccountId": "x", "accountId": "ro", "create": {}}, "0"]),
        "accountReadOnly",
    );
    check_error(
        json!(["Todo/copy", {"fromAccountId": "x", "create": {}}, "0"]),
        "invalidArguments",
    );
    check_error(
        json!(["Todo/copy", {"accountId": "y", "create": {}}, "0"]),
        "invalidArguments",
    );
}

#[test]
fn max_objects_in_get() {
    let ids = |n: usize| json!((0..n).map(|i| format!("i{i}")).collect::<Vec<_>>());
    let ten = json!(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]);
    check(
        json!([
            ["Todo/get", {"accountId": "x", "ids": ids(11)}, "0"],
            ["Todo/get", {"accountId": "x", "ids": ten, "properties": ["title"]}, "1"]
        ]),
        json!([
            ["error", {"type": "requestTooLarge", "description": "11 ids requested, more than maxObjectsInGet (10)"}, "0"],
            ["Todo/get", {"accountId": "x", "state": "10324", "list": [
                {"id": "a", "title": "Practise Piano"},
                {"id": "b", "title": "Watch Daft Punk music video"},
                {"id": "c", "title": "Buy milk"}
            ], "notFound": ["d", "e", "f", "g", "h", "i", "j"]}, "1"]
        ]),
    );
}

/// The count includes ids arriving through a result reference.
#[test]
fn max_objects_in_get_counts_referenced_ids() {
    let ids: Vec<String> = (0..11).map(|i| format!("i{i}")).collect();
    let responses = crate::fixture::run(
        &engine(),
        json!([
            ["Core/echo", {"ids": ids}, "0"],
            ["Todo/get", {"accountId": "x", "#ids": {"resultOf": "0", "name": "Core/echo", "path": "/ids"}}, "1"]
        ]),
    );
    assert_eq!(responses[1][1]["type"], "requestTooLarge");
}

#[test]
fn max_objects_in_set() {
    let creates: serde_json::Map<String, serde_json::Value> = (0..5)
        .map(|i| (format!("k{i}"), json!({"id": "a"})))
        .collect();
    let copies: serde_json::Map<String, serde_json::Value> = (0..9)
        .map(|i| (format!("k{i}"), json!({"id": "a"})))
        .collect();
    check(
        json!([
            ["Todo/set", {"accountId": "x", "create": creates, "update": {"a": {}, "b": {}}, "destroy": ["c", "d"]}, "0"],
            ["Todo/copy", {"fromAccountId": "x", "accountId": "y", "create": copies}, "1"]
        ]),
        json!([
            ["error", {"type": "requestTooLarge", "description": "9 objects to create, update or destroy, more than maxObjectsInSet (8)"}, "0"],
            ["error", {"type": "requestTooLarge", "description": "9 objects to create, update or destroy, more than maxObjectsInSet (8)"}, "1"]
        ]),
    );
}

#[test]
fn method_spec_inference() {
    let spec = MethodSpec::infer("Email/copy", MAIL_CAPABILITY);
    assert_eq!(
        (spec.kind, spec.accounts, spec.mutates),
        (MethodKind::Copy, AccountArguments::AccountAndFrom, true)
    );
    let spec = MethodSpec::infer("Email/import", MAIL_CAPABILITY);
    assert_eq!(
        (spec.kind, spec.accounts, spec.mutates),
        (MethodKind::Other, AccountArguments::Account, true)
    );
    let spec = MethodSpec::infer("Mailbox/queryChanges", MAIL_CAPABILITY);
    assert_eq!((spec.kind, spec.mutates), (MethodKind::QueryChanges, false));
    let spec = MethodSpec::infer("SearchSnippet/get", MAIL_CAPABILITY)
        .without_account()
        .mutating(false);
    assert_eq!(
        (spec.kind, spec.accounts),
        (MethodKind::Get, AccountArguments::None)
    );
}

/// A future that is pending once before it answers, as a handler awaiting storage would be.
struct PendingOnce(bool);

impl Future for PendingOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Records the order calls reach it and what account it was handed.
struct Recorder(Mutex<Vec<String>>);

impl Handler<Directory> for Recorder {
    fn call<'a>(&'a self, call: MethodCall<'a, Directory>) -> HandlerFuture<'a> {
        Box::pin(async move {
            PendingOnce(false).await;
            let account = call.account()?.id.to_string();
            self.0
                .lock()
                .unwrap()
                .push(format!("{}:{account}", call.call_id));
            Ok(MethodOutput::new(call.name.clone(), serde_json::Map::new()))
        })
    }
}

#[test]
fn async_handlers_run_in_order_with_their_account() {
    let recorder: &'static Recorder = Box::leak(Box::new(Recorder(Mutex::new(Vec::new()))));
    struct ByRef(&'static Recorder);
    impl Handler<Directory> for ByRef {
        fn call<'a>(&'a self, call: MethodCall<'a, Directory>) -> HandlerFuture<'a> {
            self.0.call(call)
        }
    }
    let mut engine = Engine::new(Directory, capabilities());
    engine.register("Rec/get", MAIL_CAPABILITY, ByRef(recorder));
    let body = json!({
        "using": [CORE_CAPABILITY, MAIL_CAPABILITY],
        "methodCalls": [
            ["Rec/get", {"accountId": "x"}, "0"],
            ["Rec/get", {"accountId": "nope"}, "1"],
            ["Rec/get", {"accountId": "A1"}, "2"]
        ]
    });
    let response = run_body(&engine, "john", body.to_string().as_bytes());
    assert_eq!(response["methodResponses"][1][1]["type"], "accountNotFound");
    assert_eq!(*recorder.0.lock().unwrap(), ["0:x", "2:A1"]);
}

#[test]
fn engine_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let engine = engine();
    let user = "john".to_owned();
    let future = engine.handle(&user, b"{}", "s");
    assert_send(&future);
    drop(block_on(future));
}

#[test]
fn users_see_only_their_accounts() {
    let body = json!({"using": [CORE_CAPABILITY, "urn:example:todo"], "methodCalls": [["Todo/get", {"accountId": "x", "ids": []}, "0"]]});
    let as_jane = run_body(&engine(), "jane", body.to_string().as_bytes());
    assert_eq!(as_jane["methodResponses"][0][1]["type"], "accountNotFound");
    let as_john = run_body(&engine(), "john", body.to_string().as_bytes());
    assert_eq!(as_john["methodResponses"][0][0], "Todo/get");
}

#[test]
fn engine_reports_what_it_advertises() {
    let engine = engine();
    assert!(engine.capabilities().supports(CORE_CAPABILITY));
    assert!(engine.capabilities().supports(MAIL_CAPABILITY));
    assert!(!engine.capabilities().supports("urn:nope"));
    assert_eq!(engine.limits().max_objects_in_get.get(), 10);
    assert!(format!("{engine:?}").contains("Core/echo"));
}
