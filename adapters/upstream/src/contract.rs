//! The adapter contract: what the gateway asks of an upstream account, whatever its protocol.
//!
//! An adapter reports mailboxes and, per mailbox, batches of message changes, each batch
//! carrying the opaque cursor that resumes after it. The gateway's sync driver turns batches
//! into store commits (Email ids, threads, mailbox membership) and writes the cursor in the
//! same commit, so a crash between two batches resumes without loss or duplication. Writes
//! go the other way as [`WriteOp`]s, applied upstream before anything is recorded.
//!
//! Remote ids are the upstream's own names: an IMAP mailbox's full name and a message's UID
//! (decimal), or an EAS folder ServerId and item ServerId. They never leave the gateway.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::MailboxRole;

/// A boxed future, so the contract can be used as `dyn Upstream`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A mailbox (IMAP mailbox, EAS mail folder) as upstream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMailbox {
    /// IMAP: the full mailbox name as the server spells it; EAS: the folder ServerId.
    pub remote_id: String,
    /// The display name of this level of the hierarchy, in UTF-8.
    pub name: String,
    /// The parent's `remote_id`, or `None` at the top level.
    pub parent: Option<String>,
    pub role: Option<MailboxRole>,
    pub subscribed: bool,
    /// False for hierarchy placeholders that hold no messages (IMAP `\Noselect`).
    pub selectable: bool,
}

/// One message's metadata, enough to answer Email/get and Email/query without a body fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMessage {
    /// The message's id within its mailbox: an IMAP UID in decimal, or an EAS ServerId.
    pub uid: String,
    /// A content-derived key that is the same for the same message wherever it is stored and
    /// however often it is re-synced: a server-provided immutable id (RFC 8474 EMAILID,
    /// Dovecot X-GUID) when there is one, else a digest of the raw header block. The gateway
    /// derives the Email id from it, so it must not change when the message moves.
    pub fingerprint: String,
    /// Upstream's own thread id (RFC 8474 THREADID, EAS ConversationId), if any.
    pub thread_hint: Option<String>,
    /// JMAP keywords (RFC 8621 §4.1.1): `$seen`, `$flagged`, `$answered`, `$draft`, and custom
    /// keywords, all lowercase. IMAP `\Recent` and `\Deleted` are not keywords.
    pub keywords: BTreeSet<String>,
    /// Arrival time (IMAP INTERNALDATE, EAS DateReceived), seconds since the Unix epoch.
    pub received_at: i64,
    /// Size of the raw message in octets (RFC822.SIZE; EAS: the MIME size when known).
    pub size: u64,
    /// The raw RFC 5322 header section, ending with the empty line. Adapters that do not get
    /// raw headers (EAS without MIME) synthesise an equivalent block from the fields they have.
    pub header_block: Vec<u8>,
    /// Up to 256 characters of plain text from the start of the body, if known.
    pub preview: Option<String>,
    pub has_attachment: bool,
    /// Whether `header_block` is the message's own header section. False when the adapter
    /// synthesised it (EAS): it then lacks Message-ID, In-Reply-To, References, Sender and
    /// Bcc, its Date is the arrival time, and the gateway reads the raw message when a client
    /// asks for those.
    pub headers_complete: bool,
}

/// A change to one message of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageChange {
    /// A message the gateway may not have seen, or whose metadata should be replaced.
    Upsert(RemoteMessage),
    /// Only the keywords changed (IMAP FLAGS, EAS Read/Flag).
    Keywords {
        uid: String,
        keywords: BTreeSet<String>,
    },
    /// The message left this mailbox (expunged, moved away, deleted).
    Removed { uid: String },
}

/// Changes of one mailbox, to be committed together with the cursor that follows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncBatch {
    /// The mailbox's `remote_id`.
    pub mailbox: String,
    /// When true, every uid the gateway knew in this mailbox is void (UIDVALIDITY changed, EAS
    /// sync key reset): the messages of this and the following batches carry new uids, and
    /// the gateway re-matches them to existing Emails by fingerprint, so Email ids survive.
    /// Messages not re-announced before the batch with `complete = true` are gone.
    pub reset: bool,
    pub changes: Vec<MessageChange>,
    /// Opaque position after this batch (HIGHESTMODSEQ/UIDVALIDITY/UIDNEXT; EAS SyncKey).
    pub cursor: Vec<u8>,
    /// True on the last batch of a sync pass, when the mailbox is fully caught up.
    pub complete: bool,
    /// Messages processed so far and the total expected, for progress reporting.
    pub progress: Option<(u64, u64)>,
}

