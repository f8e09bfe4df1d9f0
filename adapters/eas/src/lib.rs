//! The Exchange ActiveSync adapter: speaks MS-ASHTTP to an EAS server and maps its folders
//! and items to the backend-neutral model.
//!
//! Invariant: this crate never touches RocksDB; WBXML bytes are encoded and decoded by the
//! sans-IO `wbxml` crate, never here.

mod transport;

pub use transport::{EasClient, EasEndpoint, EasError, ServerOptions};
