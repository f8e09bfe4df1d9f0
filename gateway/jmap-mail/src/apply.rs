//! Turning adapter output into store commits: one [`SyncBatch`] (with its cursor) per
//! commit, and the mailbox list reconciled with stable ids. Blocking code: it runs on the
//! store's blocking pool, under the account's commit lock.

use std::collections::{HashMap, HashSet};

use state::{AccountId, Committed, DataType, ObjectId, Store};
use upstream::{MailboxRole, MessageChange, RemoteMailbox, RemoteMessage, SyncBatch};

use crate::headers::{self, base_subject};
use crate::records::{
    EmailRecord, MailboxCopies, MailboxRecord, email_id, mailbox_id, thread_id_for_email,
    thread_id_for_hint,
};
use crate::tx::{Carry, Tx, TxStats, names};

/// The uid a (mailbox, uid) entry points at, if the Email still has that copy.
fn located(tx: &mut Tx<'_>, mailbox: &str, uid: &str) -> state::Result<Option<EmailRecord>> {
    let Some(id) = tx.get_str(&names::loc(mailbox, uid))? else {
        return Ok(None);
    };
    Ok(tx.email(&id)?.filter(|r| {
        r.locations
            .get(mailbox)
            .is_some_and(|c| c.uids.contains_key(uid))
    }))
}

/// Removes one copy; an Email without copies is destroyed.
fn remove_copy(tx: &mut Tx<'_>, mut rec: EmailRecord, mailbox: &str, uid: &str) {
    tx.del(names::loc(mailbox, uid));
    if let Some(c) = rec.locations.get_mut(mailbox) {
        c.uids.remove(uid);
        if c.uids.is_empty() {
            rec.locations.remove(mailbox);
        }
    }
    if rec.locations.is_empty() {
        tx.destroy_email(&rec.id);
    } else {
        tx.put_email(rec);
    }
}

fn resolve_thread(tx: &mut Tx<'_>, mut t: String) -> state::Result<String> {
    for _ in 0..32 {
        match tx.get_str(&names::alias(&t))? {
            Some(next) if next != t => t = next,
            _ => break,
        }
    }
    Ok(t)
}

/// Assigns a new Email to a thread: upstream's hint when there is one, else the nearest known
/// relative with the same base subject — a message that already named this one (its own
/// Message-ID is indexed), its parent (In-Reply-To), then its References from the nearest
/// ancestor back — else a new thread.
///
/// Threads are never merged. When a late message links two existing threads it joins one
/// and the Emails of the other keep their threadId: RFC 8621 §3 makes threadId immutable
/// and allows a merge only by giving the moved Emails new ids, which would break ids that
/// derive from the message. Later messages follow the index, so one conversation splits at
/// most where upstream delivered out of order.
fn assign_thread(tx: &mut Tx<'_>, rec: &EmailRecord, hint: Option<&str>) -> state::Result<String> {
    if let Some(h) = hint {
        return Ok(thread_id_for_hint(h));
    }
    let base = base_subject(rec.subject.as_deref());
    let mut ordered: Vec<&String> = Vec::new();
    for r in rec
        .message_id
        .iter()
        .chain(&rec.in_reply_to)
        .chain(rec.references.iter().rev())
    {
        if !ordered.contains(&r) {
            ordered.push(r);
        }
    }
    let mut chosen: Option<String> = None;
    let mut known: HashSet<&String> = HashSet::new();
    for r in &ordered {
        let name = tx.msgid_name(r);
        if let Some(t) = tx.get_str(&name)? {
            known.insert(r);
            if chosen.is_none() {
                // Stores written before threads stopped merging may hold aliases.
                let t = resolve_thread(tx, t)?;
                let subject = tx.get_str(&names::subject(&t))?.unwrap_or_default();
                if subject == base {
                    chosen = Some(t);
                }
            }
        }
    }
    let thread = match chosen {
        Some(t) => t,
        None => {
            let id = state::ObjectId::new(rec.id.clone())
                .map_err(|_| state::Error::Corrupt("email id"))?;
            let t = thread_id_for_email(&id);
            tx.set(names::subject(&t), base.clone());
            t
        }
    };
    // Message-IDs nobody claimed yet lead here from now on; claimed ones stay where they are.
    for r in ordered {
        if !known.contains(r) {
            let name = tx.msgid_name(r);
            tx.set(name, thread.clone());
        }
    }
    Ok(thread)
}