/// Receives sync batches; implemented by the gateway, which commits each before returning.
pub trait SyncSink: Send {
    /// Commits the batch (and its cursor) durably, batches in the order given. An error stops
    /// the sync pass; the adapter must not report a later batch after a failed one.
    ///
    /// A sink may return before the commit is durable, to overlap it with the adapter's next
    /// fetch, if it reports that commit's failure no later than its next `apply` and has made
    /// durable every batch of a pass before `sync_mailbox` returns (the gateway's sink does).
    /// So an adapter must not treat a returned `apply` as proof of durability towards
    /// upstream beyond the next call.
    fn apply(&mut self, batch: SyncBatch) -> BoxFuture<'_, Result<(), UpstreamError>>;
}

/// SMTP envelope of a submission (RFC 8621 §7 `Envelope`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
}

/// A change to apply upstream. Uids are those of `mailbox`/`from` as last synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Add and remove keywords on messages of one mailbox.
    SetKeywords {
        mailbox: String,
        uids: Vec<String>,
        add: BTreeSet<String>,
        remove: BTreeSet<String>,
    },
    /// Move messages to another mailbox (IMAP MOVE or COPY+EXPUNGE; EAS MoveItems).
    Move {
        from: String,
        uids: Vec<String>,
        to: String,
    },
    /// Copy messages into another mailbox, keeping the originals.
    Copy {
        from: String,
        uids: Vec<String>,
        to: String,
    },
    /// Remove messages from a mailbox for good (IMAP \Deleted + UID EXPUNGE; EAS Sync Delete).
    Delete {
        mailbox: String,
        uids: Vec<String>,
    },
    /// Store a new message (IMAP APPEND; EAS where the server allows it).
    Append {
        mailbox: String,
        raw: Vec<u8>,
        keywords: BTreeSet<String>,
        received_at: Option<i64>,
    },
    CreateMailbox {
        parent: Option<String>,
        name: String,
    },
    /// Rename and/or move a mailbox in the hierarchy (children follow).
    RenameMailbox {
        remote_id: String,
        parent: Option<String>,
        name: String,
    },
    DeleteMailbox {
        remote_id: String,
    },
    Subscribe {
        remote_id: String,
        subscribed: bool,
    },
    /// Send a message (SMTP submission; EAS SendMail), optionally filing a copy in Sent.
    Send {
        raw: Vec<u8>,
        envelope: Envelope,
        save_in_sent: bool,
    },
}

/// How a message being sent relates to the held message it is sent about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// It answers the source (its In-Reply-To names the source's Message-ID).
    Reply,
    /// It passes the source on.
    Forward,
}

/// The message of the account that a message being sent replies to or forwards, where
/// upstream holds it. See [`Upstream::send_about`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SendSource {
    pub kind: SourceKind,
    /// The `remote_id` of a mailbox holding the source.
    pub mailbox: String,
    /// The source's uid in that mailbox, as last synced.
    pub uid: String,
}

/// What a successful [`WriteOp`] produced upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Done,
    /// Old uid → new uid in the target mailbox, where upstream told (COPYUID, MoveItems).
    Moved(Vec<(String, Option<String>)>),
    Copied(Vec<(String, Option<String>)>),
    /// The new message's uid, where upstream told (APPENDUID).
    Appended(Option<String>),
    Mailbox(RemoteMailbox),
}

/// Where [`Upstream::search`] looks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SearchKind {
    /// The whole message: every header field and the body text (IMAP `TEXT`). This is what
    /// RFC 8621's `text` condition asks for (From, To, Cc, Bcc, Subject and text/* parts).
    Text,
    /// The body only (IMAP `BODY`; RFC 8621 `body`).
    Body,
    /// The value of the header fields with this name (IMAP `HEADER`), case-insensitively.
    Header(String),
}

