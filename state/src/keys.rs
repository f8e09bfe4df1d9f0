//! Column-family names and the big-endian key/value encodings. Every on-disk byte layout lives
//! here, so the layout table in the crate docs has one place to be checked against.
//!
//! Conventions: integers big-endian (so byte order = numeric order); signed integers with the
//! sign bit flipped; an id or keyword *inside* a key is length-prefixed with one byte (ids are at
//! most 255 bytes) so prefixes never run into each other; the all-mail pseudo-mailbox is the empty
//! mailbox id (length 0), which no JMAP id can be.

use crate::error::{Error, Result};
use crate::types::{AccountId, DataType, EmailFacts, ModSeq, ObjectId};

/// Column-family names, one per kind of record.
pub mod cf {
    /// Schema version, store generation, blob-cache totals.
    pub const META: &str = "meta";
    /// (account, type, id) → object bytes.
    pub const OBJECTS: &str = "objects";
    /// (account, email id) → encoded [`crate::EmailFacts`], the previous index facts.
    pub const EMAIL_FACTS: &str = "email_facts";
    /// (account, type) → current modseq, lowest answerable sinceState (trim point).
    pub const MODSEQ: &str = "modseq";
    /// (account, type, modseq) → change-log entry.
    pub const CHANGE_LOG: &str = "change_log";
    /// (account, mailbox, sort key, sort value, email id) → ().
    pub const IDX_MAILBOX: &str = "idx_mailbox";
    /// (account, mailbox, thread, receivedAt, email id) → (): members of a thread in a mailbox.
    pub const IDX_MAILBOX_THREAD: &str = "idx_mailbox_thread";
    /// (account, mailbox, direction, receivedAt, email id) → thread id: one head per thread.
    pub const IDX_THREAD_HEAD: &str = "idx_thread_head";
    /// (account, thread, receivedAt, email id) → (): Thread/get's emailIds.
    pub const IDX_THREAD: &str = "idx_thread";
    /// (account, keyword, receivedAt, email id) → ().
    pub const IDX_KEYWORD: &str = "idx_keyword";
    /// Incremental counters: mailbox counts, thread stats, thread-per-mailbox, keyword counts.
    pub const COUNTERS: &str = "counters";
    /// (account, mailbox, view, Email modseq, seq) → membership event, for queryChanges.
    pub const MAILBOX_LOG: &str = "mailbox_log";
    /// (account, cursor name) → opaque upstream sync cursor.
    pub const SYNC_CURSORS: &str = "sync_cursors";
    /// (account, blob id) → blob bytes.
    pub const BLOBS: &str = "blobs";
    /// (account, blob id) → last-use tick, size.
    pub const BLOB_META: &str = "blob_meta";
    /// (last-use tick, account, blob id) → (): eviction order.
    pub const BLOB_LRU: &str = "blob_lru";

    /// Every column family this build uses.
    pub const ALL: [&str; 16] = [
        META,
        OBJECTS,
        EMAIL_FACTS,
        MODSEQ,
        CHANGE_LOG,
        IDX_MAILBOX,
        IDX_MAILBOX_THREAD,
        IDX_THREAD_HEAD,
        IDX_THREAD,
        IDX_KEYWORD,
        COUNTERS,
        MAILBOX_LOG,
        SYNC_CURSORS,
        BLOBS,
        BLOB_META,
        BLOB_LRU,
    ];
}

/// Keys in [`cf::META`].
pub mod meta {
    pub const SCHEMA_VERSION: &[u8] = b"schema_version";
    pub const GENERATION: &[u8] = b"generation";
    pub const BLOB_BYTES: &[u8] = b"blob_bytes";
}

/// Sub-spaces of [`cf::COUNTERS`] (byte after the account).
pub mod counter {
    pub const MAILBOX: u8 = 1;
    pub const THREAD: u8 = 2;
    pub const THREAD_MAILBOX: u8 = 3;
    pub const KEYWORD: u8 = 4;
}

/// Sort keys of [`cf::IDX_MAILBOX`] (byte after the mailbox).
pub mod sort {
    pub const RECEIVED_AT: u8 = 0;
    pub const SIZE: u8 = 1;
    pub const SENT_AT: u8 = 2;
}

/// Thread-head directions in [`cf::IDX_THREAD_HEAD`] and views of [`cf::MAILBOX_LOG`].
pub mod view {
    /// Every email of the mailbox (receivedAt index).
    pub const ALL: u8 = 0;
    /// One email per thread: the newest (for descending sorts).
    pub const NEWEST_PER_THREAD: u8 = 1;
    /// One email per thread: the oldest (for ascending sorts).
    pub const OLDEST_PER_THREAD: u8 = 2;
}

/// A growable key builder.
#[derive(Debug, Default, Clone)]
pub struct Key(pub Vec<u8>);

