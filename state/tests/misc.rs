//! Schema check, blob cache, trimming, notifier and the async boundary.

use std::time::{Duration, SystemTime};

use state::{AccountId, AsyncStore, Commit, DataType, Error, StoreConfig};

use crate::common::{TestResult, id, open};

#[test]
fn schema_version_mismatch_is_a_clear_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    drop(open(dir.path(), StoreConfig::default()));
    {
        // Pretend a newer gateway wrote the store.
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(false);
        let cfs = rocksdb::DB::list_cf(&opts, dir.path())?;
        let db = rocksdb::DB::open_cf(&opts, dir.path(), cfs)?;
        let meta = db.cf_handle(state::keys::cf::META).ok_or("no meta cf")?;
        db.put_cf(meta, state::keys::meta::SCHEMA_VERSION, 99u32.to_be_bytes())?;
    }
    match state::Store::open(dir.path(), StoreConfig::default()) {
        Err(Error::SchemaMismatch {
            found: 99,
            expected,
            ..
        }) => {
            assert_eq!(expected, state::SCHEMA_VERSION)
        }
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    Ok(())
}

/// A schema-1 store held all-mail copies of the size/sentAt indexes and of the thread-member
/// index; opening it with this build drops them, and all-mail queries still answer right
/// (merging the per-mailbox indexes).
#[test]
fn schema_1_store_loses_its_all_mail_duplicate_indexes() -> TestResult {
    use state::keys::{Key, cf, sort};
    use state::{EmailFacts, EmailQuery, EmailSort, EmailSource};

    let dir = tempfile::tempdir()?;
    let a = AccountId(7);
    {
        let store = open(dir.path(), StoreConfig::default());
        let mut c = Commit::new(a);
        // e3 is in no mailbox: all mail's own size and sentAt entries are its only ones.
        let emails = [("m1", 30u64), ("m2", 10), ("m1", 20), ("", 5)];
        for (i, (mb, size)) in emails.iter().enumerate() {
            let f = EmailFacts {
                mailbox_ids: if mb.is_empty() { vec![] } else { vec![id(mb)] },
                thread_id: Some(id("t1")),
                received_at: i as i64,
                sent_at: Some(100 - i as i64),
                size: *size,
                keywords: vec![],
            };
            c.put_email(id(&format!("e{i}")), vec![i as u8], f);
        }
        store.commit(c)?;
    }
    let old_keys = |a: AccountId| {
        let e = b"e0".as_slice();
        vec![
            (
                cf::IDX_MAILBOX,
                Key::account(a)
                    .lp(b"")
                    .u8(sort::SIZE)
                    .u64(30)
                    .raw(e)
                    .into_vec(),
            ),
            (
                cf::IDX_MAILBOX,
                Key::account(a)
                    .lp(b"")
                    .u8(sort::SENT_AT)
                    .i64(100)
                    .raw(e)
                    .into_vec(),
            ),
            (
                cf::IDX_MAILBOX_THREAD,
                Key::account(a).lp(b"").lp(b"t1").i64(0).raw(e).into_vec(),
            ),
        ]
    };
    let received = Key::account(a)
        .lp(b"")
        .u8(sort::RECEIVED_AT)
        .i64(0)
        .raw(b"e0")
        .into_vec();
    let raw = || -> Result<rocksdb::DB, Box<dyn std::error::Error>> {
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, dir.path())?;
        Ok(rocksdb::DB::open_cf(&opts, dir.path(), cfs)?)
    };
    {
        // Write what schema 1 had (for this account and another one) and say schema 1.
        let db = raw()?;
        for acc in [a, AccountId(8)] {
            for (c, k) in old_keys(acc) {
                db.put_cf(db.cf_handle(c).ok_or("cf")?, k, b"")?;
            }
        }
        let meta = db.cf_handle(cf::META).ok_or("no meta cf")?;
        db.put_cf(meta, state::keys::meta::SCHEMA_VERSION, 1u32.to_be_bytes())?;
    }
    {
        let store = open(dir.path(), StoreConfig::default());
        let by = |sort| -> Result<Vec<String>, state::Error> {
            let mut q = EmailQuery::newest_in(id("m1"), 10);
            q.source = EmailSource::AllMail;
            q.sort = sort;
            let r = store.query_emails(a, &q)?;
            Ok(r.ids.iter().map(|i| i.to_string()).collect())
        };
        assert_eq!(by(EmailSort::Size)?, ["e0", "e2", "e1", "e3"]);
        assert_eq!(by(EmailSort::SentAt)?, ["e0", "e1", "e2", "e3"]);
        assert_eq!(by(EmailSort::ReceivedAt)?, ["e3", "e2", "e1", "e0"]);
    }
    let db = raw()?;
    let meta = db.cf_handle(cf::META).ok_or("no meta cf")?;
    assert_eq!(
        db.get_cf(meta, state::keys::meta::SCHEMA_VERSION)?,
        Some(state::SCHEMA_VERSION.to_be_bytes().to_vec())
    );
    for acc in [a, AccountId(8)] {
        for (c, k) in old_keys(acc) {
            assert_eq!(
                db.get_cf(db.cf_handle(c).ok_or("cf")?, &k)?,
                None,
                "{c} {k:?}"
            );
        }
    }
    // The all-mail receivedAt index stays.
    let mailbox = db.cf_handle(cf::IDX_MAILBOX).ok_or("cf")?;
    assert_eq!(db.get_cf(mailbox, &received)?, Some(Vec::new()));
    Ok(())
}

