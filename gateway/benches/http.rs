//! HTTP benchmark: requests/s and latency of Core/echo and of a small Note/get at 1, 16 and 64
//! concurrent keep-alive connections, against a gateway on 127.0.0.1 with a temporary store.
//! Prints numbers only. `cargo bench -p gateway --bench http`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::config::Config;
use gateway::http::Gateway;
use gateway::methods::StoredType;
use jmap_engine::{Limits, UnsignedInt};
use serde_json::json;
use state::{DataType, Durability, Store, StoreConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The gateway binary's allocator, so these figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CAP: &str = "urn:x-jmap-gateway:bench:note";
const RUN: Duration = Duration::from_secs(2);

fn start() -> (SocketAddr, Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(
        "[[users]]\nname = \"u\"\npassword = \"p\"\n[[users.accounts]]\nkind = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword = \"x\"\n",
    )
    .unwrap();
    let store = Store::open(
        dir.path().join("s"),
        StoreConfig {
            durability: Durability::Buffered,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let gateway = Gateway::builder(config)
                .store(Arc::new(store))
                .stored_type(StoredType {
                    name: "Note".into(),
                    capability: CAP.into(),
                    data_type: DataType::Identity,
                    properties: vec!["title".into()],
                })
                .account_capabilities(BTreeMap::from([(CAP.to_owned(), json!({}))]))
                // One user drives every connection: lift the per-user request limit above 64.
                .limits(Limits {
                    max_concurrent_requests: UnsignedInt::saturating(1024),
                    ..Limits::default()
                })
                .build()
                .await
                .unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = gateway.clone().serve(listener).unwrap();
            tx.send((addr, gateway)).unwrap();
            server.await.unwrap();
        });
    });
    let (addr, gateway) = rx.recv().unwrap();
    (addr, gateway, dir)
}

fn request(body: &str) -> Vec<u8> {
    format!(
        "POST /jmap/api HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic dTpw\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One keep-alive connection sending `req` until `deadline`; the latencies.
async fn connection(addr: SocketAddr, req: Arc<Vec<u8>>, deadline: Instant) -> Vec<Duration> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut r = BufReader::new(stream);
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        r.get_mut().write_all(&req).await.unwrap();
        let mut length = 0;
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        loop {
            line.clear();
            r.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        r.read_exact(&mut body).await.unwrap();
        out.push(t.elapsed());
    }
    out
}

async fn run(name: &str, addr: SocketAddr, body: &str) {
    let req = Arc::new(request(body));
    for connections in [1, 16, 64] {
        let deadline = Instant::now() + RUN;
        let started = Instant::now();
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(connection(addr, req.clone(), deadline)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort();
        let pct = |p: f64| {
            let i = ((all.len() as f64 - 1.0) * p).round() as usize;
            all[i].as_secs_f64() * 1000.0
        };
        println!(
            "{name:<10} conns={connections:<3} requests={:<7} rps={:<9.0} p50_ms={:.3} p99_ms={:.3}",
            all.len(),
            all.len() as f64 / elapsed,
            pct(0.5),
            pct(0.99)
        );
    }
}

fn main() {
    let (addr, gateway, _dir) = start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let account = gateway.registry().user("u").unwrap().accounts[0]
            .id
            .as_str()
            .to_owned();
        let create: serde_json::Map<String, serde_json::Value> = (0..10)
            .map(|i| (format!("n{i}"), json!({"title": format!("note {i}")})))
            .collect();
        let set = json!({"using": ["urn:ietf:params:jmap:core", CAP],
            "methodCalls": [["Note/set", {"accountId": account, "create": create}, "0"]]});
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(&request(&set.to_string())).await.unwrap();
        let mut buf = vec![0; 4096];
        let _ = c.read(&mut buf).await.unwrap();
        let echo = json!({"using": ["urn:ietf:params:jmap:core"],
            "methodCalls": [["Core/echo", {"hello": "world"}, "0"]]});
        run("Core/echo", addr, &echo.to_string()).await;
        let get = json!({"using": ["urn:ietf:params:jmap:core", CAP],
            "methodCalls": [["Note/get", {"accountId": account, "ids": null}, "0"]]});
        run("Note/get", addr, &get.to_string()).await;
    });
}
