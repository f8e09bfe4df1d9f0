//! Email/query and Email/queryChanges over the store's indexes.
//!
//! Supported without scanning a mailbox: `inMailbox` (or no filter: all mail) sorted by
//! `receivedAt`, `size` or `sentAt`, ascending or descending, with `collapseThreads` for
//! `receivedAt`; `hasKeyword` sorted by `receivedAt`. Ties are broken by email id (in the sort
//! direction), so the order is stable. Totals come from counters. Paging by position or anchor
//! costs O(position): RocksDB has no order-statistics, so the scan walks keys (cheap, ~100 ns
//! each) up to the window.

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use crate::changes::parse_since;
use crate::error::{Error, Result};
use crate::keys::{self, Key, Reader, cf, sort, view};
use crate::store::Store;
use crate::types::{AccountId, ChangeKind, DataType, ObjectId, State};

/// The set of Emails a query ranges over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailSource {
    /// Every indexed Email of the account (filter null).
    AllMail,
    /// `inMailbox`.
    Mailbox(ObjectId),
    /// `hasKeyword` (sorted by receivedAt only; no thread collapsing).
    Keyword(String),
}

/// The sort properties the store indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailSort {
    ReceivedAt,
    Size,
    SentAt,
}

/// An Email/query the store can answer from its indexes.
#[derive(Debug, Clone)]
pub struct EmailQuery {
    pub source: EmailSource,
    pub sort: EmailSort,
    pub ascending: bool,
    pub collapse_threads: bool,
    pub position: i64,
    pub anchor: Option<ObjectId>,
    pub anchor_offset: i64,
    pub limit: Option<usize>,
}

impl EmailQuery {
    /// The common shape: newest first in a mailbox, from position 0.
    pub fn newest_in(mailbox: ObjectId, limit: usize) -> EmailQuery {
        EmailQuery {
            source: EmailSource::Mailbox(mailbox),
            sort: EmailSort::ReceivedAt,
            ascending: false,
            collapse_threads: false,
            position: 0,
            anchor: None,
            anchor_offset: 0,
            limit: Some(limit),
        }
    }
}

/// An Email/query answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    /// The Email state the results were read at; it is the queryState.
    pub query_state: State,
    pub position: u64,
    pub ids: Vec<ObjectId>,
    pub total: u64,
}

/// An Email/queryChanges request for the shapes answered exactly: `inMailbox` (or all mail)
/// sorted by receivedAt, with or without collapseThreads.
#[derive(Debug, Clone)]
pub struct QueryChangesRequest {
    /// `None` for all mail.
    pub mailbox: Option<ObjectId>,
    pub ascending: bool,
    pub collapse_threads: bool,
    pub since_query_state: String,
    pub max_changes: Option<u64>,
    pub up_to_id: Option<ObjectId>,
}

/// An Email/queryChanges answer (RFC 8620 5.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryChanges {
    pub old_query_state: State,
    pub new_query_state: State,
    pub removed: Vec<ObjectId>,
    /// (id, index in the new results), lowest index first.
    pub added: Vec<(ObjectId, u64)>,
    pub total: u64,
}

/// Where in which index a query's results live.
struct Plan {
    cf: &'static str,
    /// The results are the keys under this prefix, in key order (or reversed)…
    prefix: Vec<u8>,
    /// …or, when set, the union of the keys under each of these prefixes, merged in order
    /// (all mail sorted by size or sentAt: the per-mailbox indexes, an Email in several
    /// mailboxes appearing once). `prefix` is then the mailbox part they share.
    merge: Option<Vec<Vec<u8>>>,
    total_key: TotalFrom,
}

enum TotalFrom {
    Emails(Vec<u8>),
    Threads(Vec<u8>),
    Keyword(Vec<u8>),
}

fn mailbox_bytes(source: &EmailSource) -> Option<&[u8]> {
    match source {
        EmailSource::AllMail => Some(b""),
        EmailSource::Mailbox(m) => Some(m.as_bytes()),
        EmailSource::Keyword(_) => None,
    }
}

