//! Domain types the store speaks: accounts, data types, ids, states, email index facts.

use std::fmt;

use crate::error::Error;

/// A JMAP account as the store knows it: a number the gateway assigns once and never reuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub u64);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A JMAP data type with its own state string and change log. The `u8` codes are part of the
/// on-disk format: never renumber, only append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum DataType {
    Mailbox = 1,
    Email = 2,
    Thread = 3,
    Identity = 4,
    EmailSubmission = 5,
    VacationResponse = 6,
    PushSubscription = 7,
}

impl DataType {
    /// Every type, in code order.
    pub const ALL: [DataType; 7] = [
        DataType::Mailbox,
        DataType::Email,
        DataType::Thread,
        DataType::Identity,
        DataType::EmailSubmission,
        DataType::VacationResponse,
        DataType::PushSubscription,
    ];

    /// The stable on-disk code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The type for an on-disk code, if it is one we know.
    pub fn from_code(code: u8) -> Option<DataType> {
        DataType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The JMAP type name ("Mailbox", "Email", ...).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Mailbox => "Mailbox",
            DataType::Email => "Email",
            DataType::Thread => "Thread",
            DataType::Identity => "Identity",
            DataType::EmailSubmission => "EmailSubmission",
            DataType::VacationResponse => "VacationResponse",
            DataType::PushSubscription => "PushSubscription",
        }
    }
}

/// A JMAP `Id` (RFC 8620 1.2): 1 to 255 bytes of `A-Za-z0-9_-`. Validated on construction.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(String);

impl ObjectId {
    /// Validates and wraps an id.
    pub fn new(id: impl Into<String>) -> Result<ObjectId, Error> {
        let id = id.into();
        if Self::valid(id.as_bytes()) {
            Ok(ObjectId(id))
        } else {
            Err(Error::InvalidId(id))
        }
    }

    pub(crate) fn valid(b: &[u8]) -> bool {
        !b.is_empty()
            && b.len() <= 255
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
    }

    /// Decodes an id read back from disk; a bad one means the store is corrupt.
    pub(crate) fn from_disk(b: &[u8]) -> Result<ObjectId, Error> {
        if Self::valid(b) {
            // Valid ids are ASCII, so this cannot fail, but never unwrap disk data.
            String::from_utf8(b.to_vec())
                .map(ObjectId)
                .map_err(|_| Error::Corrupt("id is not UTF-8"))
        } else {
            Err(Error::Corrupt("invalid id on disk"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for ObjectId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        ObjectId::new(s)
    }
}

impl TryFrom<String> for ObjectId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        ObjectId::new(s)
    }
}

/// A position in one (account, type) change log. Monotonic; 0 is "nothing yet".
pub type ModSeq = u64;

/// The state of one (account, type): what `/get` returns as `state` and `/changes` takes as
/// `sinceState`. Rendered as `{generation:08x}{type:02x}{modseq:x}` — opaque and URL-safe.
///
/// The generation is drawn when a store is created, so a state from a rebuilt or different
/// store is refused (cannotCalculateChanges) instead of being misread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub(crate) generation: u32,
    pub(crate) data_type: DataType,
    pub(crate) modseq: ModSeq,
}

impl State {
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// The modseq this state stands for (for ordering and tests; clients never see it as such).
    pub fn modseq(&self) -> ModSeq {
        self.modseq
    }

    /// Parses a state string; `None` when it is not one of ours at all.
    pub fn parse(s: &str) -> Option<State> {
        let b = s.as_bytes();
        if b.len() < 11 || b.len() > 26 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let generation = u32::from_str_radix(s.get(0..8)?, 16).ok()?;
        let code = u8::from_str_radix(s.get(8..10)?, 16).ok()?;
        let modseq = u64::from_str_radix(s.get(10..)?, 16).ok()?;
        Some(State {
            generation,
            data_type: DataType::from_code(code)?,
            modseq,
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:08x}{:02x}{:x}",
            self.generation,
            self.data_type.code(),
            self.modseq
        )
    }
}

/// What happened to an object at one modseq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Created = 1,
    Updated = 2,
    Destroyed = 3,
}

impl ChangeKind {
    pub(crate) fn from_code(c: u8) -> Option<ChangeKind> {
        match c {
            1 => Some(ChangeKind::Created),
            2 => Some(ChangeKind::Updated),
            3 => Some(ChangeKind::Destroyed),
            _ => None,
        }
    }
}

/// The facts about an Email the store indexes, passed alongside the object bytes.
///
/// `received_at` and `sent_at` are UTC seconds since the epoch (any signed unit works as long as
/// the caller is consistent). `keywords` are already lowercased by the caller (RFC 8621 keywords
/// are case-insensitive).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmailFacts {
    pub mailbox_ids: Vec<ObjectId>,
    pub thread_id: Option<ObjectId>,
    pub received_at: i64,
    pub sent_at: Option<i64>,
    pub size: u64,
    pub keywords: Vec<String>,
}

impl EmailFacts {
    /// RFC 8621 "unread": neither `$seen` nor `$draft`.
    pub fn is_unread(&self) -> bool {
        !self.keywords.iter().any(|k| k == "$seen" || k == "$draft")
    }
}

/// Mailbox counts kept incrementally by the store (RFC 8621 2. Mailbox).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    pub total_emails: u32,
    pub unread_emails: u32,
    pub total_threads: u32,
    pub unread_threads: u32,
}
