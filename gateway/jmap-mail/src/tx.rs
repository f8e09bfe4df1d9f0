//! A read-modify-write transaction over the blocking store: reads see the store overlaid
//! with this transaction's own writes, and everything becomes one [`state::Commit`].
//!
//! Besides objects, the driver keeps a few private indexes (uid → Email, Message-ID →
//! thread, ...). The store has no general key-value space, so they live as named sync
//! cursors, which are written atomically in the same batch as the objects. See [`names`].

use foldhash::{HashMap, HashMapExt};

use state::{AccountId, Commit, DataType, EmailQuery, EmailSort, EmailSource, ObjectId, Store};

use crate::records::{EmailRecord, MailboxRecord};

/// Names of the driver's private entries in the store's sync-cursor space.
pub(crate) mod names {
    use base64::Engine;

    fn short_hash(s: &str) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d.as_ref()[..15])
    }

    /// `prefix` followed by `parts`, as one name. Names are built for every message of a
    /// sync batch, so without `format!`'s machinery.
    fn name(prefix: &str, parts: &[&str]) -> Vec<u8> {
        let len = prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(prefix.as_bytes());
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(p.as_bytes());
        }
        out
    }

    /// The adapter's opaque cursor of a mailbox.
    pub fn sync(mailbox: &str) -> Vec<u8> {
        name("sync/", &[mailbox])
    }
    /// Which Email a (mailbox, uid) holds.
    pub fn loc(mailbox: &str, uid: &str) -> Vec<u8> {
        name("loc/", &[mailbox, uid])
    }
    /// The thread of a Message-ID (seen or referenced).
    pub fn msgid(id: &str) -> Vec<u8> {
        name("mid/", &[&short_hash(&id.to_ascii_lowercase())])
    }
    /// A thread merged into another (written by earlier versions, which merged threads;
    /// still followed when read).
    pub fn alias(thread: &str) -> Vec<u8> {
        name("tal/", &[thread])
    }
    /// The base subject of a thread.
    pub fn subject(thread: &str) -> Vec<u8> {
        name("tsub/", &[thread])
    }
    /// A mailbox's reset epoch (bumped when upstream voids its uids).
    pub fn epoch(mailbox: &str) -> Vec<u8> {
        name("ep/", &[mailbox])
    }
    /// Present while a reset pass of the mailbox has not completed.
    pub fn resetting(mailbox: &str) -> Vec<u8> {
        name("rs/", &[mailbox])
    }
    /// The mailbox's identity across renames, as the adapter last reported it.
    pub fn identity(mailbox: &str) -> Vec<u8> {
        name("mbid/", &[mailbox])
    }
}

/// The writes of a transaction whose commit may still be in flight, handed to the next
/// transaction of the same account as what the store holds (the sync driver builds batch
/// N+1 while batch N commits, under the same commit lock, so nothing else writes between).
/// Emails are kept serialized and parsed only if read again.
#[derive(Debug, Default)]
pub(crate) struct Carry {
    kv: HashMap<Vec<u8>, Option<Vec<u8>>>,
    emails: HashMap<String, Option<Vec<u8>>>,
}

/// A commit in flight: reads that the carry cannot answer (index scans) wait for it.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    done: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Pending {
    /// Marks the commit finished (landed or failed).
    pub fn finish(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Blocks until [`Pending::finish`]. Blocking code only.
    pub fn wait(&self) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// What a transaction changed, for progress and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    pub emails_written: u64,
    pub emails_destroyed: u64,
}

