//! Result references (RFC 8620 §3.7) and creation-id references (§3.3, §5.3) through the engine.

use serde_json::json;

use crate::fixture::{check, check_with, engine_with};

/// §3.7, the simple example: Foo/changes then Foo/get with `#ids` from `/created`. The unscripted
/// Foo/get echoes its arguments, showing them "as though the arguments were" the RFC's.
#[test]
fn simple_example() {
    let engine = engine_with(json!({
        "t0": {
            "accountId": "A1",
            "oldState": "abcdef",
            "newState": "123456",
            "hasMoreChanges": false,
            "created": [ "f1", "f4" ],
            "updated": [],
            "destroyed": []
        }
    }));
    check_with(
        &engine,
        json!([[ "Foo/changes", {
            "accountId": "A1",
            "sinceState": "abcdef"
        }, "t0" ],
        [ "Foo/get", {
            "accountId": "A1",
            "#ids": {
                "resultOf": "t0",
                "name": "Foo/changes",
                "path": "/created"
            }
        }, "t1" ]]),
        json!([[ "Foo/changes", {
            "accountId": "A1",
            "oldState": "abcdef",
            "newState": "123456",
            "hasMoreChanges": false,
            "created": [ "f1", "f4" ],
            "updated": [],
            "destroyed": []
        }, "t0" ],
        [ "Foo/get", {
            "accountId": "A1",
            "ids": [ "f1", "f4" ]
        }, "t1" ]]),
    );
}

/// §3.7, the mail example in full: `/ids`, `/list/*/threadId` and the flattening
/// `/list/*/emailIds`.
#[test]
fn wildcard_example() {
    let engine = engine_with(json!({
        "t0": {
            "accountId": "A1",
            "queryState": "abcdefg",
            "canCalculateChanges": true,
            "position": 0,
            "total": 101,
            "ids": [ "msg1023", "msg223", "msg110", "msg93", "msg91",
                "msg38", "msg36", "msg33", "msg11", "msg1" ]
        },
        "t1": {
            "accountId": "A1",
            "state": "123456",
            "list": [
                { "id": "msg1023", "threadId": "trd194" },
                { "id": "msg223", "threadId": "trd114" }
            ],
            "notFound": []
        },
        "t2": {
            "accountId": "A1",
            "state": "123456",
            "list": [
                { "id": "trd194", "emailIds": [ "msg1020", "msg1021", "msg1023" ] },
                { "id": "trd114", "emailIds": [ "msg201", "msg223" ] }
            ],
            "notFound": []
        }
    }));
    let responses = crate::fixture::run(
        &engine,
        json!([[ "Email/query", {
          "accountId": "A1",
          "filter": { "inMailbox": "id_of_inbox" },
          "sort": [{ "property": "receivedAt", "isAscending": false }],
          "collapseThreads": true,
          "position": 0,
          "limit": 10,
          "calculateTotal": true
        }, "t0" ],
        [ "Email/get", {
          "accountId": "A1",
          "#ids": {
            "resultOf": "t0",
            "name": "Email/query",
            "path": "/ids"
          },
          "properties": [ "threadId" ]
        }, "t1" ],
        [ "Thread/get", {
          "accountId": "A1",
          "#ids": {
            "resultOf": "t1",
            "name": "Email/get",
            "path": "/list/*/threadId"
          }
        }, "t2" ],
        [ "Email/get", {
          "accountId": "A1",
          "#ids": {
            "resultOf": "t2",
            "name": "Thread/get",
            "path": "/list/*/emailIds"
          },
          "properties": [ "from", "receivedAt", "subject" ]
        }, "t3" ]]),
    );
    assert_eq!(responses[1][0], "Email/get");
    assert_eq!(responses[2][0], "Thread/get");
    // The last call ran as though its arguments were these:
    assert_eq!(
        responses[3],
        json!([ "Email/get", {
            "accountId": "A1",
            "ids": [ "msg1020", "msg1021", "msg1023", "msg201", "msg223" ],
            "properties": [ "from", "receivedAt", "subject" ]
        }, "t3" ])
    );
}