fn new_record(
    tx: &mut Tx<'_>,
    m: &RemoteMessage,
    id: ObjectId,
    parsed: Option<headers::ParsedHeaders>,
    mailbox: &str,
    epoch: u32,
) -> state::Result<EmailRecord> {
    let h = parsed.unwrap_or_else(|| headers::parse(&m.header_block));
    let mut copies = MailboxCopies {
        epoch,
        ..MailboxCopies::default()
    };
    copies.uids.insert(m.uid.clone(), m.keywords.clone());
    let mut rec = EmailRecord {
        id: id.as_str().to_owned(),
        thread_id: String::new(),
        fingerprint: m.fingerprint.clone(),
        locations: [(mailbox.to_owned(), copies)].into_iter().collect(),
        received_at: m.received_at,
        sent_at: h.sent_at,
        size: m.size,
        message_id: h.message_id,
        in_reply_to: h.in_reply_to,
        references: h.references,
        subject: h.subject,
        from: h.from,
        sender: h.sender,
        reply_to: h.reply_to,
        to: h.to,
        cc: h.cc,
        bcc: h.bcc,
        preview: m.preview.clone().unwrap_or_default(),
        has_attachment: m.has_attachment,
        header_block: m.header_block.clone(),
        headers_complete: m.headers_complete,
    };
    rec.thread_id = assign_thread(tx, &rec, m.thread_hint.as_deref())?;
    Ok(rec)
}

/// The result of applying one batch.
#[derive(Debug, Clone)]
pub struct BatchApplied {
    pub committed: Committed,
    pub stats: TxStats,
    /// Time spent in `Store::commit` (the rest of the batch is reading and building).
    pub commit_time: std::time::Duration,
}

/// What [`prefetch`] learned about a batch, by position in it.
struct Prefetched {
    /// The Email id of each upserted message (`None` for other changes).
    ids: Vec<Option<ObjectId>>,
    /// The parsed headers of each message that is new to the store.
    parsed: Vec<Option<headers::ParsedHeaders>>,
}

/// Reads ahead, in a few multi-gets, everything applying `batch` will look up: the
/// mailbox's epoch, the uid → Email entries, the Emails, and for new messages the
/// Message-ID → thread entries with those threads' aliases and subjects.
fn prefetch(tx: &mut Tx<'_>, mailbox: &str, batch: &SyncBatch) -> state::Result<Prefetched> {
    let uid_of = |c: &MessageChange| -> String {
        match c {
            MessageChange::Upsert(m) => m.uid.clone(),
            MessageChange::Keywords { uid, .. } | MessageChange::Removed { uid } => uid.clone(),
        }
    };
    let n = batch.changes.len();
    let mut kv = Vec::with_capacity(n + 2);
    kv.extend([names::epoch(mailbox), names::resetting(mailbox)]);
    kv.extend(
        batch
            .changes
            .iter()
            .map(|c| names::loc(mailbox, &uid_of(c))),
    );
    tx.preload_kv(kv)?;
    let mut wanted: Vec<String> = Vec::with_capacity(n);
    let mut ids: Vec<Option<ObjectId>> = Vec::with_capacity(n);
    for c in &batch.changes {
        if let Some(id) = tx.get_str(&names::loc(mailbox, &uid_of(c)))? {
            wanted.push(id);
        }
        match c {
            MessageChange::Upsert(m) => {
                let id = email_id(&m.fingerprint);
                wanted.push(id.as_str().to_owned());
                ids.push(Some(id));
            }
            _ => ids.push(None),
        }
    }
    tx.preload_emails(wanted)?;
    let mut parsed = Vec::with_capacity(n);
    let mut mids: Vec<Vec<u8>> = Vec::new();
    for (c, id) in batch.changes.iter().zip(&ids) {
        let (MessageChange::Upsert(m), Some(id)) = (c, id) else {
            parsed.push(None);
            continue;
        };
        if tx.email_exists(id.as_str())? {
            parsed.push(None);
            continue;
        }
        let h = headers::parse(&m.header_block);
        if m.thread_hint.is_none() {
            for r in h
                .message_id
                .iter()
                .chain(&h.in_reply_to)
                .chain(&h.references)
            {
                mids.push(tx.msgid_name(r));
            }
        }
        parsed.push(Some(h));
    }
    tx.preload_kv(mids.iter().cloned())?;
    let mut threads: Vec<Vec<u8>> = Vec::new();
    for n in &mids {
        if let Some(t) = tx.get_str(n)? {
            threads.push(names::alias(&t));
            threads.push(names::subject(&t));
        }
    }
    tx.preload_kv(threads)?;
    Ok(Prefetched { ids, parsed })
}

