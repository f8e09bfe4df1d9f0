//! The backend-neutral contract between the gateway and its upstream mail servers.
//!
//! Both the IMAP and the EAS adapter implement what this crate describes, and this crate
//! knows neither protocol. It grows with the adapter issues; for now it holds the pieces
//! every adapter and the configuration share.

mod model;
mod secret;
pub mod tls;

pub use model::MailboxRole;
pub use secret::Secret;
