//! A whole gateway over HTTP for end-to-end tests: a private Dovecot, a configuration with one
//! user whose IMAP account lives there, the gateway with mail sync on, and a small JSON client.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gateway::config::Config;
use gateway::http::Gateway;
use serde_json::{Value, json};
use state::{Durability, Store, StoreConfig};

use crate::imap_support::{PASSWORD, PrivateDovecot, USER};

pub const JMAP_USER: &str = "jmapuser";
pub const JMAP_PASSWORD: &str = "jmapuser-pw";
pub const USING: [&str; 3] = [
    "urn:ietf:params:jmap:core",
    "urn:ietf:params:jmap:mail",
    "urn:ietf:params:jmap:submission",
];

/// A gateway serving one IMAP account of a private Dovecot; stops when dropped.
pub struct MailGateway {
    pub dovecot: PrivateDovecot,
    pub base: String,
    pub gateway: Gateway,
    pub http: reqwest::Client,
    pub account_id: String,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl MailGateway {
    /// Starts Dovecot, seeds nothing, starts the gateway and waits for its first sync round.
    pub async fn start() -> MailGateway {
        Self::start_with(|_| {}).await
    }

    /// As `start`, with `seed` run against the fresh Dovecot before the gateway starts.
    pub async fn start_with(seed: impl FnOnce(&PrivateDovecot)) -> MailGateway {
        Self::start_full(seed, "").await
    }

    /// As `start_with`, the user also having the accounts in `more_accounts` (TOML
    /// `[[users.accounts]]` tables), which are waited for too.
    pub async fn start_full(
        seed: impl FnOnce(&PrivateDovecot),
        more_accounts: &str,
    ) -> MailGateway {
        Self::start_configured(seed, |_| more_accounts.to_owned()).await
    }

    /// As `start_full`, the TOML that follows the IMAP account's table made from the started
    /// Dovecot (its ports): e.g. a `[users.accounts.sieve]` table.
    pub async fn start_configured(
        seed: impl FnOnce(&PrivateDovecot),
        more: impl FnOnce(&PrivateDovecot) -> String,
    ) -> MailGateway {
        Self::start_on(PrivateDovecot::start(), seed, more).await
    }

    /// As `start_configured`, on a Dovecot the caller started (with its own settings).
    pub async fn start_on(
        dovecot: PrivateDovecot,
        seed: impl FnOnce(&PrivateDovecot),
        more: impl FnOnce(&PrivateDovecot) -> String,
    ) -> MailGateway {
        seed(&dovecot);
        let more_accounts = more(&dovecot);
        let dir = tempfile::tempdir().unwrap();
        // Bound first, so the Session's absolute URLs carry the port clients really reach.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let text = format!(
            "[server]\npublic_url = \"http://{addr}\"\n\
             [[users]]\nname = \"{JMAP_USER}\"\npassword = \"{JMAP_PASSWORD}\"\n\
             [[users.accounts]]\nkind = \"imap\"\nname = \"Test IMAP\"\nhost = \"127.0.0.1\"\n\
             port = {}\ntls = \"none\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
             address = \"{USER}@example.test\"\n{more_accounts}",
            dovecot.imap_port
        );
        let config = Config::parse(&text).unwrap();
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
                // Passthrough servers in the configuration log users in, as with `serve`.
                let logins: Vec<_> = config
                    .passthrough
                    .iter()
                    .map(|p| Arc::new(gateway::passthrough::UpstreamLogin::new(p).unwrap()))
                    .collect();
                let mut builder = Gateway::builder(config)
                    .store(Arc::new(store))
                    .mail_sync(true);
                for login in logins {
                    builder = builder.passthrough(login);
                }
                let gateway = builder.build().await.unwrap();
                let server = gateway.clone().serve(listener).unwrap();
                tx.send((server.handle(), gateway)).unwrap();
                server.await.unwrap();
            });
        });
        let (handle, gateway) = rx.recv().unwrap();
        let mut g = MailGateway {
            dovecot,
            base: format!("http://{addr}"),
            gateway,
            http: client(),
            account_id: String::new(),
            handle,
            thread: Some(thread),
            _dir: dir,
        };
        let session = g.session().await;
        g.account_id = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
            .as_str()
            .expect("the session names a primary mail account")
            .to_owned();
        let accounts: Vec<String> = session["accounts"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        for a in accounts {
            g.wait_synced(&a).await;
        }
        g
    }

    /// As `start_with`, the IMAP account also submitting mail (EmailSubmission) over plain
    /// SMTP to 127.0.0.1:`smtp_port`, logging in with the IMAP credentials.
    pub async fn start_with_smtp(
        seed: impl FnOnce(&PrivateDovecot),
        smtp_port: u16,
    ) -> MailGateway {
        let smtp = format!(
            "[users.accounts.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n"
        );
        Self::start_full(seed, &smtp).await
    }

    /// The JMAP ids of the user's accounts, in configuration order.
    pub fn account_ids(&self) -> Vec<String> {
        let user = self.gateway.registry().user(JMAP_USER).unwrap();
        user.accounts
            .iter()
            .map(|a| a.id.as_str().to_owned())
            .collect()
    }

    /// Waits until an account's driver has finished at least one full round.
    pub async fn wait_synced(&self, account_id: &str) {
        let mail = self.gateway.mail().expect("mail sync is on");
        let id = state::AccountId(account_id[1..].parse().unwrap());
        let live = mail.get(id).expect("the account runs");
        let mut progress = live.sync.watch_progress();
        // A first round covers every folder: the shared SOGo account collects the folders of
        // every EAS test of the run (about a second each), so allow for many.
        let deadline = Instant::now() + Duration::from_secs(300);
        while progress.borrow_and_update().rounds == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no sync round of {account_id} within 300 s"
            );
            let _ = tokio::time::timeout(left, progress.changed()).await;
        }
    }

    pub async fn session(&self) -> Value {
        let r = self
            .http
            .get(format!("{}/jmap/session", self.base))
            .basic_auth(JMAP_USER, Some(JMAP_PASSWORD))
            .send()
            .await
            .unwrap();
        json_body(r).await
    }

    /// Runs `methodCalls` (each call's accountId defaults to the first mail account).
    pub async fn api(&self, calls: Value) -> Vec<Value> {
        self.api_in(&self.account_id.clone(), calls).await
    }

    /// Runs `methodCalls`, each call's accountId defaulting to `account`.
    pub async fn api_in(&self, account: &str, mut calls: Value) -> Vec<Value> {
        for call in calls.as_array_mut().unwrap() {
            if let Some(args) = call[1].as_object_mut() {
                args.entry("accountId").or_insert(json!(account));
            }
        }
        let response = self
            .http
            .post(format!("{}/jmap/api", self.base))
            .basic_auth(JMAP_USER, Some(JMAP_PASSWORD))
            .header("content-type", "application/json")
            .body(json!({"using": USING, "methodCalls": calls}).to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = json_body(response).await;
        assert!(status.is_success(), "{status}: {body}");
        body["methodResponses"].as_array().unwrap().clone()
    }

    /// One call; panics unless the response is that method's (not an error).
    pub async fn call(&self, method: &str, args: Value) -> Value {
        self.call_in(&self.account_id.clone(), method, args).await
    }

    /// One call in `account`; panics unless the response is that method's.
    pub async fn call_in(&self, account: &str, method: &str, args: Value) -> Value {
        let r = self.api_in(account, json!([[method, args, "0"]])).await;
        assert_eq!(r[0][0], json!(method), "{method} failed: {}", r[0]);
        r[0][1].clone()
    }

    /// The Mailbox/get list.
    pub async fn mailboxes(&self) -> Vec<Value> {
        self.mailboxes_in(&self.account_id.clone()).await
    }

    pub async fn mailboxes_in(&self, account: &str) -> Vec<Value> {
        self.call_in(account, "Mailbox/get", json!({"ids": null}))
            .await["list"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The id of the mailbox with `role` (or name, when no mailbox has that role).
    pub async fn mailbox_id(&self, role_or_name: &str) -> String {
        self.mailbox_id_in(&self.account_id.clone(), role_or_name)
            .await
    }

    pub async fn mailbox_id_in(&self, account: &str, role_or_name: &str) -> String {
        let list = self.mailboxes_in(account).await;
        list.iter()
            .find(|m| m["role"] == json!(role_or_name))
            .or_else(|| list.iter().find(|m| m["name"] == json!(role_or_name)))
            .and_then(|m| m["id"].as_str())
            .unwrap_or_else(|| panic!("no mailbox {role_or_name} in {list:?}"))
            .to_owned()
    }

    /// Polls `check` (up to `secs` seconds) until it returns Some.
    pub async fn eventually<T, F, Fut>(&self, secs: u64, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "condition not met within {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An EventSource stream of the gateway (`types=*`, no pings), read line by line.
pub struct EventStream {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::TcpStream>>,
}

impl EventStream {
    pub async fn open(g: &MailGateway) -> EventStream {
        use base64::Engine as _;
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let addr = g.base.trim_start_matches("http://").to_owned();
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{JMAP_USER}:{JMAP_PASSWORD}"));
        tcp.write_all(
            format!(
                "GET /jmap/eventsource?types=*&closeafter=no&ping=0 HTTP/1.1\r\nHost: {addr}\r\n\
                 Authorization: Basic {auth}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut lines = tokio::io::BufReader::new(tcp).lines();
        let status = lines.next_line().await.unwrap().unwrap_or_default();
        assert!(status.contains(" 200"), "EventSource answered {status}");
        EventStream { lines }
    }

    /// The next StateChange whose `changed` satisfies `pred`, within `secs` seconds.
    pub async fn next_state_change(&mut self, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no matching StateChange within {secs} s"))
                .unwrap()
                .expect("the stream stays open");
            // Chunked encoding puts size lines between events; only data lines matter.
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            if v["@type"] == json!("StateChange") && pred(&v["changed"]) {
                return v;
            }
        }
    }
}

impl Drop for MailGateway {
    fn drop(&mut self) {
        if let Some(mail) = self.gateway.mail() {
            mail.shutdown();
        }
        let handle = self.handle.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(handle.stop(false));
        })
        .join()
        .ok();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The store closes here, on the test's thread, not on an HTTP worker while the test
        // process exits (which RocksDB can abort).
        self.gateway
            .wait_released(std::time::Duration::from_secs(10));
    }
}

/// An HTTP client that trusts the system roots and follows no redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(upstream::tls::client_config(None).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A response body as JSON (Null when it is not JSON).
pub async fn json_body(r: reqwest::Response) -> Value {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}
