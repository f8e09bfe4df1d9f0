//! The IMAP adapter: connects to IMAP4rev1/rev2 servers, syncs them into the state store
//! and writes JMAP changes through to them.
//!
//! Invariant: this crate never touches RocksDB; it hands changes to the gateway, which
//! commits them.

mod connection;
mod mailboxes;

pub use connection::{Credentials, ImapError, ImapServer, ImapSession, Security, connect};
pub use mailboxes::{ListedMailbox, list_mailboxes};
