//! Email/query, counts, Thread and Mailbox derivations, and queryChanges against a model.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use state::{
    AccountId, Commit, DataType, EmailFacts, EmailQuery, EmailSort, EmailSource, Error,
    MailboxCounts, ObjectId, QueryChangesRequest, StoreConfig,
};

use crate::common::{TestResult, id, open};

const MAILBOXES: [&str; 3] = ["m1", "m2", "m3"];

#[derive(Debug, Clone)]
enum EmailOp {
    Put(String, EmailFacts),
    Destroy(String),
}

fn facts() -> impl Strategy<Value = EmailFacts> {
    (
        prop::collection::btree_set(0usize..3, 0..3),
        prop::option::weighted(0.9, 0u8..4),
        0i64..6,
        0u64..5,
        prop::collection::btree_set(
            prop::sample::select(vec!["$seen", "$flagged", "$draft"]),
            0..3,
        ),
    )
        .prop_map(|(mbs, thread, recv, size, kws)| EmailFacts {
            mailbox_ids: mbs.into_iter().map(|m| id(MAILBOXES[m])).collect(),
            thread_id: thread.map(|t| id(&format!("t{t}"))),
            received_at: recv,
            sent_at: if size % 2 == 0 { Some(recv * 2) } else { None },
            size,
            keywords: kws.into_iter().map(String::from).collect(),
        })
}

fn email_ops() -> impl Strategy<Value = Vec<Vec<EmailOp>>> {
    let one = prop_oneof![
        4 => ((0u8..8).prop_map(|n| format!("e{n}")), facts()).prop_map(|(i, f)| EmailOp::Put(i, f)),
        1 => (0u8..8).prop_map(|n| EmailOp::Destroy(format!("e{n}"))),
    ];
    prop::collection::vec(prop::collection::vec(one, 1..4), 1..25)
}

fn thread_of(i: &str, f: &EmailFacts) -> String {
    f.thread_id.as_ref().map_or(i.to_owned(), |t| t.to_string())
}

/// The expected ordered results of a query over the model.
fn expected(
    emails: &BTreeMap<String, EmailFacts>,
    mailbox: Option<&str>,
    sort: EmailSort,
    ascending: bool,
    collapse: bool,
) -> Vec<String> {
    let mut v: Vec<(u64, String, String)> = emails
        .iter()
        .filter(|(_, f)| mailbox.is_none_or(|m| f.mailbox_ids.iter().any(|x| x.as_str() == m)))
        .map(|(i, f)| {
            let key = match sort {
                EmailSort::ReceivedAt => state::keys::sortable_i64(f.received_at),
                EmailSort::Size => f.size,
                EmailSort::SentAt => state::keys::sortable_i64(f.sent_at.unwrap_or(i64::MIN)),
            };
            (key, i.clone(), thread_of(i, f))
        })
        .collect();
    v.sort();
    if !ascending {
        v.reverse();
    }
    let mut seen = BTreeSet::new();
    v.into_iter()
        .filter(|(_, _, t)| !collapse || seen.insert(t.clone()))
        .map(|(_, i, _)| i)
        .collect()
}

fn expected_counts(emails: &BTreeMap<String, EmailFacts>, m: &str) -> MailboxCounts {
    let in_m: Vec<(&String, &EmailFacts)> = emails
        .iter()
        .filter(|(_, f)| f.mailbox_ids.iter().any(|x| x.as_str() == m))
        .collect();
    let threads: BTreeSet<String> = in_m.iter().map(|(i, f)| thread_of(i, f)).collect();
    let unread_threads: BTreeSet<String> = emails
        .iter()
        .filter(|(_, f)| f.is_unread())
        .map(|(i, f)| thread_of(i, f))
        .collect();
    MailboxCounts {
        total_emails: in_m.len() as u32,
        unread_emails: in_m.iter().filter(|(_, f)| f.is_unread()).count() as u32,
        total_threads: threads.len() as u32,
        unread_threads: threads.intersection(&unread_threads).count() as u32,
    }
}

