//! Push (RFC 8620 §7, RFC 8887): watching the store for a user's state changes, and delivering
//! them to PushSubscription URLs. EventSource and WebSocket streams live in `http`.

pub mod policy;
pub mod subscription;
pub mod watch;

pub use watch::{StateWatcher, TypeNames, decode_push_state, encode_push_state};
