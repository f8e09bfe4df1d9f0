//! A sans-IO codec for WBXML as Exchange ActiveSync uses it (WAP-192-WBXML 1.3 with the
//! MS-ASWBXML code pages 0–24).
//!
//! It turns the bytes of an EAS request or response body into an element tree ([`decode`]),
//! a tree back into bytes ([`encode`]), and either into and out of XML text for logs, fixtures
//! and tests ([`to_xml`], [`from_xml`]). Requests are built from typed tag constants:
//!
//! ```
//! use wbxml::{Element, encode, tag::folderhierarchy as fh};
//!
//! let request = Element::new(fh::FolderSync).child(Element::with_text(fh::SyncKey, "0"));
//! assert_eq!(
//!     encode(&request).unwrap(),
//!     [0x03, 0x01, 0x6a, 0x00, 0x00, 0x07, 0x56, 0x52, 0x03, b'0', 0x00, 0x01, 0x01]
//! );
//! ```
//!
//! # Invariants
//!
//! - The codec never touches the network, the file system or a clock; it has no async and
//!   no I/O of its own. Transport is the EAS adapter's job.
//! - Decoding is total: garbage, truncated or hostile input returns a [`DecodeError`]
//!   (with [`DecodeError::Incomplete`] told apart from malformed input, and a byte offset),
//!   never a panic.
//! - Allocation is bounded by the input: every length read from the input is checked against
//!   the bytes that remain before anything is allocated, and nesting is capped at
//!   [`MAX_DEPTH`]. Decoder, encoder and XML reader use explicit stacks, not recursion on
//!   input, so depth cannot exhaust the call stack.
//! - What [`encode`] writes, [`decode`] reads back to an equal tree, and re-encoding a
//!   decoded SOGo or Exchange message gives the same bytes: SWITCH_PAGE only when the page
//!   changes, no string table, childless elements without the content bit.
//! - The code-page tables are static, one definition in [`pages`]; names follow MS-ASWBXML.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod decode;
pub mod encode;
pub mod pages;
mod token;
pub mod tree;
pub mod xml;

pub use decode::{DecodeError, MAX_DEPTH, decode};
pub use encode::{EncodeError, encode};
pub use pages::{Page, Tag, UnknownTag, tag};
pub use tree::{Element, Node};
pub use xml::{XmlError, from_xml, to_xml};
