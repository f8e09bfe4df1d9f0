//! The records the JMAP Mail layer serves, as stored in `state` (JSON bytes; an Email's raw
//! header section follows its JSON as is, see [`EmailRecord::to_bytes`]), and how ids are
//! derived.
//!
//! Serialization is deterministic (struct field order, sorted maps), so writing the same
//! facts twice produces the same bytes and the store records no change: that is what keeps
//! the echo of our own writes silent.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde::{Deserialize, Serialize};
use state::{EmailFacts, ObjectId};

/// A JMAP Mailbox (RFC 8621 §2) and where it lives upstream. Counts are not stored here:
/// the store keeps them (`Store::mailbox_counts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailboxRecord {
    pub id: String,
    /// Upstream's name for it (IMAP full mailbox name, EAS ServerId).
    pub remote_id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub role: Option<String>,
    pub sort_order: u32,
    pub is_subscribed: bool,
    /// False for hierarchy placeholders that cannot hold messages.
    pub selectable: bool,
}

impl MailboxRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Option<MailboxRecord> {
        serde_json::from_slice(b).ok()
    }
}

/// An address as RFC 8621 §4.1.2.3 `EmailAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAddress {
    pub name: Option<String>,
    pub email: String,
}

/// The copies of an Email in one mailbox: upstream uid → that copy's keywords.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxCopies {
    /// The mailbox's reset epoch when these uids were reported; copies from an older epoch
    /// are stale (UIDVALIDITY changed) until re-announced.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u32,
    pub uids: BTreeMap<String, BTreeSet<String>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A JMAP Email (RFC 8621 §4) as synced: metadata, the header fields JMAP exposes, and its
/// upstream locations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailRecord {
    pub id: String,
    pub thread_id: String,
    /// The adapter's content fingerprint the id derives from.
    pub fingerprint: String,
    /// JMAP mailbox id → copies there. The Email's mailboxIds are the keys.
    pub locations: BTreeMap<String, MailboxCopies>,
    pub received_at: i64,
    pub sent_at: Option<i64>,
    pub size: u64,
    pub message_id: Vec<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub subject: Option<String>,
    pub from: Vec<EmailAddress>,
    pub sender: Vec<EmailAddress>,
    pub reply_to: Vec<EmailAddress>,
    pub to: Vec<EmailAddress>,
    pub cc: Vec<EmailAddress>,
    pub bcc: Vec<EmailAddress>,
    pub preview: String,
    pub has_attachment: bool,
    /// The raw header section (it may hold 8-bit bytes that are not UTF-8). Stored after
    /// the JSON, not in it: see [`EmailRecord::to_bytes`].
    #[serde(skip)]
    pub header_block: Vec<u8>,
    /// False when `header_block` was synthesised by the adapter (EAS) rather than being the
    /// message's own; see [`EmailRecord::headers_synthesised`]. Absent (true) in records
    /// stored before the flag existed and never written when true, so those records keep
    /// their bytes.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub headers_complete: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The first byte of an Email record in the framed form; a JSON record starts with `{`.
const FRAMED: u8 = 1;

/// The JSON of a stored Email record and, in the framed form, the header section after it
/// (`None` in the older all-JSON form); `None` for bytes of neither form.
fn stored_parts(b: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    match b.split_first()? {
        (&FRAMED, rest) => {
            let (len, rest) = rest.split_first_chunk::<4>()?;
            let (json, header) = rest.split_at_checked(u32::from_be_bytes(*len) as usize)?;
            Some((json, Some(header)))
        }
        (b'{', _) => Some((b, None)),
        _ => None,
    }
}

/// What [`EmailRecord::peek`] reads of a stored record: its arrival time, Message-IDs and
/// subject. Every other field is skipped without being decoded.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordPeek<'a> {
    #[serde(default)]
    pub received_at: i64,
    #[serde(borrow, default)]
    pub message_id: Vec<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub subject: Option<std::borrow::Cow<'a, str>>,
}

/// How Email records were stored before the framed form: all JSON, the header section base64
/// in it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonEmailRecord {
    #[serde(flatten)]
    record: EmailRecord,
    header_block: String,
}