pub(crate) struct Tx<'s> {
    pub store: &'s Store,
    pub account: AccountId,
    emails: HashMap<String, Option<EmailRecord>>,
    email_order: Vec<String>,
    mailboxes: HashMap<String, Option<MailboxRecord>>,
    mailbox_order: Vec<String>,
    kv: HashMap<Vec<u8>, Option<Vec<u8>>>,
    kv_order: Vec<Vec<u8>>,
    /// Committed values read ahead in bulk ([`Tx::preload_kv`], [`Tx::preload_emails`]):
    /// what the store holds, consulted after this transaction's own writes.
    kv_read: HashMap<Vec<u8>, Option<Vec<u8>>>,
    emails_read: HashMap<String, Option<EmailRecord>>,
    /// The previous transaction's Emails, serialized, while its commit may be in flight.
    emails_carried: HashMap<String, Option<Vec<u8>>>,
    /// Message-ID → its entry's name ([`names::msgid`] hashes, and a new message's
    /// references are looked up, then written).
    msgid_names: HashMap<String, Vec<u8>>,
    pending: Option<std::sync::Arc<Pending>>,
    pub stats: TxStats,
}

impl<'s> Tx<'s> {
    pub fn new(store: &'s Store, account: AccountId) -> Tx<'s> {
        Tx {
            store,
            account,
            emails: HashMap::new(),
            email_order: Vec::new(),
            mailboxes: HashMap::new(),
            mailbox_order: Vec::new(),
            kv: HashMap::new(),
            kv_order: Vec::new(),
            kv_read: HashMap::new(),
            emails_read: HashMap::new(),
            emails_carried: HashMap::new(),
            msgid_names: HashMap::new(),
            pending: None,
            stats: TxStats::default(),
        }
    }

    /// A transaction that sees `carry` (the previous transaction's writes) as committed;
    /// index scans first wait for `pending`, the commit that writes it.
    pub fn continuing(
        store: &'s Store,
        account: AccountId,
        carry: Carry,
        pending: Option<std::sync::Arc<Pending>>,
    ) -> Tx<'s> {
        let mut tx = Tx::new(store, account);
        tx.kv_read = carry.kv;
        tx.emails_carried = carry.emails;
        tx.pending = pending;
        tx
    }

    /// Makes room for a batch of `changes` messages: each new one is an Email, a uid
    /// entry and a few Message-ID entries. Growing these maps while building was a tenth
    /// of an initial sync's build time (rehashing into fresh pages).
    pub fn reserve(&mut self, changes: usize) {
        self.emails.reserve(changes);
        self.email_order.reserve(changes);
        self.emails_read.reserve(2 * changes);
        self.kv.reserve(4 * changes);
        self.kv_order.reserve(4 * changes);
        self.kv_read.reserve(6 * changes);
        self.msgid_names.reserve(3 * changes);
    }

    fn wait_pending(&mut self) {
        if let Some(p) = self.pending.take() {
            p.wait();
        }
    }

    pub fn email(&mut self, id: &str) -> state::Result<Option<EmailRecord>> {
        if let Some(e) = self.emails.get(id) {
            return Ok(e.clone());
        }
        if let Some(e) = self.emails_read.get(id) {
            return Ok(e.clone());
        }
        if let Some(b) = self.emails_carried.get(id) {
            let rec = b.as_deref().and_then(EmailRecord::from_bytes);
            self.emails_read.insert(id.to_owned(), rec.clone());
            return Ok(rec);
        }
        let Ok(oid) = ObjectId::new(id) else {
            return Ok(None);
        };
        let rec = self
            .store
            .get(self.account, DataType::Email, &oid)?
            .and_then(|b| EmailRecord::from_bytes(&b));
        self.emails_read.insert(id.to_owned(), rec.clone());
        Ok(rec)
    }

    /// Whether an Email exists (this transaction's writes first, then the store).
    pub fn email_exists(&mut self, id: &str) -> state::Result<bool> {
        if let Some(e) = self.emails.get(id) {
            return Ok(e.is_some());
        }
        Ok(self.email(id)?.is_some())
    }

