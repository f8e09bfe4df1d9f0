//! Push over real sockets: EventSource, WebSocket (RFC 8887) and PushSubscription delivery to a
//! local HTTP receiver.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use state::{Commit, DataType, ObjectId};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{CORE, NOTE_CAPABILITY, TestServer};

const ALICE: &str = "YWxpY2U6YWxpY2UtcHc="; // alice:alice-pw
const WAIT: Duration = Duration::from_secs(10);

/// Commits a note into alice's `n`-th account, as an adapter would; returns the new state.
async fn commit_note(s: &TestServer, n: usize, id: &str) -> String {
    let user = s.gateway.registry().user("alice").unwrap();
    let mut c = Commit::new(user.accounts[n].store_id);
    c.put(
        DataType::Identity,
        ObjectId::new(id).unwrap(),
        json!({"title": id}).to_string().into_bytes(),
    );
    let done = s.gateway.store().commit(c).await.unwrap();
    done.state(DataType::Identity).unwrap().to_string()
}

/// Reads one SSE event (lines up to a blank line), skipping comments.
async fn next_event(r: &mut BufReader<TcpStream>) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, r.read_line(&mut line))
            .await
            .expect("event in time")
            .unwrap();
        assert!(n > 0, "stream ended");
        let line = line.trim_end_matches(['\r', '\n']);
        // Chunked framing: skip chunk-size lines (hex only) and empty chunk trailers.
        if line.starts_with(':')
            || (!line.is_empty()
                && line.chars().all(|c| c.is_ascii_hexdigit())
                && !line.contains(':'))
        {
            continue;
        }
        if line.is_empty() {
            if fields.is_empty() {
                continue;
            }
            return fields;
        }
        if let Some((k, v)) = line.split_once(':') {
            fields.push((k.to_owned(), v.trim_start().to_owned()));
        }
    }
}

