//! The commit path: one [`Commit`] becomes one RocksDB `WriteBatch` holding the objects, their
//! index entries, derived counters, change-log entries, new modseqs and sync cursors.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use rocksdb::{ReadOptions, WriteBatch, WriteOptions};

use crate::error::{Error, Result};
use crate::keys::{self, Key, Reader, cf, counter, sort, view};
use crate::store::{Durability, Store, encode_counts, lock};
use crate::types::{
    AccountId, ChangeKind, DataType, EmailFacts, MailboxCounts, ModSeq, ObjectId, State,
};

/// A key before and after the batch.
type BeforeAfter = (Option<Vec<u8>>, Option<Vec<u8>>);

/// (mailbox, view, receivedAt + email id suffix) of a result-set entry or exit.
type MembershipEvent<'k> = (&'k [u8], u8, &'k [u8]);

/// Log-entry flag: a Mailbox update that changed only its counts.
pub(crate) const FLAG_COUNTS_ONLY: u8 = 1;

#[derive(Debug, Clone)]
enum Op {
    Put {
        data_type: DataType,
        id: ObjectId,
        bytes: Vec<u8>,
        facts: Option<EmailFacts>,
    },
    Destroy {
        data_type: DataType,
        id: ObjectId,
    },
}

/// A set of changes to one account, applied atomically by [`Store::commit`].
#[derive(Debug, Clone)]
pub struct Commit {
    account: AccountId,
    ops: Vec<Op>,
    cursors: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Commit {
    pub fn new(account: AccountId) -> Commit {
        Commit {
            account,
            ops: Vec::new(),
            cursors: Vec::new(),
        }
    }

    pub fn account(&self) -> AccountId {
        self.account
    }

    /// Creates or replaces an object. For an Email this keeps the index facts already stored.
    /// A put of the bytes already stored is not a change (no log entry, no new state).
    pub fn put(
        &mut self,
        data_type: DataType,
        id: ObjectId,
        bytes: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push(Op::Put {
            data_type,
            id,
            bytes: bytes.into(),
            facts: None,
        });
        self
    }

    /// Creates or replaces an Email with the facts its indexes and counters are built from.
    pub fn put_email(
        &mut self,
        id: ObjectId,
        bytes: impl Into<Vec<u8>>,
        facts: EmailFacts,
    ) -> &mut Self {
        self.ops.push(Op::Put {
            data_type: DataType::Email,
            id,
            bytes: bytes.into(),
            facts: Some(facts),
        });
        self
    }

    /// Destroys an object; destroying an absent object is not a change.
    pub fn destroy(&mut self, data_type: DataType, id: ObjectId) -> &mut Self {
        self.ops.push(Op::Destroy { data_type, id });
        self
    }

    /// Sets an upstream sync cursor in the same batch as the changes it produced.
    pub fn set_cursor(&mut self, name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.cursors.push((name.into(), Some(value.into())));
        self
    }

    /// Removes a sync cursor in the same batch.
    pub fn clear_cursor(&mut self, name: impl Into<Vec<u8>>) -> &mut Self {
        self.cursors.push((name.into(), None));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.cursors.is_empty()
    }
}

/// What a commit did.
#[derive(Debug, Clone)]
pub struct Committed {
    pub account: AccountId,
    /// The new state of every type the commit changed (including derived Mailbox and Thread
    /// changes); empty when nothing changed.
    pub states: Vec<State>,
}

impl Committed {
    /// The state of `t` after the commit, if the commit changed it.
    pub fn state(&self, t: DataType) -> Option<State> {
        self.states.iter().find(|s| s.data_type == t).copied()
    }
}

/// A commit written to RocksDB, visible to readers, not yet acknowledged: hand it to
/// [`Store::finish_commit`] to wait until it is durable and wake the account's notifier.
#[derive(Debug)]
#[must_use = "a written commit is acknowledged by Store::finish_commit"]
pub struct Written {
    committed: Committed,
    /// Group-commit ticket; `None` when nothing was written.
    ticket: Option<u64>,
}

impl Store {
    /// Applies a commit atomically and durably (per [`crate::Durability`]), then wakes the
    /// account's notifier. Blocking: call it off the async executor (see [`crate::AsyncStore`]).
    pub fn commit(&self, commit: Commit) -> Result<Committed> {
        let written = self.write_commit(commit)?;
        self.finish_commit(written)
    }

