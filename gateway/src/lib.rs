//! The gateway binary's library half: CLI, configuration, accounts and authentication, the
//! JMAP methods it registers, push, and the HTTP surface.
//!
//! Only this crate knows actix-web; the method engine, the state store and the adapters
//! are libraries it wires together.

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub mod mail;
pub mod methods;
pub mod passthrough;
pub mod proxy;
pub mod push;
pub mod tls;