impl Key {
    pub fn account(a: AccountId) -> Key {
        let mut v = Vec::with_capacity(48);
        v.extend_from_slice(&a.0.to_be_bytes());
        Key(v)
    }
    pub fn u8(mut self, b: u8) -> Key {
        self.0.push(b);
        self
    }
    pub fn u32(mut self, n: u32) -> Key {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    pub fn u64(mut self, n: u64) -> Key {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    pub fn i64(self, n: i64) -> Key {
        self.u64(sortable_i64(n))
    }
    /// A length-prefixed component (id, keyword, or the empty all-mail mailbox).
    pub fn lp(mut self, b: &[u8]) -> Key {
        // Callers validate lengths ≤ 255; clamp defensively rather than corrupt the layout.
        let n = b.len().min(255);
        self.0.push(n as u8);
        self.0.extend_from_slice(&b[..n]);
        self
    }
    /// A trailing raw component (the last one in a key).
    pub fn raw(mut self, b: &[u8]) -> Key {
        self.0.extend_from_slice(b);
        self
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

pub fn sortable_i64(n: i64) -> u64 {
    (n as u64) ^ (1u64 << 63)
}

pub fn unsortable_i64(n: u64) -> i64 {
    (n ^ (1u64 << 63)) as i64
}

/// The smallest key greater than every key starting with `prefix`, if any.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut v = prefix.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xff {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

pub fn object_key(a: AccountId, t: DataType, id: &[u8]) -> Vec<u8> {
    Key::account(a).u8(t.code()).raw(id).into_vec()
}

pub fn facts_key(a: AccountId, id: &[u8]) -> Vec<u8> {
    Key::account(a).raw(id).into_vec()
}

pub fn modseq_key(a: AccountId, t: DataType) -> Vec<u8> {
    Key::account(a).u8(t.code()).into_vec()
}

pub fn log_key(a: AccountId, t: DataType, m: ModSeq) -> Vec<u8> {
    Key::account(a).u8(t.code()).u64(m).into_vec()
}

pub fn cursor_key(a: AccountId, name: &[u8]) -> Vec<u8> {
    Key::account(a).raw(name).into_vec()
}

pub fn mailbox_counts_key(a: AccountId, mailbox: &[u8]) -> Vec<u8> {
    Key::account(a).u8(counter::MAILBOX).lp(mailbox).into_vec()
}

pub fn thread_stats_key(a: AccountId, thread: &[u8]) -> Vec<u8> {
    Key::account(a).u8(counter::THREAD).lp(thread).into_vec()
}

pub fn thread_mailbox_prefix(a: AccountId, thread: &[u8]) -> Vec<u8> {
    Key::account(a)
        .u8(counter::THREAD_MAILBOX)
        .lp(thread)
        .into_vec()
}

pub fn keyword_count_key(a: AccountId, keyword: &[u8]) -> Vec<u8> {
    Key::account(a).u8(counter::KEYWORD).lp(keyword).into_vec()
}

/// A cursor over a value or key suffix that fails with `Corrupt` instead of panicking.
#[derive(Debug)]
pub struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(Error::Corrupt("short record"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        let mut a = [0u8; 2];
        a.copy_from_slice(self.take(2)?);
        Ok(u16::from_be_bytes(a))
    }
    pub fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }
    pub fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    pub fn lp(&mut self) -> Result<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
}

/// Decodes a u64 value (modseq counters, blob totals, ...).
pub fn decode_u64(v: &[u8]) -> Result<u64> {
    Reader::new(v).u64()
}

const FACTS_VERSION: u8 = 1;

pub fn encode_facts(f: &EmailFacts) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.push(FACTS_VERSION);
    v.extend_from_slice(&(f.mailbox_ids.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for m in f.mailbox_ids.iter().take(u16::MAX as usize) {
        push_lp(&mut v, m.as_bytes());
    }
    push_lp(
        &mut v,
        f.thread_id.as_ref().map_or(&[][..], |t| t.as_bytes()),
    );
    v.extend_from_slice(&f.received_at.to_be_bytes());
    match f.sent_at {
        Some(s) => {
            v.push(1);
            v.extend_from_slice(&s.to_be_bytes());
        }
        None => v.push(0),
    }
    v.extend_from_slice(&f.size.to_be_bytes());
    v.extend_from_slice(&(f.keywords.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for k in f.keywords.iter().take(u16::MAX as usize) {
        push_lp(&mut v, k.as_bytes());
    }
    v
}

/// First byte of a [`cf::MAILBOX_LOG`] value holding several membership events (no event
/// kind is 0xff). A value without it is one event: kind u8 · receivedAt · email id.
pub const EVENTS_PACKED: u8 = 0xff;

/// Appends one membership event (kind, suffix = receivedAt u64 · email id) to a packed
/// [`cf::MAILBOX_LOG`] value: kind u8 · receivedAt · lp(email id). Start the value with
/// [`EVENTS_PACKED`].
pub fn push_event(value: &mut Vec<u8>, kind: u8, suffix: &[u8]) {
    let (at, id) = suffix.split_at(suffix.len().min(8));
    value.push(kind);
    value.extend_from_slice(at);
    let n = id.len().min(255);
    value.push(n as u8);
    value.extend_from_slice(&id[..n]);
}

/// The membership events of a [`cf::MAILBOX_LOG`] value, packed or single, in order: (kind,
/// suffix = receivedAt u64 · email id).
pub fn decode_events(value: &[u8]) -> Result<Vec<(u8, Vec<u8>)>> {
    let mut r = Reader::new(value);
    if value.first() != Some(&EVENTS_PACKED) {
        let kind = r.u8()?;
        return Ok(vec![(kind, r.rest().to_vec())]);
    }
    r.u8()?;
    let mut out = Vec::new();
    while !r.b.is_empty() {
        let kind = r.u8()?;
        let mut suffix = r.take(8)?.to_vec();
        suffix.extend_from_slice(r.lp()?);
        out.push((kind, suffix));
    }
    Ok(out)
}

pub fn decode_facts(v: &[u8]) -> Result<EmailFacts> {
    let mut r = Reader::new(v);
    if r.u8()? != FACTS_VERSION {
        return Err(Error::Corrupt("unknown email facts version"));
    }
    let n = r.u16()?;
    let mut mailbox_ids = Vec::with_capacity(n as usize);
    for _ in 0..n {
        mailbox_ids.push(ObjectId::from_disk(r.lp()?)?);
    }
    let t = r.lp()?;
    let thread_id = if t.is_empty() {
        None
    } else {
        Some(ObjectId::from_disk(t)?)
    };
    let received_at = r.u64()? as i64;
    let sent_at = match r.u8()? {
        0 => None,
        _ => Some(r.u64()? as i64),
    };
    let size = r.u64()?;
    let n = r.u16()?;
    let mut keywords = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let k = std::str::from_utf8(r.lp()?).map_err(|_| Error::Corrupt("keyword not UTF-8"))?;
        keywords.push(k.to_owned());
    }
    Ok(EmailFacts {
        mailbox_ids,
        thread_id,
        received_at,
        sent_at,
        size,
        keywords,
    })
}

fn push_lp(v: &mut Vec<u8>, b: &[u8]) {
    let n = b.len().min(255);
    v.push(n as u8);
    v.extend_from_slice(&b[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_i64_orders_like_i64() {
        let xs = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in xs.windows(2) {
            assert!(sortable_i64(w[0]) < sortable_i64(w[1]));
            assert_eq!(unsortable_i64(sortable_i64(w[0])), w[0]);
        }
    }

    #[test]
    fn membership_events_pack_and_single_events_still_read() -> Result<()> {
        let a = [&1u64.to_be_bytes()[..], b"e1"].concat();
        let b = [&2u64.to_be_bytes()[..], &[b'x'; 255][..]].concat();
        let mut v = vec![EVENTS_PACKED];
        push_event(&mut v, 3, &a);
        push_event(&mut v, 1, &b);
        push_event(&mut v, 1, &a);
        assert_eq!(
            decode_events(&v)?,
            vec![(3, a.clone()), (1, b.clone()), (1, a.clone())]
        );
        // The form written before packing: one event, the id running to the end.
        assert_eq!(
            decode_events(&[&[1u8][..], &a[..]].concat())?,
            vec![(1, a.clone())]
        );
        // A cut-off packed value is corruption, not a panic.
        for n in 2..v.len() {
            if n != 1 + 1 + 8 + 1 + 2 && n != 1 + 2 * (1 + 8 + 1) + 2 + 255 {
                assert!(decode_events(&v[..n]).is_err(), "{n} bytes");
            }
        }
        assert!(decode_events(&[]).is_err());
        Ok(())
    }

    #[test]
    fn prefix_end_skips_ff() {
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }

    #[test]
    fn facts_round_trip_and_truncation_is_an_error() -> Result<()> {
        let f = EmailFacts {
            mailbox_ids: vec![ObjectId::new("m1")?, ObjectId::new("m2")?],
            thread_id: Some(ObjectId::new("t1")?),
            received_at: -3,
            sent_at: Some(9),
            size: 1234,
            keywords: vec!["$seen".into()],
        };
        let enc = encode_facts(&f);
        assert_eq!(decode_facts(&enc)?, f);
        for cut in 0..enc.len() {
            assert!(decode_facts(&enc[..cut]).is_err());
        }
        Ok(())
    }
}
