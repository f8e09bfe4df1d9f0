//! Listing mailboxes with their special-use roles (RFC 6154).

use async_imap::types::NameAttribute;
use futures::TryStreamExt;
use upstream::MailboxRole;

use crate::connection::{ImapError, ImapSession};

/// One mailbox as LIST reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMailbox {
    pub name: String,
    pub delimiter: Option<String>,
    pub role: Option<MailboxRole>,
    /// False for \Noselect / \NonExistent placeholders in the hierarchy.
    pub selectable: bool,
}

/// Lists every mailbox of the account, with special-use roles.
pub async fn list_mailboxes(session: &mut ImapSession) -> Result<Vec<ListedMailbox>, ImapError> {
    let names: Vec<_> = session
        .list(Some(""), Some("*"))
        .await?
        .try_collect()
        .await?;
    Ok(names
        .iter()
        .map(|n| {
            let mut role = None;
            let mut selectable = true;
            for a in n.attributes() {
                match a {
                    NameAttribute::NoSelect => selectable = false,
                    NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\NonExistent") => {
                        selectable = false
                    }
                    NameAttribute::All => role = Some(MailboxRole::All),
                    NameAttribute::Archive => role = Some(MailboxRole::Archive),
                    NameAttribute::Drafts => role = Some(MailboxRole::Drafts),
                    NameAttribute::Flagged => role = Some(MailboxRole::Flagged),
                    NameAttribute::Junk => role = Some(MailboxRole::Junk),
                    NameAttribute::Sent => role = Some(MailboxRole::Sent),
                    NameAttribute::Trash => role = Some(MailboxRole::Trash),
                    NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\Important") => {
                        role = Some(MailboxRole::Important)
                    }
                    _ => {}
                }
            }
            if n.name().eq_ignore_ascii_case("INBOX") {
                role = Some(MailboxRole::Inbox);
            }
            ListedMailbox {
                name: n.name().to_owned(),
                delimiter: n.delimiter().map(str::to_owned),
                role,
                selectable,
            }
        })
        .collect())
}
