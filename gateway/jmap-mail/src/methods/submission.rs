//! EmailSubmission (RFC 8621 §7). (methods to be written)

use jmap_engine::{AccountDirectory, Engine};
use upstream::{BoxFuture, Envelope};

use super::MailAccount;

/// What a submission produced: the server's reply, kept for deliveryStatus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitReceipt {
    /// The final reply of the submission server (e.g. `250 2.0.0 Ok: queued as 1234`).
    pub reply: String,
}

/// Why a submission failed, and whether it may have been sent anyway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Refused before any data was accepted: certainly not sent.
    #[error("refused: {0}")]
    Refused(String),
    /// Some recipients were refused (the rest not attempted): not sent.
    #[error("recipients refused: {0:?}")]
    RecipientsRefused(Vec<String>),
    /// The connection broke after the message data was sent: it may have been delivered.
    /// Never retried blindly.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// Could not reach the server: certainly not sent.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Sends a message for an account (SMTP submission, EAS SendMail).
pub trait Submitter: Send + Sync + std::fmt::Debug {
    fn submit<'a>(
        &'a self,
        envelope: &'a Envelope,
        raw: &'a [u8],
    ) -> BoxFuture<'a, Result<SubmitReceipt, SubmitError>>;
}

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    let _ = engine;
}