/// A full-text search of one mailbox: messages in which every term occurs in the part named
/// by `kind`, as a case-insensitive substring (the matching RFC 8621 §4.4.1 asks of
/// string conditions; a server may be more lenient, e.g. match on word stems). A term is one
/// word or a phrase (it may hold spaces; the whole phrase must occur). No terms: every
/// message of the mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SearchQuery {
    pub kind: SearchKind,
    /// The terms, all of which must occur (AND), in any letter case.
    pub terms: Vec<String>,
}

/// One resource of one quota root, as upstream reports it (IMAP `QUOTA`, RFC 9208 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteQuota {
    /// The quota root's name as the server spells it (Dovecot: `User quota`; may be empty).
    pub root: String,
    /// The resource, uppercased: `STORAGE` (in units of 1024 octets, RFC 9208 §5.1),
    /// `MESSAGE` (a message count), `MAILBOX` (a mailbox count), or whatever else the
    /// server names. Consumers convert (`STORAGE` × 1024 is octets) and skip what they
    /// do not know.
    pub resource: String,
    /// Current usage, in the resource's unit.
    pub usage: u64,
    /// The limit, in the resource's unit.
    pub limit: u64,
}

/// What went wrong upstream, in the terms the JMAP layer maps to errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Network trouble, timeouts, a dropped connection, server busy: try again later
    /// (JMAP `serverUnavailable`).
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// The server rejected the credentials.
    #[error("upstream rejected the credentials: {0}")]
    AuthFailed(String),
    /// The object no longer exists upstream (JMAP `notFound`).
    #[error("not found upstream: {0}")]
    NotFound(String),
    /// The server refused the operation (IMAP NO, EAS status); the text is the server's.
    #[error("upstream refused: {0}")]
    Refused(String),
    /// The server or the account cannot do this at all (JMAP `forbidden` or a specific error).
    #[error("not supported upstream: {0}")]
    Unsupported(String),
    /// The server said something the adapter cannot understand.
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

/// One upstream mail account. Implementations manage their own connections (with a budget)
/// and reconnect on their own; every method may be called concurrently.
pub trait Upstream: Send + Sync + fmt::Debug {
    /// Every mailbox of the account, in upstream order.
    fn list_mailboxes(&self) -> BoxFuture<'_, Result<Vec<RemoteMailbox>, UpstreamError>>;

