//! IMAP sync benchmark against a real Dovecot: prints numbers, asserts nothing about time.
//!
//! 1. Initial sync of N messages by the gateway (adapter + driver + RocksDB store, default
//!    durability) vs a bare metadata `UID FETCH 1:*` of the same items by a raw client on
//!    the same server (timed just before and just after the sync, and averaged); both
//!    times and their ratio (issue 5's target: ≤ 1.5×), and the
//!    gateway process's CPU time over its sync (steadier than wall time on a shared machine).
//!    Dovecot's own CPU time during the bare FETCH and during the sync, and how idle the
//!    machine's CPUs were during the sync, say where the ratio comes from: when the gateway
//!    and Dovecot share a few cores, the sync cannot be faster than their CPU time together
//!    spread over every core (the "CPU floor" printed).
//! 2. Latency from an APPEND by another client to the change committed in the store, next
//!    to the latency a bare client IDLEing on the same mailbox sees (the floor); p50/p99, and
//!    on stderr the three samples furthest above the floor (with `RUST_LOG` set, each
//!    sample's Unix time too, to line it up with the driver's log).
//!
//! Run (release build; starts a private Dovecot through scripts/test-servers/dovecot.sh and
//! loads it with N synthetic messages over 4 pipelined connections):
//!
//! ```text
//! cargo bench -p conformance-tests --bench imap_sync -- --messages 100000 --samples 200
//! ```
//!
//! Options: `--messages N` (default 100000), `--samples K` (latency samples, default 200),
//! `--batch B` (adapter batch size, default 500), `--buffered` (store without fsync, to see
//! what durability costs).
//!
//! To profile the sync alone, run the bench under `perf record --control=fifo:CTL,ACK -D -1`
//! with `PERF_CTL=CTL PERF_ACK=ACK` in its environment: it enables perf for the sync only.

#![allow(clippy::unwrap_used)]

#[path = "../tests/imap_support.rs"]
#[allow(dead_code)]
mod imap_support;
mod raw_imap;

use std::time::{Duration, Instant};

use imap::ImapOptions;
use imap_support::{Harness, PrivateDovecot};
use raw_imap::{Raw, seed, synthetic};
use state::DataType;
use tokio::io::AsyncWriteExt;

/// The gateway binary's allocator, so these figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ITEMS: &str = "UID FLAGS INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER] PREVIEW";

impl Raw {
    /// Runs a command; returns its untagged lines and whether it ended OK.
    async fn run_lines(&mut self, cmd: &str) -> (Vec<Vec<u8>>, bool) {
        let tag = self.send(cmd.as_bytes()).await;
        let mut out = Vec::new();
        loop {
            let r = self.next().await;
            if r.starts_with(format!("{tag} ").as_bytes()) {
                return (out, r.starts_with(format!("{tag} OK").as_bytes()));
            }
            out.push(r);
        }
    }
}

/// The test Dovecot has a quota (a MESSAGE limit): with the mailbox at the limit, every
/// latency sample's APPEND would be refused (OVERQUOTA) and never seen. Expunges the oldest
/// messages so the samples fit, before the driver starts.
async fn make_room(port: u16, messages: usize, samples: usize) {
    let mut r = Raw::connect(port).await;
    let (lines, ok) = r.run_lines("GETQUOTAROOT INBOX").await;
    let limit = lines
        .iter()
        .filter_map(|l| {
            let s = String::from_utf8_lossy(l);
            let at = s.find("MESSAGE ")?;
            let mut nums = s[at + 8..]
                .split(|c: char| !c.is_ascii_digit())
                .filter(|x| !x.is_empty());
            let _used = nums.next()?;
            nums.next()?.parse::<usize>().ok()
        })
        .next();
    let Some(limit) = limit.filter(|_| ok) else {
        return;
    };
    if messages + samples <= limit {
        return;
    }
    let n = messages + samples - limit;
    r.run("SELECT INBOX").await;
    r.run(&format!("STORE 1:{n} +FLAGS.SILENT (\\Deleted)"))
        .await;
    r.run("EXPUNGE").await;
    eprintln!("expunged the {n} oldest messages: the server's quota allows {limit}");
}

/// A bare `UID FETCH 1:*` of the sync's items: its time, how many messages it listed, and
/// the CPU time Dovecot spent on it.
async fn bare_fetch(port: u16, dovecot: &Dovecot) -> (Duration, usize, f64) {
    let mut r = Raw::connect(port).await;
    r.run("EXAMINE INBOX").await;
    let cpu = dovecot.cpu();
    let start = Instant::now();
    let n = r.run(&format!("UID FETCH 1:* ({ITEMS})")).await;
    (start.elapsed(), n, dovecot.cpu() - cpu)
}

/// The private Dovecot's master process, whose tree's CPU time is read around each phase.
struct Dovecot(u32);

