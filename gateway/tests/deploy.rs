//! Deployment: HTTPS with a test CA (HTTP/2 by ALPN, certificate reload without dropping the
//! listener), absolute session URLs behind trusted and untrusted proxies, graceful shutdown of
//! push streams, restarts and backups.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use gateway::config::Config;
use gateway::http::{Gateway, ServeOptions};
use gateway::proxy::TrustedProxies;
use gateway::tls::CertFiles;
use jmap_engine::Limits;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber,
};
use serde_json::{Value, json};
use state::{Durability, Store, StoreConfig};

use crate::support::{CONFIG, CORE, NOTE_CAPABILITY, note_type};

/// Upper bound for anything that should happen at once; only there to turn a hang into a
/// failure, never a measure of speed.
const WAIT: Duration = Duration::from_secs(30);

/// A gateway serving a store at a given path; `stop` shuts it down gracefully.
struct Running {
    addr: SocketAddr,
    scheme: &'static str,
    gateway: Option<Gateway>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(config: &str, store_path: &Path, options: ServeOptions) -> Running {
        gateway::tls::install_crypto_provider();
        let config = Config::parse(config).unwrap();
        let store = Store::open(
            store_path,
            StoreConfig {
                durability: Durability::Buffered,
                ..StoreConfig::default()
            },
        )
        .unwrap();
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let gateway = Gateway::builder(config)
                    .store(Arc::new(store))
                    .stored_type(note_type())
                    .limits(Limits::default())
                    .account_capabilities(BTreeMap::from([(NOTE_CAPABILITY.to_owned(), json!({}))]))
                    .build()
                    .await
                    .unwrap();
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let server = gateway.clone().serve_with(listener, options).unwrap();
                tx.send((addr, server.handle(), gateway)).unwrap();
                server.await.unwrap();
            });
        });
        let (addr, handle, gateway) = rx.recv().unwrap();
        Running {
            addr,
            scheme,
            gateway: Some(gateway),
            handle,
            thread: Some(thread),
        }
    }

    fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    fn account(&self, user: &str) -> String {
        let user = self.gateway().registry().user(user).unwrap();
        user.accounts[0].id.as_str().to_owned()
    }

    /// What the binary does on SIGTERM: signal, drain gracefully, flush; then the store is
    /// closed (every handle dropped) so it can be opened again.
    fn stop(mut self) {
        let gateway = self.gateway.take().unwrap();
        gateway.begin_shutdown();
        let handle = self.handle.clone();
        std::thread::spawn(move || actix_web::rt::System::new().block_on(handle.stop(true)))
            .join()
            .unwrap();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        gateway.store().blocking().flush().unwrap();
        assert!(gateway.wait_released(Duration::from_secs(10)));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let handle = self.handle.clone();
            let _ = std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(handle.stop(false))
            })
            .join();
            let _ = t.join();
        }
        if let Some(g) = &self.gateway {
            g.wait_released(Duration::from_secs(10));
        }
    }
}

fn options() -> ServeOptions {
    ServeOptions {
        shutdown_timeout: Duration::from_secs(5),
        ..ServeOptions::default()
    }
}

/// A test CA and the leaf certificates it signs for 127.0.0.1 / localhost.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "jmap-gateway test CA");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, serial: u64) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("gateway leaf {serial}"));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

impl Leaf {
    /// Writes the pair the way a renewal tool does: to a temporary name, then renamed over.
    fn install(&self, cert: &Path, key: &Path) {
        for (path, text) in [(key, &self.key_pem), (cert, &self.cert_pem)] {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }
}

/// A verifying client trusting only Mozilla's roots plus the test CA, offering `alpn`.
fn tls_client_config(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut c = upstream::tls::client_config(Some(ca_pem.as_bytes())).unwrap();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    c
}

fn https_client(ca_pem: &str, alpn: &[&[u8]]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_client_config(ca_pem, alpn))
        .build()
        .unwrap()
}

fn plain_client() -> reqwest::Client {
    crate::support::client()
}

async fn json_of(r: reqwest::Response) -> Value {
    crate::support::json(r).await.unwrap()
}

