//! The data model every adapter speaks, independent of IMAP and EAS.

/// A mailbox's role, as RFC 8621 §2 names them (IANA "IMAP Mailbox Name Attributes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MailboxRole {
    Inbox,
    Drafts,
    Sent,
    Trash,
    Junk,
    Archive,
    All,
    Flagged,
    Important,
}

impl MailboxRole {
    /// The JMAP `role` string.
    pub fn as_jmap(self) -> &'static str {
        match self {
            MailboxRole::Inbox => "inbox",
            MailboxRole::Drafts => "drafts",
            MailboxRole::Sent => "sent",
            MailboxRole::Trash => "trash",
            MailboxRole::Junk => "junk",
            MailboxRole::Archive => "archive",
            MailboxRole::All => "all",
            MailboxRole::Flagged => "flagged",
            MailboxRole::Important => "important",
        }
    }
}

/// An out-of-office (vacation) reply as a backend applies it: JMAP VacationResponse's
/// fields, with dates as seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VacationSettings {
    pub is_enabled: bool,
    /// Replies start then; `None` is "from now".
    pub from_date: Option<i64>,
    /// Replies stop then; `None` is "until turned off".
    pub to_date: Option<i64>,
    pub subject: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
}
