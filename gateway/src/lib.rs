//! The gateway binary's library half: CLI, configuration, HTTP surface.
//!
//! Only this crate knows actix-web; the method engine, the state store and the adapters
//! are libraries it wires together.

pub mod cli;
pub mod config;
mod http;