    /// The first half of [`Store::commit`]: validates and writes the commit, so readers and
    /// later commits see it, but does not wait for it to be durable. A pipeline (the initial
    /// sync) writes the next commit while this one's fsync runs; commits become durable in
    /// the order they were written.
    pub fn write_commit(&self, commit: Commit) -> Result<Written> {
        validate(&commit)?;
        let account = commit.account;
        let guard = lock(&self.writer);
        let mut b = Batch::new(self, account);
        b.wb = WriteBatch::with_capacity_bytes(estimated_batch_bytes(&commit));
        b.preload(&commit.ops)?;
        for op in commit.ops {
            b.apply(op)?;
        }
        b.write_objects()?;
        b.derive()?;
        // In key order, like the objects (see `Batch::write_objects`); a stable sort, so
        // the last write of a name still wins.
        let mut cursors = commit.cursors;
        cursors.sort_by(|x, y| x.0.cmp(&y.0));
        for (name, value) in &cursors {
            let k = keys::cursor_key(account, name);
            match value {
                Some(v) => b.wb.put_cf(self.cf(cf::SYNC_CURSORS)?, k, v),
                None => b.wb.delete_cf(self.cf(cf::SYNC_CURSORS)?, k),
            }
        }
        let states = b.write_modseqs()?;
        let committed = Committed { account, states };
        let wb = b.wb;
        if wb.is_empty() {
            return Ok(Written {
                committed,
                ticket: None,
            });
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(self.config.durability == Durability::SyncEachCommit);
        self.db.write_opt(wb, &wo)?;
        let ticket = self.note_written();
        drop(guard);
        Ok(Written {
            committed,
            ticket: Some(ticket),
        })
    }

    /// The second half of [`Store::commit`]: waits until the written commit is durable, then
    /// wakes the account's notifier.
    pub fn finish_commit(&self, written: Written) -> Result<Committed> {
        let Written { committed, ticket } = written;
        if let Some(ticket) = ticket {
            self.wait_durable(ticket)?;
            if !committed.states.is_empty() {
                self.notifier.publish(committed.account, &committed.states);
            }
        }
        Ok(committed)
    }
}

/// Roughly how many bytes a commit's `WriteBatch` takes, so it is allocated once rather than
/// regrown (and copied) a dozen times for an initial-sync batch: each operation's bytes and
/// id, about 700 bytes of index keys, log entries and facts per Email, and the cursors.
fn estimated_batch_bytes(c: &Commit) -> usize {
    let ops: usize = c
        .ops
        .iter()
        .map(|op| match op {
            Op::Put {
                id, bytes, facts, ..
            } => bytes.len() + 2 * id.as_bytes().len() + if facts.is_some() { 700 } else { 64 },
            Op::Destroy { id, .. } => 700 + id.as_bytes().len(),
        })
        .sum();
    let cursors: usize = c
        .cursors
        .iter()
        .map(|(k, v)| 24 + k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    (64 + ops + cursors).min(64 << 20)
}

fn validate(c: &Commit) -> Result<()> {
    for op in &c.ops {
        if let Op::Put { facts: Some(f), .. } = op
            && let Some(k) = f.keywords.iter().find(|k| k.is_empty() || k.len() > 255)
        {
            return Err(Error::InvalidId(k.clone()));
        }
        if let Op::Put { facts: Some(f), .. } = op
            && (f.mailbox_ids.len() > u16::MAX as usize || f.keywords.len() > u16::MAX as usize)
        {
            return Err(Error::InvalidArguments("too many mailboxes or keywords"));
        }
    }
    for (name, _) in &c.cursors {
        if name.is_empty() {
            return Err(Error::InvalidArguments("empty sync cursor name"));
        }
    }
    Ok(())
}

/// Sorted, deduplicated facts, so set differences and equality are meaningful.
fn normalize(mut f: EmailFacts) -> EmailFacts {
    f.mailbox_ids.sort();
    f.mailbox_ids.dedup();
    f.keywords.sort();
    f.keywords.dedup();
    f
}

/// The thread an email counts in: its thread id, or itself when it has none.
fn thread_of<'a>(id: &'a [u8], f: &'a EmailFacts) -> &'a [u8] {
    f.thread_id.as_ref().map_or(id, |t| t.as_bytes())
}

#[derive(Debug, Clone, Copy)]
struct ModseqRec {
    current: ModSeq,
    min_since: ModSeq,
    orig: ModSeq,
}

#[derive(Debug)]
struct IndexEdit {
    pre: bool,
    post: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct ThreadStats {
    emails: i64,
    unread: i64,
    per_mailbox: BTreeMap<Vec<u8>, i64>,
}

#[derive(Debug)]
struct ThreadAgg {
    before: ThreadStats,
    after: ThreadStats,
}

/// A derived index entry of one email, with what it tells the derivation step.
enum Tag {
    Plain,
    MailboxThread { mailbox: Vec<u8>, thread: Vec<u8> },
    Thread(Vec<u8>),
}

/// One commit being built. Reads see the committed store (the writer lock is held) overlaid
/// with this batch's own earlier operations.
struct Batch<'s> {
    store: &'s Store,
    ro: ReadOptions,
    account: AccountId,
    wb: WriteBatch,
    now_ms: u64,
    objects: HashMap<(DataType, Vec<u8>), Option<Vec<u8>>>,
    facts: HashMap<Vec<u8>, Option<EmailFacts>>,
    modseqs: BTreeMap<DataType, ModseqRec>,
    /// The objects the operations wrote (created, replaced or destroyed); their final
    /// values are in `objects`.
    explicit: HashSet<(DataType, Vec<u8>)>,
    /// The Emails whose facts the operations changed; final values in `facts`.
    facts_written: Vec<Vec<u8>>,
    index: BTreeMap<(&'static str, Vec<u8>), IndexEdit>,
    mailboxes: BTreeMap<Vec<u8>, (MailboxCounts, [i64; 4])>,
    threads: BTreeMap<Vec<u8>, ThreadAgg>,
    keywords: BTreeMap<Vec<u8>, (u32, i64)>,
    pairs: BTreeSet<(Vec<u8>, Vec<u8>)>,
    changed_threads: BTreeSet<Vec<u8>>,
}

impl<'s> Batch<'s> {
    fn new(store: &'s Store, account: AccountId) -> Batch<'s> {
        Batch {
            store,
            ro: ReadOptions::default(),
            account,
            wb: WriteBatch::default(),
            now_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            objects: HashMap::new(),
            facts: HashMap::new(),
            modseqs: BTreeMap::new(),
            explicit: HashSet::new(),
            facts_written: Vec::new(),
            index: BTreeMap::new(),
            mailboxes: BTreeMap::new(),
            threads: BTreeMap::new(),
            keywords: BTreeMap::new(),
            pairs: BTreeSet::new(),
            changed_threads: BTreeSet::new(),
        }
    }

    /// Reads the committed objects and Email facts the operations touch in two multi-gets,
    /// so `apply` does no point reads of its own. Values land in the overlay maps, which
    /// hold "what the store holds now" until an operation replaces them.
    fn preload(&mut self, ops: &[Op]) -> Result<()> {
        let a = self.account;
        // Sized once: growing them op by op rehashed into fresh memory on every commit.
        self.objects.reserve(ops.len());
        self.facts.reserve(ops.len());
        self.explicit.reserve(ops.len());
        self.facts_written.reserve(ops.len());
        let mut obj_keys: Vec<(DataType, Vec<u8>)> = Vec::with_capacity(ops.len());
        let mut seen: HashSet<(DataType, &[u8])> = HashSet::with_capacity(ops.len());
        for op in ops {
            let (t, id) = match op {
                Op::Put { data_type, id, .. } | Op::Destroy { data_type, id } => (*data_type, id),
            };
            if seen.insert((t, id.as_bytes())) {
                obj_keys.push((t, id.as_bytes().to_vec()));
            }
        }
        if obj_keys.len() < 2 {
            return Ok(());
        }
        let objects = self.store.cf(cf::OBJECTS)?;
        let keys: Vec<Vec<u8>> = obj_keys
            .iter()
            .map(|(t, id)| keys::object_key(a, *t, id))
            .collect();
        let values = self
            .store
            .db
            .multi_get_cf_opt(keys.iter().map(|k| (objects, k)), &self.ro);
        for ((t, id), v) in obj_keys.iter().zip(values) {
            self.objects.insert((*t, id.clone()), v?);
        }
        let emails: Vec<&Vec<u8>> = obj_keys
            .iter()
            .filter(|(t, _)| *t == DataType::Email)
            .map(|(_, id)| id)
            .collect();
        if !emails.is_empty() {
            let facts = self.store.cf(cf::EMAIL_FACTS)?;
            let keys: Vec<Vec<u8>> = emails.iter().map(|id| keys::facts_key(a, id)).collect();
            let values = self
                .store
                .db
                .multi_get_cf_opt(keys.iter().map(|k| (facts, k)), &self.ro);
            for (id, v) in emails.into_iter().zip(values) {
                let f = v?.map(|v| keys::decode_facts(&v)).transpose()?;
                self.facts.insert(id.clone(), f);
            }
        }
        Ok(())
    }

    fn current(&mut self, t: DataType, id: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.objects.get(&(t, id.to_vec())) {
            return Ok(v.clone());
        }
        self.store.get_raw(
            &self.ro,
            cf::OBJECTS,
            &keys::object_key(self.account, t, id),
        )
    }

    fn exists(&mut self, t: DataType, id: &[u8]) -> Result<bool> {
        if let Some(v) = self.objects.get(&(t, id.to_vec())) {
            return Ok(v.is_some());
        }
        Ok(self
            .store
            .db
            .get_pinned_cf_opt(
                self.store.cf(cf::OBJECTS)?,
                keys::object_key(self.account, t, id),
                &self.ro,
            )?
            .is_some())
    }

    fn current_facts(&mut self, id: &[u8]) -> Result<Option<EmailFacts>> {
        if let Some(f) = self.facts.get(id) {
            return Ok(f.clone());
        }
        self.store
            .get_raw(
                &self.ro,
                cf::EMAIL_FACTS,
                &keys::facts_key(self.account, id),
            )?
            .map(|v| keys::decode_facts(&v))
            .transpose()
    }

    fn apply(&mut self, op: Op) -> Result<()> {
        match op {
            Op::Put {
                data_type,
                id,
                bytes,
                facts,
            } => {
                let id = id.as_bytes().to_vec();
                let cur = self.current(data_type, &id)?;
                let (old_facts, new_facts) = if data_type == DataType::Email {
                    let old = self.current_facts(&id)?;
                    let new = facts.map(normalize).or_else(|| old.clone());
                    (old, new)
                } else {
                    (None, None)
                };
                if cur.as_deref() == Some(&bytes[..]) && old_facts == new_facts {
                    return Ok(());
                }
                let kind = if cur.is_some() {
                    ChangeKind::Updated
                } else {
                    ChangeKind::Created
                };
                self.objects.insert((data_type, id.clone()), Some(bytes));
                if data_type == DataType::Email && old_facts != new_facts {
                    self.email_change(&id, old_facts.as_ref(), new_facts.as_ref())?;
                    self.facts.insert(id.clone(), new_facts);
                    self.facts_written.push(id.clone());
                }
                self.log(data_type, &id, kind, 0)?;
                self.explicit.insert((data_type, id));
            }
            Op::Destroy { data_type, id } => {
                let id = id.as_bytes().to_vec();
                if !self.exists(data_type, &id)? {
                    return Ok(());
                }
                self.objects.insert((data_type, id.clone()), None);
                if data_type == DataType::Email
                    && let Some(old) = self.current_facts(&id)?
                {
                    self.email_change(&id, Some(&old), None)?;
                    self.facts.insert(id.clone(), None);
                    self.facts_written.push(id.clone());
                }
                self.log(data_type, &id, ChangeKind::Destroyed, 0)?;
                self.explicit.insert((data_type, id));
            }
        }
        Ok(())
    }

    /// Writes the final value of every object and Email facts the operations changed, in
    /// key order. Operations come in id order, which for Emails is hash order; RocksDB's
    /// memtable insert starts its search from where the previous insert into the same
    /// family landed, so sorted keys make most inserts a short step instead of a walk down
    /// the skiplist.
    fn write_objects(&mut self) -> Result<()> {
        let a = self.account;
        let objects = self.store.cf(cf::OBJECTS)?;
        let mut written: Vec<_> = self
            .explicit
            .iter()
            .map(|k| (keys::object_key(a, k.0, &k.1), k))
            .collect();
        written.sort_unstable_by(|x, y| x.0.cmp(&y.0));
        for (key, t_id) in written {
            match self.objects.get(t_id) {
                Some(Some(v)) => self.wb.put_cf(objects, key, v),
                _ => self.wb.delete_cf(objects, key),
            }
        }
        let facts = self.store.cf(cf::EMAIL_FACTS)?;
        let mut ids = std::mem::take(&mut self.facts_written);
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let key = keys::facts_key(a, &id);
            match self.facts.get(&id) {
                Some(Some(f)) => self.wb.put_cf(facts, key, keys::encode_facts(f)),
                _ => self.wb.delete_cf(facts, key),
            }
        }
        Ok(())
    }

    fn modseq(&mut self, t: DataType) -> Result<&mut ModseqRec> {
        if let Entry::Vacant(e) = self.modseqs.entry(t) {
            let (current, min_since) = self.store.modseq_record(&self.ro, self.account, t)?;
            e.insert(ModseqRec {
                current,
                min_since,
                orig: current,
            });
        }
        self.modseqs
            .get_mut(&t)
            .ok_or(Error::Corrupt("modseq record vanished"))
    }

    fn log(&mut self, t: DataType, id: &[u8], kind: ChangeKind, flags: u8) -> Result<()> {
        let rec = self.modseq(t)?;
        rec.current += 1;
        let m = rec.current;
        let mut v = Vec::with_capacity(10 + id.len());
        v.push(kind as u8);
        v.push(flags);
        v.extend_from_slice(&self.now_ms.to_be_bytes());
        v.extend_from_slice(id);
        self.wb.put_cf(
            self.store.cf(cf::CHANGE_LOG)?,
            keys::log_key(self.account, t, m),
            v,
        );
        Ok(())
    }

    /// Index entries an email with these facts has.
    ///
    /// All mail (mailbox `""`) gets its receivedAt entry: that is the default sort and the one
    /// queryChanges follows. Its size and sentAt orders are the per-mailbox indexes merged at
    /// query time (plus all mail's own entries for an Email in no mailbox, which no mailbox
    /// index lists), and its thread members are exactly `idx_thread`'s, so neither is written
    /// twice (a third fewer index keys per new Email).
    fn index_entries(&self, id: &[u8], f: &EmailFacts) -> Vec<(&'static str, Vec<u8>, Tag)> {
        let a = self.account;
        let thread = thread_of(id, f).to_vec();
        let mut out = Vec::with_capacity(4 * f.mailbox_ids.len() + f.keywords.len() + 2);
        out.push((
            cf::IDX_MAILBOX,
            Key::account(a)
                .lp(b"")
                .u8(sort::RECEIVED_AT)
                .i64(f.received_at)
                .raw(id)
                .into_vec(),
            Tag::Plain,
        ));
        // A mailbox's (or all mail's) size and sentAt entries.
        let other_sorts = |base: &Key| {
            [
                base.clone().u8(sort::SIZE).u64(f.size),
                base.clone()
                    .u8(sort::SENT_AT)
                    .i64(f.sent_at.unwrap_or(i64::MIN)),
            ]
            .map(|k| (cf::IDX_MAILBOX, k.raw(id).into_vec(), Tag::Plain))
        };
        if f.mailbox_ids.is_empty() {
            out.extend(other_sorts(&Key::account(a).lp(b"")));
        }
        for m in f.mailbox_ids.iter().map(|m| m.as_bytes()) {
            let base = Key::account(a).lp(m);
            out.push((
                cf::IDX_MAILBOX,
                base.clone()
                    .u8(sort::RECEIVED_AT)
                    .i64(f.received_at)
                    .raw(id)
                    .into_vec(),
                Tag::Plain,
            ));
            out.extend(other_sorts(&base));
            out.push((
                cf::IDX_MAILBOX_THREAD,
                base.lp(&thread).i64(f.received_at).raw(id).into_vec(),
                Tag::MailboxThread {
                    mailbox: m.to_vec(),
                    thread: thread.clone(),
                },
            ));
        }
        out.push((
            cf::IDX_THREAD,
            Key::account(a)
                .lp(&thread)
                .i64(f.received_at)
                .raw(id)
                .into_vec(),
            Tag::Thread(thread),
        ));
        for k in &f.keywords {
            out.push((
                cf::IDX_KEYWORD,
                Key::account(a)
                    .lp(k.as_bytes())
                    .i64(f.received_at)
                    .raw(id)
                    .into_vec(),
                Tag::Plain,
            ));
        }
        out
    }

    /// Notes what an index edit affects: a (mailbox, thread) pair whose heads may move, and
    /// a thread whose membership changed. A thread's `idx_thread` entries are its members in
    /// all mail, so they stand for the pair (all mail, thread).
    fn touched(&mut self, tag: &Tag) {
        match tag {
            Tag::Plain => {}
            Tag::MailboxThread { mailbox, thread } => {
                self.pairs.insert((mailbox.clone(), thread.clone()));
            }
            Tag::Thread(t) => {
                self.pairs.insert((Vec::new(), t.clone()));
                self.changed_threads.insert(t.clone());
            }
        }
    }

    fn edit(&mut self, cf_name: &'static str, key: Vec<u8>, post: Option<Vec<u8>>) {
        match self.index.entry((cf_name, key)) {
            Entry::Occupied(mut e) => e.get_mut().post = post,
            Entry::Vacant(e) => {
                e.insert(IndexEdit {
                    pre: post.is_none(),
                    post,
                });
            }
        }
    }

    fn email_change(
        &mut self,
        id: &[u8],
        old: Option<&EmailFacts>,
        new: Option<&EmailFacts>,
    ) -> Result<()> {
        if old.is_none() || new.is_none() {
            // Created or destroyed: every entry is added or removed, no set difference.
            let (f, add, sign) = match (old, new) {
                (None, Some(f)) => (f, true, 1),
                (Some(f), None) => (f, false, -1),
                _ => return Ok(()),
            };
            for (c, k, tag) in self.index_entries(id, f) {
                self.touched(&tag);
                self.edit(c, k, add.then(Vec::new));
            }
            return self.count(id, f, sign);
        }
        let old_entries = old.map(|f| self.index_entries(id, f)).unwrap_or_default();
        let new_entries = new.map(|f| self.index_entries(id, f)).unwrap_or_default();
        let old_set: HashSet<(&str, &[u8])> =
            old_entries.iter().map(|(c, k, _)| (*c, &k[..])).collect();
        let new_set: HashSet<(&str, &[u8])> =
            new_entries.iter().map(|(c, k, _)| (*c, &k[..])).collect();
        let mut edits = Vec::new();
        for (c, k, tag) in &old_entries {
            if !new_set.contains(&(*c, &k[..])) {
                edits.push((*c, k.clone(), tag, false));
            }
        }
        for (c, k, tag) in &new_entries {
            if !old_set.contains(&(*c, &k[..])) {
                edits.push((*c, k.clone(), tag, true));
            }
        }
        for (c, k, tag, add) in edits {
            self.touched(tag);
            self.edit(c, k, add.then(Vec::new));
        }
        if let Some(f) = old {
            self.count(id, f, -1)?;
        }
        if let Some(f) = new {
            self.count(id, f, 1)?;
        }
        Ok(())
    }

    fn mailbox_counter(&mut self, m: &[u8]) -> Result<&mut [i64; 4]> {
        if !self.mailboxes.contains_key(m) {
            let c = self.store.counts_raw(&self.ro, self.account, m)?;
            let now = [
                c.total_emails as i64,
                c.unread_emails as i64,
                c.total_threads as i64,
                c.unread_threads as i64,
            ];
            self.mailboxes.insert(m.to_vec(), (c, now));
        }
        self.mailboxes
            .get_mut(m)
            .map(|(_, now)| now)
            .ok_or(Error::Corrupt("mailbox counter vanished"))
    }

    fn thread_agg(&mut self, t: &[u8]) -> Result<&mut ThreadAgg> {
        if !self.threads.contains_key(t) {
            let a = self.account;
            let mut before = ThreadStats::default();
            let stats =
                self.store
                    .get_raw(&self.ro, cf::COUNTERS, &keys::thread_stats_key(a, t))?;
            // Per-mailbox counters of a thread exist only while its stats do (derive writes
            // and deletes them together), so a new thread needs no scan.
            if let Some(v) = stats {
                let mut r = Reader::new(&v);
                before.emails = r.u32()? as i64;
                before.unread = r.u32()? as i64;
                let prefix = keys::thread_mailbox_prefix(a, t);
                let snap = self.store.db.snapshot();
                let mut it = self.store.prefix_iter(&snap, cf::COUNTERS, &prefix)?;
                it.seek_to_first();
                while let Some((k, v)) = it.item() {
                    let m = Reader::new(&k[prefix.len()..]).lp()?.to_vec();
                    before.per_mailbox.insert(m, Reader::new(v).u32()? as i64);
                    it.next();
                }
                it.status()?;
            }
            self.threads.insert(
                t.to_vec(),
                ThreadAgg {
                    after: before.clone(),
                    before,
                },
            );
        }
        self.threads
            .get_mut(t)
            .ok_or(Error::Corrupt("thread aggregate vanished"))
    }

    /// Adds (`sign` = 1) or removes (-1) an email's contribution to the counters.
    fn count(&mut self, id: &[u8], f: &EmailFacts, sign: i64) -> Result<()> {
        let unread = f.is_unread() as i64;
        let thread = thread_of(id, f).to_vec();
        let mailboxes: Vec<Vec<u8>> = std::iter::once(Vec::new())
            .chain(f.mailbox_ids.iter().map(|m| m.as_bytes().to_vec()))
            .collect();
        for m in &mailboxes {
            let c = self.mailbox_counter(m)?;
            c[0] += sign;
            c[1] += sign * unread;
        }
        let agg = self.thread_agg(&thread)?;
        agg.after.emails += sign;
        agg.after.unread += sign * unread;
        for m in mailboxes {
            *agg.after.per_mailbox.entry(m).or_insert(0) += sign;
        }
        for k in &f.keywords {
            let key = k.as_bytes().to_vec();
            if !self.keywords.contains_key(&key) {
                let before = self
                    .store
                    .get_raw(
                        &self.ro,
                        cf::COUNTERS,
                        &keys::keyword_count_key(self.account, &key),
                    )?
                    .map(|v| Reader::new(&v).u32())
                    .transpose()?
                    .unwrap_or(0);
                self.keywords.insert(key.clone(), (before, 0));
            }
            if let Some(e) = self.keywords.get_mut(&key) {
                e.1 += sign;
            }
        }
        Ok(())
    }

    /// The first (or last) member of a mailbox-thread pair among this batch's additions to
    /// `index` (see [`pair_members`]).
    fn overlay_extreme(&self, index: &'static str, prefix: &[u8], last: bool) -> Option<Vec<u8>> {
        let lo = (index, prefix.to_vec());
        let mut added = self
            .index
            .range(lo..)
            .take_while(|((c, k), _)| *c == index && k.starts_with(prefix))
            .filter(|(_, e)| e.post.is_some())
            .map(|((_, k), _)| k);
        let found = if last { added.last() } else { added.next() };
        found.cloned()
    }

    /// The first (or last) member of a mailbox-thread pair, before this batch and after it.
    fn pair_extreme(&self, index: &'static str, prefix: &[u8], last: bool) -> Result<BeforeAfter> {
        let snap = self.store.db.snapshot();
        let mut it = self.store.prefix_iter(&snap, index, prefix)?;
        if last {
            it.seek_to_last();
        } else {
            it.seek_to_first();
        }
        let mut before = None;
        let mut db_after = None;
        while let Some(k) = it.key() {
            if before.is_none() {
                before = Some(k.to_vec());
            }
            let removed = self
                .index
                .get(&(index, k.to_vec()))
                .is_some_and(|e| e.post.is_none());
            if !removed {
                db_after = Some(k.to_vec());
                break;
            }
            if last {
                it.prev();
            } else {
                it.next();
            }
        }
        it.status()?;
        let overlay = self.overlay_extreme(index, prefix, last);
        let after = match (db_after, overlay) {
            (Some(x), Some(y)) => Some(if last { x.max(y) } else { x.min(y) }),
            (x, y) => x.or(y),
        };
        Ok((before, after))
    }

    /// Derived records: thread heads, counters, Thread and Mailbox log entries, net index
    /// writes and the per-mailbox membership log.
    fn derive(&mut self) -> Result<()> {
        let a = self.account;
        let store = self.store;
        // Thread heads: removals first, so an email moving between threads keeps its head key.
        let mut head_removals = Vec::new();
        let mut head_additions = Vec::new();
        for (m, t) in std::mem::take(&mut self.pairs) {
            let (index, prefix) = pair_members(a, &m, &t);
            // The thread had no email in this mailbox before the batch (its counter says so):
            // nothing on disk to scan, only this batch's additions.
            let empty_before = self
                .threads
                .get(&t)
                .is_some_and(|agg| agg.before.per_mailbox.get(&m).copied().unwrap_or(0) == 0);
            for (dir, last) in [
                (view::NEWEST_PER_THREAD, true),
                (view::OLDEST_PER_THREAD, false),
            ] {
                let (before, after) = if empty_before {
                    (None, self.overlay_extreme(index, &prefix, last))
                } else {
                    self.pair_extreme(index, &prefix, last)?
                };
                if before == after {
                    continue;
                }
                let head_key = |k: &[u8]| -> Vec<u8> {
                    Key::account(a)
                        .lp(&m)
                        .u8(dir)
                        .raw(&k[prefix.len()..])
                        .into_vec()
                };
                if let Some(b) = before {
                    head_removals.push(head_key(&b));
                }
                if let Some(x) = after {
                    head_additions.push((head_key(&x), t.clone()));
                }
            }
        }
        for k in head_removals {
            self.edit(cf::IDX_THREAD_HEAD, k, None);
        }
        for (k, t) in head_additions {
            self.edit(cf::IDX_THREAD_HEAD, k, Some(t));
        }

        // Threads: thread counts per mailbox, stats, Thread change-log entries.
        let counters = store.cf(cf::COUNTERS)?;
        let threads = std::mem::take(&mut self.threads);
        for (t, agg) in &threads {
            let (b, x) = (&agg.before, &agg.after);
            let mailboxes: BTreeSet<&Vec<u8>> =
                b.per_mailbox.keys().chain(x.per_mailbox.keys()).collect();
            for m in mailboxes {
                let cb = b.per_mailbox.get(m).copied().unwrap_or(0);
                let ca = x.per_mailbox.get(m).copied().unwrap_or(0);
                let total = (ca > 0) as i64 - (cb > 0) as i64;
                let unread = (ca > 0 && x.unread > 0) as i64 - (cb > 0 && b.unread > 0) as i64;
                if total != 0 || unread != 0 {
                    let c = self.mailbox_counter(m)?;
                    c[2] += total;
                    c[3] += unread;
                }
                if ca != cb {
                    let k = Key::account(a)
                        .u8(counter::THREAD_MAILBOX)
                        .lp(t)
                        .lp(m)
                        .into_vec();
                    if ca > 0 {
                        self.wb.put_cf(counters, k, clamp_u32(ca).to_be_bytes());
                    } else {
                        self.wb.delete_cf(counters, k);
                    }
                }
            }
            if (b.emails, b.unread) != (x.emails, x.unread) {
                let k = keys::thread_stats_key(a, t);
                if x.emails > 0 {
                    let mut v = clamp_u32(x.emails).to_be_bytes().to_vec();
                    v.extend_from_slice(&clamp_u32(x.unread).to_be_bytes());
                    self.wb.put_cf(counters, k, v);
                } else {
                    self.wb.delete_cf(counters, k);
                }
            }
            let kind = match (b.emails > 0, x.emails > 0) {
                (false, true) => Some(ChangeKind::Created),
                (true, false) => Some(ChangeKind::Destroyed),
                (true, true) if self.changed_threads.contains(t) => Some(ChangeKind::Updated),
                _ => None,
            };
            if let Some(kind) = kind
                && !self.explicit.contains(&(DataType::Thread, t.clone()))
            {
                self.log(DataType::Thread, t, kind, 0)?;
            }
        }

        // Mailbox counts, and a counts-only Mailbox change for each existing mailbox whose
        // counts moved (unless the batch changed that mailbox itself).
        let mailboxes = std::mem::take(&mut self.mailboxes);
        for (m, (before, now)) in &mailboxes {
            let after = MailboxCounts {
                total_emails: clamp_u32(now[0]),
                unread_emails: clamp_u32(now[1]),
                total_threads: clamp_u32(now[2]),
                unread_threads: clamp_u32(now[3]),
            };
            if after == *before {
                continue;
            }
            self.wb.put_cf(
                counters,
                keys::mailbox_counts_key(a, m),
                encode_counts(&after),
            );
            if !m.is_empty()
                && !self.explicit.contains(&(DataType::Mailbox, m.clone()))
                && self.exists(DataType::Mailbox, m)?
            {
                self.log(DataType::Mailbox, m, ChangeKind::Updated, FLAG_COUNTS_ONLY)?;
            }
        }

        for (k, (before, delta)) in std::mem::take(&mut self.keywords) {
            if delta != 0 {
                let key = keys::keyword_count_key(a, &k);
                let after = before as i64 + delta;
                if after > 0 {
                    self.wb
                        .put_cf(counters, key, clamp_u32(after).to_be_bytes());
                } else {
                    self.wb.delete_cf(counters, key);
                }
            }
        }

        // Net index writes, and membership events for queryChanges.
        let email_modseq = self.modseqs.get(&DataType::Email).map(|r| r.current);
        let mut removed_events = Vec::new();
        let mut added_events = Vec::new();
        for ((c, k), e) in &self.index {
            let handle = store.cf(c)?;
            match (&e.post, e.pre) {
                (None, true) => self.wb.delete_cf(handle, k),
                (Some(v), _) => self.wb.put_cf(handle, k, v),
                (None, false) => {}
            }
            if e.pre == e.post.is_some() {
                continue;
            }
            if let Some(ev) = membership_event(c, k)? {
                if e.pre {
                    removed_events.push(ev);
                } else {
                    added_events.push(ev);
                }
            }
        }
        if let Some(modseq) = email_modseq {
            let log = store.cf(cf::MAILBOX_LOG)?;
            let removed = removed_events
                .into_iter()
                .map(|e| (ChangeKind::Destroyed, e));
            let added = added_events.into_iter().map(|e| (ChangeKind::Created, e));
            // One value per (mailbox, view) and commit: an initial-sync batch adds hundreds
            // of Emails to the same few result sets.
            let mut packed: BTreeMap<(&[u8], u8), Vec<u8>> = BTreeMap::new();
            for (kind, (m, v, suffix)) in removed.chain(added) {
                let value = packed
                    .entry((m, v))
                    .or_insert_with(|| vec![keys::EVENTS_PACKED]);
                keys::push_event(value, kind as u8, suffix);
            }
            for ((m, v), value) in packed {
                let k = Key::account(a).lp(m).u8(v).u64(modseq).u32(0).into_vec();
                self.wb.put_cf(log, k, value);
            }
        }
        Ok(())
    }

    /// Writes changed modseq records (trimming the log past its bound); returns new states.
    fn write_modseqs(&mut self) -> Result<Vec<State>> {
        let a = self.account;
        let max = self.store.config.max_log_entries.max(1);
        let slack = max / 8 + 1;
        let mut states = Vec::new();
        for (t, rec) in &self.modseqs {
            if rec.current == rec.orig {
                continue;
            }
            let mut min_since = rec.min_since;
            if rec.current - min_since > max + slack {
                let new_min = rec.current - max;
                self.wb.delete_range_cf(
                    self.store.cf(cf::CHANGE_LOG)?,
                    keys::log_key(a, *t, 0),
                    keys::log_key(a, *t, new_min + 1),
                );
                min_since = new_min;
            }
            let mut v = rec.current.to_be_bytes().to_vec();
            v.extend_from_slice(&min_since.to_be_bytes());
            self.wb
                .put_cf(self.store.cf(cf::MODSEQ)?, keys::modseq_key(a, *t), v);
            states.push(self.store.make_state(*t, rec.current));
        }
        Ok(states)
    }
}

/// The index and key prefix under which the members of thread `t` in mailbox `m` are listed
/// by receivedAt then id: `idx_mailbox_thread` for a mailbox, `idx_thread` for all mail.
fn pair_members(a: AccountId, m: &[u8], t: &[u8]) -> (&'static str, Vec<u8>) {
    if m.is_empty() {
        (cf::IDX_THREAD, Key::account(a).lp(t).into_vec())
    } else {
        (
            cf::IDX_MAILBOX_THREAD,
            Key::account(a).lp(m).lp(t).into_vec(),
        )
    }
}

/// For an index key whose presence is a query-result membership (receivedAt per mailbox, or a
/// thread head), the (mailbox, view, receivedAt+id suffix) it stands for.
fn membership_event<'k>(c: &str, k: &'k [u8]) -> Result<Option<MembershipEvent<'k>>> {
    if c != cf::IDX_MAILBOX && c != cf::IDX_THREAD_HEAD {
        return Ok(None);
    }
    let mut r = Reader::new(k);
    r.take(8)?;
    let m = r.lp()?;
    let b = r.u8()?;
    let suffix = r.rest();
    if c == cf::IDX_MAILBOX {
        Ok((b == sort::RECEIVED_AT).then_some((m, view::ALL, suffix)))
    } else {
        Ok(Some((m, b, suffix)))
    }
}

fn clamp_u32(n: i64) -> u32 {
    n.clamp(0, u32::MAX as i64) as u32
}