async fn session(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Value {
    let mut req = client.get(url).basic_auth("alice", Some("alice-pw"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    json_of(r).await
}

async fn call(client: &reqwest::Client, s: &Running, calls: Value) -> Vec<Value> {
    let r = client
        .post(s.url("/jmap/api"))
        .basic_auth("alice", Some("alice-pw"))
        .header("Content-Type", "application/json")
        .body(json!({"using": [CORE, NOTE_CAPABILITY], "methodCalls": calls}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = json_of(r).await;
    body["methodResponses"].as_array().unwrap().clone()
}

/// The certificate a fresh TLS connection to `addr` is shown, and how long the handshake took.
async fn served_certificate(addr: SocketAddr, ca_pem: &str) -> (Vec<u8>, Duration) {
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(tls_client_config(ca_pem, &[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    let took = start.elapsed();
    let (_, conn) = tls.get_ref();
    (conn.peer_certificates().unwrap()[0].to_vec(), took)
}

struct TlsFixture {
    dir: tempfile::TempDir,
    ca: Ca,
    cert: PathBuf,
    key: PathBuf,
    leaf: Leaf,
}

fn tls_fixture() -> TlsFixture {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let leaf = ca.leaf(1001);
    leaf.install(&cert, &key);
    TlsFixture {
        dir,
        ca,
        cert,
        key,
        leaf,
    }
}

#[tokio::test]
async fn https_serves_session_api_blobs_and_eventsource_over_http2() {
    let f = tls_fixture();
    let files = CertFiles::load(&f.cert, &f.key).unwrap();
    let s = Running::start(
        CONFIG,
        &f.dir.path().join("store"),
        ServeOptions {
            tls: Some(files),
            ..options()
        },
    );
    let ca = f.ca.pem();
    let h2 = https_client(&ca, &[b"h2", b"http/1.1"]);

    // The session: HTTP/2 by ALPN, every URL absolute and https/wss.
    let r = h2
        .get(s.url("/jmap/session"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let body = json_of(r).await;
    assert_eq!(body["apiUrl"], s.url("/jmap/api"));
    assert!(
        body["apiUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert_eq!(
        body["capabilities"]["urn:ietf:params:jmap:websocket"]["url"],
        format!("wss://{}/jmap/ws", s.addr)
    );
    for key in ["downloadUrl", "uploadUrl", "eventSourceUrl"] {
        assert!(
            body[key].as_str().unwrap().starts_with(&s.url("/jmap/")),
            "{key}: {}",
            body[key]
        );
    }

    // A client that offers only HTTP/1.1 gets HTTP/1.1.
    let r = https_client(&ca, &[b"http/1.1"])
        .get(s.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    // A client that does not trust the CA is refused by its own verifier.
    let untrusting = reqwest::Client::builder()
        .tls_backend_preconfigured(upstream::tls::client_config(None).unwrap())
        .build()
        .unwrap();
    assert!(untrusting.get(s.url("/healthz")).send().await.is_err());

    // A method call.
    let a = s.account("alice");
    let out = call(&h2, &s, json!([["Core/echo", {"over": "tls"}, "e"]])).await;
    assert_eq!(out[0], json!(["Core/echo", {"over": "tls"}, "e"]));

    // Upload and download.
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let r = h2
        .post(s.url(&format!("/jmap/upload/{a}/")))
        .basic_auth("alice", Some("alice-pw"))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let blob = json_of(r).await["blobId"].as_str().unwrap().to_owned();
    let r = h2
        .get(s.url(&format!(
            "/jmap/download/{a}/{blob}/data.bin?accept=application/octet-stream"
        )))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);

    // EventSource over HTTP/2: a state event after a change, then the stream closes.
    let mut events = h2
        .get(s.url("/jmap/eventsource?types=*&closeafter=state&ping=0"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.version(), reqwest::Version::HTTP_2);
    let first = tokio::time::timeout(WAIT, events.chunk())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first.unwrap()).starts_with(": jmap push"));
    call(
        &h2,
        &s,
        json!([["Note/set", {"accountId": a, "create": {"n": {"title": "t"}}}, "s"]]),
    )
    .await;
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, events.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: state"), "{text}");
    assert!(text.contains("\"@type\":\"StateChange\""), "{text}");

    // What a handshake costs here (reported, not asserted).
    let mut total = Duration::ZERO;
    for _ in 0..20 {
        let (der, took) = served_certificate(s.addr, &ca).await;
        assert_eq!(der, f.leaf.der);
        total += took;
    }
    eprintln!(
        "TLS handshake (ring, ECDSA P-256, debug build): {:?} on average",
        total / 20
    );
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_dropping_the_listener() {
    let f = tls_fixture();
    let files = CertFiles::load(&f.cert, &f.key).unwrap();
    let s = Running::start(
        CONFIG,
        &f.dir.path().join("store"),
        ServeOptions {
            tls: Some(files.clone()),
            ..options()
        },
    );
    let ca = f.ca.pem();
    assert_eq!(served_certificate(s.addr, &ca).await.0, f.leaf.der);
    // A connection opened before the renewal, kept alive across it.
    let client = https_client(&ca, &[b"h2"]);
    let before = client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(before.status(), 200);

    // Renewal, picked up the way SIGHUP does it.
    let second = f.ca.leaf(1002);
    second.install(&f.cert, &f.key);
    assert!(files.reload().unwrap());
    assert_eq!(served_certificate(s.addr, &ca).await.0, second.der);
    assert_ne!(second.der, f.leaf.der);

    // Renewal, picked up by polling the files.
    files.poll(Duration::from_millis(100), s.gateway().shutdown_signal());
    let third = f.ca.leaf(1003);
    third.install(&f.cert, &f.key);
    let deadline = Instant::now() + WAIT;
    loop {
        let (der, _) = served_certificate(s.addr, &ca).await;
        if der == third.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the polled renewal was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The same listener and the old connection still serve.
    let after = client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(after.status(), 200);
    let body = session(&client, &s.url("/jmap/session"), &[]).await;
    assert_eq!(body["apiUrl"], s.url("/jmap/api"));
}

#[tokio::test]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let forged = [
        ("X-Forwarded-Host", "jmap.example.com"),
        ("X-Forwarded-Proto", "https"),
    ];

    // The test talks from 127.0.0.1, which this gateway trusts: a proxy's view of the request.
    let trusted = Running::start(
        CONFIG,
        &dir.path().join("a"),
        ServeOptions {
            trusted_proxies: TrustedProxies::parse(&["127.0.0.1", "::1"]).unwrap(),
            ..options()
        },
    );
    let c = plain_client();
    let body = session(&c, &trusted.url("/jmap/session"), &forged).await;
    assert_eq!(body["apiUrl"], "https://jmap.example.com/jmap/api");
    assert_eq!(
        body["uploadUrl"],
        "https://jmap.example.com/jmap/upload/{accountId}/"
    );
    assert_eq!(
        body["capabilities"]["urn:ietf:params:jmap:websocket"]["url"],
        "wss://jmap.example.com/jmap/ws"
    );
    // RFC 7239 Forwarded, with a client-forged element to its left that must be skipped.
    let body = session(
        &c,
        &trusted.url("/jmap/session"),
        &[(
            "Forwarded",
            "for=198.51.100.1;host=evil.example;proto=http, for=192.0.2.7;host=\"mail.example.org:8443\";proto=https",
        )],
    )
    .await;
    assert_eq!(body["apiUrl"], "https://mail.example.org:8443/jmap/api");
    // A header value that is not a host is not used.
    let body = session(
        &c,
        &trusted.url("/jmap/session"),
        &[("X-Forwarded-Host", "evil.example/path?")],
    )
    .await;
    assert_eq!(body["apiUrl"], trusted.url("/jmap/api"));

    // The same headers from a peer that is not a trusted proxy are ignored.
    let untrusted = Running::start(
        CONFIG,
        &dir.path().join("b"),
        ServeOptions {
            trusted_proxies: TrustedProxies::parse(&["10.9.9.9"]).unwrap(),
            ..options()
        },
    );
    let body = session(&c, &untrusted.url("/jmap/session"), &forged).await;
    assert_eq!(body["apiUrl"], untrusted.url("/jmap/api"));
    assert!(
        body["apiUrl"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(
        body["capabilities"]["urn:ietf:params:jmap:websocket"]["url"],
        format!("ws://{}/jmap/ws", untrusted.addr)
    );
    let body = session(
        &c,
        &untrusted.url("/jmap/session"),
        &[("Forwarded", "host=evil.example;proto=https")],
    )
    .await;
    assert_eq!(body["apiUrl"], untrusted.url("/jmap/api"));

    // server.public_url is the operator's word and wins over everything.
    let public = Running::start(
        &format!("[server]\npublic_url = \"https://jmap.example.net/\"\n{CONFIG}"),
        &dir.path().join("c"),
        ServeOptions {
            trusted_proxies: TrustedProxies::parse(&["127.0.0.1"]).unwrap(),
            ..options()
        },
    );
    let body = session(&c, &public.url("/jmap/session"), &forged).await;
    assert_eq!(body["apiUrl"], "https://jmap.example.net/jmap/api");
}

#[tokio::test]
async fn shutdown_ends_push_streams_so_clients_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let s = Running::start(CONFIG, &dir.path().join("store"), options());
    let c = plain_client();
    let mut events = c
        .get(s.url("/jmap/eventsource?types=*&closeafter=no&ping=0"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    tokio::time::timeout(WAIT, events.chunk())
        .await
        .unwrap()
        .unwrap();

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/jmap/ws", s.addr)
        .into_client_request()
        .unwrap();
    let auth = "Basic YWxpY2U6YWxpY2UtcHc="; // alice:alice-pw
    request
        .headers_mut()
        .insert("Authorization", auth.parse().unwrap());
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "jmap".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        json!({"@type": "WebSocketPushEnable", "dataTypes": null}).to_string(),
    ))
    .await
    .unwrap();

    s.gateway().begin_shutdown();

    // The EventSource stream ends, asking for a quick reconnect.
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, events.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("retry: 1000"), "{text:?}");
    // The WebSocket is closed with 1001 Going Away.
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.unwrap().code), 1001);
    // New push streams are turned away while shutting down; plain requests still work.
    let r = c
        .get(s.url("/jmap/eventsource?types=*&closeafter=no&ping=0"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(c.get(s.url("/healthz")).send().await.unwrap().status(), 200);
    drop(c);
    s.stop();
}

/// Note/changes since `since`: (created, updated, destroyed, newState), sorted.
async fn note_changes(s: &Running, since: &str) -> Value {
    let a = s.account("alice");
    let out = call(
        &plain_client(),
        s,
        json!([["Note/changes", {"accountId": a, "sinceState": since}, "c"]]),
    )
    .await;
    let r = &out[0][1];
    if out[0][0] == "error" {
        return r.clone();
    }
    let sorted = |k: &str| {
        let mut v: Vec<String> = r[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect();
        v.sort();
        json!(v)
    };
    assert_eq!(r["hasMoreChanges"], false);
    json!({"created": sorted("created"), "updated": sorted("updated"),
           "destroyed": sorted("destroyed"), "newState": r["newState"]})
}

/// Runs Note/set; (ids by creation id, newState).
async fn note_set(s: &Running, args: Value) -> (BTreeMap<String, String>, String) {
    let a = s.account("alice");
    let mut args = args;
    args["accountId"] = json!(a);
    let out = call(&plain_client(), s, json!([["Note/set", args, "s"]])).await;
    let r = &out[0][1];
    assert_eq!(out[0][0], "Note/set", "{r}");
    let created = r["created"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["id"].as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    (created, r["newState"].as_str().unwrap().to_owned())
}

fn gateway_bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jmap-gateway"))
        .args(args)
        .env_remove("JMAP_GATEWAY_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test]
async fn changes_are_exact_across_a_restart_and_a_restored_backup() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let socket = dir.path().join("admin.sock");
    let with_admin = || ServeOptions {
        admin_socket: Some(socket.clone()),
        ..options()
    };

    let s = Running::start(CONFIG, &live, with_admin());
    let (ids, _) = note_set(
        &s,
        json!({"create": {"a": {"title": "a"}, "b": {"title": "b"}}}),
    )
    .await;
    let (n1, n2) = (ids["a"].clone(), ids["b"].clone());
    let s0 = note_set(&s, json!({"create": {}})).await.1;
    let (ids, _) = note_set(&s, json!({"create": {"c": {"title": "c"}}})).await;
    let n3 = ids["c"].clone();
    let s1 = note_set(
        &s,
        json!({"update": {&n1: {"title": "a2"}}, "destroy": [&n2]}),
    )
    .await
    .1;
    let expected_s0 = json!({"created": [n3], "updated": [n1], "destroyed": [n2], "newState": s1});
    assert_eq!(note_changes(&s, &s0).await, expected_s0);
    s.stop();

    // Restart on the same folder: the same answer, and the state did not move.
    let s = Running::start(CONFIG, &live, with_admin());
    assert_eq!(note_changes(&s, &s0).await, expected_s0);
    assert_eq!(note_changes(&s, &s1).await["newState"], json!(s1));
    let (ids, s2) = note_set(&s, json!({"create": {"d": {"title": "d"}}})).await;
    let n4 = ids["d"].clone();

    // Backup through the running gateway, with the CLI as an operator runs it.
    let config_file = dir.path().join("gateway.toml");
    std::fs::write(
        &config_file,
        format!(
            "[server]\nadmin_socket = \"{}\"\n[store]\npath = \"{}\"\n",
            socket.display(),
            live.display()
        ),
    )
    .unwrap();
    let backup = dir.path().join("backups/one");
    let config_arg = config_file.to_str().unwrap();
    let out = gateway_bin(&[
        "backup",
        "--config",
        config_arg,
        "--to",
        backup.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("by the running gateway"), "{stdout}");
    // A second backup to the same folder is refused, not merged.
    let out = gateway_bin(&[
        "backup",
        "--config",
        config_arg,
        "--to",
        backup.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    // Changes after the backup are not in it.
    let (_, s3) = note_set(&s, json!({"create": {"e": {"title": "e"}}})).await;
    s.stop();

    // With the gateway stopped, the CLI copies the store itself.
    let offline = dir.path().join("backups/two");
    let out = gateway_bin(&[
        "backup",
        "--config",
        config_arg,
        "--to",
        offline.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("from the stopped store"), "{stdout}");

    // Restore: a gateway on the backup answers /changes from a state issued before it.
    let r = Running::start(CONFIG, &backup, options());
    let mut created = vec![n3, n4];
    created.sort();
    assert_eq!(
        note_changes(&r, &s0).await,
        json!({"created": created, "updated": [n1], "destroyed": [n2], "newState": s2})
    );
    // A state from after the backup is from its future: the client must resynchronise.
    assert_eq!(
        note_changes(&r, &s3).await["type"],
        "cannotCalculateChanges"
    );
    r.stop();
    let r = Running::start(CONFIG, &offline, options());
    assert_eq!(note_changes(&r, &s2).await["newState"], json!(s3));
    r.stop();
}

#[test]
fn plain_http_off_loopback_needs_an_explicit_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("g.toml");
    std::fs::write(&file, "[server]\nlisten = \"0.0.0.0:8080\"\n").unwrap();
    let out = gateway_bin(&["check-config", "--config", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("server.listen") && stderr.contains("allow_plain_http"),
        "{stderr}"
    );
    std::fs::write(
        &file,
        "[server]\nlisten = \"0.0.0.0:8080\"\nallow_plain_http = true\n",
    )
    .unwrap();
    assert!(
        gateway_bin(&["check-config", "--config", file.to_str().unwrap()])
            .status
            .success()
    );
    std::fs::write(
        &file,
        "[server]\ntls_cert = \"/x.pem\"\ntrusted_proxies = [\"10.0.0.0/40\"]\n",
    )
    .unwrap();
    let out = gateway_bin(&["check-config", "--config", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.tls_key"), "{stderr}");
    assert!(stderr.contains("server.trusted_proxies[0]"), "{stderr}");
}

/// The binary end to end: HTTPS from the configuration, SIGHUP reloads the certificate,
/// SIGTERM shuts down gracefully and flushes the store.
#[tokio::test]
async fn the_binary_serves_https_reloads_on_sighup_and_stops_on_sigterm() {
    let f = tls_fixture();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = f.dir.path().join("g.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_reload_secs = 0\n\
             [store]\npath = \"{}\"\n[log]\nfilter = \"info\"\n",
            f.cert.display(),
            f.key.display(),
            f.dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = f.dir.path().join("log.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_jmap-gateway"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("JMAP_GATEWAY_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ca = f.ca.pem();
    let client = https_client(&ca, &[b"h2", b"http/1.1"]);
    let url = format!("https://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + WAIT;
    let r = loop {
        match client.get(&url).send().await {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "the binary never answered: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(served_certificate(addr, &ca).await.0, f.leaf.der);

    let renewed = f.ca.leaf(2002);
    renewed.install(&f.cert, &f.key);
    let kill = |signal: &str| {
        assert!(
            Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    kill("-HUP");
    let deadline = Instant::now() + WAIT;
    while served_certificate(addr, &ca).await.0 != renewed.der {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing in flight: the graceful stop has nothing to wait for.
    drop(r);
    drop(client);
    kill("-TERM");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(log.contains("store flushed"), "{log}");
}