    /// Reads the committed Emails among `ids` in one multi-get, so later [`Tx::email`]
    /// calls are answered from memory.
    pub fn preload_emails(&mut self, ids: impl IntoIterator<Item = String>) -> state::Result<()> {
        let mut want: Vec<String> = Vec::new();
        let mut oids: Vec<ObjectId> = Vec::new();
        for id in ids {
            if self.emails.contains_key(&id)
                || self.emails_read.contains_key(&id)
                || self.emails_carried.contains_key(&id)
            {
                continue;
            }
            let Ok(oid) = ObjectId::new(id.clone()) else {
                continue;
            };
            self.emails_read.insert(id.clone(), None);
            want.push(id);
            oids.push(oid);
        }
        let blobs = self.store.objects(self.account, DataType::Email, &oids)?;
        for (id, b) in want.into_iter().zip(blobs) {
            self.emails_read
                .insert(id, b.and_then(|b| EmailRecord::from_bytes(&b)));
        }
        Ok(())
    }

    /// Reads the committed values of `names` in one multi-get, so later [`Tx::get`] calls
    /// are answered from memory.
    pub fn preload_kv(&mut self, names: impl IntoIterator<Item = Vec<u8>>) -> state::Result<()> {
        let mut want: Vec<Vec<u8>> = Vec::new();
        for n in names {
            if self.kv.contains_key(&n) || self.kv_read.contains_key(&n) {
                continue;
            }
            self.kv_read.insert(n.clone(), None);
            want.push(n);
        }
        let values = self.store.cursors(self.account, &want)?;
        for (n, v) in want.into_iter().zip(values) {
            self.kv_read.insert(n, v);
        }
        Ok(())
    }

    /// [`names::msgid`] of `id`, computed once per transaction.
    pub fn msgid_name(&mut self, id: &str) -> Vec<u8> {
        if let Some(n) = self.msgid_names.get(id) {
            return n.clone();
        }
        let n = names::msgid(id);
        self.msgid_names.insert(id.to_owned(), n.clone());
        n
    }

    pub fn put_email(&mut self, rec: EmailRecord) {
        let id = rec.id.clone();
        if !self.emails.contains_key(&id) {
            self.email_order.push(id.clone());
        }
        self.emails.insert(id, Some(rec));
    }

    pub fn destroy_email(&mut self, id: &str) {
        if !self.emails.contains_key(id) {
            self.email_order.push(id.to_owned());
        }
        self.emails.insert(id.to_owned(), None);
    }

    pub fn put_mailbox(&mut self, rec: MailboxRecord) {
        let id = rec.id.clone();
        if !self.mailboxes.contains_key(&id) {
            self.mailbox_order.push(id.clone());
        }
        self.mailboxes.insert(id, Some(rec));
    }

    pub fn destroy_mailbox(&mut self, id: &str) {
        if !self.mailboxes.contains_key(id) {
            self.mailbox_order.push(id.to_owned());
        }
        self.mailboxes.insert(id.to_owned(), None);
    }

    pub fn get(&mut self, name: &[u8]) -> state::Result<Option<Vec<u8>>> {
        if let Some(v) = self.kv.get(name) {
            return Ok(v.clone());
        }
        if let Some(v) = self.kv_read.get(name) {
            return Ok(v.clone());
        }
        let v = self.store.cursor(self.account, name)?;
        self.kv_read.insert(name.to_vec(), v.clone());
        Ok(v)
    }

    pub fn get_str(&mut self, name: &[u8]) -> state::Result<Option<String>> {
        Ok(self.get(name)?.and_then(|v| String::from_utf8(v).ok()))
    }

    pub fn set(&mut self, name: Vec<u8>, value: impl Into<Vec<u8>>) {
        if !self.kv.contains_key(&name) {
            self.kv_order.push(name.clone());
        }
        self.kv.insert(name, Some(value.into()));
    }

    pub fn del(&mut self, name: Vec<u8>) {
        if !self.kv.contains_key(&name) {
            self.kv_order.push(name.clone());
        }
        self.kv.insert(name, None);
    }

