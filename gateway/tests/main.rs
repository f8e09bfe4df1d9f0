//! The gateway's one integration-test binary: the CLI as a user runs it, and the HTTP surface
//! over real sockets on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod auth;
mod blob;
mod cli;
mod deploy;
mod openapi;
mod push;
mod session;
mod support;
