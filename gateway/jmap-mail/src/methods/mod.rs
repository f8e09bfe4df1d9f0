//! The RFC 8621 methods, answered from the store and written through the account's sync
//! driver. Generic over the gateway's account directory: a resolved account only has to be a
//! [`MailAccount`].
//!
//! One module per data type; each has a `register` that adds its methods to an engine.

mod blobs;
mod common;
mod email_get;
mod email_query;
mod email_set;
mod filter;
mod identity;
mod local;
mod mailbox;
mod quota;
mod search_snippet;
mod submission;
mod thread;
mod vacation;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use jmap_engine::{AccountDirectory, Engine};
use state::{AccountId, AsyncStore};

use crate::AccountSync;

pub use blobs::{BlobData, BlobError, read_blob};
pub use common::{blob_error, changes_from_log, jmap_id, object_id, store_error, sync_error};
pub use quota::{QuotaInfo, QuotaResource};
pub use submission::{SubmitError, SubmitReceipt, Submitter, UpstreamSubmitter};
pub use vacation::{VacationBackend, VacationSettings};

/// The JMAP Mail capability URI (RFC 8621 §1.3.1).
pub const MAIL: &str = "urn:ietf:params:jmap:mail";
/// EmailSubmission (RFC 8621 §1.3.2).
pub const SUBMISSION: &str = "urn:ietf:params:jmap:submission";
/// VacationResponse (RFC 8621 §1.3.3).
pub const VACATION: &str = "urn:ietf:params:jmap:vacationresponse";
/// Quota (RFC 9425).
pub const QUOTA: &str = "urn:ietf:params:jmap:quota";

/// What a mail method needs from a resolved account.
pub trait MailAccount: Clone + Send + Sync + 'static {
    /// The store the account's records live in.
    fn store(&self) -> &AsyncStore;
    /// The account's number in the store.
    fn store_id(&self) -> AccountId;
    /// The running sync driver: write-through, bodies. `None` when the account has no live
    /// upstream (then writes fail with `serverUnavailable` and bodies come from the cache).
    fn sync(&self) -> Option<&AccountSync>;
    /// The account's own mail address (Identity seeding, submission checks).
    fn address(&self) -> Option<&str>;
    /// Where EmailSubmission sends through, if the account can send.
    fn submitter(&self) -> Option<&Arc<dyn Submitter>> {
        None
    }
    /// Where VacationResponse/set pushes the setting (EAS Oof, Sieve), if anywhere.
    fn vacation(&self) -> Option<&Arc<dyn VacationBackend>> {
        None
    }
    /// The account's quotas as last learned from upstream (RFC 9425); read, never fetched.
    fn quotas(&self) -> Vec<QuotaInfo> {
        Vec::new()
    }
}

/// Registers every mail method with `engine`.
pub fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    mailbox::register(engine);
    thread::register(engine);
    email_get::register(engine);
    email_query::register(engine);
    email_set::register(engine);
    search_snippet::register(engine);
    identity::register(engine);
    submission::register(engine);
    vacation::register(engine);
    quota::register(engine);
}
