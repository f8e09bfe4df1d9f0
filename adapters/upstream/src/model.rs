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