impl EmailRecord {
    /// The stored form: [`FRAMED`], the JSON's length (u32 big-endian), the JSON of every
    /// field but the header section, then the header section's octets. A header section is
    /// most of a record's bytes, and kept raw it is neither base64-inflated by a third nor
    /// escaped and unescaped as a JSON string on every write and read.
    pub fn to_bytes(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(5 + json.len() + self.header_block.len());
        out.push(FRAMED);
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&self.header_block);
        out
    }

    /// The arrival time, Message-IDs and subject of a stored record (either form), read
    /// without decoding the rest: for scans that look at many records to decode few.
    pub fn peek(b: &[u8]) -> Option<RecordPeek<'_>> {
        serde_json::from_slice(stored_parts(b)?.0).ok()
    }

    /// Reads either stored form (records written before the framed form are all JSON).
    pub fn from_bytes(b: &[u8]) -> Option<EmailRecord> {
        match stored_parts(b)? {
            (json, Some(header)) => {
                let mut rec: EmailRecord = serde_json::from_slice(json).ok()?;
                rec.header_block = header.to_vec();
                Some(rec)
            }
            (json, None) => {
                let old: JsonEmailRecord = serde_json::from_slice(json).ok()?;
                let mut rec = old.record;
                rec.header_block = base64::engine::general_purpose::STANDARD
                    .decode(old.header_block)
                    .ok()?;
                Some(rec)
            }
        }
    }

    /// The Email's keywords: the union over its copies (a copy marked `$seen` makes the
    /// Email seen; writes go to every copy, so they agree again after our own changes).
    pub fn keywords(&self) -> BTreeSet<String> {
        self.locations
            .values()
            .flat_map(|c| c.uids.values().flatten().cloned())
            .collect()
    }

    pub fn mailbox_ids(&self) -> impl Iterator<Item = &str> {
        self.locations.keys().map(String::as_str)
    }

    /// Whether the stored header block is a stand-in for the message's real header section,
    /// so that Message-ID, In-Reply-To, References, Sender, Bcc, Date and raw header values
    /// must come from the raw message. True when the adapter said so (`headers_complete`
    /// false) and for every EAS record (fingerprint `eas:`): EAS records stored before the
    /// flag existed lack it, and the EAS adapter has only ever synthesised its header blocks.
    pub fn headers_synthesised(&self) -> bool {
        !self.headers_complete || self.fingerprint.starts_with("eas:")
    }

    pub fn header_bytes(&self) -> &[u8] {
        &self.header_block
    }

    /// The facts the store indexes.
    pub fn facts(&self) -> EmailFacts {
        EmailFacts {
            mailbox_ids: self
                .locations
                .keys()
                .filter_map(|m| ObjectId::new(m.clone()).ok())
                .collect(),
            thread_id: ObjectId::new(self.thread_id.clone()).ok(),
            received_at: self.received_at,
            sent_at: self.sent_at,
            size: self.size,
            keywords: self.keywords().into_iter().collect(),
        }
    }

    /// (JMAP mailbox id, uid) of every copy.
    pub fn copies(&self) -> Vec<(String, String)> {
        self.locations
            .iter()
            .flat_map(|(m, c)| c.uids.keys().map(move |u| (m.clone(), u.clone())))
            .collect()
    }
}

fn digest(domain: &str, input: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(domain.as_bytes());
    ctx.update(&[0]);
    ctx.update(input);
    let d = ctx.finish();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d.as_ref()[..18])
}

/// The Email id for an adapter fingerprint: the same fingerprint gives the same id in every
/// mailbox, after every restart and after a full rebuild of the store.
pub fn email_id(fingerprint: &str) -> ObjectId {
    ObjectId::new(format!("E{}", digest("email", fingerprint.as_bytes())))
        .unwrap_or_else(|_| unreachable_id())
}

/// A thread id for an upstream thread hint (THREADID, ConversationId).
pub fn thread_id_for_hint(hint: &str) -> String {
    format!("T{}", digest("thread-hint", hint.as_bytes()))
}

/// The thread id a new thread started by `email` gets.
pub fn thread_id_for_email(email: &ObjectId) -> String {
    format!("T{}", email.as_str().trim_start_matches('E'))
}

/// A Mailbox id for a remote mailbox; `salt` > 0 when the plain one is taken (a name reused
/// after a rename).
pub fn mailbox_id(remote_id: &str, salt: u32) -> ObjectId {
    let input = if salt == 0 {
        remote_id.to_owned()
    } else {
        format!("{remote_id}\0{salt}")
    };
    ObjectId::new(format!("M{}", &digest("mailbox", input.as_bytes())[..16]))
        .unwrap_or_else(|_| unreachable_id())
}

