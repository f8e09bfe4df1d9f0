//! Crash safety: a child process commits continuously and is SIGKILLed at random moments.
//!
//! The child is this test binary re-executed with `STATE_CRASH_CHILD=<dir>`; it prints
//! `ack <n> <identity state> <submission state>` after each acknowledged commit.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use state::{AccountId, Commit, DataType, StoreConfig};

use crate::common::{Model, ModelOp, TestResult, check_changes_paging, id, open};

const CHILD_ENV: &str = "STATE_CRASH_CHILD";
const ACCOUNT: u64 = 9;
const KILLS: usize = 24;

/// The deterministic operations of commit number `n` (several objects, two types).
fn ops_of(n: u64) -> Vec<ModelOp> {
    let mut ops = vec![
        ModelOp::Put(
            DataType::Identity,
            format!("a{}", n % 13),
            n.to_be_bytes().to_vec(),
        ),
        ModelOp::Put(
            DataType::EmailSubmission,
            format!("b{}", n % 7),
            n.to_be_bytes().to_vec(),
        ),
        ModelOp::Put(
            DataType::Identity,
            format!("c{}", n % 5),
            n.to_be_bytes().to_vec(),
        ),
    ];
    if n % 4 == 3 {
        ops.push(ModelOp::Destroy(
            DataType::Identity,
            format!("a{}", (n * 7) % 13),
        ));
    }
    if n % 6 == 5 {
        ops.push(ModelOp::Destroy(
            DataType::EmailSubmission,
            format!("b{}", (n * 3) % 7),
        ));
    }
    ops
}

/// Child mode: commit forever, acknowledging each commit on stdout.
pub fn child_main(dir: &str) {
    let store = open(std::path::Path::new(dir), StoreConfig::default());
    let a = AccountId(ACCOUNT);
    let mut n = match store.cursor(a, b"n") {
        Ok(Some(v)) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v);
            u64::from_be_bytes(b)
        }
        Ok(None) => 0,
        Err(e) => panic!("cursor: {e}"),
    };
    let stdout = std::io::stdout();
    loop {
        let mut c = Commit::new(a);
        for o in ops_of(n) {
            o.add_to(&mut c);
        }
        c.set_cursor(b"n".to_vec(), (n + 1).to_be_bytes().to_vec());
        if let Err(e) = store.commit(c) {
            panic!("commit {n}: {e}");
        }
        let s1 = store
            .state(a, DataType::Identity)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let s2 = store
            .state(a, DataType::EmailSubmission)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let mut out = stdout.lock();
        let _ = writeln!(out, "ack {n} {s1} {s2}");
        let _ = out.flush();
        n += 1;
    }
}

pub fn child_dir() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

#[test]
fn sigkill_never_loses_acknowledged_commits_or_shows_partial_ones() -> TestResult {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut seen_states: Vec<(DataType, String)> = Vec::new();
    let mut last_acked: Option<u64> = None;
    let mut total_acks = 0usize;
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split_whitespace().collect();
                if parts.len() == 4
                    && parts[0] == "ack"
                    && let Ok(n) = parts[1].parse::<u64>()
                {
                    acks.push((n, parts[2].to_owned(), parts[3].to_owned()));
                }
            }
            acks
        });
        // Kill at a random moment: sometimes during open, mostly mid-stream.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = 20 + rng % 400;
        std::thread::sleep(Duration::from_millis(wait));
        child.kill()?; // SIGKILL on Unix
        child.wait()?;
        let acks = reader.join().map_err(|_| "reader panicked")?;
        total_acks += acks.len();
        for (k, (n, s1, s2)) in acks.iter().enumerate() {
            last_acked = Some(last_acked.map_or(*n, |l: u64| l.max(*n)));
            // A sample of the states clients saw: first, last and a few between.
            if k == 0 || k + 1 == acks.len() || k % (acks.len() / 4 + 1) == 0 {
                seen_states.push((DataType::Identity, s1.clone()));
                seen_states.push((DataType::EmailSubmission, s2.clone()));
            }
        }

        // Reopen and check.
        let store = open(dir.path(), StoreConfig::default());
        let a = AccountId(ACCOUNT);
        let committed = match store.cursor(a, b"n")? {
            Some(v) => u64::from_be_bytes(v.as_slice().try_into()?),
            None => 0,
        };
        if let Some(l) = last_acked {
            assert!(
                committed > l,
                "round {round}: acked commit {l} lost (cursor {committed})"
            );
        }
        let mut model = Model::default();
        for n in 0..committed {
            for o in ops_of(n) {
                model.apply(ACCOUNT, &o);
            }
        }
        for t in [DataType::Identity, DataType::EmailSubmission] {
            let tm = model.get(ACCOUNT, t);
            // Exactly the objects of commits 0..committed: no partial batch.
            let (state, ids) = store.ids(a, t)?;
            let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            assert_eq!(
                ids,
                tm.objects.keys().cloned().collect::<Vec<_>>(),
                "round {round} {t:?}"
            );
            for (i, bytes) in &tm.objects {
                assert_eq!(
                    store.get(a, t, &id(i))?.as_ref(),
                    Some(bytes),
                    "round {round} {t:?} {i}"
                );
            }
            assert_eq!(state.modseq(), tm.modseq, "round {round} {t:?} state");
            // States never go backwards, and /changes from each is exact.
            for (st, s) in seen_states.iter().filter(|(st, _)| *st == t) {
                let m = state::State::parse(s).ok_or("unparseable state")?.modseq();
                assert!(
                    m <= state.modseq(),
                    "round {round}: {st:?} state went backwards"
                );
                for max in [Some(40), None] {
                    if let Err(e) = check_changes_paging(&store, ACCOUNT, t, &tm, s, max) {
                        assert!(e.contains("cannot calculate"), "round {round}: {e}");
                    }
                }
            }
        }
        // Keep the seen list bounded: the last few states per round are enough.
        if seen_states.len() > 120 {
            seen_states.drain(..seen_states.len() - 120);
        }
    }
    assert!(total_acks > 0, "the child never acknowledged a commit");
    eprintln!("crash test: {KILLS} kills, {total_acks} acknowledged commits");
    Ok(())
}

/// The child's entry point: a no-op unless the env var selects child mode.
#[test]
fn child_entry() {
    if let Some(dir) = child_dir() {
        child_main(&dir);
    }
}
