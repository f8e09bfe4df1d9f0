//! `state`: the gateway's memory. Every JMAP answer is read from here, and every change an
//! adapter or a client makes is recorded here in one atomic RocksDB batch.
//!
//! # Model
//!
//! Objects are opaque bytes keyed (account, [`DataType`], [`ObjectId`]); the mail layer
//! serializes them. Accounts are numbers ([`AccountId`]) the gateway assigns. Emails come with
//! [`EmailFacts`] (mailboxes, thread, receivedAt, sentAt, size, keywords) from which the store
//! maintains its query indexes, mailbox counts and derived Thread and Mailbox changes itself.
//!
//! # Key layout
//!
//! One column family per kind of record (names in [`keys::cf`]). Integers are big-endian so a
//! range scan comes out in numeric order; `i64` has its sign bit flipped; `lp(x)` is a one-byte
//! length then the bytes (ids are ≤ 255 bytes), used for every id that is not the last key
//! component; the all-mail pseudo-mailbox is `lp("")`.
//!
//! | column family        | key                                                    | value |
//! |----------------------|--------------------------------------------------------|-------|
//! | `meta`               | `"schema_version"`, `"generation"`, `"blob_bytes"`      | u32, u32, u64 |
//! | `objects`            | account u64 · type u8 · id                              | object bytes |
//! | `email_facts`        | account · email id                                      | encoded facts (the previous index facts) |
//! | `modseq`             | account · type                                          | current modseq u64 · trim point u64 |
//! | `change_log`         | account · type · modseq u64                             | kind u8 · flags u8 · time ms u64 · id |
//! | `idx_mailbox`        | account · lp(mailbox) · sort u8 · value u64 · email id   | — (sort 0 receivedAt, 1 size, 2 sentAt; all mail: receivedAt, and the other two only for an Email in no mailbox) |
//! | `idx_mailbox_thread` | account · lp(mailbox) · lp(thread) · receivedAt · email id | — (mailboxes only: all mail's is `idx_thread`) |
//! | `idx_thread_head`    | account · lp(mailbox) · view u8 · receivedAt · email id  | thread id (view 1 newest, 2 oldest per thread) |
//! | `idx_thread`         | account · lp(thread) · receivedAt · email id              | — |
//! | `idx_keyword`        | account · lp(keyword) · receivedAt · email id             | — |
//! | `counters`           | account · 1 · lp(mailbox)                                | totalEmails, unreadEmails, totalThreads, unreadThreads (u32 each) |
//! |                      | account · 2 · lp(thread)                                 | emails u32 · unread u32 |
//! |                      | account · 3 · lp(thread) · lp(mailbox)                    | emails of the thread in the mailbox u32 |
//! |                      | account · 4 · lp(keyword)                                | emails with the keyword u32 |
//! | `mailbox_log`        | account · lp(mailbox) · view u8 · Email modseq · seq u32  | 0xff, then per event: added/removed u8 · receivedAt · lp(email id); or one event: added/removed u8 · receivedAt · email id |
//! | `sync_cursors`       | account · name                                          | opaque cursor bytes |
//! | `blobs`              | account · blob id                                       | blob bytes (RocksDB blob files) |
//! | `blob_meta`          | account · blob id                                       | last-use tick u64 · size u64 |
//! | `blob_lru`           | tick u64 · account u64 · blob id                          | — |
//!
//! The schema version is checked at [`Store::open`]: an older store is migrated step by step
//! (a registered migration per version), a newer or unmigratable one fails with
//! [`Error::SchemaMismatch`] naming both versions and what to do.
//!
//! # Commit protocol
//!
//! [`Store::commit`] takes the single writer lock, then builds one `WriteBatch`: for each
//! operation, the object put/delete; for an Email, its facts and the *net* difference between
//! its old and new index keys (old facts are read from `email_facts`, or from the batch's own
//! overlay when the same id appears twice); one change-log entry per effective change at the
//! next modseq of its type. Then derived records: thread heads, mailbox and thread counters,
//! Thread created/updated/destroyed entries, counts-only Mailbox updated entries, membership
//! events, the new modseq (and trim point) per touched type, and the sync cursors. The batch is
//! written once, so nothing is ever visible half-written. A put of identical bytes and facts, or
//! a destroy of an absent object, is not a change (this is how an adapter's echo of our own
//! write stays silent). After the write the commit waits for durability, releases, and
//! publishes the new states to the account's notifier.
//!
//! # Durability
//!
//! [`Durability::GroupCommit`] with a zero window is the default: each commit is written
//! without fsync, then waits for a WAL fsync that a leader performs for every commit written so
//! far. Every acknowledged commit survives power loss, and concurrent committers share fsyncs.
//! The trade-off: a commit is visible to readers for up to one fsync (plus the window) before it
//! is acknowledged, so after a power loss (not a process crash: the WAL is already in the OS)
//! a state a client saw could be gone. [`Durability::SyncEachCommit`] closes that gap at one
//! fsync per commit with no sharing; [`Durability::Buffered`] never fsyncs.
//!
//! # State strings
//!
//! Per (account, type) a modseq counts effective changes; each change gets its own modseq, so
//! any modseq is a valid intermediate state. The string is
//! `{generation:08x}{type code:02x}{modseq:x}` (lowercase hex; URL-safe), where the generation is
//! drawn when the store is created: a state from a rebuilt store, from another type, from the
//! future, or malformed gives cannotCalculateChanges. Reading a state is one point read.
//!
//! # /changes
//!
//! [`Store::changes`] scans `change_log` from sinceState+1, coalescing per id (first and last
//! kind decide: created+destroyed vanishes, created+updated is created), and stops before an
//! entry that would make the answer exceed maxChanges distinct ids; newState is then the modseq
//! of the last entry consumed and hasMoreChanges is true. Pages go oldest first, so no record is
//! reported created after a page that called it updated or destroyed. Cost: O(entries read).
//! Mailbox/changes reports `updatedProperties` = the four count properties when every updated
//! mailbox in the window changed only its counts.
//!
//! # Trim policy
//!
//! Each (account, type) log keeps at most `max_log_entries` (default 1,000,000) entries,
//! enforced inside commits (a range delete when it overshoots by 1/8); [`Store::trim`] also drops
//! entries older than `max_log_age` (default 30 days, RFC 8620's recommendation) and the
//! membership events below the Email trim point. A sinceState below the trim point answers
//! cannotCalculateChanges.
//!
//! # Queries and queryChanges
//!
//! See [`query`]. Email/query for inMailbox/all-mail by receivedAt, size or sentAt (all mail by
//! size or sentAt merges the per-mailbox indexes, one Email in two mailboxes coming out once,
//! so a new Email costs three index keys fewer), hasKeyword by receivedAt, collapseThreads by receivedAt via the per-mailbox thread-head index (one entry
//! per (mailbox, thread): its newest email for descending, oldest for ascending sorts); totals
//! from counters. The queryState is the Email state. `mailbox_log` records, per mailbox and view
//! (all, newest-per-thread, oldest-per-thread), every result-set entry and exit tagged with the
//! Email modseq of its commit, so [`Store::query_changes`] answers exactly from it.
//!
//! # Counts
//!
//! Maintained incrementally per mailbox: totalEmails, unreadEmails (neither `$seen` nor
//! `$draft`), totalThreads, and unreadThreads per RFC 8621 (a thread with an email in the
//! mailbox and an unread email anywhere in the account). An Email without a thread id counts as
//! its own thread (thread id = email id).
//!
//! # Batched reads for sync drivers
//!
//! Sync cursors double as a private key-value space for an adapter's sync driver (any name,
//! written atomically with the records through [`Commit::set_cursor`] /
//! [`Commit::clear_cursor`]). [`Store::cursors`] reads many of them in one multi-get,
//! [`Store::cursors_with_prefix`] scans a name prefix, and [`Store::objects`] multi-gets
//! objects without computing a state, so a driver building a 500-message batch does a few
//! multi-gets instead of thousands of point reads. [`Store::commit`] itself reads the
//! current objects and Email facts its operations touch in two multi-gets up front, and
//! skips the on-disk scans of threads that did not exist before the commit.
//!
//! # Async
//!
//! [`Store`] is blocking. [`AsyncStore`] runs every call on tokio's blocking pool. Each commit
//! publishes to the account's `tokio::sync::watch` channel ([`Store::subscribe`]).
#![forbid(unsafe_code)]

mod async_store;
mod blobs;
mod changes;
mod commit;
mod error;
pub mod keys;
mod notify;
pub mod query;
mod store;
mod trim;
mod types;

pub use async_store::AsyncStore;
pub use changes::{Changes, MAILBOX_COUNT_PROPERTIES};
pub use commit::{Commit, Committed, Written};
pub use error::{Error, Result};
pub use notify::AccountStates;
pub use query::{
    EmailQuery, EmailSort, EmailSource, QueryChanges, QueryChangesRequest, QueryResult,
};
pub use store::{BulkWrites, Durability, SCHEMA_VERSION, Store, StoreConfig};
pub use trim::TrimReport;
pub use types::{
    AccountId, ChangeKind, DataType, EmailFacts, MailboxCounts, ModSeq, ObjectId, State,
};
