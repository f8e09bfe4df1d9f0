//! The jmap-engine test binary. Most tests go through `fixture::check(input, expected)`: a
//! request (or bare methodCalls) in, the exact JSON out.

#![allow(clippy::unwrap_used)]

mod fixture;
mod todo;

mod dispatch;
mod method_errors;
mod patch;
mod pointer;
mod protocol;
mod query_window;
mod references;
mod scalars;
mod session;
mod standard;