/// An unscripted Thread/get after the scripted Email/get shows `/list/*/threadId` on its own.
#[test]
fn wildcard_of_scalars() {
    let engine = engine_with(json!({
        "t1": { "list": [ { "id": "m1", "threadId": "T1" }, { "id": "m2", "threadId": "T2" } ] }
    }));
    check_with(
        &engine,
        json!([
            ["Email/get", {"accountId": "A1"}, "t1"],
            ["Thread/get", {"accountId": "A1", "#ids": {"resultOf": "t1", "name": "Email/get", "path": "/list/*/threadId"}}, "t2"]
        ]),
        json!([
            ["Email/get", { "list": [ { "id": "m1", "threadId": "T1" }, { "id": "m2", "threadId": "T2" } ] }, "t1"],
            ["Thread/get", {"accountId": "A1", "ids": ["T1", "T2"]}, "t2"]
        ]),
    );
}

fn reference_error(reference: serde_json::Value, description: &str) {
    let engine = engine_with(json!({
        "t0": { "ids": ["a", "b"], "list": [{"id": "a"}], "n": 5 }
    }));
    let responses = crate::fixture::run(
        &engine,
        json!([
            ["Email/query", {"accountId": "A1"}, "t0"],
            ["Email/get", {"accountId": "A1", "#ids": reference}, "t1"]
        ]),
    );
    assert_eq!(
        responses[1],
        json!(["error", {"type": "invalidResultReference", "description": description}, "t1"])
    );
}

#[test]
fn invalid_result_references() {
    let cases = [
        (
            json!({"resultOf": "nope", "name": "Email/query", "path": "/ids"}),
            "no earlier response has method call id \"nope\"",
        ),
        (
            json!({"resultOf": "t0", "name": "Email/get", "path": "/ids"}),
            "the response to \"t0\" is \"Email/query\", not \"Email/get\"",
        ),
        (
            json!({"resultOf": "t0", "name": "Email/query", "path": "/missing"}),
            "(root): no member \"missing\"",
        ),
        (
            json!({"resultOf": "t0", "name": "Email/query", "path": "ids"}),
            "a JSON Pointer must be empty or start with '/': \"ids\"",
        ),
        (
            json!({"resultOf": "t0", "name": "Email/query", "path": "/ids/2"}),
            "/ids: \"2\" is not an index into an array of 2",
        ),
        (
            json!({"resultOf": "t0", "name": "Email/query", "path": "/ids/01"}),
            "/ids: \"01\" is not an index into an array of 2",
        ),
        (
            json!({"resultOf": "t0", "name": "Email/query", "path": "/ids/-"}),
            "/ids: \"-\" is not an index into an array of 2",
        ),
        (
            json!({"resultOf": "t0", "name": "Email/query", "path": "/n/x"}),
            "/n: cannot descend into a number with \"x\"",
        ),
        (
            json!({"resultOf": "t0", "name": "Email/query", "path": "/list/*/nope"}),
            "/list/*: no member \"nope\"",
        ),
        (
            json!({"resultOf": "t0", "name": "Email/query", "path": "/ids/~2"}),
            "'~' must be followed by '0' or '1' in \"/ids/~2\"",
        ),
        (
            json!({"resultOf": "t0", "name": "Email/query"}),
            "'#ids' is not a ResultReference: missing field `path`",
        ),
        (
            json!({"resultOf": "t0", "name": "Email/query", "path": "/ids", "extra": 1}),
            "'#ids' is not a ResultReference: unknown field `extra`, expected one of `resultOf`, `name`, `path`",
        ),
        (
            json!("t0/ids"),
            "'#ids' is not a ResultReference: invalid type: string \"t0/ids\", expected struct ResultReference",
        ),
    ];
    for (reference, description) in cases {
        reference_error(reference, description);
    }
}

