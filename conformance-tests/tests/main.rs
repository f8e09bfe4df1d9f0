//! One test binary for every end-to-end test (link time matters on a 2-core CI machine).
#![allow(clippy::unwrap_used)]

mod dovecot;
mod eas_adapter;
mod imap_support;
mod imap_sync;
mod jmap_bodies;
mod jmap_client;
mod jmap_eas;
mod jmap_mail;
mod jmap_support;
mod jmap_vacation;
mod part_fetch;
mod passthrough;
mod raw_fetch;
mod sogo;