#[test]
fn states_and_generation_survive_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = AccountId(1);
    let (generation, s) = {
        let store = open(dir.path(), StoreConfig::default());
        let mut c = Commit::new(a);
        c.put(DataType::Identity, id("i1"), b"x".to_vec());
        store.commit(c)?;
        (store.generation(), store.state(a, DataType::Identity)?)
    };
    let store = open(dir.path(), StoreConfig::default());
    assert_eq!(store.generation(), generation);
    assert_eq!(store.state(a, DataType::Identity)?, s);
    // A rebuilt store at the same path gets a new generation: old states are refused.
    drop(store);
    let dir2 = tempfile::tempdir()?;
    let other = open(dir2.path(), StoreConfig::default());
    assert!(matches!(
        other.changes(a, DataType::Identity, &s.to_string(), None),
        Err(Error::CannotCalculateChanges)
    ));
    Ok(())
}

#[test]
fn blob_cache_evicts_least_recently_used_and_survives_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = AccountId(1);
    let config = StoreConfig {
        blob_cache_bytes: 3000,
        ..StoreConfig::default()
    };
    {
        let store = open(dir.path(), config.clone());
        assert!(store.blob_put(a, b"b1", &[1; 1000])?);
        assert!(store.blob_put(a, b"b2", &[2; 1000])?);
        assert!(store.blob_put(a, b"b3", &[3; 1000])?);
        assert!(!store.blob_put(a, b"huge", &[0; 5000])?);
        // Use b1, so b2 is now the least recently used.
        assert_eq!(store.blob_get(a, b"b1")?, Some(vec![1; 1000]));
        assert_eq!(store.blob_cache_size(), 3000);
    }
    let store = open(dir.path(), config);
    assert_eq!(store.blob_cache_size(), 3000);
    assert!(store.blob_put(a, b"b4", &[4; 1000])?);
    assert_eq!(store.blob_get(a, b"b2")?, None);
    assert_eq!(store.blob_get(a, b"b1")?, Some(vec![1; 1000]));
    assert_eq!(store.blob_get(a, b"b3")?, Some(vec![3; 1000]));
    assert_eq!(store.blob_get(a, b"b4")?, Some(vec![4; 1000]));
    // Replacing a blob replaces its size.
    assert!(store.blob_put(a, b"b4", &[5; 10])?);
    assert_eq!(store.blob_cache_size(), 2010);
    assert_eq!(store.blob_get(AccountId(2), b"b1")?, None);
    Ok(())
}

