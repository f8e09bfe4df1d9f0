//! The backend-neutral contract between the gateway and its upstream mail servers.
//!
//! Both the IMAP and the EAS adapter implement [`Upstream`], and this crate knows neither
//! protocol. It also holds what every adapter and the configuration share: [`Secret`] for
//! credentials and the verified TLS client settings in [`tls`].

pub mod civil;
mod contract;
mod model;
mod secret;
pub mod tls;

pub use contract::{
    BoxFuture, Envelope, MessageChange, RemoteMailbox, RemoteMessage, RemoteQuota, SearchKind,
    SearchQuery, SendSource, SourceKind, SyncBatch, SyncSink, Upstream, UpstreamError, WriteOp,
    WriteOutcome,
};
pub use model::{MailboxRole, VacationSettings};
pub use secret::{Secret, SecretProvider};
