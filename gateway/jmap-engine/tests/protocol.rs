//! Request/Response/Invocation (RFC 8620 §3.2–§3.4) and the request-level errors (§3.6.1).

use jmap_engine::{
    CORE_CAPABILITY, Invocation, MAIL_CAPABILITY, PROBLEM_CONTENT_TYPE, Request, RequestError,
    RequestLimit, Response, parse_ijson,
};
use serde_json::{Value, json};

use crate::fixture::{SESSION_STATE, check_with, engine, engine_with, run_body};

/// RFC 8620 §3.3.1.
fn example_request() -> Value {
    json!({
      "using": [ "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail" ],
      "methodCalls": [
        [ "method1", {
          "arg1": "arg1data",
          "arg2": "arg2data"
        }, "c1" ],
        [ "method2", {
          "arg1": "arg1data"
        }, "c2" ],
        [ "method3", {}, "c3" ]
      ]
    })
}

#[test]
fn example_request_parses_and_round_trips() {
    let request = Request::from_json(example_request()).unwrap();
    assert_eq!(request.using, [CORE_CAPABILITY, MAIL_CAPABILITY]);
    assert_eq!(request.method_calls.len(), 3);
    assert_eq!(request.method_calls[0].name, "method1");
    assert_eq!(request.method_calls[0].arguments["arg2"], "arg2data");
    assert_eq!(request.method_calls[2].call_id, "c3");
    assert_eq!(request.created_ids, None);
    assert_eq!(serde_json::to_value(&request).unwrap(), example_request());
}

/// RFC 8620 §3.4.1, produced by running §3.3.1's request: method1 answers once, method2 twice
/// (same call id), method3 does not exist.
#[test]
fn example_response_from_example_request() {
    let engine = engine_with(json!({
        "c1": { "arg1": 3, "arg2": "foo" },
        "c2": [
            [ "method2", { "isBlah": true } ],
            [ "anotherResponseFromMethod2", { "data": 10, "yetmoredata": "Hello" } ]
        ]
    }));
    check_with(
        &engine,
        example_request(),
        json!({
          "methodResponses": [
            [ "method1", {
              "arg1": 3,
              "arg2": "foo"
            }, "c1" ],
            [ "method2", {
              "isBlah": true
            }, "c2" ],
            [ "anotherResponseFromMethod2", {
              "data": 10,
              "yetmoredata": "Hello"
            }, "c2"],
            [ "error", {
              "type":"unknownMethod",
              "description": "no method \"method3\""
            }, "c3" ]
          ],
          "sessionState": "75128aab4b1b"
        }),
    );
}

#[test]
fn response_serializes_like_the_rfc() {
    let response = Response {
        method_responses: vec![Invocation::new(
            "method1",
            json!({"arg1": 3}).as_object().cloned().unwrap(),
            "c1",
        )],
        created_ids: None,
        session_state: SESSION_STATE.into(),
    };
    assert_eq!(
        response.to_json(),
        json!({"methodResponses": [["method1", {"arg1": 3}, "c1"]], "sessionState": "75128aab4b1b"})
    );
}

#[test]
fn invocation_is_a_three_element_array() {
    let invocation: Invocation =
        serde_json::from_value(json!(["Core/echo", {"a": 1}, "x"])).unwrap();
    assert_eq!(invocation.name, "Core/echo");
    assert_eq!(invocation.call_id, "x");
    assert_eq!(
        serde_json::to_value(&invocation).unwrap(),
        json!(["Core/echo", {"a": 1}, "x"])
    );
    for bad in [
        json!(["Core/echo", {}]),
        json!(["Core/echo", {}, "x", "y"]),
        json!([1, {}, "x"]),
        json!(["Core/echo", [], "x"]),
        json!(["Core/echo", {}, 7]),
        json!({"name": "Core/echo"}),
    ] {
        assert!(
            serde_json::from_value::<Invocation>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn unknown_request_properties_are_ignored() {
    let mut request = example_request();
    request["futureExtension"] = json!({"anything": true});
    assert!(Request::from_json(request).is_ok());
}

/// The problem JSON a raw body yields.
fn problem(body: &[u8]) -> Value {
    run_body(&engine(), "john", body)
}

#[track_caller]
fn check_problem(body: &[u8], expected_type: &str, detail_contains: &str) {
    let problem = problem(body);
    assert_eq!(problem["type"], expected_type, "{problem}");
    assert_eq!(problem["status"], 400, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(detail_contains),
        "{detail:?} lacks {detail_contains:?}"
    );
}

#[test]
fn not_json() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "EOF"),
        (b"{", "EOF"),
        (b"{\"using\": [] ,}", "trailing comma"),
        (b"using=core", "expected value"),
        (b"\xff\xfe{}", "expected value"),
        (b"{\"using\": \"\xc3\x28\"}", "invalid unicode"),
        (b"{\"a\": \"\\ud800\"}", "line 1"),
        // I-JSON: member names must be unique.
        (
            b"{\"using\": [], \"using\": [], \"methodCalls\": []}",
            "duplicate member name \"using\"",
        ),
        (
            b"{\"using\": [], \"methodCalls\": [[\"Core/echo\", {\"a\": 1, \"a\": 2}, \"c\"]]}",
            "duplicate",
        ),
        (b"{} {}", "trailing characters"),
    ];
    for (body, detail) in cases {
        check_problem(body, "urn:ietf:params:jmap:error:notJSON", detail);
    }
}