    /// Brings one mailbox up to date from `cursor` (None: from scratch), reporting batches to
    /// `sink` in order. Memory stays bounded however large the mailbox: batches are small and
    /// sent as they are ready. An initial sync sends the newest messages first.
    fn sync_mailbox<'a>(
        &'a self,
        mailbox: &'a RemoteMailbox,
        cursor: Option<&'a [u8]>,
        sink: &'a mut dyn SyncSink,
    ) -> BoxFuture<'a, Result<(), UpstreamError>>;

    /// Waits until upstream reports a change (IMAP IDLE/NOTIFY, EAS Ping) or `timeout`
    /// passes. Returns the `remote_id`s of mailboxes that changed; empty on timeout; a
    /// `None` entry list is never returned: an adapter that cannot tell which mailbox changed
    /// returns all of them. The mailbox list itself changing is reported as `""`.
    fn wait_for_changes<'a>(
        &'a self,
        mailboxes: &'a [RemoteMailbox],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, UpstreamError>>;

    /// The full raw message (RFC 5322 bytes).
    fn fetch_message<'a>(
        &'a self,
        mailbox: &'a str,
        uid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, UpstreamError>>;

    /// One body part of a message, so that an attachment can be served without fetching the
    /// whole message.
    ///
    /// `part_id` numbers parts as the gateway's partIds do: IMAP section numbers (RFC 3501
    /// §6.4.5), where a single-part message's only part is `1`, the children of a multipart
    /// are numbered from 1 and nested ones joined with dots (`2.1`), and `message/rfc822`
    /// parts are not descended into. Only a leaf part has content: an id that names a
    /// `multipart/*` part, a "child" of a leaf or of a `message/rfc822` part, or that is not
    /// a section number at all (empty components, leading zeros, other characters) names
    /// no part.
    ///
    /// Returns the part as a standalone MIME entity: its MIME header section as stored (for
    /// part `1` of a single-part message, the message's header section), ending with the
    /// empty line, then its body octets as stored — NOT transfer-decoded. Parsing that
    /// entity as a message gives the part's content and media type, except where the part
    /// relies on a default that depends on its parent (no Content-Type in a
    /// `multipart/digest` means `message/rfc822`).
    ///
    /// [`UpstreamError::NotFound`] when the message is gone from `mailbox` or has no such
    /// part. The default says [`UpstreamError::Unsupported`]: callers then fetch the whole
    /// message ([`Upstream::fetch_message`]) and cut the part out themselves, so an adapter
    /// that cannot fetch parts (EAS) needs no code here.
    fn fetch_part<'a>(
        &'a self,
        mailbox: &'a str,
        uid: &'a str,
        part_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, UpstreamError>> {
        let _ = (mailbox, uid, part_id);
        Box::pin(async {
            Err(UpstreamError::Unsupported(
                "this upstream cannot fetch a single body part".into(),
            ))
        })
    }

    /// Applies a change upstream. Nothing is retried silently: a failure is reported.
    fn apply(&self, op: WriteOp) -> BoxFuture<'_, Result<WriteOutcome, UpstreamError>>;

    /// Sends `op` (a [`WriteOp::Send`]) as a reply to or a forward of `source`, for
    /// protocols that can say so (EAS SmartReply / SmartForward with ReplaceMime), so that
    /// the server can mark the source answered or forwarded. The message is complete as
    /// given: the server must not add the source to it. Like [`Upstream::apply`], nothing
    /// that may have been sent is sent again. The default ignores the source and applies
    /// `op`, which is right for upstreams that send without such a notion (or not at all).
    fn send_about(
        &self,
        op: WriteOp,
        source: SendSource,
    ) -> BoxFuture<'_, Result<WriteOutcome, UpstreamError>> {
        let _ = source;
        self.apply(op)
    }

    /// What identifies a mailbox of the last [`Upstream::list_mailboxes`] across renames, when
    /// upstream has such a thing and `remote_id` is a name that a rename changes (IMAP: RFC
    /// 8474 MAILBOXID, else UIDVALIDITY). The gateway uses it to see a mailbox that vanished
    /// under one `remote_id` and appeared under another as a rename, keeping its JMAP id.
    /// The default, `None`, is right for upstreams whose `remote_id` survives renames (EAS).
    fn mailbox_identity(&self, remote_id: &str) -> Option<String> {
        let _ = remote_id;
        None
    }

    /// The uids of the messages of `mailbox` (a `remote_id`) that match `query`, asked of the
    /// server (IMAP `UID SEARCH`), so bodies need not be fetched. Uids are that mailbox's, in
    /// no particular order; a message the gateway has not synced yet may be among them.
    /// The default says [`UpstreamError::Unsupported`]: callers then answer from what they
    /// have (or refuse), so an adapter without server-side search needs no code here.
    fn search<'a>(
        &'a self,
        mailbox: &'a str,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<Vec<String>, UpstreamError>> {
        let _ = (mailbox, query);
        Box::pin(async {
            Err(UpstreamError::Unsupported(
                "this upstream cannot search messages".into(),
            ))
        })
    }

    /// The quotas that apply to the account's mail, asked of the server now (IMAP
    /// `GETQUOTAROOT INBOX`), in upstream order. `Ok(empty)` means upstream knows quotas
    /// but none limits this account at the moment (so asking again later is worthwhile).
    /// The default says [`UpstreamError::Unsupported`], meaning upstream has no quota
    /// information at all: callers stop asking and offer no quotas, so an adapter without
    /// quota support (EAS, an IMAP server without `QUOTA`) needs no code here.
    fn quotas(&self) -> BoxFuture<'_, Result<Vec<RemoteQuota>, UpstreamError>> {
        Box::pin(async {
            Err(UpstreamError::Unsupported(
                "this upstream reports no quotas".into(),
            ))
        })
    }
}