/// Applies one batch of one mailbox (JMAP id `mailbox`) and its cursor in one commit (the
/// driver does the same in two steps, building the next batch while this one commits). For
/// the unit tests and `benches/apply.rs`.
pub fn apply_batch(
    store: &Store,
    account: AccountId,
    mailbox: &str,
    batch: &SyncBatch,
) -> state::Result<BatchApplied> {
    let built = build_batch(Tx::new(store, account), mailbox, batch, false)?;
    let started = std::time::Instant::now();
    let committed = store.commit(built.commit)?;
    Ok(BatchApplied {
        committed,
        stats: built.stats,
        commit_time: started.elapsed(),
    })
}

/// A batch turned into a commit, not yet committed.
pub(crate) struct Built {
    pub commit: state::Commit,
    pub stats: TxStats,
    /// The batch's writes, for building the next batch before this one has landed.
    pub carry: Carry,
}

/// Reads and builds what applying `batch` writes, in `tx` (a new transaction, or one
/// continuing from the previous batch's carry); `carry`: keep this batch's writes.
pub(crate) fn build_batch(
    mut tx: Tx<'_>,
    mailbox: &str,
    batch: &SyncBatch,
    carry: bool,
) -> state::Result<Built> {
    tx.reserve(batch.changes.len());
    let Prefetched {
        mut ids,
        mut parsed,
    } = prefetch(&mut tx, mailbox, batch)?;
    let mut epoch: u32 = tx
        .get_str(&names::epoch(mailbox))?
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    if batch.reset {
        epoch += 1;
        tx.set(names::epoch(mailbox), epoch.to_string());
        tx.set(names::resetting(mailbox), "1");
    }
    for (i, change) in batch.changes.iter().enumerate() {
        match change {
            MessageChange::Upsert(m) => {
                let id = ids[i].take().unwrap_or_else(|| email_id(&m.fingerprint));
                if let Some(old) = located(&mut tx, mailbox, &m.uid)?
                    && old.id != id.as_str()
                {
                    // The uid now holds other content (a server that reused it): drop the old copy.
                    remove_copy(&mut tx, old, mailbox, &m.uid);
                }
                let rec = match tx.email(id.as_str())? {
                    Some(mut rec) => {
                        let copies = rec.locations.entry(mailbox.to_owned()).or_default();
                        if copies.epoch < epoch {
                            // Copies from before a reset: their uids are void.
                            for u in copies.uids.keys() {
                                tx.del(names::loc(mailbox, u));
                            }
                            copies.uids.clear();
                            copies.epoch = epoch;
                        }
                        copies.uids.insert(m.uid.clone(), m.keywords.clone());
                        rec
                    }
                    None => new_record(&mut tx, m, id, parsed[i].take(), mailbox, epoch)?,
                };
                tx.set(names::loc(mailbox, &m.uid), rec.id.clone());
                tx.put_email(rec);
            }
            MessageChange::Keywords { uid, keywords } => {
                if let Some(mut rec) = located(&mut tx, mailbox, uid)? {
                    if let Some(c) = rec.locations.get_mut(mailbox) {
                        c.uids.insert(uid.clone(), keywords.clone());
                    }
                    tx.put_email(rec);
                }
            }
            MessageChange::Removed { uid } => {
                if let Some(rec) = located(&mut tx, mailbox, uid)? {
                    remove_copy(&mut tx, rec, mailbox, uid);
                } else {
                    tx.del(names::loc(mailbox, uid));
                }
            }
        }
    }
    if batch.complete && tx.get(&names::resetting(mailbox))?.is_some() {
        // The reset pass is over: copies not re-announced are gone.
        for id in tx.emails_in(mailbox)? {
            if let Some(rec) = tx.email(&id)?
                && let Some(c) = rec.locations.get(mailbox)
                && c.epoch < epoch
            {
                let uids: Vec<String> = c.uids.keys().cloned().collect();
                let mut rec = rec;
                for u in uids {
                    tx.del(names::loc(mailbox, &u));
                }
                rec.locations.remove(mailbox);
                if rec.locations.is_empty() {
                    tx.destroy_email(&id);
                } else {
                    tx.put_email(rec);
                }
            }
        }
        tx.del(names::resetting(mailbox));
    }
    tx.set(names::sync(mailbox), batch.cursor.clone());
    let (commit, stats, carry) = tx.into_commit_and_carry(carry);
    Ok(Built {
        commit,
        stats,
        carry,
    })
}