async fn open_eventsource(s: &TestServer, query: &str, auth: &str) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(s.addr()).await.unwrap();
    let auth = if auth.is_empty() {
        String::new()
    } else {
        format!("Authorization: Basic {auth}\r\n")
    };
    stream
        .write_all(format!("GET /jmap/eventsource?{query} HTTP/1.1\r\nHost: x\r\n{auth}Accept: text/event-stream\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut r = BufReader::new(stream);
    let mut status = String::new();
    r.read_line(&mut status).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    loop {
        let mut h = String::new();
        r.read_line(&mut h).await.unwrap();
        if h == "\r\n" {
            break;
        }
        if h.to_ascii_lowercase().starts_with("content-type") {
            assert!(h.contains("text/event-stream"), "{h}");
        }
    }
    // The opening comment proves the subscription is in place.
    let mut opening = String::new();
    while !opening.contains(": jmap push") {
        let mut line = String::new();
        tokio::time::timeout(WAIT, r.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        opening.push_str(&line);
    }
    r
}

#[tokio::test]
async fn eventsource_receives_state_change_after_commit() {
    let s = TestServer::start();
    let a1 = s.account("alice", 1);
    let mut r = open_eventsource(&s, "types=*&closeafter=no&ping=0", ALICE).await;
    // A burst of commits coalesces; the final state always arrives.
    let mut last = String::new();
    for i in 0..5 {
        last = commit_note(&s, 1, &format!("n{i}")).await;
    }
    let mut seen = String::new();
    while seen != last {
        let event = next_event(&mut r).await;
        assert_eq!(event[0], ("event".to_owned(), "state".to_owned()));
        assert_eq!(event[1].0, "id");
        let data: Value = serde_json::from_str(&event[2].1).unwrap();
        assert_eq!(data["@type"], "StateChange");
        seen = data["changed"][&a1]["Note"].as_str().unwrap().to_owned();
    }
}

#[tokio::test]
async fn eventsource_pings_filters_and_closes_after_state() {
    let s = TestServer::start();
    let token = format!("access_token={}", {
        let r = crate::support::client()
            .post(s.url("/jmap/token"))
            .basic_auth("alice", Some("alice-pw"))
            .send()
            .await
            .unwrap();
        crate::support::json(r).await.unwrap()["accessToken"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    // ping: the data names the interval used.
    let mut r = open_eventsource(
        &s,
        &format!("types=Note&closeafter=state&ping=1&{token}"),
        "",
    )
    .await;
    let ping = next_event(&mut r).await;
    assert_eq!(ping[0].1, "ping");
    assert_eq!(
        serde_json::from_str::<Value>(&ping[1].1).unwrap(),
        json!({"interval": 1})
    );
    commit_note(&s, 0, "x").await;
    let state = next_event(&mut r).await;
    assert_eq!(state[0].1, "state");
    // closeafter=state: the response ends after the state event.
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, r.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&rest).contains("event:"));

    // A type filter that matches nothing sends nothing but pings.
    let mut r = open_eventsource(&s, "types=Email&closeafter=no&ping=1", ALICE).await;
    commit_note(&s, 0, "y").await;
    assert_eq!(next_event(&mut r).await[0].1, "ping");
    assert_eq!(next_event(&mut r).await[0].1, "ping");
}

#[tokio::test]
async fn eventsource_requires_auth() {
    let s = TestServer::start();
    let r = crate::support::client()
        .get(s.url("/jmap/eventsource?types=*&closeafter=no&ping=0&access_token=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn websocket(
    s: &TestServer,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let mut request = format!("ws://{}/jmap/ws", s.addr())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Basic {ALICE}").parse().unwrap());
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "jmap".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "jmap");
    ws
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("message in time")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

#[tokio::test]
async fn websocket_requests_and_push() {
    let s = TestServer::start();
    let a0 = s.account("alice", 0);
    let mut ws = websocket(&s).await;
    ws.send(Message::text(
        json!({"@type": "Request", "id": "r1", "using": [CORE],
               "methodCalls": [["Core/echo", {"hello": true}, "c"]]})
        .to_string(),
    ))
    .await
    .unwrap();
    let response = next_json(&mut ws).await;
    assert_eq!(response["@type"], "Response");
    assert_eq!(response["requestId"], "r1");
    assert_eq!(
        response["methodResponses"],
        json!([["Core/echo", {"hello": true}, "c"]])
    );
    assert!(response["sessionState"].is_string());

    ws.send(Message::text(
        json!({"@type": "Request", "id": "r2", "using": ["urn:nope"], "methodCalls": []})
            .to_string(),
    ))
    .await
    .unwrap();
    let error = next_json(&mut ws).await;
    assert_eq!(error["@type"], "RequestError");
    assert_eq!(error["requestId"], "r2");
    assert_eq!(
        error["type"],
        "urn:ietf:params:jmap:error:unknownCapability"
    );
    ws.send(Message::text("{nope")).await.unwrap();
    assert_eq!(
        next_json(&mut ws).await["type"],
        "urn:ietf:params:jmap:error:notJSON"
    );

    ws.send(Message::text(
        json!({"@type": "WebSocketPushEnable", "dataTypes": ["Note"]}).to_string(),
    ))
    .await
    .unwrap();
    // Enabling is processed in order: a request after it proves it is in place.
    ws.send(Message::text(
        json!({"@type": "Request", "using": [CORE], "methodCalls": []}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["@type"], "Response");
    let state = commit_note(&s, 0, "w1").await;
    let push = next_json(&mut ws).await;
    assert_eq!(push["@type"], "StateChange");
    assert_eq!(push["changed"][&a0]["Note"], json!(state));
    let push_state = push["pushState"].as_str().unwrap().to_owned();

    // Reconnect with the pushState after missing a change: it arrives at once.
    ws.send(Message::text(
        json!({"@type": "WebSocketPushDisable"}).to_string(),
    ))
    .await
    .unwrap();
    drop(ws);
    let missed = commit_note(&s, 0, "w2").await;
    let mut ws = websocket(&s).await;
    ws.send(Message::text(
        json!({"@type": "WebSocketPushEnable", "dataTypes": null, "pushState": push_state})
            .to_string(),
    ))
    .await
    .unwrap();
    let push = next_json(&mut ws).await;
    assert_eq!(push["changed"][&a0]["Note"], json!(missed));
}

/// A tiny HTTP receiver: collects the bodies POSTed to it.
async fn receiver() -> (String, tokio::sync::mpsc::Receiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push?device=1", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    let mut ttl = false;
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).await.unwrap();
                        if h == "\r\n" {
                            break;
                        }
                        let lower = h.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        ttl |= lower.starts_with("ttl:");
                    }
                    let mut body = vec![0; length];
                    r.read_exact(&mut body).await.unwrap();
                    assert!(ttl, "RFC 8620 §7.2: the POST must have a TTL header");
                    let _ = tx.send(serde_json::from_slice(&body).unwrap()).await;
                    r.get_mut()
                        .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                        .await
                        .unwrap();
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn push_subscription_verification_and_delivery() {
    let s = TestServer::start();
    let a0 = s.account("alice", 0);
    let (url, mut received) = receiver().await;
    let r = s
        .calls(
            "alice",
            &[CORE],
            json!([["PushSubscription/set", {"create": {"4f29": {
                "deviceClientId": "a889-ffea-910", "url": url, "types": null,
                "expires": "2999-01-01T00:00:00Z"
            }}}, "0"]]),
        )
        .await;
    let created = &r[0][1]["created"]["4f29"];
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["keys"], Value::Null);
    // Expiry is clamped to 7 days.
    assert!(created["expires"].as_str().unwrap() < "2100");
    let verification = tokio::time::timeout(WAIT, received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verification["@type"], "PushVerification");
    assert_eq!(verification["pushSubscriptionId"], json!(id));
    let code = verification["verificationCode"]
        .as_str()
        .unwrap()
        .to_owned();

    // Nothing is delivered before verification.
    commit_note(&s, 0, "before").await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), received.recv())
            .await
            .is_err()
    );

    let r = s
        .calls(
            "alice",
            &[CORE],
            json!([
                ["PushSubscription/set", {"update": {(id.clone()): {"verificationCode": "wrong"}}}, "0"],
                ["PushSubscription/set", {"update": {(id.clone()): {"verificationCode": code}}}, "1"],
                ["PushSubscription/get", {"ids": null}, "2"],
            ]),
        )
        .await;
    assert_eq!(r[0][1]["notUpdated"][&id]["type"], "invalidProperties");
    assert!(r[1][1]["updated"].get(&id).is_some(), "{}", r[1][1]);
    let listed = &r[2][1]["list"][0];
    assert_eq!(listed["verificationCode"], json!(code));
    assert!(listed.get("url").is_none());
    assert!(r[2][1].get("accountId").is_none());

    let state = commit_note(&s, 0, "after").await;
    let change = tokio::time::timeout(WAIT, received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(change["@type"], "StateChange");
    assert_eq!(change["changed"][&a0]["Note"], json!(state));

    // Bob sees none of Alice's subscriptions; destroying stops delivery.
    let r = s
        .calls(
            "bob",
            &[CORE],
            json!([["PushSubscription/get", {"ids": [id]}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["notFound"], json!([id]));
    let r = s
        .calls(
            "alice",
            &[CORE],
            json!([["PushSubscription/set", {"destroy": [id]}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["destroyed"], json!([id]));
    commit_note(&s, 0, "gone").await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), received.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn push_subscription_urls_follow_the_policy() {
    let s = TestServer::start();
    let r = s
        .calls(
            "alice",
            &[CORE],
            json!([["PushSubscription/set", {"create": {
                "a": {"deviceClientId": "d", "url": "http://10.0.0.1/push"},
                "b": {"deviceClientId": "d", "url": "ftp://example.com/"},
                "c": {"deviceClientId": "d", "url": "http://127.0.0.1:1/", "keys": {"p256dh": "x", "auth": "y"}},
            }}, "0"]]),
        )
        .await;
    for k in ["a", "b", "c"] {
        assert_eq!(r[0][1]["notCreated"][k]["type"], "invalidProperties", "{k}");
    }
    let _ = NOTE_CAPABILITY;
}