impl Store {
    fn plan(&self, snap: &rocksdb::Snapshot<'_>, a: AccountId, q: &EmailQuery) -> Result<Plan> {
        let sort_byte = match q.sort {
            EmailSort::ReceivedAt => sort::RECEIVED_AT,
            EmailSort::Size => sort::SIZE,
            EmailSort::SentAt => sort::SENT_AT,
        };
        match (&q.source, q.collapse_threads) {
            (EmailSource::Keyword(k), false) if q.sort == EmailSort::ReceivedAt => Ok(Plan {
                cf: cf::IDX_KEYWORD,
                prefix: Key::account(a).lp(k.as_bytes()).into_vec(),
                merge: None,
                total_key: TotalFrom::Keyword(k.as_bytes().to_vec()),
            }),
            (EmailSource::Keyword(_), _) => Err(Error::UnsupportedSort),
            (EmailSource::AllMail, false) if q.sort != EmailSort::ReceivedAt => {
                let prefixes = self
                    .indexed_mailboxes(snap, a)?
                    .into_iter()
                    .map(|m| Key::account(a).lp(&m).u8(sort_byte).into_vec())
                    .collect();
                Ok(Plan {
                    cf: cf::IDX_MAILBOX,
                    prefix: Key::account(a).into_vec(),
                    merge: Some(prefixes),
                    total_key: TotalFrom::Emails(Vec::new()),
                })
            }
            (source, false) => {
                let m = mailbox_bytes(source).ok_or(Error::UnsupportedSort)?;
                Ok(Plan {
                    cf: cf::IDX_MAILBOX,
                    prefix: Key::account(a).lp(m).u8(sort_byte).into_vec(),
                    merge: None,
                    total_key: TotalFrom::Emails(m.to_vec()),
                })
            }
            (source, true) => {
                if q.sort != EmailSort::ReceivedAt {
                    return Err(Error::UnsupportedSort);
                }
                let m = mailbox_bytes(source).ok_or(Error::UnsupportedSort)?;
                Ok(Plan {
                    cf: cf::IDX_THREAD_HEAD,
                    prefix: Key::account(a).lp(m).u8(head_view(q.ascending)).into_vec(),
                    merge: None,
                    total_key: TotalFrom::Threads(m.to_vec()),
                })
            }
        }
    }

    /// The mailboxes with at least one Email in `idx_mailbox`, by skipping from one mailbox's
    /// keys to the next: one seek per mailbox, however many Emails. All mail (`""`) is among
    /// them; its size and sentAt entries are those of Emails in no mailbox.
    fn indexed_mailboxes(
        &self,
        snap: &rocksdb::Snapshot<'_>,
        a: AccountId,
    ) -> Result<Vec<Vec<u8>>> {
        let prefix = Key::account(a).into_vec();
        let mut it = self.prefix_iter(snap, cf::IDX_MAILBOX, &prefix)?;
        it.seek_to_first();
        let mut out = Vec::new();
        while let Some(k) = it.key() {
            let m = Reader::new(&k[prefix.len()..]).lp()?.to_vec();
            let this = Key(prefix.clone()).lp(&m).into_vec();
            out.push(m);
            match keys::prefix_end(&this) {
                Some(next) => it.seek(next),
                None => break,
            }
        }
        it.status()?;
        Ok(out)
    }
}

fn head_view(ascending: bool) -> u8 {
    if ascending {
        view::OLDEST_PER_THREAD
    } else {
        view::NEWEST_PER_THREAD
    }
}

/// Walks a plan's index in query order, yielding key suffixes (sort value + id).
enum Walk<'a> {
    One(Cursor<'a>),
    /// Several cursors merged: the head holds each live cursor's current suffix; equal
    /// suffixes (one Email seen in two mailboxes) are yielded once.
    Merge {
        cursors: Vec<Cursor<'a>>,
        heads: BinaryHeap<Head>,
    },
}

/// One index prefix walked in query order.
struct Cursor<'a> {
    it: rocksdb::DBRawIterator<'a>,
    prefix_len: usize,
    ascending: bool,
}

