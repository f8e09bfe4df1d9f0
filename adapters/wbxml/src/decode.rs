//! WBXML bytes → element tree.
//!
//! The decoder is a loop over the input with an explicit stack, so hostile nesting cannot
//! overflow the call stack; every length read from the input is checked against the bytes
//! that remain before anything is allocated.

use crate::pages::{Page, Tag};
use crate::token::{self, CHARSET_UTF8};
use crate::tree::{Element, Node};

/// The deepest nesting the decoder (and encoder) accepts, root included. Real ActiveSync
/// documents stay under 15.
pub const MAX_DEPTH: usize = 256;

/// Why bytes did not decode. Every variant carries the byte offset where the problem lies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input stops before the document is complete (truncated body, open elements,
    /// a length that runs past the end).
    #[error("input ends early: needed more bytes at offset {offset}")]
    Incomplete {
        /// Where more input was needed.
        offset: usize,
    },
    /// The version byte is not WBXML 1.1–1.3.
    #[error("byte {offset}: WBXML version {version:#04x} is not supported (want 1.1 to 1.3)")]
    UnsupportedVersion {
        /// Offset of the version byte.
        offset: usize,
        /// The version byte read.
        version: u8,
    },
    /// The document's charset is not UTF-8 (IANA MIBenum 106).
    #[error("byte {offset}: charset {charset} is not UTF-8 (106)")]
    UnsupportedCharset {
        /// Offset of the charset field.
        offset: usize,
        /// The MIBenum read.
        charset: u32,
    },
    /// A multi-byte integer does not fit 32 bits.
    #[error("byte {offset}: multi-byte integer overflows 32 bits")]
    IntegerOverflow {
        /// Offset of the integer's first byte.
        offset: usize,
    },
    /// SWITCH_PAGE to a page that is not an ActiveSync code page.
    #[error("byte {offset}: code page {page} is not an ActiveSync code page")]
    UnknownPage {
        /// Offset of the page byte.
        offset: usize,
        /// The page number read.
        page: u8,
    },
    /// A tag with attributes; ActiveSync never uses them.
    #[error("byte {offset}: tag {token:#04x} has attributes, which ActiveSync does not use")]
    Attributes {
        /// Offset of the tag byte.
        offset: usize,
        /// The whole tag byte.
        token: u8,
    },
    /// A global token ActiveSync does not use (ENTITY, LITERAL*, EXT*, PI).
    #[error("byte {offset}: token {token:#04x} is not used by ActiveSync")]
    UnsupportedToken {
        /// Offset of the token.
        offset: usize,
        /// The token byte.
        token: u8,
    },
    /// An inline or table string is not UTF-8.
    #[error("byte {offset}: string is not valid UTF-8")]
    InvalidUtf8 {
        /// Offset of the string's first byte.
        offset: usize,
    },
    /// STR_T or a public-id reference points outside the string table.
    #[error("byte {offset}: string table reference {index} is out of range")]
    BadStringReference {
        /// Offset of the reference.
        offset: usize,
        /// The index read.
        index: u32,
    },
    /// Content or END before the root element opened.
    #[error("byte {offset}: {what} outside the root element")]
    OutsideRoot {
        /// Offset of the token.
        offset: usize,
        /// What was found.
        what: &'static str,
    },
    /// Elements nest deeper than [`MAX_DEPTH`].
    #[error("byte {offset}: elements nest deeper than {limit}")]
    TooDeep {
        /// Offset of the tag that went too deep.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// Bytes after the root element closed.
    #[error("byte {offset}: data after the end of the root element")]
    TrailingData {
        /// Offset of the first extra byte.
        offset: usize,
    },
}

impl DecodeError {
    /// The byte offset the error refers to.
    pub fn offset(&self) -> usize {
        match *self {
            DecodeError::Incomplete { offset }
            | DecodeError::UnsupportedVersion { offset, .. }
            | DecodeError::UnsupportedCharset { offset, .. }
            | DecodeError::IntegerOverflow { offset }
            | DecodeError::UnknownPage { offset, .. }
            | DecodeError::Attributes { offset, .. }
            | DecodeError::UnsupportedToken { offset, .. }
            | DecodeError::InvalidUtf8 { offset }
            | DecodeError::BadStringReference { offset, .. }
            | DecodeError::OutsideRoot { offset, .. }
            | DecodeError::TooDeep { offset, .. }
            | DecodeError::TrailingData { offset } => offset,
        }
    }

    /// True when more input could complete the document; false when it is malformed.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, DecodeError::Incomplete { .. })
    }
}

