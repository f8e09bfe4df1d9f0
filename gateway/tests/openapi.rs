//! openapi/openapi.yaml against the server: the same routes both ways, and real responses
//! valid against the document's schemas (a small JSON Schema subset: type, required,
//! properties, additionalProperties, items, prefixItems, enum, const, minimum, $ref, pattern
//! of the Id form).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::{CORE, TestServer, client};

fn document() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
                .map(move |m| (m.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    let registered: BTreeSet<(String, String)> =
        gateway::http::registered_routes().into_iter().collect();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "routes not in openapi.yaml: {undocumented:?}"
    );
    assert!(
        missing.is_empty(),
        "documented routes the server lacks: {missing:?}"
    );
}

/// Validates `value` against `schema`; the errors, with their JSON paths.
fn validate(doc: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = r
            .trim_start_matches("#/")
            .split('/')
            .fold(doc, |node, key| &node[key]);
        assert!(!target.is_null(), "dangling $ref {r}");
        return validate(doc, target, value, path, errors);
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{path}: expected {t}, got {value}"));
            return;
        }
    }
    if let Some(c) = schema.get("const")
        && c != value
    {
        errors.push(format!("{path}: expected {c}, got {value}"));
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(value)
    {
        errors.push(format!("{path}: {value} not in {e:?}"));
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && value.as_f64().is_some_and(|v| v < min)
    {
        errors.push(format!("{path}: {value} < {min}"));
    }
    if schema.get("pattern").is_some()
        && let Some(s) = value.as_str()
    {
        // The only pattern in the document is the Id form.
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            errors.push(format!("{path}: {s:?} is not an Id"));
        }
    }
    if let Some(object) = value.as_object() {
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = key.as_str().unwrap();
            if !object.contains_key(key) {
                errors.push(format!("{path}: missing {key}"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, v) in object {
            let sub = format!("{path}/{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(s) => validate(doc, s, v, &sub, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{sub}: not allowed")),
                    Some(s @ Value::Object(_)) => validate(doc, s, v, &sub, errors),
                    _ => {}
                },
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(prefix) = schema.get("prefixItems").and_then(Value::as_array) {
            for (i, (s, v)) in prefix.iter().zip(items).enumerate() {
                validate(doc, s, v, &format!("{path}/{i}"), errors);
            }
        }
        if let Some(s) = schema.get("items") {
            for (i, v) in items.iter().enumerate() {
                validate(doc, s, v, &format!("{path}/{i}"), errors);
            }
        }
    }
}

/// The schema the document gives for `method path` answering `status` as `content_type`.
fn response_schema<'a>(
    doc: &'a Value,
    method: &str,
    path: &str,
    status: u16,
    content_type: &str,
) -> &'a Value {
    let mut response = &doc["paths"][path][method]["responses"][status.to_string()];
    if let Some(r) = response.get("$ref").and_then(Value::as_str) {
        response = r
            .trim_start_matches("#/")
            .split('/')
            .fold(doc, |node, key| &node[key]);
    }
    let schema = &response["content"][content_type]["schema"];
    assert!(
        !schema.is_null(),
        "no schema for {method} {path} {status} {content_type}"
    );
    schema
}

async fn check(
    s: &TestServer,
    doc: &Value,
    method: &str,
    path: &str,
    request: reqwest::RequestBuilder,
) {
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .unwrap();
    let body: Value = crate::support::json(r).await.unwrap();
    let schema = response_schema(doc, method, path, status, &content_type);
    let mut errors = Vec::new();
    validate(doc, schema, &body, "", &mut errors);
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?}\n{body}"
    );
    let _ = s;
}

#[tokio::test]
async fn real_responses_match_the_schemas() {
    let s = TestServer::start();
    let doc = document();
    let a = s.account("alice", 0);
    let c = client();
    let alice = |r: reqwest::RequestBuilder| r.basic_auth("alice", Some("alice-pw"));
    check(
        &s,
        &doc,
        "get",
        "/.well-known/jmap",
        alice(c.get(s.url("/.well-known/jmap"))),
    )
    .await;
    check(
        &s,
        &doc,
        "get",
        "/jmap/session",
        alice(c.get(s.url("/jmap/session"))),
    )
    .await;
    check(
        &s,
        &doc,
        "get",
        "/jmap/session",
        c.get(s.url("/jmap/session")),
    )
    .await;
    let echo = json!({"using": [CORE], "methodCalls": [["Core/echo", {"x": 1}, "0"], ["Nope/x", {}, "1"]]});
    check(
        &s,
        &doc,
        "post",
        "/jmap/api",
        alice(c.post(s.url("/jmap/api")))
            .header("Content-Type", "application/json")
            .body(echo.to_string()),
    )
    .await;
    check(
        &s,
        &doc,
        "post",
        "/jmap/api",
        alice(c.post(s.url("/jmap/api")))
            .header("Content-Type", "application/json")
            .body("[]"),
    )
    .await;
    check(
        &s,
        &doc,
        "post",
        "/jmap/upload/{accountId}/",
        alice(c.post(s.url(&format!("/jmap/upload/{a}/"))))
            .header("Content-Type", "text/plain")
            .body("hi"),
    )
    .await;
    check(
        &s,
        &doc,
        "post",
        "/jmap/upload/{accountId}/",
        alice(c.post(s.url("/jmap/upload/a999/"))).body("hi"),
    )
    .await;
    check(
        &s,
        &doc,
        "get",
        "/jmap/download/{accountId}/{blobId}/{name}",
        alice(c.get(s.url(&format!("/jmap/download/{a}/Gnone/x")))),
    )
    .await;
    check(
        &s,
        &doc,
        "post",
        "/jmap/token",
        alice(c.post(s.url("/jmap/token"))),
    )
    .await;
    check(
        &s,
        &doc,
        "post",
        "/jmap/token",
        c.post(s.url("/jmap/token")),
    )
    .await;
    check(
        &s,
        &doc,
        "get",
        "/jmap/eventsource",
        alice(c.get(s.url("/jmap/eventsource?types=*&closeafter=maybe&ping=0"))),
    )
    .await;
    check(&s, &doc, "get", "/jmap/ws", alice(c.get(s.url("/jmap/ws")))).await;

    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = c.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
    }
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "jmap_http_requests_total{route=\"/jmap/api\",method=\"POST\",status=\"200\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("jmap_http_request_duration_seconds_bucket{route=\"/jmap/api\",le=\"+Inf\"}")
    );
    assert!(metrics.contains("jmap_method_calls_total{method=\"Core/echo\"} 1"));
    assert!(metrics.contains("jmap_push_streams 0"));
    s.gateway.metrics().set_sync_lag(&a, 2.5);
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(&format!("jmap_sync_lag_seconds{{account=\"{a}\"}} 2.5")));
}