fn sort_order(role: Option<MailboxRole>) -> u32 {
    match role {
        Some(MailboxRole::Inbox) => 1,
        Some(MailboxRole::Drafts) => 2,
        Some(MailboxRole::Sent) => 3,
        Some(MailboxRole::Archive) => 4,
        Some(MailboxRole::Junk) => 5,
        Some(MailboxRole::Trash) => 6,
        Some(_) => 7,
        None => 10,
    }
}

/// A listed mailbox with its identity across renames, if upstream has one.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub remote: RemoteMailbox,
    pub identity: Option<String>,
}

/// Brings the Mailbox records in line with a listing: same remote id → same JMAP id; a
/// vanished mailbox whose identity reappears under a new remote id (or that `renames`
/// names) is a rename and keeps its id; the rest are created or destroyed, a destroyed
/// mailbox taking its copies with it.
pub(crate) fn reconcile_mailboxes(
    store: &Store,
    account: AccountId,
    listed: &[Listed],
    renames: &[(String, String)],
) -> state::Result<(Vec<(RemoteMailbox, MailboxRecord)>, Committed)> {
    let (_, ids) = store.ids(account, DataType::Mailbox)?;
    let (_, blobs) = store.get_many(account, DataType::Mailbox, &ids)?;
    let existing: Vec<MailboxRecord> = blobs
        .into_iter()
        .flatten()
        .filter_map(|b| MailboxRecord::from_bytes(&b))
        .collect();
    let mut tx = Tx::new(store, account);
    let by_remote: HashMap<&str, &MailboxRecord> =
        existing.iter().map(|m| (m.remote_id.as_str(), m)).collect();
    let listed_remotes: HashSet<&str> =
        listed.iter().map(|l| l.remote.remote_id.as_str()).collect();
    let mut vanished: Vec<&MailboxRecord> = existing
        .iter()
        .filter(|m| !listed_remotes.contains(m.remote_id.as_str()))
        .collect();
    let mut used: HashSet<String> = existing.iter().map(|m| m.id.clone()).collect();
    let mut assigned: HashMap<String, String> = HashMap::new();
    for l in listed {
        let remote = l.remote.remote_id.as_str();
        let id = if let Some(m) = by_remote.get(remote) {
            m.id.clone()
        } else {
            let renamed_from = renames
                .iter()
                .find(|(_, new)| new == remote)
                .map(|(old, _)| old.as_str());
            let mut found = None;
            for (i, v) in vanished.iter().enumerate() {
                let same_identity = match &l.identity {
                    Some(key) => tx.get_str(&names::identity(&v.id))?.as_deref() == Some(key),
                    None => false,
                };
                if renamed_from == Some(v.remote_id.as_str()) || same_identity {
                    found = Some(i);
                    break;
                }
            }
            match found {
                Some(i) => {
                    let v = vanished.remove(i);
                    tracing::info!(from = %v.remote_id, to = remote, id = %v.id, "mailbox renamed upstream");
                    v.id.clone()
                }
                None => {
                    let mut salt = 0;
                    let id = loop {
                        let id = mailbox_id(remote, salt).as_str().to_owned();
                        if !used.contains(&id) {
                            break id;
                        }
                        salt += 1;
                    };
                    used.insert(id.clone());
                    id
                }
            }
        };
        assigned.insert(remote.to_owned(), id);
    }
    let mut roles_taken: HashSet<MailboxRole> = HashSet::new();
    let mut out = Vec::with_capacity(listed.len());
    for l in listed {
        let r = &l.remote;
        let Some(id) = assigned.get(&r.remote_id).cloned() else {
            continue;
        };
        let role = r.role.filter(|role| roles_taken.insert(*role));
        let rec = MailboxRecord {
            id: id.clone(),
            remote_id: r.remote_id.clone(),
            name: r.name.clone(),
            parent_id: r.parent.as_ref().and_then(|p| assigned.get(p).cloned()),
            role: role.map(|x| x.as_jmap().to_owned()),
            sort_order: sort_order(role),
            is_subscribed: r.subscribed,
            selectable: r.selectable,
        };
        tx.put_mailbox(rec.clone());
        if let Some(key) = &l.identity
            && tx.get_str(&names::identity(&id))?.as_deref() != Some(key.as_str())
        {
            tx.set(names::identity(&id), key.clone());
        }
        out.push((r.clone(), rec));
    }
    for v in vanished {
        tracing::info!(remote = %v.remote_id, id = %v.id, "mailbox gone upstream");
        for eid in tx.emails_in(&v.id)? {
            if let Some(mut rec) = tx.email(&eid)? {
                if let Some(c) = rec.locations.remove(&v.id) {
                    for u in c.uids.keys() {
                        tx.del(names::loc(&v.id, u));
                    }
                }
                if rec.locations.is_empty() {
                    tx.destroy_email(&eid);
                } else {
                    tx.put_email(rec);
                }
            }
        }
        tx.destroy_mailbox(&v.id);
        for name in [
            names::sync(&v.id),
            names::epoch(&v.id),
            names::resetting(&v.id),
            names::identity(&v.id),
        ] {
            tx.del(name);
        }
    }
    let (commit, _) = tx.into_commit();
    let committed = store.commit(commit)?;
    Ok((out, committed))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use state::{DataType, Durability, Store, StoreConfig};
    use upstream::{MessageChange, RemoteMessage, SyncBatch};

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = StoreConfig {
            durability: Durability::Buffered,
            ..StoreConfig::default()
        };
        let s = Store::open(dir.path(), cfg).expect("open");
        (dir, s)
    }

    fn msg(uid: u32, subject: &str, id: &str, refs: &str) -> RemoteMessage {
        let header = format!(
            "Subject: {subject}\r\nMessage-ID: <{id}>\r\n{}\r\n",
            if refs.is_empty() {
                String::new()
            } else {
                format!("References: {refs}\r\n")
            }
        );
        RemoteMessage {
            uid: uid.to_string(),
            fingerprint: format!("fp:{id}"),
            thread_hint: None,
            keywords: BTreeSet::new(),
            received_at: i64::from(uid),
            size: 100,
            header_block: header.into_bytes(),
            preview: None,
            has_attachment: false,
            headers_complete: true,
        }
    }

    fn batch(changes: Vec<MessageChange>, reset: bool, complete: bool) -> SyncBatch {
        SyncBatch {
            mailbox: "INBOX".into(),
            reset,
            changes,
            cursor: b"c".to_vec(),
            complete,
            progress: None,
        }
    }

    fn email(s: &Store, id: &str) -> Option<EmailRecord> {
        let oid = state::ObjectId::new(id).expect("id");
        s.get(AccountId(1), DataType::Email, &oid)
            .expect("get")
            .and_then(|b| EmailRecord::from_bytes(&b))
    }

    fn up(m: RemoteMessage) -> MessageChange {
        MessageChange::Upsert(m)
    }

    const A: AccountId = AccountId(1);

    #[test]
    fn a_late_parent_joins_a_thread_without_moving_anyone_and_subjects_keep_threads_apart() {
        let (_d, s) = store();
        apply_batch(
            &s,
            A,
            "M1",
            &batch(
                vec![
                    up(msg(1, "Re: Plans", "r1@x", "<root@x>")),
                    up(msg(2, "Re: Plans", "r2@x", "<mid@x>")),
                    up(msg(3, "Plans", "other@x", "")),
                    up(msg(4, "Something else", "else@x", "<root@x>")),
                ],
                false,
                false,
            ),
        )
        .expect("batch 1");
        let t = |id: &str| {
            email(&s, email_id(&format!("fp:{id}")).as_str())
                .expect(id)
                .thread_id
        };
        let (t1, t2) = (t("r1@x"), t("r2@x"));
        assert_ne!(t1, t2);
        // The middle message links both threads: it joins the one that already named it
        // (r2's), and no Email changes thread (RFC 8621 §3: threadId is immutable).
        apply_batch(
            &s,
            A,
            "M1",
            &batch(
                vec![up(msg(5, "Re: Plans", "mid@x", "<root@x>"))],
                false,
                true,
            ),
        )
        .expect("batch 2");
        assert_eq!(t("mid@x"), t2);
        assert_eq!(t("r1@x"), t1);
        assert_eq!(t("r2@x"), t2);
        assert_ne!(t("other@x"), t("mid@x"));
        assert_ne!(t("else@x"), t("mid@x"), "another subject is another thread");
        // A later reply to the root goes where the root's replies already are.
        apply_batch(
            &s,
            A,
            "M1",
            &batch(
                vec![up(msg(6, "Re: Plans", "r3@x", "<root@x>"))],
                false,
                true,
            ),
        )
        .expect("batch 3");
        assert_eq!(t("r3@x"), t1);
        let thread = state::ObjectId::new(t2).expect("id");
        assert_eq!(s.thread_email_ids(A, &thread).expect("thread").len(), 2);
    }

    #[test]
    fn applying_a_batch_again_changes_nothing() {
        let (_d, s) = store();
        let b = batch(
            vec![up(msg(1, "a", "a@x", "")), up(msg(2, "b", "b@x", ""))],
            false,
            true,
        );
        apply_batch(&s, A, "M1", &b).expect("first");
        let before = s.state(A, DataType::Email).expect("state");
        let again = apply_batch(&s, A, "M1", &b).expect("again");
        assert!(again.committed.states.is_empty());
        assert_eq!(s.state(A, DataType::Email).expect("state"), before);
        // Removing an unknown uid and re-reporting known keywords are no-ops too.
        apply_batch(
            &s,
            A,
            "M1",
            &batch(
                vec![
                    MessageChange::Removed { uid: "99".into() },
                    MessageChange::Keywords {
                        uid: "1".into(),
                        keywords: BTreeSet::new(),
                    },
                ],
                false,
                true,
            ),
        )
        .expect("noop");
        assert_eq!(s.state(A, DataType::Email).expect("state"), before);
    }

    #[test]
    fn a_reset_rematches_by_fingerprint_and_drops_what_was_not_reannounced() {
        let (_d, s) = store();
        apply_batch(
            &s,
            A,
            "M1",
            &batch(
                vec![
                    up(msg(1, "a", "a@x", "")),
                    up(msg(2, "b", "b@x", "")),
                    up(msg(3, "c", "c@x", "")),
                ],
                false,
                true,
            ),
        )
        .expect("initial");
        let ids: Vec<_> = ["a@x", "b@x", "c@x"]
            .iter()
            .map(|m| email_id(&format!("fp:{m}")))
            .collect();
        // New uid space: a and b come back under new uids over two batches; c is gone.
        apply_batch(
            &s,
            A,
            "M1",
            &batch(vec![up(msg(10, "a", "a@x", ""))], true, false),
        )
        .expect("reset 1");
        assert!(
            email(&s, ids[2].as_str()).is_some(),
            "not gone before the pass completes"
        );
        apply_batch(
            &s,
            A,
            "M1",
            &batch(vec![up(msg(11, "b", "b@x", ""))], false, true),
        )
        .expect("reset 2");
        let a = email(&s, ids[0].as_str()).expect("a kept");
        assert_eq!(a.locations["M1"].uids.keys().collect::<Vec<_>>(), ["10"]);
        assert!(email(&s, ids[1].as_str()).is_some());
        assert!(
            email(&s, ids[2].as_str()).is_none(),
            "c was not re-announced"
        );
        // Old uid 1 no longer points anywhere.
        apply_batch(
            &s,
            A,
            "M1",
            &batch(
                vec![MessageChange::Removed { uid: "1".into() }],
                false,
                true,
            ),
        )
        .expect("stale removal");
        assert!(email(&s, ids[0].as_str()).is_some());
    }

    #[test]
    fn the_same_message_in_two_mailboxes_is_one_email() {
        let (_d, s) = store();
        apply_batch(
            &s,
            A,
            "M1",
            &batch(vec![up(msg(1, "a", "a@x", ""))], false, true),
        )
        .expect("m1");
        let mut m = msg(7, "a", "a@x", "");
        m.keywords.insert("$seen".into());
        apply_batch(&s, A, "M2", &batch(vec![up(m)], false, true)).expect("m2");
        let e = email(&s, email_id("fp:a@x").as_str()).expect("email");
        assert_eq!(e.mailbox_ids().collect::<Vec<_>>(), ["M1", "M2"]);
        assert!(e.keywords().contains("$seen"));
        apply_batch(
            &s,
            A,
            "M1",
            &batch(
                vec![MessageChange::Removed { uid: "1".into() }],
                false,
                true,
            ),
        )
        .expect("remove");
        let e = email(&s, email_id("fp:a@x").as_str()).expect("still there");
        assert_eq!(e.mailbox_ids().collect::<Vec<_>>(), ["M2"]);
    }
}