#[test]
fn pinned_uploads_outlive_cache_pressure_and_expire_at_trim() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = AccountId(1);
    let config = StoreConfig {
        blob_cache_bytes: 2000,
        ..StoreConfig::default()
    };
    let store = open(dir.path(), config.clone());
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH)?.as_secs();
    // Cached first, then uploaded with the same id: it leaves the cache's accounting.
    assert!(store.blob_put(a, b"up", &[9; 1000])?);
    store.blob_put_pinned(a, b"up", &[9; 1000], secs + 3600)?;
    assert_eq!(store.blob_cache_size(), 0);
    store.blob_put_pinned(a, b"old", &[8; 1000], secs - 1)?;
    // Cache traffic far beyond the bound evicts cached blobs, never pinned ones.
    for i in 0..10u8 {
        assert!(store.blob_put(a, &[b'c', i], &[i; 1000])?);
    }
    assert!(store.blob_cache_size() <= 2000);
    assert_eq!(store.blob_get(a, b"c\x00")?, None);
    assert_eq!(store.blob_get(a, b"up")?, Some(vec![9; 1000]));
    // A later cache put of the same id leaves the pinned blob alone.
    assert!(store.blob_put(a, b"up", &[9; 1000])?);
    drop(store);
    let store = open(dir.path(), config);
    assert_eq!(store.blob_get(a, b"old")?, Some(vec![8; 1000]));
    let report = store.trim(now)?;
    assert_eq!(report.expired_blobs, 1);
    assert_eq!(store.blob_get(a, b"old")?, None);
    assert_eq!(store.blob_get(a, b"up")?, Some(vec![9; 1000]));
    Ok(())
}

#[test]
fn trim_by_age_refuses_old_states_and_keeps_recent_ones() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = AccountId(1);
    let store = open(
        dir.path(),
        StoreConfig {
            max_log_age: Some(Duration::from_secs(3600)),
            ..StoreConfig::default()
        },
    );
    let s0 = store.state(a, DataType::Email)?.to_string();
    let mut c = Commit::new(a);
    c.put_email(
        id("e1"),
        b"x".to_vec(),
        state::EmailFacts {
            mailbox_ids: vec![id("m1")],
            ..Default::default()
        },
    );
    store.commit(c)?;
    let s1 = store.state(a, DataType::Email)?.to_string();
    // Nothing is an hour old yet.
    store.trim(SystemTime::now())?;
    assert!(store.changes(a, DataType::Email, &s0, None).is_ok());
    // Two hours later, the entry is too old.
    let report = store.trim(SystemTime::now() + Duration::from_secs(7200))?;
    assert!(report.logs_trimmed >= 1);
    assert!(matches!(
        store.changes(a, DataType::Email, &s0, None),
        Err(Error::CannotCalculateChanges)
    ));
    let req = state::QueryChangesRequest {
        mailbox: Some(id("m1")),
        ascending: false,
        collapse_threads: false,
        since_query_state: s0,
        max_changes: None,
        up_to_id: None,
    };
    assert!(matches!(
        store.query_changes(a, &req),
        Err(Error::CannotCalculateChanges)
    ));
    let ch = store.changes(a, DataType::Email, &s1, None)?;
    assert!(ch.created.is_empty() && !ch.has_more_changes);
    Ok(())
}

#[test]
fn large_window_pages_instead_of_refusing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = AccountId(1);
    let store = open(
        dir.path(),
        StoreConfig {
            max_changes_cap: 100,
            durability: state::Durability::Buffered,
            ..StoreConfig::default()
        },
    );
    let s0 = store.state(a, DataType::Identity)?.to_string();
    let mut c = Commit::new(a);
    for i in 0..1000 {
        c.put(DataType::Identity, id(&format!("i{i}")), b"x".to_vec());
    }
    store.commit(c)?;
    let mut since = s0;
    let mut n = 0;
    loop {
        let ch = store.changes(a, DataType::Identity, &since, Some(5000))?;
        assert!(ch.created.len() <= 100);
        n += ch.created.len();
        since = ch.new_state.to_string();
        if !ch.has_more_changes {
            break;
        }
    }
    assert_eq!(n, 1000);
    Ok(())
}

