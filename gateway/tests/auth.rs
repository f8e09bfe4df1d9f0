//! Authentication: Basic, bearer tokens and what must fail, rate limiting, CORS.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::{CORE, TestServer, client};

fn echo() -> String {
    json!({"using": [CORE], "methodCalls": [["Core/echo", {}, "0"]]}).to_string()
}

async fn with_auth(s: &TestServer, authorization: &str) -> reqwest::Response {
    client()
        .post(s.url("/jmap/api"))
        .header("Authorization", authorization)
        .header("Content-Type", "application/json")
        .body(echo())
        .send()
        .await
        .unwrap()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn token(s: &TestServer) -> Value {
    let r = client()
        .post(s.url("/jmap/token"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    crate::support::json(r).await.unwrap()
}

#[tokio::test]
async fn basic_and_bearer() {
    let s = TestServer::start();
    assert_eq!(
        with_auth(&s, &basic("alice", "alice-pw")).await.status(),
        200
    );
    let r = with_auth(&s, &basic("alice", "wrong")).await;
    assert_eq!(r.status(), 401);
    let challenges: Vec<&str> = r
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic ")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer ")),
        "{challenges:?}"
    );
    assert_eq!(with_auth(&s, &basic("mallory", "x")).await.status(), 401);
    let missing = client().get(s.url("/jmap/session")).send().await.unwrap();
    assert_eq!(missing.status(), 401);

    let t = token(&s).await;
    assert_eq!(t["tokenType"], "Bearer");
    assert_eq!(t["expiresIn"], 3600);
    let access = t["accessToken"].as_str().unwrap();
    assert_eq!(
        with_auth(&s, &format!("Bearer {access}")).await.status(),
        200
    );
    // A token cannot buy another token.
    let r = client()
        .post(s.url("/jmap/token"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let s = TestServer::start();
    let good = token(&s).await["accessToken"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |exp: u64| {
        json!({"sub": "alice", "iat": now, "exp": exp, "iss": "jmap-gateway"}).to_string()
    };
    let none_header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", b64.encode(claims(now + 600)));
    let sign = |secret: &str, claims: String| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::from_str::<Value>(&claims).unwrap(),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let secret = "test-token-secret-of-enough-length";
    let wrong_key = sign("another-secret", claims(now + 600));
    let expired = sign(secret, claims(now - 10));
    let other_issuer = sign(
        secret,
        json!({"sub": "alice", "iat": now, "exp": now + 600, "iss": "someone"}).to_string(),
    );
    let unknown_user = sign(
        secret,
        json!({"sub": "mallory", "iat": now, "exp": now + 600, "iss": "jmap-gateway"}).to_string(),
    );
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(
            json!({"sub": "bob", "iat": now, "exp": now + 600, "iss": "jmap-gateway"}).to_string()
        ),
        parts[2]
    );
    assert_eq!(
        with_auth(&s, &format!("Bearer {}", sign(secret, claims(now + 600))))
            .await
            .status(),
        200
    );
    for (what, t) in [
        ("alg none", alg_none),
        ("wrong key", wrong_key),
        ("expired", expired),
        ("other issuer", other_issuer),
        ("unknown user", unknown_user),
        ("tampered", tampered),
        ("garbage", "abc".to_owned()),
    ] {
        let r = with_auth(&s, &format!("Bearer {t}")).await;
        assert_eq!(r.status(), 401, "{what}");
        let challenge = r
            .headers()
            .get_all("www-authenticate")
            .iter()
            .any(|v| v.to_str().unwrap().contains("invalid_token"));
        assert!(challenge, "{what}");
    }
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_user() {
    let s = TestServer::start();
    for _ in 0..gateway::auth::MAX_FAILURES {
        assert_eq!(with_auth(&s, &basic("alice", "guess")).await.status(), 401);
    }
    let r = with_auth(&s, &basic("alice", "guess")).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Even the right password waits out the window; other users are unaffected.
    assert_eq!(
        with_auth(&s, &basic("alice", "alice-pw")).await.status(),
        429
    );
    assert_eq!(with_auth(&s, &basic("bob", "bob-pw")).await.status(), 200);
}

#[tokio::test]
async fn cors_for_configured_origins_only() {
    let s = TestServer::start();
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, s.url("/jmap/api"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
    };
    let r = preflight("https://app.example").await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Authorization")
    );
    let r = preflight("https://evil.example").await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    let r = client()
        .post(s.url("/jmap/api"))
        .basic_auth("alice", Some("alice-pw"))
        .header("Origin", "https://app.example")
        .header("Content-Type", "application/json")
        .body(echo())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}