/// A cursor over the input that never reads past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or(DecodeError::Incomplete { offset: self.pos })?;
        self.pos += 1;
        Ok(byte)
    }

    /// A WBXML mb_u_int32: 7 bits a byte, high bit = more follows, at most 5 bytes.
    fn mb_u_int32(&mut self) -> Result<u32, DecodeError> {
        let start = self.pos;
        let mut value: u32 = 0;
        for _ in 0..5 {
            let byte = self.byte()?;
            if value > (u32::MAX >> 7) {
                return Err(DecodeError::IntegerOverflow { offset: start });
            }
            value = (value << 7) | u32::from(byte & 0x7F);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::IntegerOverflow { offset: start })
    }

    /// `len` bytes, checked against what remains before anything is allocated.
    fn take(&mut self, len: u32) -> Result<&'a [u8], DecodeError> {
        let remaining = self.bytes.len() - self.pos;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > remaining {
            return Err(DecodeError::Incomplete {
                offset: self.bytes.len(),
            });
        }
        let slice = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    /// A NUL-terminated UTF-8 string.
    fn c_string(&mut self) -> Result<String, DecodeError> {
        let start = self.pos;
        let rest = &self.bytes[start..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Incomplete {
                offset: self.bytes.len(),
            })?;
        self.pos += len + 1;
        utf8(&rest[..len], start)
    }
}

fn utf8(bytes: &[u8], offset: usize) -> Result<String, DecodeError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| DecodeError::InvalidUtf8 { offset })
}

fn table_string(table: &[u8], index: u32, offset: usize) -> Result<String, DecodeError> {
    let bad = DecodeError::BadStringReference { offset, index };
    let start = usize::try_from(index).map_err(|_| bad.clone())?;
    let rest = table.get(start..).ok_or(bad.clone())?;
    let len = rest.iter().position(|&b| b == 0).ok_or(bad)?;
    utf8(&rest[..len], offset)
}

/// Decodes one ActiveSync WBXML document into its root element.
///
/// Accepts WBXML 1.1–1.3 with charset UTF-8, a string table (referenced by STR_T or the public
/// id), SWITCH_PAGE, END, STR_I, STR_T and OPAQUE. Attributes and the other global tokens are
/// errors, as are unknown code pages; a token the tables lack on a known page is kept (see
/// [`Tag`]).
pub fn decode(bytes: &[u8]) -> Result<Element, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };

    let version_at = r.pos;
    let version = r.byte()?;
    if !(0x01..=0x03).contains(&version) {
        return Err(DecodeError::UnsupportedVersion {
            offset: version_at,
            version,
        });
    }
    let public_id = r.mb_u_int32()?;
    let public_id_ref = if public_id == 0 {
        Some((r.pos, r.mb_u_int32()?))
    } else {
        None
    };
    let charset_at = r.pos;
    let charset = r.mb_u_int32()?;
    if charset != CHARSET_UTF8 {
        return Err(DecodeError::UnsupportedCharset {
            offset: charset_at,
            charset,
        });
    }
    let table_len = r.mb_u_int32()?;
    let table = r.take(table_len)?;
    if let Some((offset, index)) = public_id_ref {
        table_string(table, index, offset)?;
    }

    let mut page = Page::AirSync;
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let at = r.pos;
        let tok = r.byte()?;
        let content = match tok {
            token::SWITCH_PAGE => {
                let page_at = r.pos;
                let number = r.byte()?;
                page = Page::from_number(number).ok_or(DecodeError::UnknownPage {
                    offset: page_at,
                    page: number,
                })?;
                continue;
            }
            token::END => {
                let done = stack.pop().ok_or(DecodeError::OutsideRoot {
                    offset: at,
                    what: "END",
                })?;
                match stack.last_mut() {
                    Some(parent) => {
                        parent.children.push(Node::Element(done));
                        continue;
                    }
                    None => return finish(done, &r),
                }
            }
            token::STR_I => Node::Text(r.c_string()?),
            token::STR_T => {
                let index = r.mb_u_int32()?;
                Node::Text(table_string(table, index, at)?)
            }
            token::OPAQUE => {
                let len = r.mb_u_int32()?;
                Node::Opaque(r.take(len)?.to_vec())
            }
            _ if tok & 0x3F < token::FIRST_TAG => {
                return Err(DecodeError::UnsupportedToken {
                    offset: at,
                    token: tok,
                });
            }
            _ if tok & token::HAS_ATTRIBUTES != 0 => {
                return Err(DecodeError::Attributes {
                    offset: at,
                    token: tok,
                });
            }
            _ => {
                if stack.len() >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep {
                        offset: at,
                        limit: MAX_DEPTH,
                    });
                }
                let element = Element::new(Tag::from_known(page, tok & 0x3F));
                if tok & token::HAS_CONTENT != 0 {
                    stack.push(element);
                    continue;
                }
                match stack.last_mut() {
                    Some(parent) => {
                        parent.children.push(Node::Element(element));
                        continue;
                    }
                    None => return finish(element, &r),
                }
            }
        };
        match stack.last_mut() {
            Some(parent) => parent.children.push(content),
            None => {
                return Err(DecodeError::OutsideRoot {
                    offset: at,
                    what: "content",
                });
            }
        }
    }
}