#[test]
fn async_store_commits_off_the_executor_and_notifies() -> TestResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let store = AsyncStore::new(std::sync::Arc::new(open(
            dir.path(),
            StoreConfig::default(),
        )));
        let a = AccountId(3);
        let mut rx = store.subscribe(a).await?;
        assert_eq!(
            rx.borrow().get(DataType::Identity).map(|s| s.modseq()),
            Some(0)
        );
        let mut c = Commit::new(a);
        c.put(DataType::Identity, id("i1"), b"x".to_vec());
        let done = store.commit(c).await?;
        tokio::time::timeout(Duration::from_secs(5), rx.changed()).await??;
        let seen = rx.borrow_and_update().get(DataType::Identity);
        assert_eq!(seen, done.state(DataType::Identity));
        let ch = store
            .changes(a, DataType::Identity, "garbage".into(), None)
            .await;
        assert!(matches!(ch, Err(Error::CannotCalculateChanges)));
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

#[test]
fn concurrent_group_commits_are_all_acknowledged_and_ordered() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = std::sync::Arc::new(open(
        dir.path(),
        StoreConfig {
            durability: state::Durability::GroupCommit {
                window: Duration::from_millis(2),
            },
            ..StoreConfig::default()
        },
    ));
    let a = AccountId(1);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || -> Result<(), Error> {
                for i in 0..25 {
                    let mut c = Commit::new(a);
                    c.put(DataType::Identity, id(&format!("t{t}i{i}")), b"x".to_vec());
                    store.commit(c)?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "thread panicked")??;
    }
    assert_eq!(store.state(a, DataType::Identity)?.modseq(), 100);
    Ok(())
}

#[test]
fn mailbox_updated_properties_only_when_just_counts_moved() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path(), StoreConfig::default());
    let a = AccountId(1);
    let s0 = store.state(a, DataType::Mailbox)?.to_string();
    let facts = state::EmailFacts {
        mailbox_ids: vec![id("inbox")],
        ..Default::default()
    };
    // Created and filled in one batch: just "created", no counts-only noise.
    let mut c = Commit::new(a);
    c.put(DataType::Mailbox, id("inbox"), b"Inbox".to_vec());
    c.put_email(id("e1"), b"1".to_vec(), facts.clone());
    store.commit(c)?;
    let ch = store.changes(a, DataType::Mailbox, &s0, None)?;
    assert_eq!((ch.created.len(), ch.updated.len()), (1, 0));
    let s1 = ch.new_state.to_string();

    // A new email: counts only.
    let mut c = Commit::new(a);
    c.put_email(id("e2"), b"2".to_vec(), facts.clone());
    store.commit(c)?;
    let ch = store.changes(a, DataType::Mailbox, &s1, None)?;
    assert_eq!(ch.updated, vec![id("inbox")]);
    assert_eq!(
        ch.updated_properties,
        Some(&state::MAILBOX_COUNT_PROPERTIES[..])
    );
    assert_eq!(store.mailbox_counts(a, &id("inbox"))?.total_emails, 2);

    // A rename as well: no longer counts only.
    let mut c = Commit::new(a);
    c.put(DataType::Mailbox, id("inbox"), b"Renamed".to_vec());
    store.commit(c)?;
    let ch = store.changes(a, DataType::Mailbox, &s1, None)?;
    assert_eq!(ch.updated, vec![id("inbox")]);
    assert_eq!(ch.updated_properties, None);

    // An email referring to a mailbox that does not exist logs no Mailbox change.
    let before = store.state(a, DataType::Mailbox)?;
    let mut c = Commit::new(a);
    c.put_email(
        id("e3"),
        b"3".to_vec(),
        state::EmailFacts {
            mailbox_ids: vec![id("ghost")],
            ..Default::default()
        },
    );
    store.commit(c)?;
    assert_eq!(store.state(a, DataType::Mailbox)?, before);
    Ok(())
}

#[test]
fn sync_cursor_is_written_with_the_changes_it_produced() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path(), StoreConfig::default());
    let a = AccountId(1);
    let mut c = Commit::new(a);
    c.put(DataType::Identity, id("i1"), b"x".to_vec())
        .set_cursor(b"imap:INBOX:modseq".to_vec(), b"42".to_vec());
    store.commit(c)?;
    assert_eq!(store.cursor(a, b"imap:INBOX:modseq")?, Some(b"42".to_vec()));
    let mut c = Commit::new(a);
    c.clear_cursor(b"imap:INBOX:modseq".to_vec());
    store.commit(c)?;
    assert_eq!(store.cursor(a, b"imap:INBOX:modseq")?, None);
    Ok(())
}