    /// Ids of the Emails in a mailbox: committed ones from the store's index, plus those
    /// this transaction placed there.
    pub fn emails_in(&mut self, mailbox: &str) -> state::Result<Vec<String>> {
        self.wait_pending();
        let mut out = Vec::new();
        if let Ok(m) = ObjectId::new(mailbox) {
            let q = EmailQuery {
                source: EmailSource::Mailbox(m),
                sort: EmailSort::ReceivedAt,
                ascending: true,
                collapse_threads: false,
                position: 0,
                anchor: None,
                anchor_offset: 0,
                limit: None,
            };
            out = self
                .store
                .query_emails(self.account, &q)?
                .ids
                .into_iter()
                .map(|i| i.as_str().to_owned())
                .collect();
        }
        for (id, rec) in &self.emails {
            if rec
                .as_ref()
                .is_some_and(|r| r.locations.contains_key(mailbox))
                && !out.contains(id)
            {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    pub fn into_commit(self) -> (Commit, TxStats) {
        let (c, stats, _) = self.into_commit_and_carry(false);
        (c, stats)
    }

    /// The commit, and (when `carry`) this transaction's writes for the next one.
    pub fn into_commit_and_carry(self, carry: bool) -> (Commit, TxStats, Carry) {
        let mut next = Carry::default();
        if carry {
            next.emails.reserve(self.email_order.len());
            next.kv.reserve(self.kv_order.len());
        }
        let mut c = Commit::new(self.account);
        let mut stats = self.stats;
        let mut emails = self.emails;
        for id in self.email_order {
            let Ok(oid) = ObjectId::new(id.clone()) else {
                continue;
            };
            match emails.remove(&id) {
                Some(Some(rec)) => {
                    stats.emails_written += 1;
                    let facts = rec.facts();
                    let bytes = rec.to_bytes();
                    if carry {
                        next.emails.insert(id, Some(bytes.clone()));
                    }
                    c.put_email(oid, bytes, facts);
                }
                Some(None) => {
                    stats.emails_destroyed += 1;
                    if carry {
                        next.emails.insert(id, None);
                    }
                    c.destroy(DataType::Email, oid);
                }
                None => {}
            }
        }
        let mut mailboxes = self.mailboxes;
        for id in self.mailbox_order {
            let Ok(oid) = ObjectId::new(id.clone()) else {
                continue;
            };
            match mailboxes.remove(&id) {
                Some(Some(rec)) => {
                    c.put(DataType::Mailbox, oid, rec.to_bytes());
                }
                Some(None) => {
                    c.destroy(DataType::Mailbox, oid);
                }
                None => {}
            }
        }
        let mut kv = self.kv;
        for name in self.kv_order {
            let value = kv.remove(&name);
            if carry && let Some(v) = &value {
                next.kv.insert(name.clone(), v.clone());
            }
            match value {
                Some(Some(v)) => {
                    c.set_cursor(name, v);
                }
                Some(None) => {
                    c.clear_cursor(name);
                }
                None => {}
            }
        }
        (c, stats, next)
    }
}

#[cfg(test)]
mod tests {
    use super::names;

    /// The names are keys in stores already written: they must never change.
    #[test]
    fn entry_names_are_stable() {
        assert_eq!(names::sync("Mab"), b"sync/Mab");
        assert_eq!(names::loc("Mab", "42"), b"loc/Mab/42");
        assert_eq!(
            names::msgid("ABC@Example.test"),
            b"mid/TyyxbXLwrFRaqnS7CLp0"
        );
        assert_eq!(names::alias("Tx"), b"tal/Tx");
        assert_eq!(names::subject("Tx"), b"tsub/Tx");
        assert_eq!(names::epoch("Mab"), b"ep/Mab");
        assert_eq!(names::resetting("Mab"), b"rs/Mab");
        assert_eq!(names::identity("Mab"), b"mbid/Mab");
    }
}
