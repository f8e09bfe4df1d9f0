//! JMAP Mail benchmark: a mail client's list view answered by the gateway, next to the same
//! view done by a bare IMAP client on the same Dovecot. Prints medians and p99; asserts
//! nothing about time.
//!
//! For each size N (default 10000 and 100000): a private Dovecot is loaded with N synthetic
//! messages in INBOX, the gateway (HTTP on 127.0.0.1, RocksDB store) syncs them, then K
//! samples (default 200) of:
//!
//! - `Email/query` inMailbox INBOX, receivedAt descending, limit 50, calculateTotal;
//! - `Email/query` over all mail by size descending, limit 50 (the per-mailbox indexes merged);
//! - `Email/get` of those 50 with a list view's properties;
//! - `Email/changes` from the current state and from a state 10 changes back;
//! - `Mailbox/get` (all mailboxes, with counts);
//! - bare IMAP: `UID SORT (REVERSE ARRIVAL) UTF-8 ALL` + `UID FETCH` of the first 50
//!   (FLAGS ENVELOPE RFC822.SIZE INTERNALDATE PREVIEW) on an open connection.
//!
//! Issue 6's targets: query and get ≤ 2 ms median at 100k, changes ≤ 0.5 ms. Times are
//! measured at the HTTP client, so they include the loopback round trip.
//!
//! ```text
//! cargo bench -p conformance-tests --bench jmap_mail -- --sizes 10000,100000 --samples 200
//! ```

#![allow(clippy::unwrap_used)]

#[path = "../tests/imap_support.rs"]
#[allow(dead_code)]
mod imap_support;
#[path = "../tests/jmap_support.rs"]
#[allow(dead_code)]
mod jmap_support;
#[allow(dead_code)]
mod raw_imap;

use std::time::{Duration, Instant};

use jmap_support::MailGateway;
use raw_imap::Raw;
use serde_json::{Value, json};

/// The gateway binary's allocator, so these figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LIST_PROPERTIES: [&str; 9] = [
    "threadId",
    "mailboxIds",
    "keywords",
    "from",
    "subject",
    "receivedAt",
    "preview",
    "hasAttachment",
    "size",
];

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn report(name: &str, n: usize, mut samples: Vec<Duration>) {
    let median = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    println!(
        "{n:>7} msgs  {name:<34} median {:>8.3} ms   p99 {:>8.3} ms",
        median.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0
    );
}

/// Times `samples` runs of `f`.
async fn time<F, Fut>(samples: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        f().await;
        out.push(start.elapsed());
    }
    out
}

async fn run_size(n: usize, samples: usize) {
    let sync_start = Instant::now();
    let g = MailGateway::start_with(|d| {
        let port = d.imap_port;
        // The harness calls this on its own runtime thread: load on a fresh runtime.
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(raw_imap::seed(port, n))
        })
        .join()
        .unwrap();
    })
    .await;
    let inbox = g.mailbox_id("inbox").await;
    // The first round may end before every batch is visible to the query; wait for all.
    g.eventually(600, || async {
        let q = g
            .call(
                "Email/query",
                json!({"filter": {"inMailbox": inbox}, "calculateTotal": true, "limit": 1}),
            )
            .await;
        (q["total"] == json!(n)).then_some(())
    })
    .await;
    println!(
        "{n:>7} msgs  gateway seeded+synced in {:.1} s",
        sync_start.elapsed().as_secs_f64()
    );

    let query = json!({
        "filter": {"inMailbox": inbox},
        "sort": [{"property": "receivedAt", "isAscending": false}],
        "limit": 50,
        "calculateTotal": true
    });
    let ids: Value = g.call("Email/query", query.clone()).await["ids"].clone();
    let get = json!({"ids": ids, "properties": LIST_PROPERTIES});

    let t = time(samples, || async {
        let q = g.call("Email/query", query.clone()).await;
        assert_eq!(q["ids"].as_array().unwrap().len(), 50);
    })
    .await;
    report("Email/query (inMailbox, limit 50)", n, t);
    // All mail by size: no index of its own, the per-mailbox ones merged.
    let by_size = json!({
        "sort": [{"property": "size", "isAscending": false}],
        "limit": 50,
        "calculateTotal": true
    });
    let t = time(samples, || async {
        let q = g.call("Email/query", by_size.clone()).await;
        assert_eq!(q["ids"].as_array().unwrap().len(), 50);
        assert_eq!(q["total"], json!(n));
    })
    .await;
    report("Email/query (all mail by size, limit 50)", n, t);
    let t = time(samples, || async {
        let r = g.call("Email/get", get.clone()).await;
        assert_eq!(r["list"].as_array().unwrap().len(), 50);
    })
    .await;
    report("Email/get 50 (list properties)", n, t);
    let t = time(samples, || async {
        let r = g
            .api(json!([
                ["Email/query", query.clone(), "q"],
                ["Email/get", {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                               "properties": LIST_PROPERTIES}, "g"]
            ]))
            .await;
        assert_eq!(r[1][1]["list"].as_array().unwrap().len(), 50);
    })
    .await;
    report("query + get in one request", n, t);

    let state = g.call("Email/get", json!({"ids": []})).await["state"].clone();
    let t = time(samples, || async {
        let r = g.call("Email/changes", json!({"sinceState": state})).await;
        assert_eq!(r["hasMoreChanges"], json!(false));
    })
    .await;
    report("Email/changes (none)", n, t);
    // Ten keyword changes made through the gateway, then /changes from before them.
    let first: Vec<String> = ids.as_array().unwrap()[..10]
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    for id in &first {
        g.call(
            "Email/set",
            json!({"update": {id.clone(): {"keywords/$flagged": true}}}),
        )
        .await;
    }
    let t = time(samples, || async {
        let r = g.call("Email/changes", json!({"sinceState": state})).await;
        assert_eq!(r["updated"].as_array().unwrap().len(), 10);
    })
    .await;
    report("Email/changes (10 updated)", n, t);
    let t = time(samples, || async {
        let r = g.call("Mailbox/get", json!({"ids": null})).await;
        assert!(!r["list"].as_array().unwrap().is_empty());
    })
    .await;
    report("Mailbox/get (all, with counts)", n, t);

    let mut raw = Raw::connect(g.dovecot.imap_port).await;
    raw.run("SELECT INBOX").await;
    let mut t = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        let tag = raw.send(b"UID SORT (REVERSE ARRIVAL) UTF-8 ALL").await;
        let mut uids: Vec<String> = Vec::new();
        loop {
            let r = raw.next().await;
            if r.starts_with(format!("{tag} ").as_bytes()) {
                break;
            }
            let line = String::from_utf8_lossy(&r);
            if let Some(rest) = line.strip_prefix("* SORT") {
                uids = rest
                    .split_whitespace()
                    .take(50)
                    .map(str::to_owned)
                    .collect();
            }
        }
        let fetched = raw
            .run(&format!(
                "UID FETCH {} (FLAGS ENVELOPE RFC822.SIZE INTERNALDATE PREVIEW)",
                uids.join(",")
            ))
            .await;
        assert_eq!(fetched, 50);
        t.push(start.elapsed());
    }
    report("bare IMAP: UID SORT + FETCH 50", n, t);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let sizes: Vec<usize> = arg("--sizes")
        .unwrap_or_else(|| "10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("--sizes takes numbers"))
        .collect();
    let samples: usize = arg("--samples").map_or(200, |s| s.parse().unwrap());
    for n in sizes {
        run_size(n, samples).await;
    }
}