/// A later call's reference can only see earlier responses, never its own or later ones.
#[test]
fn reference_to_a_later_call_fails() {
    let responses = crate::fixture::run(
        &crate::fixture::engine(),
        json!([
            ["Email/get", {"accountId": "A1", "#ids": {"resultOf": "t1", "name": "Email/query", "path": "/ids"}}, "t0"],
            ["Email/query", {"accountId": "A1"}, "t1"]
        ]),
    );
    assert_eq!(responses[0][1]["type"], "invalidResultReference");
    assert_eq!(responses[1][0], "Email/query");
}

/// The first response with the call id is used, even when a call answered twice.
#[test]
fn first_response_of_the_call_is_used() {
    let engine = engine_with(json!({
        "c": [["Foo/copy", {"n": 1}], ["Foo/set", {"n": 2}]]
    }));
    let responses = crate::fixture::run(
        &engine,
        json!([
            ["Foo/copy", {"accountId": "x", "fromAccountId": "y"}, "c"],
            ["Core/echo", {"#a": {"resultOf": "c", "name": "Foo/copy", "path": "/n"}}, "e1"],
            ["Core/echo", {"#a": {"resultOf": "c", "name": "Foo/set", "path": "/n"}}, "e2"]
        ]),
    );
    assert_eq!(responses[2], json!(["Core/echo", {"a": 1}, "e1"]));
    assert_eq!(responses[3][1]["type"], "invalidResultReference");
}

/// A reference to an error response resolves against the error's arguments only by name
/// "error"; a path into it works like any other.
#[test]
fn error_responses_can_be_referenced_by_name_error() {
    check(
        json!([
            ["Nope/get", {}, "0"],
            ["Core/echo", {"#t": {"resultOf": "0", "name": "error", "path": "/type"}}, "1"]
        ]),
        json!([
            ["error", {"type": "unknownMethod", "description": "no method \"Nope/get\""}, "0"],
            ["Core/echo", {"t": "unknownMethod"}, "1"]
        ]),
    );
}

#[test]
fn plain_and_referenced_argument_together_is_invalid_arguments() {
    check(
        json!([
            ["Core/echo", {"ids": [1]}, "0"],
            ["Core/echo", {"ids": [], "#ids": {"resultOf": "0", "name": "Core/echo", "path": "/ids"}}, "1"]
        ]),
        json!([
            ["Core/echo", {"ids": [1]}, "0"],
            ["error", {"type": "invalidArguments", "description": "both 'ids' and '#ids' are given"}, "1"]
        ]),
    );
}

#[test]
fn empty_path_is_the_whole_arguments_object() {
    check(
        json!([
            ["Core/echo", {"a": 1}, "0"],
            ["Core/echo", {"#all": {"resultOf": "0", "name": "Core/echo", "path": ""}}, "1"]
        ]),
        json!([
            ["Core/echo", {"a": 1}, "0"],
            ["Core/echo", {"all": {"a": 1}}, "1"]
        ]),
    );
}

#[test]
fn references_resolve_before_account_resolution() {
    check(
        json!([
            ["Core/echo", {"acc": "nope"}, "0"],
            ["Todo/get", {"#accountId": {"resultOf": "0", "name": "Core/echo", "path": "/acc"}, "ids": []}, "1"]
        ]),
        json!([
            ["Core/echo", {"acc": "nope"}, "0"],
            ["error", {"type": "accountNotFound"}, "1"]
        ]),
    );
}