fn finish(root: Element, r: &Reader<'_>) -> Result<Element, DecodeError> {
    if r.pos < r.bytes.len() {
        return Err(DecodeError::TrailingData { offset: r.pos });
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::folderhierarchy;

    #[test]
    fn decodes_foldersync_request() {
        let bytes = [
            0x03, 0x01, 0x6a, 0x00, 0x00, 0x07, 0x56, 0x52, 0x03, 0x30, 0x00, 0x01, 0x01,
        ];
        let expected = Element::new(folderhierarchy::FolderSync)
            .child(Element::with_text(folderhierarchy::SyncKey, "0"));
        assert_eq!(decode(&bytes), Ok(expected));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let bytes = [
            0x03, 0x01, 0x6a, 0x00, 0x00, 0x07, 0x56, 0x52, 0x03, 0x30, 0x00, 0x01, 0x01,
        ];
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len]).err();
            assert!(
                err.as_ref().is_some_and(DecodeError::is_incomplete),
                "prefix {len}: {err:?}"
            );
        }
    }

    #[test]
    fn malformed_inputs_are_named() {
        let header = [0x03, 0x01, 0x6a, 0x00];
        let with = |body: &[u8]| [&header[..], body].concat();
        assert_eq!(
            decode(&[0x00, 0x01, 0x6a, 0x00]),
            Err(DecodeError::UnsupportedVersion {
                offset: 0,
                version: 0
            })
        );
        assert_eq!(
            decode(&[0x03, 0x01, 0x04, 0x00, 0x05]),
            Err(DecodeError::UnsupportedCharset {
                offset: 2,
                charset: 4
            })
        );
        assert_eq!(
            decode(&with(&[0xC5, 0x01])),
            Err(DecodeError::Attributes {
                offset: 4,
                token: 0xC5
            })
        );
        assert_eq!(
            decode(&with(&[0x00, 0x30, 0x05])),
            Err(DecodeError::UnknownPage {
                offset: 5,
                page: 0x30
            })
        );
        assert_eq!(
            decode(&with(&[0x02, 0x41])),
            Err(DecodeError::UnsupportedToken {
                offset: 4,
                token: 0x02
            })
        );
        assert_eq!(
            decode(&with(&[0x01])),
            Err(DecodeError::OutsideRoot {
                offset: 4,
                what: "END"
            })
        );
        assert_eq!(
            decode(&with(&[0x05, 0x05])),
            Err(DecodeError::TrailingData { offset: 5 })
        );
        assert_eq!(
            decode(&with(&[0x45, 0x03, 0xFF, 0x00, 0x01])),
            Err(DecodeError::InvalidUtf8 { offset: 6 })
        );
        assert_eq!(
            decode(&with(&[0x45, 0xC3, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])),
            Err(DecodeError::IntegerOverflow { offset: 6 })
        );
        // A 4 GiB opaque length in a tiny input must not allocate: it is just incomplete.
        assert_eq!(
            decode(&with(&[0x45, 0xC3, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F])),
            Err(DecodeError::Incomplete { offset: 11 })
        );
    }

    #[test]
    fn nesting_is_capped() {
        let mut bytes = vec![0x03, 0x01, 0x6a, 0x00];
        bytes.extend(std::iter::repeat_n(0x45, MAX_DEPTH + 1));
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::TooDeep {
                offset: 4 + MAX_DEPTH,
                limit: MAX_DEPTH
            })
        );
    }

    #[test]
    fn string_table_and_public_id_reference() {
        // Public id 0 + index 0 into a table holding "-//X//EN\0", then STR_T 0 as text.
        let mut bytes = vec![0x03, 0x00, 0x00, 0x6a, 0x09];
        bytes.extend_from_slice(b"-//X//EN\0");
        bytes.extend_from_slice(&[0x45, 0x83, 0x00, 0x01]);
        let root = decode(&bytes);
        assert_eq!(
            root.as_ref().ok().and_then(Element::text_value),
            Some("-//X//EN")
        );
        bytes[2] = 0x20;
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::BadStringReference {
                offset: 2,
                index: 0x20
            })
        );
    }
}
