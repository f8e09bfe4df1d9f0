//! Model-based property test of commits and /changes.

use proptest::prelude::*;
use state::{AccountId, Commit, DataType, Error, StoreConfig};

use crate::common::{Model, ModelOp, check_changes_paging, open};

const TYPES: [DataType; 4] = [
    DataType::Mailbox,
    DataType::Email,
    DataType::Identity,
    DataType::EmailSubmission,
];

fn op() -> impl Strategy<Value = ModelOp> {
    let t = prop::sample::select(TYPES.to_vec());
    let i = (0u8..6).prop_map(|n| format!("id{n}"));
    prop_oneof![
        3 => (t.clone(), i.clone(), 0u8..3).prop_map(|(t, i, b)| ModelOp::Put(t, i, vec![b])),
        1 => (t, i).prop_map(|(t, i)| ModelOp::Destroy(t, i)),
    ]
}

fn commits() -> impl Strategy<Value = Vec<(u64, Vec<ModelOp>)>> {
    prop::collection::vec((1u64..4, prop::collection::vec(op(), 1..5)), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// /changes from every state any commit returned, paged with small and large maxChanges,
    /// answers exactly what the model says; with a tiny log bound, old states answer
    /// cannotCalculateChanges and recent ones still answer exactly.
    #[test]
    fn changes_match_the_model(commits in commits(), tiny_log in any::<bool>()) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let config = StoreConfig {
            max_log_entries: if tiny_log { 3 } else { 1_000_000 },
            durability: state::Durability::Buffered,
            ..StoreConfig::default()
        };
        let store = open(dir.path(), config);
        let mut model = Model::default();
        // States seen by clients: the initial ones, and every one a commit returned.
        let mut seen: Vec<(u64, DataType, String)> = Vec::new();
        for acct in 1..4 {
            for t in TYPES {
                let s = store.state(AccountId(acct), t).map_err(|e| TestCaseError::fail(e.to_string()))?;
                seen.push((acct, t, s.to_string()));
            }
        }
        for (acct, ops) in &commits {
            let mut c = Commit::new(AccountId(*acct));
            for o in ops {
                o.add_to(&mut c);
                model.apply(*acct, o);
            }
            let done = store.commit(c).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for s in &done.states {
                seen.push((*acct, s.data_type(), s.to_string()));
            }
            for t in TYPES {
                let got = store.state(AccountId(*acct), t).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got.modseq(), model.get(*acct, t).modseq);
            }
        }
        for (acct, t, since) in &seen {
            let tm = model.get(*acct, *t);
            for max in [Some(1), Some(2), Some(3), Some(1000), None] {
                match check_changes_paging(&store, *acct, *t, &tm, since, max) {
                    Ok(_) => {}
                    Err(e) if tiny_log && e.contains("cannot calculate") => {
                        // Only allowed for states older than the bound.
                        let m = state::State::parse(since).map(|s| s.modseq()).unwrap_or(0);
                        prop_assert!(tm.modseq - m > 3, "recent state refused: {} of {}", m, tm.modseq);
                    }
                    Err(e) => prop_assert!(false, "{}", e),
                }
            }
        }
        // Objects on disk equal the model.
        for ((acct, t), tm) in &model.types {
            let (_, ids) = store.ids(AccountId(*acct), *t).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            let want: Vec<String> = tm.objects.keys().cloned().collect();
            prop_assert_eq!(ids, want);
        }
    }
}

#[test]
fn malformed_foreign_and_future_states_are_cannot_calculate() -> crate::common::TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path(), StoreConfig::default());
    let a = AccountId(1);
    let mut c = Commit::new(a);
    c.put(DataType::Identity, crate::common::id("i1"), b"x".to_vec());
    store.commit(c)?;
    let good = store.state(a, DataType::Identity)?.to_string();
    let email_state = store.state(a, DataType::Email)?.to_string();
    let future = format!("{}ff", &good[..10]);
    let other_gen = format!("{:08x}{}", store.generation().wrapping_add(1), &good[8..]);
    for bad in [
        "",
        "zz",
        "not-a-state",
        "ffffffffffffffffffffffffffffffffff",
        &email_state,
        &future,
        &other_gen,
        "0000000004ff",
    ] {
        match store.changes(a, DataType::Identity, bad, Some(10)) {
            Err(Error::CannotCalculateChanges) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    match store.changes(a, DataType::Identity, &good, Some(0)) {
        Err(e @ Error::InvalidArguments(_)) => assert_eq!(e.jmap_type(), Some("invalidArguments")),
        other => panic!("maxChanges 0: {other:?}"),
    }
    assert_eq!(
        Error::CannotCalculateChanges.jmap_type(),
        Some("cannotCalculateChanges")
    );
    Ok(())
}

#[test]
fn echo_of_an_identical_write_is_not_a_change() -> crate::common::TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path(), StoreConfig::default());
    let a = AccountId(7);
    let mut c = Commit::new(a);
    c.put(DataType::Identity, crate::common::id("i1"), b"x".to_vec());
    let first = store.commit(c.clone())?;
    let again = store.commit(c)?;
    assert_eq!(first.states.len(), 1);
    assert!(again.states.is_empty());
    assert_eq!(store.state(a, DataType::Identity)?.modseq(), 1);
    Ok(())
}