/// Creation ids: from the request's createdIds, from a /set earlier in the request, and from
/// the same /set call (RFC 8620 §5.8's sub-Todo example), all resolve; the response's
/// createdIds holds the initial ones plus the new.
#[test]
fn creation_id_references_across_calls() {
    check(
        json!({
            "using": ["urn:ietf:params:jmap:core", "urn:example:todo"],
            "createdIds": {"given": "a"},
            "methodCalls": [
                ["Todo/set", {
                    "accountId": "x",
                    "create": { "k15": { "title": "Warm up with scales" } },
                    "update": { "a": { "subTodoIds": [ "#k15" ] } }
                }, "0"],
                ["Todo/get", {"accountId": "x", "ids": ["#k15", "#given", "#k15"], "properties": ["title", "subTodoIds"]}, "1"],
                ["Todo/set", {"accountId": "x", "update": {"#k15": {"title": "Scales"}}, "destroy": ["#nothing"]}, "2"],
                ["Todo/get", {"accountId": "x", "ids": ["#unknown"]}, "3"]
            ]
        }),
        json!({
            "methodResponses": [
                ["Todo/set", {
                    "accountId": "x",
                    "oldState": "10324",
                    "newState": "10326",
                    "created": { "k15": { "id": "T1", "keywords": {}, "subTodoIds": null, "neuralNetworkTimeEstimation": 900 } },
                    "updated": { "a": { "neuralNetworkTimeEstimation": 5400 } }
                }, "0"],
                ["Todo/get", {
                    "accountId": "x",
                    "state": "10326",
                    "list": [
                        {"id": "T1", "title": "Warm up with scales", "subTodoIds": null},
                        {"id": "a", "title": "Practise Piano", "subTodoIds": ["T1"]}
                    ],
                    "notFound": []
                }, "1"],
                ["Todo/set", {
                    "accountId": "x",
                    "oldState": "10326",
                    "newState": "10327",
                    "updated": { "T1": null },
                    "notDestroyed": { "#nothing": { "type": "notFound" } }
                }, "2"],
                ["error", {"type": "invalidArguments", "description": "no record was created as #unknown"}, "3"]
            ],
            "createdIds": {"given": "a", "k15": "T1"},
            "sessionState": "75128aab4b1b"
        }),
    );
}

/// A handler's `created` map is harvested from /set, /copy and /import responses only.
#[test]
fn created_ids_harvested_from_creating_responses() {
    let engine = engine_with(json!({
        "0": { "created": { "k1": { "id": "M1" }, "bad": { "noId": true } } },
        "1": { "created": { "k2": { "id": "M2" } } },
        "2": [["Email/import", { "created": { "k3": { "id": "M3" } } }]]
    }));
    let response = crate::fixture::run(
        &engine,
        json!({
            "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:example:todo"],
            "createdIds": {},
            "methodCalls": [
                ["Foo/set", {"accountId": "x"}, "0"],
                ["Foo/get", {"accountId": "x"}, "1"],
                ["Email/import", {"accountId": "x"}, "2"]
            ]
        }),
    );
    assert_eq!(response["createdIds"], json!({"k1": "M1", "k3": "M3"}));
}

/// A handler may report creation ids its responses do not show.
#[test]
fn created_ids_reported_by_a_handler() {
    use jmap_engine::{FnHandler, Id, MethodCall};
    let mut engine = crate::fixture::engine();
    engine.register(
        "Blob/upload",
        "urn:ietf:params:jmap:mail",
        FnHandler(|call: MethodCall<'_, crate::fixture::Directory>| {
            Ok(call
                .reply(serde_json::Map::new())
                .with_created_id(Id::new("up1").unwrap(), Id::new("B9").unwrap()))
        }),
    );
    let response = crate::fixture::run(
        &engine,
        json!({
            "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:example:todo"],
            "createdIds": {},
            "methodCalls": [
                ["Blob/upload", {"accountId": "A1"}, "0"],
                ["Todo/get", {"accountId": "x", "ids": ["#up1"]}, "1"]
            ]
        }),
    );
    assert_eq!(response["createdIds"], json!({"up1": "B9"}));
    assert_eq!(response["methodResponses"][1][1]["notFound"], json!(["B9"]));
}