/// A merged cursor's current suffix; the heap's greatest is the next in query order.
#[derive(PartialEq, Eq)]
struct Head {
    suffix: Vec<u8>,
    cursor: usize,
    ascending: bool,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let o = self.suffix.cmp(&other.suffix);
        if self.ascending { o.reverse() } else { o }
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<'a> Cursor<'a> {
    fn new(
        store: &'a Store,
        snap: &rocksdb::Snapshot<'a>,
        cf_name: &'static str,
        prefix: &[u8],
        ascending: bool,
    ) -> Result<Cursor<'a>> {
        let mut it = store.prefix_iter(snap, cf_name, prefix)?;
        if ascending {
            it.seek_to_first();
        } else {
            it.seek_to_last();
        }
        Ok(Cursor {
            it,
            prefix_len: prefix.len(),
            ascending,
        })
    }

    fn current(&self) -> Result<Option<&[u8]>> {
        match self.it.key() {
            Some(k) => Ok(Some(
                k.get(self.prefix_len..)
                    .filter(|s| s.len() > 8)
                    .ok_or(Error::Corrupt("short index key"))?,
            )),
            None => {
                self.it.status()?;
                Ok(None)
            }
        }
    }

    fn advance(&mut self) {
        if self.ascending {
            self.it.next();
        } else {
            self.it.prev();
        }
    }
}