impl Dovecot {
    fn of(d: &PrivateDovecot) -> Dovecot {
        let pid = std::fs::read_to_string(d.dir.join("dovecot.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .expect("the private Dovecot's pid file");
        Dovecot(pid)
    }

    fn cpu(&self) -> f64 {
        jmap_mail::bench::process_tree_cpu(self.0)
    }
}

/// Tells `perf record --control` (the fifos named by PERF_CTL and PERF_ACK) to start or
/// stop recording, and waits for its acknowledgement. Does nothing without PERF_CTL.
fn perf_control(cmd: &str) {
    use std::io::{Read, Write};
    let Ok(ctl) = std::env::var("PERF_CTL") else {
        return;
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&ctl)
        .expect("PERF_CTL names perf's control fifo");
    f.write_all(format!("{cmd}\n").as_bytes()).unwrap();
    if let Ok(ack) = std::env::var("PERF_ACK") {
        let mut reply = [0u8; 5];
        let _ = std::fs::File::open(ack)
            .expect("PERF_ACK names perf's acknowledgement fifo")
            .read(&mut reply);
    }
}

/// The `p` quantile (0 to 1) of `v`, nearest rank; sorts `v`.
fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

#[tokio::main]
async fn main() {
    // RUST_LOG=jmap_mail=debug,imap=debug shows the driver's and the adapter's steps.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let mut messages = 100_000usize;
    let mut samples = 200usize;
    let mut batch = 500usize;
    let mut buffered = false;
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let val = || args.get(i + 1).and_then(|v| v.parse().ok());
        match args[i].as_str() {
            "--messages" => messages = val().expect("--messages N"),
            "--samples" => samples = val().expect("--samples K"),
            "--batch" => batch = val().expect("--batch B"),
            "--buffered" => {
                buffered = true;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    let d = PrivateDovecot::start();
    let dovecot = Dovecot::of(&d);
    seed(d.imap_port, messages).await;

    // Warm Dovecot's caches (PREVIEW, header cache) once, then time both fairly.
    let (warm, _, _) = bare_fetch(d.imap_port, &dovecot).await;
    eprintln!("warm-up bare FETCH: {:.2} s", warm.as_secs_f64());
    let (bare, fetched, bare_cpu) = bare_fetch(d.imap_port, &dovecot).await;
    assert_eq!(fetched, messages);

    let dir = tempfile::tempdir().unwrap();
    let store = state::AsyncStore::new(std::sync::Arc::new(
        state::Store::open(
            dir.path(),
            state::StoreConfig {
                durability: if buffered {
                    state::Durability::Buffered
                } else {
                    state::Durability::default()
                },
                ..state::StoreConfig::default()
            },
        )
        .unwrap(),
    ));
    let opts = ImapOptions {
        batch_size: batch,
        ..ImapOptions::default()
    };
    let mut h = Harness::with_store(d.server(), opts, store, tempfile::tempdir().unwrap());
    perf_control("enable");
    let (system0, dovecot0) = (jmap_mail::bench::SystemCpu::now(), dovecot.cpu());
    let cpu0 = jmap_mail::bench::cpu_split();
    let start = Instant::now();
    h.sync.sync_all().await.unwrap();
    let gateway = start.elapsed();
    let cpu = jmap_mail::bench::cpu_split() - cpu0;
    let (sync_dovecot, (idle, steal)) = (
        dovecot.cpu() - dovecot0,
        jmap_mail::bench::SystemCpu::now().shares_since(&system0),
    );
    perf_control("disable");
    let emails = h.emails().await.len();
    assert_eq!(emails, messages);
    // The bare FETCH once more: on a shared machine its time drifts by a third from one
    // minute to the next, so the ratio is taken against the mean of the two around the sync.
    let (bare_after, _, bare_after_cpu) = bare_fetch(d.imap_port, &dovecot).await;
    let bare_mean = (bare.as_secs_f64() + bare_after.as_secs_f64()) / 2.0;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!("initial sync of {messages} messages (batch {batch}):");
    println!(
        "  bare metadata FETCH : {:8.2} s (before {:.2} s, after {:.2} s)",
        bare_mean,
        bare.as_secs_f64(),
        bare_after.as_secs_f64()
    );
    println!("  gateway initial sync: {:8.2} s", gateway.as_secs_f64());
    println!(
        "  ratio               : {:8.2}x",
        gateway.as_secs_f64() / bare_mean
    );
    let per_message = |s: f64| s * 1e6 / messages as f64;
    println!(
        "  gateway CPU (user+system, all threads): {:.2} s, {:.1} µs per message",
        cpu.process,
        per_message(cpu.process)
    );
    println!(
        "    of which RocksDB flushing {:.1} µs, compacting {:.1} µs per message",
        per_message(cpu.flush),
        per_message(cpu.compaction)
    );
    println!(
        "  Dovecot CPU: {:.2} s during the sync, {:.2} s per bare FETCH ({:.1} and {:.1} µs per message)",
        sync_dovecot,
        (bare_cpu + bare_after_cpu) / 2.0,
        per_message(sync_dovecot),
        per_message((bare_cpu + bare_after_cpu) / 2.0)
    );
    let floor = (cpu.process + sync_dovecot) / cores as f64;
    println!(
        "  CPU floor on {cores} cores: {floor:.2} s ({:.2}x the bare FETCH); during the sync the CPUs were idle {idle:.0}% of the time, taken by the hypervisor {steal:.0}%",
        floor / bare_mean
    );

    // Latency: the driver runs (NOTIFY push); a bare client IDLEs on the INBOX.
    make_room(d.imap_port, messages, samples).await;
    eprintln!("latency: starting the sync driver");
    h.start().await;
    eprintln!("latency: driver running; connecting the idler");
    let mut idler = Raw::connect(d.imap_port).await;
    idler.run("EXAMINE INBOX").await;
    let idle_tag = idler.send(b"IDLE").await;
    assert!(idler.next().await.starts_with(b"+"));
    eprintln!("latency: idler idling; connecting the appender");
    let mut appender = Raw::connect(d.imap_port).await;
    let mut states = h.store.subscribe(h.account).await.unwrap();
    let mut floor = Vec::with_capacity(samples);
    let mut ours = Vec::with_capacity(samples);
    for k in 0..samples {
        let before = states.borrow_and_update().get(DataType::Email);
        let m = synthetic(messages + k);
        let t0 = Instant::now();
        if std::env::var_os("RUST_LOG").is_some() {
            // To line the slow samples up with the driver's log.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            eprintln!(
                "sample {k} appended at {:.3} (Unix time)",
                now.as_secs_f64()
            );
        }
        let mut cmd = format!("APPEND INBOX {{{}+}}\r\n", m.len()).into_bytes();
        cmd.extend_from_slice(&m);
        let tag = appender.send(&cmd).await;
        let idle_seen = std::cell::Cell::new(None);
        let store_seen = std::cell::Cell::new(None);
        let idle = async {
            loop {
                let r = idler.next().await;
                if r.windows(6).any(|w| w == b"EXISTS") {
                    idle_seen.set(Some(t0.elapsed()));
                    return t0.elapsed();
                }
            }
        };
        let store = async {
            loop {
                states.changed().await.unwrap();
                if states.borrow_and_update().get(DataType::Email) != before {
                    store_seen.set(Some(t0.elapsed()));
                    return t0.elapsed();
                }
            }
        };
        // A sample that never completes is reported, not waited for forever.
        let Ok((a, b)) =
            tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(idle, store) })
                .await
        else {
            let appended = tokio::time::timeout(Duration::from_secs(2), appender.next())
                .await
                .map(|r| String::from_utf8_lossy(&r).into_owned());
            eprintln!("sample {k}: the appender's reply: {appended:?}");
            let log = std::fs::read_to_string(d.dir.join("dovecot.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "sample {k}: APPEND not seen within 30 s (IDLE client saw it after {:?}, the \
                 store after {:?}; progress: {:?}); Dovecot log, newest first:\n{}",
                idle_seen.get(),
                store_seen.get(),
                h.sync.progress(),
                tail.join("\n")
            );
        };
        floor.push(a);
        ours.push(b);
        loop {
            let r = appender.next().await;
            if r.starts_with(format!("{tag} ").as_bytes()) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = idler.s.write_all(b"DONE\r\n").await;
    let _ = idle_tag;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // The slowest samples side by side: a tail of the gateway's own shows as a gap.
    let mut by_gap: Vec<(usize, Duration, Duration)> = ours
        .iter()
        .zip(&floor)
        .enumerate()
        .map(|(k, (o, f))| (k, *o, *f))
        .collect();
    by_gap.sort_by_key(|(_, o, f)| std::cmp::Reverse(o.saturating_sub(*f)));
    for (k, o, f) in by_gap.iter().take(3) {
        eprintln!(
            "sample {k}: gateway {:.1} ms, floor {:.1} ms",
            ms(*o),
            ms(*f)
        );
    }
    println!("APPEND → visible, {samples} samples:");
    println!(
        "  bare IDLE client (floor): p50 {:7.1} ms  p99 {:7.1} ms",
        ms(percentile(&mut floor, 0.5)),
        ms(percentile(&mut floor, 0.99))
    );
    println!(
        "  gateway store commit    : p50 {:7.1} ms  p99 {:7.1} ms",
        ms(percentile(&mut ours, 0.5)),
        ms(percentile(&mut ours, 0.99))
    );
    h.stop().await;
}
