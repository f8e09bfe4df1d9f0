//! The Exchange ActiveSync adapter: speaks MS-ASHTTP to an EAS server and maps its folders
//! and items to the backend-neutral model.
//!
//! - [`transport`]: the HTTP side (version negotiation, Provision, redirects, global status
//!   codes).
//! - [`command`]: typed request and response bodies, built on `wbxml::Element`.
//! - `email`: EAS Email fields → [`upstream::RemoteMessage`].
//! - [`EasAccount`]: the [`upstream::Upstream`] implementation (FolderSync, Sync paging,
//!   Ping, ItemOperations, write-through).
//!
//! Invariant: this crate never touches RocksDB; WBXML bytes are encoded and decoded by the
//! sans-IO `wbxml` crate, never here.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod account;
pub mod command;
mod email;
#[cfg(test)]
mod fake_server;
pub mod transport;

pub use account::{EasAccount, EasAuth, EasSettings};
pub use transport::{COMMAND_TIMEOUT, EasClient, EasEndpoint, EasError, ServerOptions};
