//! The IMAP adapter: connects to IMAP4rev1/rev2 servers, syncs them into the state store
//! and writes JMAP changes through to them.
//!
//! [`ImapAccount`] implements the backend-neutral [`upstream::Upstream`] contract. It speaks
//! IMAP through its own small parser ([`proto`]) rather than async-imap's session: it needs
//! QRESYNC/VANISHED, APPENDUID/COPYUID, X-GUID and PREVIEW values, tagged-reply checks after
//! every FETCH and STORE, and no unsolicited response dropped, none of which async-imap's
//! session gives. The older [`connect`]/[`list_mailboxes`] pair (async-imap) stays for
//! simple probes.
//!
//! Code map: `conn` (one connection: framing, login, ENABLE, SELECT, IDLE), `account` (the
//! pool, its budget, backoff, tiers, the retry of read-only operations), `list` (LIST →
//! mailboxes), `sync` (initial and delta sync, cursors), `watch` (NOTIFY/IDLE push),
//! `write` (write-through), `search` (UID SEARCH for full-text filters), `raw` (a whole
//! message), `part` (one body part: BODYSTRUCTURE, then its sections), `quota`
//! (GETQUOTAROOT), `sieve` (ManageSieve and the vacation script), `message` (FETCH items →
//! model), `uidset`, `mutf7`.
//!
//! Invariant: this crate never touches RocksDB; it hands changes to the gateway, which
//! commits them.

mod account;
mod conn;
mod connection;
mod list;
mod mailboxes;
mod message;
mod mutf7;
mod part;
pub mod proto;
mod quota;
mod raw;
mod search;
pub mod sieve;
mod sync;
mod uidset;
mod watch;
mod write;

pub use account::{ImapAccount, ImapOptions, ImapStats, Tier};
pub use conn::AuthMethod;
pub use connection::{Credentials, ImapError, ImapServer, ImapSession, Security, connect};
pub use mailboxes::{ListedMailbox, list_mailboxes};
pub use message::{FingerprintSource, header_fingerprint};
pub use sieve::{SieveClient, SieveError, SieveServer};
pub use uidset::UidSet;
