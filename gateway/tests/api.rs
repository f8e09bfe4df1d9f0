//! POST /jmap/api over a real socket: RFC 8620 examples, every request-level and method-level
//! error the gateway can produce, result references, creation ids and limits.

use jmap_engine::Limits;
use jmap_engine::UnsignedInt;
use serde_json::{Value, json};

use crate::support::{CORE, NOTE_CAPABILITY, TestServer, client};

/// RFC 8620 §4.1's Core/echo example, word for word.
#[tokio::test]
async fn core_echo_example() {
    let s = TestServer::start();
    let (status, body) = s
        .api(
            "alice",
            &json!({"using": [CORE], "methodCalls": [["Core/echo", {"hello": true, "high": 5}, "b3ff"]]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["methodResponses"],
        json!([["Core/echo", {"hello": true, "high": 5}, "b3ff"]])
    );
    let session_state = s
        .gateway
        .registry()
        .user("alice")
        .unwrap()
        .session_state
        .clone();
    assert_eq!(body["sessionState"], json!(session_state));
}

async fn raw(s: &TestServer, content_type: Option<&str>, body: Vec<u8>) -> (u16, String, Value) {
    let mut r = client()
        .post(s.url("/jmap/api"))
        .basic_auth("alice", Some("alice-pw"))
        .body(body);
    if let Some(ct) = content_type {
        r = r.header("Content-Type", ct);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        ct,
        crate::support::json(r).await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn request_level_errors_are_problem_json() {
    let s = TestServer::start();
    let ok = br#"{"using":[],"methodCalls":[]}"#.to_vec();
    for (content_type, body, kind) in [
        (Some("text/plain"), ok.clone(), "notJSON"),
        (None, ok.clone(), "notJSON"),
        (Some("application/json"), b"{not json".to_vec(), "notJSON"),
        (
            Some("application/json"),
            br#"{"a":1,"a":2}"#.to_vec(),
            "notJSON",
        ),
        (Some("application/json"), b"[]".to_vec(), "notRequest"),
        (
            Some("application/json"),
            br#"{"using":[]}"#.to_vec(),
            "notRequest",
        ),
        (
            Some("application/json; charset=utf-8"),
            br#"{"using":["urn:example:nope"],"methodCalls":[]}"#.to_vec(),
            "unknownCapability",
        ),
    ] {
        let (status, ct, problem) = raw(&s, content_type, body).await;
        assert_eq!(status, 400, "{kind}: {problem}");
        assert_eq!(ct, "application/problem+json");
        assert_eq!(
            problem["type"],
            format!("urn:ietf:params:jmap:error:{kind}")
        );
        assert_eq!(problem["status"], 400);
    }
}

#[tokio::test]
async fn limits_are_enforced() {
    let limits = Limits {
        max_size_request: UnsignedInt::saturating(2000),
        max_calls_in_request: UnsignedInt::saturating(3),
        max_objects_in_get: UnsignedInt::saturating(2),
        max_objects_in_set: UnsignedInt::saturating(2),
        ..Limits::default()
    };
    let s = TestServer::start_with(crate::support::CONFIG, limits);
    let big =
        json!({"using": [CORE], "methodCalls": [["Core/echo", {"x": "y".repeat(3000)}, "0"]]});
    let (status, _, problem) =
        raw(&s, Some("application/json"), big.to_string().into_bytes()).await;
    assert_eq!(status, 400);
    assert_eq!(problem["type"], "urn:ietf:params:jmap:error:limit");
    assert_eq!(problem["limit"], "maxSizeRequest");

    let calls: Vec<Value> = (0..4)
        .map(|i| json!(["Core/echo", {}, i.to_string()]))
        .collect();
    let (status, problem) = s
        .api("alice", &json!({"using": [CORE], "methodCalls": calls}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem["limit"], "maxCallsInRequest");

    let a = s.account("alice", 0);
    let r = s
        .calls(
            "alice",
            &[CORE, NOTE_CAPABILITY],
            json!([
                ["Note/get", {"accountId": a, "ids": ["x", "y", "z"]}, "g"],
                ["Note/set", {"accountId": a, "create": {"a": {}, "b": {}, "c": {}}}, "s"],
            ]),
        )
        .await;
    assert_eq!(r[0][1]["type"], "requestTooLarge");
    assert_eq!(r[1][1]["type"], "requestTooLarge");
}

#[tokio::test]
async fn concurrent_requests_over_the_limit_are_refused() {
    let limits = Limits {
        max_concurrent_requests: UnsignedInt::saturating(1),
        ..Limits::default()
    };
    let s = TestServer::start_with(crate::support::CONFIG, limits);
    // A body that never finishes keeps the one slot taken. If a probe below held the slot
    // when it arrived, it was refused itself: then it is sent again on a new connection.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SLOW: &[u8] =
        b"POST /jmap/api HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWxpY2U6YWxpY2UtcHc=\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    let mut slow = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    slow.write_all(SLOW).await.unwrap();
    let mut problem = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut byte = [0u8; 1];
        let answered =
            tokio::time::timeout(std::time::Duration::from_millis(1), slow.read(&mut byte))
                .await
                .is_ok();
        if answered {
            slow = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
            slow.write_all(SLOW).await.unwrap();
            continue;
        }
        let (status, body) = s
            .api("alice", &json!({"using": [CORE], "methodCalls": []}))
            .await;
        if status == 400 {
            problem = body;
            break;
        }
    }
    assert_eq!(problem["limit"], "maxConcurrentRequests", "{problem}");
    // Another user has their own slots.
    let (status, _) = s
        .api("bob", &json!({"using": [CORE], "methodCalls": []}))
        .await;
    assert_eq!(status, 200);
    drop(slow);
}

#[tokio::test]
async fn method_level_errors() {
    let s = TestServer::start();
    let a = s.account("alice", 0);
    let bobs = s.account("bob", 0);
    let r = s
        .calls(
            "alice",
            &[CORE, NOTE_CAPABILITY],
            json!([
                ["Nope/get", {}, "unknown"],
                ["Note/get", {"accountId": a, "ids": null, "bogus": 1}, "args"],
                ["Note/get", {"accountId": bobs, "ids": null}, "foreign"],
                ["Note/get", {"accountId": "a999", "ids": null}, "missing"],
                ["Note/get", {"accountId": a, "#ids": {"resultOf": "nope", "name": "Note/query", "path": "/ids"}}, "ref"],
                ["Note/set", {"accountId": a, "ifInState": "00000000041", "create": {}}, "state"],
                ["Note/changes", {"accountId": a, "sinceState": "garbage"}, "changes"],
                ["PushSubscription/get", {"properties": ["url"]}, "forbidden"],
            ]),
        )
        .await;
    let types: Vec<&str> = r
        .iter()
        .map(|c| c[1]["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        [
            "unknownMethod",
            "invalidArguments",
            "accountNotFound",
            "accountNotFound",
            "invalidResultReference",
            "stateMismatch",
            "cannotCalculateChanges",
            "forbidden",
        ]
    );
    assert!(r[1][1]["description"].as_str().unwrap().contains("bogus"));
    // A method whose capability is not in `using` is unknownMethod.
    let r = s
        .calls(
            "alice",
            &[CORE],
            json!([["Note/get", {"accountId": a}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["type"], "unknownMethod");
}

#[tokio::test]
async fn account_without_the_capability_is_not_supported_by_method() {
    let s = TestServer::start();
    let a = s.account("alice", 0);
    let user = s.gateway.registry().user("alice").unwrap();
    s.gateway
        .registry()
        .set_account_capabilities(user.accounts[0].store_id, Default::default());
    let r = s
        .calls(
            "alice",
            &[CORE, NOTE_CAPABILITY],
            json!([["Note/get", {"accountId": a}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["type"], "accountNotSupportedByMethod");
}

/// Create, reference by creation id, get by result reference with `*`, changes, update,
/// destroy: the standard methods on a store-backed type.
#[tokio::test]
async fn standard_methods_with_references() {
    let s = TestServer::start();
    let a = s.account("alice", 0);
    let r = s
        .calls(
            "alice",
            &[CORE, NOTE_CAPABILITY],
            json!([
                ["Note/get", {"accountId": a, "ids": []}, "0"],
                ["Note/set", {"accountId": a, "create": {
                    "n1": {"title": "one", "tags": ["x"]},
                    "n2": {"title": "two"},
                    "bad": {"color": "red"}
                }}, "1"],
                ["Note/get", {"accountId": a, "ids": ["#n1", "#n2"], "properties": ["title"]}, "2"],
                ["Note/get", {"accountId": a,
                    "#ids": {"resultOf": "2", "name": "Note/get", "path": "/list/*/id"}}, "3"],
                ["Note/set", {"accountId": a, "update": {"#n1": {"tags": ["y"], "body": "b"}}, "destroy": ["#n2"]}, "4"],
            ]),
        )
        .await;
    let old_state = r[0][1]["state"].as_str().unwrap().to_owned();
    let created = &r[1][1]["created"];
    let id1 = created["n1"]["id"].as_str().unwrap().to_owned();
    let id2 = created["n2"]["id"].as_str().unwrap().to_owned();
    assert_eq!(r[1][1]["notCreated"]["bad"]["type"], "invalidProperties");
    assert_eq!(r[1][1]["notCreated"]["bad"]["properties"], json!(["color"]));
    assert_eq!(r[1][1]["oldState"], json!(old_state));
    assert_eq!(
        r[2][1]["list"],
        json!([{"id": id1, "title": "one"}, {"id": id2, "title": "two"}])
    );
    assert_eq!(r[3][1]["list"].as_array().unwrap().len(), 2);
    assert_eq!(r[4][1]["updated"], json!({ (id1.clone()): null }));
    assert_eq!(r[4][1]["destroyed"], json!([id2]));

    let r = s
        .calls(
            "alice",
            &[CORE, NOTE_CAPABILITY],
            json!([
                ["Note/changes", {"accountId": a, "sinceState": old_state}, "c"],
                ["Note/get", {"accountId": a, "#ids": {"resultOf": "c", "name": "Note/changes", "path": "/created"}}, "g"],
                ["Note/get", {"accountId": a, "#ids": {"resultOf": "c", "name": "Note/changes", "path": "/nope"}}, "bad"],
            ]),
        )
        .await;
    assert_eq!(r[0][1]["created"], json!([id1]));
    assert_eq!(r[0][1]["destroyed"], json!([]));
    assert_eq!(r[1][1]["list"][0]["tags"], json!(["y"]));
    assert_eq!(r[1][1]["list"][0]["body"], "b");
    assert_eq!(r[2][1]["type"], "invalidResultReference");
}

#[tokio::test]
async fn created_ids_are_echoed() {
    let s = TestServer::start();
    let a = s.account("alice", 0);
    let (status, body) = s
        .api(
            "alice",
            &json!({"using": [CORE, NOTE_CAPABILITY], "createdIds": {},
                "methodCalls": [["Note/set", {"accountId": a, "create": {"k": {"title": "t"}}}, "0"]]}),
        )
        .await;
    assert_eq!(status, 200);
    let id = body["methodResponses"][0][1]["created"]["k"]["id"].clone();
    assert_eq!(body["createdIds"], json!({"k": id}));
}
