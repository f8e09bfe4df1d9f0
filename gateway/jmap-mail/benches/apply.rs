//! How fast initial-sync batches are committed to the store, with no IMAP involved: the
//! part of an initial sync that is the gateway's own (header parsing, threading, records,
//! indexes, the change log, RocksDB). Prints numbers, asserts nothing about time.
//!
//! ```text
//! cargo bench -p jmap-mail --bench apply -- --messages 100000 [--batch 500] [--buffered]
//! ```
//!
//! Messages are synthetic: threads of five (a root and four replies), 17 senders, newest
//! first in batches, as the IMAP adapter delivers an INBOX.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use state::{AccountId, Durability, Store, StoreConfig};
use upstream::{MessageChange, RemoteMessage, SyncBatch};

/// The gateway binary's allocator, so these figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn synthetic(i: usize) -> RemoteMessage {
    let thread = i / 5;
    let mut h = format!(
        "From: Sender {} <sender{}@example.test>\r\nTo: tester <tester@example.test>\r\n\
         Subject: {}Bench thread {thread}\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n\
         Message-ID: <bench-{thread}-{}@example.test>\r\n",
        i % 17,
        i % 17,
        if i.is_multiple_of(5) { "" } else { "Re: " },
        i % 5
    );
    if !i.is_multiple_of(5) {
        h.push_str(&format!(
            "In-Reply-To: <bench-{thread}-0@example.test>\r\nReferences: <bench-{thread}-0@example.test>\r\n"
        ));
    }
    h.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    RemoteMessage {
        uid: (i + 1).to_string(),
        fingerprint: jmap_mail::email_id(&h).as_str().to_owned(),
        thread_hint: None,
        keywords: BTreeSet::new(),
        received_at: 1_767_000_000 + i as i64,
        size: 800,
        header_block: h.into_bytes(),
        preview: Some(format!("Body of bench message {i}. Some more text")),
        has_attachment: false,
        headers_complete: true,
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let n: usize = arg("--messages")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let batch: usize = arg("--batch").and_then(|v| v.parse().ok()).unwrap_or(500);
    let buffered = std::env::args().any(|a| a == "--buffered");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(
        dir.path(),
        StoreConfig {
            durability: if buffered {
                Durability::Buffered
            } else {
                Durability::default()
            },
            ..StoreConfig::default()
        },
    )
    .expect("the store opens");
    let store = std::sync::Arc::new(store);
    // As the sync driver does for an initial pass this large.
    let _bulk = (n as u64 >= jmap_mail::bench::BULK_MESSAGES).then(|| store.bulk_writes());
    let start = Instant::now();
    let mut commit = Duration::ZERO;
    let mut hi = n;
    while hi > 0 {
        let lo = hi.saturating_sub(batch);
        let b = SyncBatch {
            mailbox: "INBOX".into(),
            reset: false,
            changes: (lo..hi)
                .rev()
                .map(|i| MessageChange::Upsert(synthetic(i)))
                .collect(),
            cursor: b"c".to_vec(),
            complete: false,
            progress: None,
        };
        let r = jmap_mail::bench::apply_batch(&store, AccountId(1), "Minbox", &b)
            .expect("the batch commits");
        commit += r.commit_time;
        hi = lo;
    }
    let total = start.elapsed();
    store.flush().expect("the store flushes");
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .expect("the store's folder")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{n} messages in batches of {batch} ({}): {:.3} s, {:.1} µs/message, of which {:.1} µs in Store::commit",
        if buffered {
            "buffered"
        } else {
            "durable commits"
        },
        total.as_secs_f64(),
        total.as_secs_f64() * 1e6 / n as f64,
        commit.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "store on disk after a flush: {:.1} MB ({:.0} bytes/message)",
        on_disk as f64 / 1e6,
        on_disk as f64 / n as f64
    );
    let cpu = jmap_mail::bench::cpu_split();
    println!(
        "RocksDB's own threads: {:.1} µs/message flushing, {:.1} µs/message compacting",
        cpu.flush * 1e6 / n as f64,
        cpu.compaction * 1e6 / n as f64
    );
}
