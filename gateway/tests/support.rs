//! A gateway on 127.0.0.1:0 with a temporary store, two users and a small test data type.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc;

use gateway::config::Config;
use gateway::http::Gateway;
use gateway::methods::StoredType;
use jmap_engine::Limits;
use serde_json::{Value, json};
use state::{DataType, Durability, Store, StoreConfig};

/// The test-only data type: JSON notes kept in the store's Identity slot.
pub const NOTE_CAPABILITY: &str = "urn:x-jmap-gateway:test:note";
pub const CORE: &str = "urn:ietf:params:jmap:core";

pub const CONFIG: &str = r#"
[auth]
token_secret = "test-token-secret-of-enough-length"
cors_origins = ["https://app.example"]

[push]
allow_http = true
allowed_hosts = ["127.0.0.1"]
retry_initial_ms = 50
retry_attempts = 3

[[users]]
name = "alice"
password = "alice-pw"
[[users.accounts]]
kind = "imap"
name = "Alice IMAP"
host = "imap.example.com"
username = "alice"
password = "x"
[[users.accounts]]
kind = "eas"
name = "Alice EAS"
url = "https://eas.example.com/Microsoft-Server-ActiveSync"
username = "alice"
password = "y"

[[users]]
name = "bob"
password = "bob-pw"
[[users.accounts]]
kind = "imap"
name = "Bob IMAP"
host = "imap.example.com"
username = "bob"
password = "z"
"#;

pub fn note_type() -> StoredType {
    StoredType {
        name: "Note".into(),
        capability: NOTE_CAPABILITY.into(),
        data_type: DataType::Identity,
        properties: vec!["title".into(), "body".into(), "tags".into()],
    }
}

/// A running gateway; stops when dropped.
pub struct TestServer {
    pub base: String,
    pub gateway: Gateway,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(CONFIG, Limits::default())
    }

    pub fn start_with(config: &str, limits: Limits) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(config).unwrap();
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        let store = Store::open(
            dir.path().join("store"),
            StoreConfig {
                durability: Durability::Buffered,
                ..StoreConfig::default()
            },
        )
        .unwrap();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let gateway = Gateway::builder(config)
                    .store(Arc::new(store))
                    .stored_type(note_type())
                    .limits(limits)
                    .account_capabilities(BTreeMap::from([(NOTE_CAPABILITY.to_owned(), json!({}))]))
                    .build()
                    .await
                    .unwrap();
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let server = gateway.clone().serve(listener).unwrap();
                tx.send((addr, server.handle(), gateway)).unwrap();
                server.await.unwrap();
            });
        });
        let (addr, handle, gateway) = rx.recv().unwrap();
        TestServer {
            base: format!("http://{addr}"),
            gateway,
            handle,
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// The JMAP id of a user's n-th account.
    pub fn account(&self, user: &str, n: usize) -> String {
        let user = self.gateway.registry().user(user).unwrap();
        user.accounts[n].id.as_str().to_owned()
    }

    /// POSTs a JMAP request as `user` (password `<user>-pw`); (status, JSON body).
    pub async fn api(&self, user: &str, body: &Value) -> (u16, Value) {
        let r = client()
            .post(self.url("/jmap/api"))
            .basic_auth(user, Some(format!("{user}-pw")))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, crate::support::json(r).await.unwrap_or(Value::Null))
    }

    /// The `methodResponses` of a successful request.
    pub async fn calls(&self, user: &str, using: &[&str], calls: Value) -> Vec<Value> {
        let (status, body) = self
            .api(user, &json!({"using": using, "methodCalls": calls}))
            .await;
        assert_eq!(status, 200, "{body}");
        body["methodResponses"].as_array().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        let stop = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(handle.stop(false));
        });
        let _ = stop.join();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The store closes here, on the test's thread, not on an HTTP worker while the test
        // process exits (which RocksDB can abort).
        self.gateway
            .wait_released(std::time::Duration::from_secs(10));
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(upstream::tls::client_config(None).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A response body as JSON (the workspace's reqwest has no `json` feature).
pub async fn json(r: reqwest::Response) -> Result<Value, serde_json::Error> {
    serde_json::from_slice(&r.bytes().await.unwrap_or_default())
}
