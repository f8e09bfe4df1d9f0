//! `cargo bench -p state`: prints a table; asserts nothing about time.
//!
//! For 1k and 100k Emails in one mailbox: /changes for 100 changes, top-50 by receivedAt with
//! total (plain and thread-collapsed), and commit throughput of single-object commits and of
//! 1,000-object batches (under the default group-commit durability and without fsync).

use std::time::{Duration, Instant};

use state::{
    AccountId, Commit, DataType, Durability, EmailFacts, EmailQuery, ObjectId, Store, StoreConfig,
};

/// The gateway binary's allocator, so these figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BenchResult = Result<(), Box<dyn std::error::Error>>;

fn facts(i: u64) -> Result<EmailFacts, state::Error> {
    Ok(EmailFacts {
        mailbox_ids: vec![ObjectId::new("inbox")?],
        thread_id: Some(ObjectId::new(format!("t{}", i / 3))?),
        received_at: 1_700_000_000 + i as i64 * 60,
        sent_at: Some(1_700_000_000 + i as i64 * 60 - 5),
        size: 2_000 + (i * 7919) % 50_000,
        keywords: if i.is_multiple_of(2) {
            vec!["$seen".into()]
        } else {
            vec![]
        },
    })
}

fn email_bytes(i: u64) -> Vec<u8> {
    format!(
        "{{\"subject\":\"message {i}\",\"from\":\"a@example.com\",\"preview\":\"{}\"}}",
        "x".repeat(120)
    )
    .into_bytes()
}

fn per_op(d: Duration, n: u64) -> String {
    let us = d.as_secs_f64() * 1e6 / n as f64;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn rate(d: Duration, n: u64) -> String {
    format!("{:.0}/s", n as f64 / d.as_secs_f64())
}

fn populate(store: &Store, a: AccountId, n: u64) -> Result<Duration, state::Error> {
    let mut c = Commit::new(a);
    c.put(
        DataType::Mailbox,
        ObjectId::new("inbox")?,
        b"{\"name\":\"Inbox\"}".to_vec(),
    );
    store.commit(c)?;
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let mut c = Commit::new(a);
        for j in i..(i + 1000).min(n) {
            c.put_email(ObjectId::new(format!("e{j}"))?, email_bytes(j), facts(j)?);
        }
        c.set_cursor(
            b"imap:inbox:uidnext".to_vec(),
            (i + 1000).to_be_bytes().to_vec(),
        );
        store.commit(c)?;
        i += 1000;
    }
    Ok(start.elapsed())
}

fn run(n: u64, rows: &mut Vec<[String; 3]>) -> BenchResult {
    let label = if n >= 1000 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    };
    let dir = tempfile::tempdir()?;
    let a = AccountId(1);
    let store = Store::open(
        dir.path(),
        StoreConfig {
            durability: Durability::Buffered,
            ..StoreConfig::default()
        },
    )?;
    let batch_time = populate(&store, a, n)?;
    rows.push([
        label.clone(),
        "commit, 1,000-email batches (no fsync)".into(),
        format!(
            "{} emails, {} per batch",
            rate(batch_time, n),
            per_op(batch_time, n / 1000)
        ),
    ]);

    // 100 single-object commits (flag changes) with no fsync, then /changes over them.
    let since = store.state(a, DataType::Email)?.to_string();
    let start = Instant::now();
    for k in 0..100u64 {
        let i = (k * 37) % n;
        let mut f = facts(i)?;
        f.keywords = vec!["$flagged".into()];
        let mut c = Commit::new(a);
        c.put_email(ObjectId::new(format!("e{i}"))?, email_bytes(i + 1), f);
        store.commit(c)?;
    }
    let single = start.elapsed();
    rows.push([
        label.clone(),
        "commit, single email (no fsync)".into(),
        format!("{} ({})", per_op(single, 100), rate(single, 100)),
    ]);

    let reps = 2000u64;
    let start = Instant::now();
    for _ in 0..reps {
        let ch = store.changes(a, DataType::Email, &since, Some(500))?;
        std::hint::black_box(ch);
    }
    let ch = store.changes(a, DataType::Email, &since, Some(500))?;
    rows.push([
        label.clone(),
        format!(
            "Email/changes, {} changes",
            ch.created.len() + ch.updated.len() + ch.destroyed.len()
        ),
        per_op(start.elapsed(), reps),
    ]);

    for (name, collapse) in [
        ("top-50 by receivedAt + total", false),
        ("top-50 collapsed threads + total", true),
    ] {
        let q = EmailQuery {
            collapse_threads: collapse,
            ..EmailQuery::newest_in(ObjectId::new("inbox")?, 50)
        };
        let start = Instant::now();
        for _ in 0..reps {
            let r = store.query_emails(a, &q)?;
            std::hint::black_box(r);
        }
        rows.push([
            label.clone(),
            format!("Email/query {name}"),
            per_op(start.elapsed(), reps),
        ]);
    }

    // queryChanges for the 100 flag changes (no membership change) and a page deep inside.
    let q = EmailQuery {
        position: (n / 2) as i64,
        ..EmailQuery::newest_in(ObjectId::new("inbox")?, 50)
    };
    let start = Instant::now();
    for _ in 0..20 {
        std::hint::black_box(store.query_emails(a, &q)?);
    }
    rows.push([
        label.clone(),
        format!("Email/query 50 at position {}", n / 2),
        per_op(start.elapsed(), 20),
    ]);
    drop(store);

    // Single-object commits under the default durability (fsync, group commit).
    let dir2 = tempfile::tempdir()?;
    let store = Store::open(dir2.path(), StoreConfig::default())?;
    populate(&store, a, n.min(1000))?;
    let start = Instant::now();
    let k = 50u64;
    for i in 0..k {
        let mut c = Commit::new(a);
        c.put_email(
            ObjectId::new(format!("new{i}"))?,
            email_bytes(i),
            facts(n + i)?,
        );
        store.commit(c)?;
    }
    let synced = start.elapsed();
    rows.push([
        label.clone(),
        "commit, single email (default: fsync)".into(),
        format!("{} ({})", per_op(synced, k), rate(synced, k)),
    ]);
    let start = Instant::now();
    let mut c = Commit::new(a);
    for j in 0..1000u64 {
        c.put_email(
            ObjectId::new(format!("batch{j}"))?,
            email_bytes(j),
            facts(n + 100 + j)?,
        );
    }
    store.commit(c)?;
    let b = start.elapsed();
    rows.push([
        label,
        "commit, 1,000-email batch (default: fsync)".into(),
        format!(
            "{} ({} emails/s)",
            per_op(b, 1),
            (1000.0 / b.as_secs_f64()) as u64
        ),
    ]);
    Ok(())
}

fn main() -> BenchResult {
    // `cargo test --benches` runs this with `--bench`-less args; keep it cheap then.
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    let sizes: &[u64] = if quick { &[1_000] } else { &[1_000, 100_000] };
    let mut rows = Vec::new();
    for &n in sizes {
        run(n, &mut rows)?;
    }
    println!("\n{:<6} | {:<46} | time", "emails", "operation");
    println!("{:-<6}-+-{:-<46}-+-{:-<28}", "", "", "");
    for [a, b, c] in rows {
        println!("{a:<6} | {b:<46} | {c}");
    }
    Ok(())
}