/// Ids built above are always valid; this keeps the code free of unwrap.
fn unreachable_id() -> ObjectId {
    ObjectId::new("invalid").unwrap_or_else(|_| unreachable_id())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_valid() {
        let a = email_id("h:abc");
        assert_eq!(a, email_id("h:abc"));
        assert_ne!(a, email_id("h:abd"));
        assert!(a.as_str().starts_with('E') && a.as_str().len() == 25);
        assert_eq!(thread_id_for_email(&a).len(), 25);
        assert_ne!(mailbox_id("INBOX", 0), mailbox_id("INBOX", 1));
        assert!(mailbox_id("Ünïcode/x", 0).as_str().len() == 17);
    }

    #[test]
    fn email_records_round_trip_framed_and_read_their_json_form() {
        let mut rec = crate::methods::testing::email("E1", "T1", "M1", "1", &["$seen"], 7, "");
        // A header section with 8-bit bytes that are not UTF-8, and a NUL.
        rec.header_block = b"Subject: caf\xe9\r\nX-Odd: a\0b\r\n\r\n".to_vec();
        let framed = rec.to_bytes();
        assert_eq!(framed[0], FRAMED);
        assert!(framed.ends_with(&rec.header_block));
        assert_eq!(EmailRecord::from_bytes(&framed), Some(rec.clone()));
        assert_eq!(
            framed,
            rec.to_bytes(),
            "the same record gives the same bytes"
        );

        // The JSON form records were stored in before: header section base64 inside.
        let mut json: serde_json::Value = serde_json::to_value(&rec).unwrap();
        json["headerBlock"] = base64::engine::general_purpose::STANDARD
            .encode(&rec.header_block)
            .into();
        let old = serde_json::to_vec(&json).unwrap();
        assert_eq!(EmailRecord::from_bytes(&old), Some(rec.clone()));

        // Truncated or foreign bytes are no record, never a panic.
        for n in 0..12 {
            assert_eq!(EmailRecord::from_bytes(&framed[..n]), None, "{n} bytes");
        }
        let mut long = framed.clone();
        long[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(EmailRecord::from_bytes(&long), None);
        assert_eq!(EmailRecord::from_bytes(b"\x02{}"), None);
        json["headerBlock"] = "not base64!".into();
        assert_eq!(
            EmailRecord::from_bytes(&serde_json::to_vec(&json).unwrap()),
            None
        );
    }

    #[test]
    fn a_peek_reads_arrival_message_ids_and_subject_of_either_form() {
        let mut rec = crate::methods::testing::email("E1", "T1", "M1", "1", &[], 7, "");
        rec.subject = Some("Re: \"quoted\" caf\u{e9}".into());
        rec.message_id = vec!["a@x".into(), "b@x".into()];
        rec.received_at = 1_700_000_123;
        let check = |bytes: &[u8]| {
            let p = EmailRecord::peek(bytes).unwrap();
            assert_eq!(p.received_at, 1_700_000_123);
            assert_eq!(p.message_id, ["a@x", "b@x"]);
            assert_eq!(p.subject.as_deref(), Some("Re: \"quoted\" caf\u{e9}"));
        };
        let framed = rec.to_bytes();
        check(&framed);
        let mut json: serde_json::Value = serde_json::to_value(&rec).unwrap();
        json["headerBlock"] = "".into();
        check(&serde_json::to_vec(&json).unwrap());

        rec.subject = None;
        rec.message_id.clear();
        let bare = rec.to_bytes();
        let p = EmailRecord::peek(&bare).map(|p| (p.message_id.len(), p.subject));
        assert_eq!(p, Some((0, None)));
        for n in 0..12 {
            assert!(EmailRecord::peek(&framed[..n]).is_none(), "{n} bytes");
        }
        assert!(EmailRecord::peek(b"\x02{}").is_none());
    }

    #[test]
    fn synthesised_header_blocks_are_known_old_records_included() {
        let mut rec = crate::methods::testing::email("E1", "T1", "M1", "1", &[], 0, "Subject: x");
        let complete = rec.to_bytes();
        assert!(!String::from_utf8_lossy(&complete).contains("headersComplete"));
        assert!(
            !EmailRecord::from_bytes(&complete)
                .unwrap()
                .headers_synthesised()
        );

        rec.headers_complete = false;
        let incomplete = EmailRecord::from_bytes(&rec.to_bytes()).unwrap();
        assert!(!incomplete.headers_complete && incomplete.headers_synthesised());

        // An EAS record stored before the flag: no field, so complete, but `eas:`.
        rec.headers_complete = true;
        rec.fingerprint = "eas:0123".into();
        let old = EmailRecord::from_bytes(&rec.to_bytes()).unwrap();
        assert!(old.headers_complete && old.headers_synthesised());
    }
}