/// Deep nesting is refused as notJSON, not a stack overflow.
#[test]
fn deeply_nested_json_is_not_json() {
    let body = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    check_problem(
        body.as_bytes(),
        "urn:ietf:params:jmap:error:notJSON",
        "recursion limit exceeded",
    );
}

#[test]
fn not_json_for_wrong_content_type() {
    let error = RequestError::wrong_content_type("text/plain");
    assert_eq!(
        error.to_json()["type"],
        "urn:ietf:params:jmap:error:notJSON"
    );
    assert_eq!(error.status(), 400);
}

#[test]
fn not_request() {
    let cases = [
        (json!([]), "must be a JSON object"),
        (json!("hello"), "must be a JSON object"),
        (json!({"methodCalls": []}), "'using' property is missing"),
        (json!({"using": []}), "'methodCalls' property is missing"),
        (
            json!({"using": "urn:ietf:params:jmap:core", "methodCalls": []}),
            "'using' must be an array",
        ),
        (
            json!({"using": [1], "methodCalls": []}),
            "'using' must hold strings",
        ),
        (
            json!({"using": [], "methodCalls": {}}),
            "'methodCalls' must be an array",
        ),
        (
            json!({"using": [], "methodCalls": [["Core/echo", {}]]}),
            "methodCalls[0]: an Invocation has 3 elements, not 2",
        ),
        (
            json!({"using": [], "methodCalls": [["Core/echo", {}, "a"], "x"]}),
            "methodCalls[1]: an Invocation must be a 3-element array",
        ),
        (
            json!({"using": [], "methodCalls": [[null, {}, "a"]]}),
            "method name",
        ),
        (
            json!({"using": [], "methodCalls": [["Core/echo", null, "a"]]}),
            "arguments of \"Core/echo\" must be an object",
        ),
        (
            json!({"using": [], "methodCalls": [["Core/echo", {}, 1]]}),
            "method call id",
        ),
        (
            json!({"using": [], "methodCalls": [], "createdIds": []}),
            "'createdIds' must map Id to Id",
        ),
        (
            json!({"using": [], "methodCalls": [], "createdIds": {"k1": "bad id!"}}),
            "'createdIds' must map Id to Id",
        ),
        (
            json!({"using": [], "methodCalls": [], "createdIds": {"k1": 5}}),
            "'createdIds' must map Id to Id",
        ),
    ];
    for (body, detail) in cases {
        check_problem(
            body.to_string().as_bytes(),
            "urn:ietf:params:jmap:error:notRequest",
            detail,
        );
    }
}

/// RFC 8620 §3.6.1, first example, word for word.
#[test]
fn unknown_capability() {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "https://example.com/apis/foobar"],
        "methodCalls": []
    });
    assert_eq!(
        problem(body.to_string().as_bytes()),
        json!({
          "type": "urn:ietf:params:jmap:error:unknownCapability",
          "status": 400,
          "detail": "The Request object used capability 'https://example.com/apis/foobar', which is not supported by this server."
        })
    );
}

/// A standard capability the server lacks is ignored (clients send every one they know); its
/// methods are unknown.
#[test]
fn unimplemented_ietf_capability_is_ignored() {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:contacts"],
        "methodCalls": [["AddressBook/get", {"accountId": "a1"}, "0"]]
    });
    let v = run_body(&engine(), "john", body.to_string().as_bytes());
    assert_eq!(v["methodResponses"][0][0], "error", "{v}");
    assert_eq!(v["methodResponses"][0][1]["type"], "unknownMethod");
}

