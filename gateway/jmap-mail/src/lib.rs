//! `jmap-mail`: the JMAP Mail (RFC 8621) side of the gateway that knows no upstream protocol.
//!
//! It holds the RFC 8621 methods ([`methods`], generic over the gateway's account
//! directory), the stored records ([`MailboxRecord`], [`EmailRecord`]) and the sync
//! driver ([`AccountSync`]) that turns an adapter's output into `state` commits:
//!
//! - **Ids.** Email id = digest of the adapter's fingerprint, so the same message is the
//!   same Email in every mailbox, after moves, restarts, UIDVALIDITY resets and rebuilds.
//!   Mailbox ids derive from the remote id once and then stay (a rename keeps the id).
//! - **One batch, one commit.** Each [`upstream::SyncBatch`] and its cursor are written in
//!   one `state::Commit`, in order, one commit overlapping the adapter's next fetch; a crash
//!   anywhere resumes from the last committed cursor, and applying a change again is a no-op
//!   (identical bytes are not a change in `state`).
//! - **Write-through** ([`AccountSync::write`], [`AccountSync::set_email_keywords`],
//!   [`AccountSync::destroy_email`]): applied upstream first, then recorded by an immediate
//!   sync of the mailboxes touched, so the later echo finds nothing new.
//! - **Progress**: [`AccountSync::progress`] (done/total per mailbox in an initial sync,
//!   batches, rounds, last error) and `tracing` at info level per committed batch.
//! - **Threads.** Upstream's thread hint when given; else Message-ID / In-Reply-To /
//!   References links between messages of the same base subject (the nearest known relative
//!   wins). Threads are never merged: an Email's threadId is immutable (RFC 8621 §3), so a
//!   late message that links two threads joins one and nobody moves.
//! - **Private indexes** (uid → Email, Message-ID → thread, reset epochs) live in the
//!   store's sync-cursor space, written in the same batches (see `tx::names`).
//!
//! Invariant: nothing here knows IMAP or EAS; only the [`upstream::Upstream`] contract.

mod apply;
mod bench_cpu;
pub mod body;
mod driver;
pub mod header_forms;
mod headers;
pub mod methods;
mod records;
pub mod smtp;
mod tx;

pub use apply::BatchApplied;

/// What `benches/apply.rs` drives directly: one adapter batch committed to the store, with
/// no upstream and no driver around it.
#[doc(hidden)]
pub mod bench {
    pub use crate::apply::apply_batch;
    pub use crate::bench_cpu::{CpuSplit, SystemCpu, cpu_split, process_tree_cpu};
    pub use crate::driver::BULK_MESSAGES;
}
pub use driver::{AccountSync, MailboxProgress, SyncError, SyncOptions, SyncProgress};
pub use headers::{ParsedHeaders, base_subject, parse as parse_headers};
pub use records::{
    EmailAddress, EmailRecord, MailboxCopies, MailboxRecord, email_id, mailbox_id,
    thread_id_for_email, thread_id_for_hint,
};
pub use tx::TxStats;