fn thread_lists(emails: &BTreeMap<String, EmailFacts>) -> BTreeMap<String, Vec<String>> {
    let mut v: Vec<(i64, String, String)> = emails
        .iter()
        .map(|(i, f)| (f.received_at, i.clone(), thread_of(i, f)))
        .collect();
    v.sort();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, i, t) in v {
        out.entry(t).or_default().push(i);
    }
    out
}

fn strs(ids: &[ObjectId]) -> Vec<String> {
    ids.iter().map(|i| i.to_string()).collect()
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Applies queryChanges output to a cached list the way RFC 8620 5.6 tells a client to.
fn splice(mut cache: Vec<String>, removed: &[ObjectId], added: &[(ObjectId, u64)]) -> Vec<String> {
    let removed: BTreeSet<String> = removed.iter().map(|i| i.to_string()).collect();
    cache.retain(|i| !removed.contains(i));
    for (i, at) in added {
        let at = (*at as usize).min(cache.len());
        cache.insert(at, i.to_string());
    }
    cache
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn queries_counts_threads_and_query_changes_match_the_model(batches in email_ops()) {
        let dir = tempfile::tempdir().map_err(fail)?;
        let store = open(dir.path(), StoreConfig { durability: state::Durability::Buffered, ..StoreConfig::default() });
        let a = AccountId(1);
        let mut c = Commit::new(a);
        for m in MAILBOXES {
            c.put(DataType::Mailbox, id(m), m.as_bytes().to_vec());
        }
        store.commit(c).map_err(fail)?;

        let mut emails: BTreeMap<String, EmailFacts> = BTreeMap::new();
        // (Email state, model snapshot) after each commit, for queryChanges.
        let mut history: Vec<(String, BTreeMap<String, EmailFacts>)> = Vec::new();
        history.push((store.state(a, DataType::Email).map_err(fail)?.to_string(), emails.clone()));
        let mut thread_state = store.state(a, DataType::Thread).map_err(fail)?.to_string();
        let mut mailbox_state = store.state(a, DataType::Mailbox).map_err(fail)?.to_string();

        for batch in &batches {
            let before = emails.clone();
            let mut c = Commit::new(a);
            for op in batch {
                match op {
                    EmailOp::Put(i, f) => {
                        c.put_email(id(i), i.as_bytes().to_vec(), f.clone());
                        let mut f = f.clone();
                        f.keywords.sort();
                        emails.insert(i.clone(), f);
                    }
                    EmailOp::Destroy(i) => {
                        c.destroy(DataType::Email, id(i));
                        emails.remove(i);
                    }
                }
            }
            store.commit(c).map_err(fail)?;

            // Queries, every shape, full and paged.
            let sources: Vec<Option<&str>> = vec![None, Some("m1"), Some("m2"), Some("m3")];
            for m in &sources {
                for sort in [EmailSort::ReceivedAt, EmailSort::Size, EmailSort::SentAt] {
                    for ascending in [true, false] {
                        for collapse in [false, true] {
                            let q = EmailQuery {
                                source: m.map_or(EmailSource::AllMail, |m| EmailSource::Mailbox(id(m))),
                                sort, ascending, collapse_threads: collapse,
                                position: 0, anchor: None, anchor_offset: 0, limit: None,
                            };
                            let want = expected(&emails, *m, sort, ascending, collapse);
                            let got = store.query_emails(a, &q);
                            if collapse && sort != EmailSort::ReceivedAt {
                                prop_assert!(matches!(got, Err(Error::UnsupportedSort)));
                                continue;
                            }
                            let got = got.map_err(fail)?;
                            prop_assert_eq!(strs(&got.ids), want.clone(), "{:?} {:?} asc={} collapse={}", m, sort, ascending, collapse);
                            prop_assert_eq!(got.total, want.len() as u64);
                            // Windows by position, negative position and anchor.
                            let q2 = EmailQuery { position: 1, limit: Some(2), ..q.clone() };
                            let got2 = store.query_emails(a, &q2).map_err(fail)?;
                            prop_assert_eq!(strs(&got2.ids), want.iter().skip(1).take(2).cloned().collect::<Vec<_>>());
                            let q3 = EmailQuery { position: -2, limit: Some(5), ..q.clone() };
                            let got3 = store.query_emails(a, &q3).map_err(fail)?;
                            let start = want.len().saturating_sub(2);
                            prop_assert_eq!(strs(&got3.ids), want[start..].to_vec());
                            if let Some(anchor) = want.get(want.len() / 2) {
                                let q4 = EmailQuery { anchor: Some(id(anchor)), anchor_offset: -1, limit: Some(3), ..q.clone() };
                                let got4 = store.query_emails(a, &q4).map_err(fail)?;
                                let at = (want.len() / 2).saturating_sub(1);
                                prop_assert_eq!(got4.position, at as u64);
                                prop_assert_eq!(strs(&got4.ids), want.iter().skip(at).take(3).cloned().collect::<Vec<_>>());
                            }
                        }
                    }
                }
            }
            // Anchors not in the results.
            let q = EmailQuery { anchor: Some(id("nope")), ..EmailQuery::newest_in(id("m1"), 10) };
            prop_assert!(matches!(store.query_emails(a, &q), Err(Error::AnchorNotFound)));

            // Keyword index.
            for kw in ["$seen", "$flagged"] {
                let q = EmailQuery {
                    source: EmailSource::Keyword(kw.into()), sort: EmailSort::ReceivedAt, ascending: true,
                    collapse_threads: false, position: 0, anchor: None, anchor_offset: 0, limit: None,
                };
                let got = store.query_emails(a, &q).map_err(fail)?;
                let with: BTreeMap<String, EmailFacts> = emails.iter()
                    .filter(|(_, f)| f.keywords.iter().any(|k| k == kw))
                    .map(|(i, f)| (i.clone(), f.clone())).collect();
                prop_assert_eq!(strs(&got.ids), expected(&with, None, EmailSort::ReceivedAt, true, false));
                prop_assert_eq!(got.total, with.len() as u64);
            }

            // Counts.
            for m in MAILBOXES {
                prop_assert_eq!(store.mailbox_counts(a, &id(m)).map_err(fail)?, expected_counts(&emails, m), "counts of {}", m);
            }

            // Threads: emailIds, and Thread/changes created/destroyed exactly, updated covering
            // every thread whose emailIds changed.
            let (tb, ta) = (thread_lists(&before), thread_lists(&emails));
            for (t, ids) in &ta {
                prop_assert_eq!(strs(&store.thread_email_ids(a, &id(t)).map_err(fail)?), ids.clone());
            }
            let ch = store.changes(a, DataType::Thread, &thread_state, None).map_err(fail)?;
            let created: BTreeSet<String> = ta.keys().filter(|t| !tb.contains_key(*t)).cloned().collect();
            let destroyed: BTreeSet<String> = tb.keys().filter(|t| !ta.contains_key(*t)).cloned().collect();
            prop_assert_eq!(crate::common::set(&ch.created), created);
            prop_assert_eq!(crate::common::set(&ch.destroyed), destroyed);
            let updated = crate::common::set(&ch.updated);
            for (t, l) in &ta {
                if tb.get(t).is_some_and(|old| old != l) {
                    prop_assert!(updated.contains(t), "thread {} changed but not reported", t);
                }
            }
            thread_state = ch.new_state.to_string();

            // Mailbox/changes: exactly the mailboxes whose counts moved, as count-only updates.
            let ch = store.changes(a, DataType::Mailbox, &mailbox_state, None).map_err(fail)?;
            let moved: BTreeSet<String> = MAILBOXES.iter()
                .filter(|m| expected_counts(&before, m) != expected_counts(&emails, m))
                .map(|m| m.to_string()).collect();
            prop_assert_eq!(crate::common::set(&ch.updated), moved.clone());
            prop_assert_eq!(ch.updated_properties.is_some(), !moved.is_empty());
            mailbox_state = ch.new_state.to_string();

            history.push((store.state(a, DataType::Email).map_err(fail)?.to_string(), emails.clone()));
        }

        // queryChanges from every earlier query state, every supported shape.
        for (since, old) in &history {
            for m in [None, Some("m1"), Some("m2")] {
                for ascending in [true, false] {
                    for collapse in [false, true] {
                        let old_list = expected(old, m, EmailSort::ReceivedAt, ascending, collapse);
                        let new_list = expected(&emails, m, EmailSort::ReceivedAt, ascending, collapse);
                        let req = QueryChangesRequest {
                            mailbox: m.map(id), ascending, collapse_threads: collapse,
                            since_query_state: since.clone(), max_changes: None, up_to_id: None,
                        };
                        let qc = store.query_changes(a, &req).map_err(fail)?;
                        prop_assert_eq!(splice(old_list.clone(), &qc.removed, &qc.added), new_list.clone(),
                            "m={:?} asc={} collapse={}", m, ascending, collapse);
                        prop_assert_eq!(qc.total, new_list.len() as u64);
                        // With upToId, a client caching only the first k+1 results: after
                        // splicing, every entry it knows is where the new results have it.
                        if let Some(k) = old_list.len().checked_sub(1).map(|l| l / 2) {
                            let up = &old_list[k];
                            let req = QueryChangesRequest { up_to_id: Some(id(up)), ..req.clone() };
                            let qc = store.query_changes(a, &req).map_err(fail)?;
                            let mut cache: Vec<Option<String>> = old_list.iter().enumerate()
                                .map(|(i, x)| (i <= k).then(|| x.clone())).collect();
                            let removed: BTreeSet<String> = qc.removed.iter().map(|i| i.to_string()).collect();
                            cache.retain(|x| x.as_ref().is_none_or(|x| !removed.contains(x)));
                            for (i, at) in &qc.added {
                                let at = (*at as usize).min(cache.len());
                                cache.insert(at, Some(i.to_string()));
                            }
                            cache.resize(new_list.len(), None);
                            for (i, x) in cache.iter().enumerate() {
                                if let Some(x) = x {
                                    prop_assert_eq!(x, &new_list[i], "upToId {} m={:?} asc={} collapse={} at {}", up, m, ascending, collapse, i);
                                }
                            }
                            // And the known prefix reaches upToId when it is still there.
                            if let Some(pos) = new_list.iter().position(|i| i == up) {
                                prop_assert_eq!(cache[pos].as_deref(), Some(up.as_str()));
                            }
                        }
                        let n = qc.removed.len() + qc.added.len();
                        if n > 1 {
                            let req = QueryChangesRequest { max_changes: Some(n as u64 - 1), ..req };
                            prop_assert!(matches!(store.query_changes(a, &req), Err(Error::TooManyChanges)));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn email_without_facts_keeps_its_indexes_on_plain_put() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path(), StoreConfig::default());
    let a = AccountId(1);
    let f = EmailFacts {
        mailbox_ids: vec![id("m1")],
        thread_id: Some(id("t1")),
        received_at: 5,
        ..EmailFacts::default()
    };
    let mut c = Commit::new(a);
    c.put(DataType::Mailbox, id("m1"), b"inbox".to_vec());
    c.put_email(id("e1"), b"v1".to_vec(), f.clone());
    store.commit(c)?;
    let mut c = Commit::new(a);
    c.put(DataType::Email, id("e1"), b"v2".to_vec());
    store.commit(c)?;
    assert_eq!(store.email_facts(a, &id("e1"))?, Some(f));
    let r = store.query_emails(a, &EmailQuery::newest_in(id("m1"), 10))?;
    assert_eq!(strs(&r.ids), vec!["e1"]);
    assert_eq!(store.mailbox_counts(a, &id("m1"))?.unread_emails, 1);
    Ok(())
}
