//! Element tree → WBXML bytes.
//!
//! The output is what SOGo and Exchange send: WBXML 1.3, public id 1, UTF-8, no string
//! table, text as STR_I, SWITCH_PAGE only when a tag's page differs from the current one
//! (which starts at 0), and a tag without children written without the content bit.

use crate::decode::MAX_DEPTH;
use crate::pages::{Page, Tag};
use crate::token;
use crate::tree::{Element, Node};

/// Why a tree cannot be written as WBXML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// STR_I is NUL-terminated, so text cannot hold U+0000; send such data as opaque.
    #[error("text inside {tag} contains a NUL character")]
    NulInText {
        /// The element holding the text.
        tag: Tag,
    },
    /// Opaque data longer than a 32-bit length can state.
    #[error("opaque data inside {tag} is longer than 4 GiB")]
    OpaqueTooLong {
        /// The element holding the data.
        tag: Tag,
    },
    /// Deeper than the decoder accepts; refused so that what we write we can also read.
    #[error("elements nest deeper than {limit}")]
    TooDeep {
        /// The limit, [`MAX_DEPTH`].
        limit: usize,
    },
}

/// Encodes `root` as one WBXML document.
pub fn encode(root: &Element) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![
        token::VERSION_1_3,
        token::PUBLIC_ID_UNKNOWN,
        token::CHARSET_UTF8 as u8,
        0x00, // string table length
    ];
    let mut page = Page::AirSync;
    write_tag(&mut out, &mut page, root);
    if root.children.is_empty() {
        return Ok(out);
    }
    // Explicit stack of (element, next child index): no recursion on caller-built trees.
    let mut stack: Vec<(&Element, usize)> = vec![(root, 0)];
    while let Some((element, index)) = stack.last_mut() {
        let element: &Element = element;
        let Some(node) = element.children.get(*index) else {
            out.push(token::END);
            stack.pop();
            continue;
        };
        *index += 1;
        match node {
            Node::Element(child) => {
                write_tag(&mut out, &mut page, child);
                if !child.children.is_empty() {
                    if stack.len() >= MAX_DEPTH {
                        return Err(EncodeError::TooDeep { limit: MAX_DEPTH });
                    }
                    stack.push((child, 0));
                } else if stack.len() >= MAX_DEPTH {
                    return Err(EncodeError::TooDeep { limit: MAX_DEPTH });
                }
            }
            Node::Text(text) => {
                if text.as_bytes().contains(&0) {
                    return Err(EncodeError::NulInText { tag: element.tag });
                }
                out.push(token::STR_I);
                out.extend_from_slice(text.as_bytes());
                out.push(0);
            }
            Node::Opaque(bytes) => {
                let len = u32::try_from(bytes.len())
                    .map_err(|_| EncodeError::OpaqueTooLong { tag: element.tag })?;
                out.push(token::OPAQUE);
                write_mb_u_int32(&mut out, len);
                out.extend_from_slice(bytes);
            }
        }
    }
    Ok(out)
}

fn write_tag(out: &mut Vec<u8>, page: &mut Page, element: &Element) {
    let tag = element.tag;
    if tag.page() != *page {
        out.extend_from_slice(&[token::SWITCH_PAGE, tag.page() as u8]);
        *page = tag.page();
    }
    let content = if element.children.is_empty() {
        0
    } else {
        token::HAS_CONTENT
    };
    out.push(tag.token() | content);
}

/// Writes `value` as a WBXML mb_u_int32 (big-endian groups of 7 bits).
fn write_mb_u_int32(out: &mut Vec<u8>, value: u32) {
    let mut groups = [0u8; 5];
    let mut n = 0;
    let mut rest = value;
    loop {
        groups[n] = (rest & 0x7F) as u8;
        n += 1;
        rest >>= 7;
        if rest == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        let more = if i > 0 { 0x80 } else { 0 };
        out.push(groups[i] | more);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mb_u_int32_examples() {
        // WAP-192 5.1: 0xA0 is encoded as 0x81 0x20.
        let mut out = Vec::new();
        write_mb_u_int32(&mut out, 0xA0);
        assert_eq!(out, [0x81, 0x20]);
        out.clear();
        write_mb_u_int32(&mut out, 0);
        assert_eq!(out, [0x00]);
        out.clear();
        write_mb_u_int32(&mut out, u32::MAX);
        assert_eq!(out, [0x8F, 0xFF, 0xFF, 0xFF, 0x7F]);
    }
}