#[test]
fn limit_max_size_request() {
    let body = format!(
        "{{\"using\": [], \"methodCalls\": [], \"padding\": \"{}\"}}",
        "x".repeat(20_001)
    );
    let problem = problem(body.as_bytes());
    assert_eq!(problem["type"], "urn:ietf:params:jmap:error:limit");
    assert_eq!(problem["limit"], "maxSizeRequest");
    assert_eq!(problem["status"], 400);
    // Bigger than the limit but not valid JSON: the size is checked first.
    let problem = self::problem("[".repeat(20_001).as_bytes());
    assert_eq!(problem["limit"], "maxSizeRequest");
}

#[test]
fn limit_max_calls_in_request() {
    let calls: Vec<Value> = (0..17)
        .map(|i| json!(["Core/echo", {}, format!("c{i}")]))
        .collect();
    let body = json!({"using": [CORE_CAPABILITY], "methodCalls": calls});
    let problem = problem(body.to_string().as_bytes());
    assert_eq!(problem["type"], "urn:ietf:params:jmap:error:limit");
    assert_eq!(problem["limit"], "maxCallsInRequest");
    assert_eq!(
        problem["detail"],
        "The request has 17 method calls, more than the 16 allowed."
    );
    // Exactly at the limit is fine.
    let calls: Vec<Value> = (0..16)
        .map(|i| json!(["Core/echo", {}, format!("c{i}")]))
        .collect();
    let body = json!({"using": [CORE_CAPABILITY], "methodCalls": calls});
    assert_eq!(
        run_body(&engine(), "john", body.to_string().as_bytes())["methodResponses"]
            .as_array()
            .unwrap()
            .len(),
        16
    );
}

/// RFC 8620 §3.6.1, second example.
#[test]
fn limit_problem_shape() {
    let error = RequestError::Limit {
        limit: RequestLimit::MaxSizeRequest,
        detail: "The request is larger than the server is willing to process.".into(),
    };
    assert_eq!(
        error.to_json(),
        json!({
          "type": "urn:ietf:params:jmap:error:limit",
          "limit": "maxSizeRequest",
          "status": 400,
          "detail": "The request is larger than the server is willing to process."
        })
    );
    let concurrent = RequestError::too_many_concurrent(4).to_json();
    assert_eq!(concurrent["limit"], "maxConcurrentRequests");
    assert_eq!(PROBLEM_CONTENT_TYPE, "application/problem+json");
}

#[test]
fn execute_checks_a_prebuilt_request_too() {
    let request = Request {
        using: vec!["urn:unknown".into()],
        method_calls: vec![],
        created_ids: None,
    };
    let result = crate::fixture::block_on(engine().execute(&"john".to_owned(), request, "s"));
    assert_eq!(
        result,
        Err(RequestError::UnknownCapability("urn:unknown".into()))
    );
}

#[test]
fn ijson_parser_keeps_values() {
    let value = parse_ijson(br#"{"a": [1, -2, 2.5, true, null, "s"], "b": {"c": {}}}"#).unwrap();
    assert_eq!(
        value,
        json!({"a": [1, -2, 2.5, true, null, "s"], "b": {"c": {}}})
    );
    assert!(parse_ijson(br#"{"a": {"b": 1, "b": 1}}"#).is_err());
}

/// RFC 8620 §4.1.
#[test]
fn core_echo() {
    crate::fixture::check(
        json!([[ "Core/echo", {
          "hello": true,
          "high": 5
        }, "b3ff" ]]),
        json!([[ "Core/echo", {
          "hello": true,
          "high": 5
        }, "b3ff" ]]),
    );
}

#[test]
fn created_ids_echoed_only_when_given() {
    let without = json!({"using": [CORE_CAPABILITY], "methodCalls": [["Core/echo", {}, "0"]]});
    let response = run_body(&engine(), "john", without.to_string().as_bytes());
    assert!(response.get("createdIds").is_none());
    let with = json!({"using": [CORE_CAPABILITY], "methodCalls": [], "createdIds": {"k1": "abc"}});
    let response = run_body(&engine(), "john", with.to_string().as_bytes());
    assert_eq!(
        response,
        json!({"methodResponses": [], "createdIds": {"k1": "abc"}, "sessionState": SESSION_STATE})
    );
}