/// `scan_objects` yields the objects of one type in one account, in id order, with their
/// bytes, and stops when told; other accounts, other types and destroyed objects are not in it.
#[test]
fn scan_objects_reads_one_type_of_one_account_in_id_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path(), StoreConfig::default());
    let (a, b) = (AccountId(1), AccountId(2));
    let mut c = Commit::new(a);
    for name in ["e3", "e1", "e2", "gone"] {
        c.put_email(id(name), name.as_bytes().to_vec(), Default::default());
    }
    c.put(DataType::Identity, id("i1"), b"identity".to_vec());
    store.commit(c)?;
    let mut c = Commit::new(a);
    c.destroy(DataType::Email, id("gone"));
    store.commit(c)?;
    let mut c = Commit::new(b);
    c.put_email(id("e0"), b"other account".to_vec(), Default::default());
    store.commit(c)?;

    let mut seen = Vec::new();
    store.scan_objects(a, DataType::Email, |oid, bytes| {
        seen.push((oid.as_str().to_owned(), bytes.to_vec()));
        true
    })?;
    let want: Vec<(String, Vec<u8>)> = ["e1", "e2", "e3"]
        .iter()
        .map(|n| ((*n).to_owned(), n.as_bytes().to_vec()))
        .collect();
    assert_eq!(seen, want);

    let mut first = Vec::new();
    store.scan_objects(a, DataType::Email, |oid, _| {
        first.push(oid.as_str().to_owned());
        false
    })?;
    assert_eq!(first, ["e1"]);

    let mut none = 0;
    store.scan_objects(AccountId(3), DataType::Email, |_, _| {
        none += 1;
        true
    })?;
    assert_eq!(none, 0);
    Ok(())
}

/// The L0 compaction trigger of column family `cf` as the newest OPTIONS file in the store's
/// folder records it (RocksDB rewrites that file whenever options change).
fn l0_trigger_on_disk(dir: &std::path::Path, cf: &str) -> Option<String> {
    let newest = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("OPTIONS-"))
        .max_by_key(|n| n["OPTIONS-".len()..].parse::<u64>().unwrap_or(0))?;
    let text = std::fs::read_to_string(dir.join(newest)).ok()?;
    let section = format!("[CFOptions \"{cf}\"]");
    let body = &text[text.find(&section)? + section.len()..];
    let body = &body[..body.find("\n[").unwrap_or(body.len())];
    body.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("level0_file_num_compaction_trigger="))
        .map(str::to_owned)
}

/// Bulk writes raise the L0 compaction trigger while any guard lives, and the last guard to
/// go puts it back.
#[test]
fn bulk_writes_tune_compaction_until_the_last_guard_goes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = std::sync::Arc::new(open(dir.path(), StoreConfig::default()));
    let trigger = |cf| l0_trigger_on_disk(dir.path(), cf);
    assert_eq!(trigger("objects").as_deref(), Some("4"));
    assert_eq!(store.bulk_writes_state(), (0, 0));
    let first = store.bulk_writes();
    let second = store.bulk_writes();
    assert_eq!(store.bulk_writes_state(), (2, 1));
    assert_eq!(trigger("objects").as_deref(), Some("8"));
    assert_eq!(trigger("idx_mailbox").as_deref(), Some("8"));
    drop(first);
    assert_eq!(trigger("objects").as_deref(), Some("8"));
    drop(second);
    assert_eq!(store.bulk_writes_state(), (0, 1));
    assert_eq!(trigger("objects").as_deref(), Some("4"));
    assert_eq!(trigger("idx_mailbox").as_deref(), Some("4"));
    drop(store.bulk_writes());
    assert_eq!(store.bulk_writes_state(), (0, 2));
    // Writes go on as before.
    let mut c = Commit::new(AccountId(1));
    c.put(DataType::Identity, id("i1"), b"x".to_vec());
    store.commit(c)?;
    Ok(())
}