impl<'a> Walk<'a> {
    fn new(
        store: &'a Store,
        snap: &rocksdb::Snapshot<'a>,
        p: &Plan,
        ascending: bool,
    ) -> Result<Walk<'a>> {
        let Some(prefixes) = &p.merge else {
            return Ok(Walk::One(Cursor::new(
                store, snap, p.cf, &p.prefix, ascending,
            )?));
        };
        let mut cursors = Vec::with_capacity(prefixes.len());
        let mut heads = BinaryHeap::with_capacity(prefixes.len());
        for prefix in prefixes {
            let c = Cursor::new(store, snap, p.cf, prefix, ascending)?;
            if let Some(s) = c.current()? {
                heads.push(Head {
                    suffix: s.to_vec(),
                    cursor: cursors.len(),
                    ascending,
                });
            }
            cursors.push(c);
        }
        Ok(Walk::Merge { cursors, heads })
    }

    /// The current suffix (8-byte sort value + id), or `None` at the end.
    fn current(&self) -> Result<Option<&[u8]>> {
        match self {
            Walk::One(c) => c.current(),
            Walk::Merge { heads, .. } => Ok(heads.peek().map(|h| &h.suffix[..])),
        }
    }

    fn advance(&mut self) -> Result<()> {
        match self {
            Walk::One(c) => c.advance(),
            Walk::Merge { cursors, heads } => {
                let Some(done) = heads.peek().map(|h| h.suffix.clone()) else {
                    return Ok(());
                };
                while let Some(mut h) = heads.peek_mut()
                    && h.suffix == done
                {
                    let c = cursors
                        .get_mut(h.cursor)
                        .ok_or(Error::Corrupt("merge cursor vanished"))?;
                    c.advance();
                    match c.current()? {
                        Some(s) => {
                            h.suffix.clear();
                            h.suffix.extend_from_slice(s);
                        }
                        None => {
                            std::collections::binary_heap::PeekMut::pop(h);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// `a` comes strictly before `b` in the query order.
fn before(a: &[u8], b: &[u8], ascending: bool) -> bool {
    if ascending { a < b } else { a > b }
}

impl Store {
    /// Email/query from the indexes. The total is always computed (it is a counter read).
    pub fn query_emails(&self, a: AccountId, q: &EmailQuery) -> Result<QueryResult> {
        let snap = self.db.snapshot();
        let p = self.plan(&snap, a, q)?;
        let ro = Store::snapshot_opts(&snap);
        let (modseq, _) = self.modseq_record(&ro, a, DataType::Email)?;
        let total = self.total(&ro, a, &p.total_key)?;

        let start = match &q.anchor {
            Some(anchor) => {
                let key = self
                    .anchor_suffix(&ro, a, q, &p, anchor)?
                    .ok_or(Error::AnchorNotFound)?;
                let index = self.index_of(&snap, &p, q.ascending, &key)?;
                (index as i64).saturating_add(q.anchor_offset).max(0) as u64
            }
            None if q.position < 0 => (total as i64).saturating_add(q.position).max(0) as u64,
            None => q.position as u64,
        };
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut ids = Vec::new();
        let mut w = Walk::new(self, &snap, &p, q.ascending)?;
        let mut i = 0u64;
        while ids.len() < limit {
            let Some(suffix) = w.current()? else { break };
            if i >= start {
                ids.push(ObjectId::from_disk(&suffix[8..])?);
            }
            i += 1;
            w.advance()?;
        }
        Ok(QueryResult {
            query_state: self.make_state(DataType::Email, modseq),
            position: start,
            ids,
            total,
        })
    }

    fn total(&self, ro: &rocksdb::ReadOptions, a: AccountId, t: &TotalFrom) -> Result<u64> {
        Ok(match t {
            TotalFrom::Emails(m) => self.counts_raw(ro, a, m)?.total_emails as u64,
            TotalFrom::Threads(m) => self.counts_raw(ro, a, m)?.total_threads as u64,
            TotalFrom::Keyword(k) => self
                .get_raw(ro, cf::COUNTERS, &keys::keyword_count_key(a, k))?
                .map(|v| Reader::new(&v).u32())
                .transpose()?
                .unwrap_or(0) as u64,
        })
    }

    /// The index suffix an email has in this query's index, if it is in the results.
    fn anchor_suffix(
        &self,
        ro: &rocksdb::ReadOptions,
        a: AccountId,
        q: &EmailQuery,
        p: &Plan,
        id: &ObjectId,
    ) -> Result<Option<Vec<u8>>> {
        let Some(v) = self.get_raw(ro, cf::EMAIL_FACTS, &keys::facts_key(a, id.as_bytes()))? else {
            return Ok(None);
        };
        let f = keys::decode_facts(&v)?;
        let value = match q.sort {
            EmailSort::ReceivedAt => keys::sortable_i64(f.received_at),
            EmailSort::Size => f.size,
            EmailSort::SentAt => keys::sortable_i64(f.sent_at.unwrap_or(i64::MIN)),
        };
        let suffix = Key(Vec::new()).u64(value).raw(id.as_bytes()).into_vec();
        if p.merge.is_some() {
            // All mail: every Email with facts is in it.
            return Ok(Some(suffix));
        }
        let mut full = p.prefix.clone();
        full.extend_from_slice(&suffix);
        Ok(self.get_raw(ro, p.cf, &full)?.map(|_| suffix))
    }

    /// The 0-based index of `suffix` in the results (O(index)).
    fn index_of(
        &self,
        snap: &rocksdb::Snapshot<'_>,
        p: &Plan,
        ascending: bool,
        suffix: &[u8],
    ) -> Result<u64> {
        let mut w = Walk::new(self, snap, p, ascending)?;
        let mut i = 0u64;
        while let Some(s) = w.current()? {
            if s == suffix {
                return Ok(i);
            }
            i += 1;
            w.advance()?;
        }
        Err(Error::AnchorNotFound)
    }

    /// Email/queryChanges for inMailbox (or all mail) + receivedAt, with or without
    /// collapseThreads, answered exactly from the per-mailbox membership log.
    ///
    /// `removed` holds every id that left the results (or moved in them); `added` every id now
    /// in the results that entered (or moved), with its new index. With `up_to_id` present in
    /// the current results, changes sorting after it are left out (receivedAt is immutable, so
    /// positions beyond it are decidable from the log alone).
    pub fn query_changes(&self, a: AccountId, req: &QueryChangesRequest) -> Result<QueryChanges> {
        if req.max_changes == Some(0) {
            return Err(Error::InvalidArguments("maxChanges must be greater than 0"));
        }
        let since = parse_since(self, DataType::Email, &req.since_query_state)?;
        let q = EmailQuery {
            source: match &req.mailbox {
                Some(m) => EmailSource::Mailbox(m.clone()),
                None => EmailSource::AllMail,
            },
            sort: EmailSort::ReceivedAt,
            ascending: req.ascending,
            collapse_threads: req.collapse_threads,
            position: 0,
            anchor: None,
            anchor_offset: 0,
            limit: None,
        };
        let snap = self.db.snapshot();
        let p = self.plan(&snap, a, &q)?;
        let ro = Store::snapshot_opts(&snap);
        let (current, min_since) = self.modseq_record(&ro, a, DataType::Email)?;
        if since > current || since < min_since {
            return Err(Error::CannotCalculateChanges);
        }
        let total = self.total(&ro, a, &p.total_key)?;
        let up_to = match &req.up_to_id {
            Some(id) => self.anchor_suffix(&ro, a, &q, &p, id)?,
            None => None,
        };

        // Coalesce the membership events since `since`, per id: in before? in after?
        let m = req.mailbox.as_ref().map_or(&b""[..], |m| m.as_bytes());
        let v = if req.collapse_threads {
            head_view(req.ascending)
        } else {
            view::ALL
        };
        let prefix = Key::account(a).lp(m).u8(v).into_vec();
        let mut it = self.prefix_iter(&snap, cf::MAILBOX_LOG, &prefix)?;
        it.seek(Key(prefix.clone()).u64(since.saturating_add(1)).into_vec());
        struct Ev {
            first: ChangeKind,
            first_suffix: Vec<u8>,
            last: ChangeKind,
            last_suffix: Vec<u8>,
        }
        let mut order = Vec::new();
        let mut evs: HashMap<Vec<u8>, Ev> = HashMap::new();
        while let Some((k, val)) = it.item() {
            let modseq = Reader::new(&k[prefix.len()..]).u64()?;
            if modseq > current {
                break;
            }
            for (kind, suffix) in keys::decode_events(val)? {
                let kind = ChangeKind::from_code(kind).ok_or(Error::Corrupt("bad event kind"))?;
                let id = suffix
                    .get(8..)
                    .filter(|s| !s.is_empty())
                    .ok_or(Error::Corrupt("short membership event"))?
                    .to_vec();
                match evs.get_mut(&id) {
                    Some(e) => {
                        e.last = kind;
                        e.last_suffix = suffix;
                    }
                    None => {
                        order.push(id.clone());
                        evs.insert(
                            id,
                            Ev {
                                first: kind,
                                first_suffix: suffix.clone(),
                                last: kind,
                                last_suffix: suffix,
                            },
                        );
                    }
                }
            }
            it.next();
        }
        it.status()?;

        // upToId only bounds the answer if it did not move itself in the window (receivedAt
        // is immutable in JMAP, but the store does not forbid an adapter from changing it).
        let up_to = up_to.filter(|u| u.get(8..).is_none_or(|id| !evs.contains_key(id)));
        let beyond = |s: &[u8]| up_to.as_ref().is_some_and(|u| before(u, s, req.ascending));
        let mut removed = Vec::new();
        let mut wanted: BTreeMap<Vec<u8>, ()> = BTreeMap::new();
        for id in &order {
            let Some(e) = evs.get(id) else { continue };
            let was_in = e.first == ChangeKind::Destroyed;
            let is_in = e.last == ChangeKind::Created;
            if was_in && !beyond(&e.first_suffix) {
                removed.push(ObjectId::from_disk(id)?);
            }
            if is_in && !beyond(&e.last_suffix) {
                wanted.insert(e.last_suffix.clone(), ());
            }
        }
        if let Some(max) = req.max_changes
            && (removed.len() + wanted.len()) as u64 > max
        {
            return Err(Error::TooManyChanges);
        }
        // Indexes of the added ids: one walk in query order up to the last of them.
        let mut added = Vec::with_capacity(wanted.len());
        if !wanted.is_empty() {
            let mut w = Walk::new(self, &snap, &p, req.ascending)?;
            let mut i = 0u64;
            while added.len() < wanted.len() {
                let Some(s) = w.current()? else { break };
                if wanted.contains_key(s) {
                    added.push((ObjectId::from_disk(&s[8..])?, i));
                }
                i += 1;
                w.advance()?;
            }
        }
        Ok(QueryChanges {
            old_query_state: self.make_state(DataType::Email, since),
            new_query_state: self.make_state(DataType::Email, current),
            removed,
            added,
            total,
        })
    }
}
