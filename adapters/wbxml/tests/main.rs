//! The wbxml crate's integration tests, one binary:
//! - `recorded`: every recorded SOGo 14.1 request and response decodes to the recorded XML
//!   and re-encodes to the recorded bytes;
//! - `spec_examples`: the byte-by-byte example of MS-ASWBXML;
//! - `libwbxml`: cross-checks against libwbxml2's `wbxml2xml` and `xml2wbxml`;
//! - `properties`: proptest round trips and never-panic checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "cases/libwbxml.rs"]
mod libwbxml;
#[path = "cases/properties.rs"]
mod properties;
#[path = "cases/recorded.rs"]
mod recorded;
#[path = "cases/spec_examples.rs"]
mod spec_examples;
#[path = "cases/support.rs"]
mod support;
