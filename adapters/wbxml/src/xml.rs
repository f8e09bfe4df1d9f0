//! XML text for logs and fixtures, and an XML parser so tests and fixtures can be written as
//! XML.
//!
//! The rendering is the one the recorded SOGo exchanges use: an XML declaration, two-space
//! indentation, `xmlns` on the root and wherever an element's code page differs from its
//! parent's, text inline. Opaque data that is readable text is written as text with
//! `opaque="1"`; other opaque data as base64 with `encoding="base64"`. The parser accepts
//! both, and also prefixed namespaces (`xmlns:airsyncbase="AirSyncBase:"`) and namespace
//! names without the trailing colon, as in the MS-ASWBXML examples.
//!
//! Text is kept verbatim: the parser does not apply XML end-of-line normalization, so a CRLF
//! in a message body written raw (as the recordings do) reads back as CRLF.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use crate::decode::MAX_DEPTH;
use crate::pages::{Page, Tag, UnknownTag};
use crate::tree::{Element, Node};

/// Why XML text did not parse into an element tree.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML.
    #[error("XML syntax error at byte {offset}: {source}")]
    Syntax {
        /// Byte position of the reader.
        offset: u64,
        /// The parser's error.
        source: quick_xml::Error,
    },
    /// An element in no namespace.
    #[error("element <{name}> has no namespace")]
    NoNamespace {
        /// The element's name.
        name: String,
    },
    /// A namespace that is no ActiveSync code page.
    #[error("namespace {namespace:?} is not an ActiveSync code page")]
    UnknownNamespace {
        /// The namespace name.
        namespace: String,
    },
    /// A tag the code page does not define.
    #[error(transparent)]
    UnknownTag(#[from] UnknownTag),
    /// An attribute other than `xmlns`, `opaque="1"` or `encoding="base64"`.
    #[error("attribute {name:?} on <{tag}> is not supported")]
    UnsupportedAttribute {
        /// The element.
        tag: Tag,
        /// The attribute's name.
        name: String,
    },
    /// `encoding="base64"` content that is not base64.
    #[error("content of <{tag}> is not valid base64")]
    Base64 {
        /// The element.
        tag: Tag,
    },
    /// An opaque element with child elements.
    #[error("opaque element <{tag}> has child elements")]
    OpaqueWithChildren {
        /// The element.
        tag: Tag,
    },
    /// An entity other than the five predefined ones or a character reference.
    #[error("unknown entity &{name};")]
    UnknownEntity {
        /// The entity's name.
        name: String,
    },
    /// Text, or a second element, outside the root element.
    #[error("content outside the root element")]
    OutsideRoot,
    /// No root element at all.
    #[error("no root element")]
    NoRoot,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("elements nest deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Content {
    Normal,
    OpaqueText,
    OpaqueBase64,
}

struct Frame {
    element: Element,
    content: Content,
}

impl Frame {
    fn push_text(&mut self, text: &str) {
        if let Some(Node::Text(last)) = self.element.children.last_mut() {
            last.push_str(text);
        } else {
            self.element.children.push(Node::Text(text.to_owned()));
        }
    }

    fn finish(mut self) -> Result<Element, XmlError> {
        let tag = self.element.tag;
        let has_elements = self
            .element
            .children
            .iter()
            .any(|node| matches!(node, Node::Element(_)));
        if self.content != Content::Normal {
            if has_elements {
                return Err(XmlError::OpaqueWithChildren { tag });
            }
            let text: String = self
                .element
                .children
                .iter()
                .filter_map(|node| match node {
                    Node::Text(text) => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            let bytes = if self.content == Content::OpaqueBase64 {
                let compact: String = text.split_ascii_whitespace().collect();
                BASE64
                    .decode(compact)
                    .map_err(|_| XmlError::Base64 { tag })?
            } else {
                text.into_bytes()
            };
            self.element.children = vec![Node::Opaque(bytes)];
        } else if has_elements {
            // Indentation between child elements is layout, not content.
            self.element.children.retain(|node| match node {
                Node::Text(text) => !text.chars().all(char::is_whitespace),
                _ => true,
            });
        }
        Ok(self.element)
    }
}

/// Parses an XML document into its root element.
pub fn from_xml(xml: &str) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let offset = reader.buffer_position();
        let syntax = |source| XmlError::Syntax { offset, source };
        let (resolved, event) = reader.read_resolved_event().map_err(syntax)?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(XmlError::OutsideRoot);
            }
            Event::Start(_) | Event::Empty(_) if stack.len() >= MAX_DEPTH => {
                return Err(XmlError::TooDeep { limit: MAX_DEPTH });
            }
            Event::Start(start) => {
                let frame = open(&resolved, &start)?;
                stack.push(frame);
            }
            Event::Empty(start) => {
                let frame = open(&resolved, &start)?;
                close(frame.finish()?, &mut stack, &mut root);
            }
            Event::End(_) => {
                // quick-xml checks that end tags match, so a frame is open here.
                if let Some(frame) = stack.pop() {
                    close(frame.finish()?, &mut stack, &mut root);
                }
            }
            Event::Text(text) => {
                // Verbatim, without XML end-of-line normalization: CRLF in message bodies
                // must survive a trip through a fixture.
                let text = text.into_inner();
                match stack.last_mut() {
                    Some(frame) => frame.push_text(&text),
                    None if text.chars().all(char::is_whitespace) => {}
                    None => return Err(XmlError::OutsideRoot),
                }
            }
            Event::CData(data) => match stack.last_mut() {
                Some(frame) => frame.push_text(&data.into_inner()),
                None => return Err(XmlError::OutsideRoot),
            },
            Event::GeneralRef(reference) => {
                let resolved_char = reference.resolve_char_ref().map_err(syntax)?;
                let ch = match resolved_char {
                    Some(ch) => ch,
                    None => {
                        predefined_entity(&reference).ok_or_else(|| XmlError::UnknownEntity {
                            name: reference.xml10_content().into_owned(),
                        })?
                    }
                };
                let frame = stack.last_mut().ok_or(XmlError::OutsideRoot)?;
                frame.push_text(ch.encode_utf8(&mut [0; 4]));
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    root.ok_or(XmlError::NoRoot)
}

fn predefined_entity(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

fn open(resolved: &ResolveResult<'_>, start: &BytesStart<'_>) -> Result<Frame, XmlError> {
    let local = start.local_name();
    let name: String = local.as_ref().to_owned();
    let page = match resolved {
        ResolveResult::Bound(ns) => {
            let namespace: String = ns.as_ref().to_owned();
            Page::from_namespace(&namespace).ok_or(XmlError::UnknownNamespace { namespace })?
        }
        _ => return Err(XmlError::NoNamespace { name }),
    };
    let tag = Tag::new(page, &name)?;
    let mut content = Content::Normal;
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| XmlError::Syntax {
            offset: 0,
            source: e.into(),
        })?;
        let key: &str = attribute.key.as_ref();
        let value: &str = attribute.value.as_ref();
        match (key, value) {
            ("xmlns", _) => {}
            (key, _) if key.starts_with("xmlns:") => {}
            ("opaque", "1" | "true") => content = Content::OpaqueText,
            ("encoding", "base64") => content = Content::OpaqueBase64,
            _ => {
                return Err(XmlError::UnsupportedAttribute {
                    tag,
                    name: key.to_owned(),
                });
            }
        }
    }
    Ok(Frame {
        element: Element::new(tag),
        content,
    })
}

fn close(element: Element, stack: &mut [Frame], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.element.children.push(Node::Element(element)),
        None => *root = Some(element),
    }
}

/// Renders `root` as an XML document in the form of the recorded exchanges, ending in a
/// newline.
pub fn to_xml(root: &Element) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    render(&mut out, root, None, 0);
    out
}

fn render(out: &mut String, element: &Element, parent: Option<Page>, depth: usize) {
    let indent = "  ".repeat(depth);
    let has_elements = element.elements().next().is_some();
    let has_other = element
        .children
        .iter()
        .any(|node| !matches!(node, Node::Element(_)));
    out.push_str(&indent);
    if has_elements && has_other {
        // Mixed content never occurs in ActiveSync; keep it exact on one line.
        render_compact(out, element, parent, depth);
        out.push('\n');
        return;
    }
    open_tag(out, element, parent);
    match element.children.as_slice() {
        [] => out.push_str("/>\n"),
        [Node::Opaque(bytes)] => {
            out.push_str(&opaque_attribute_and_body(bytes));
            close_tag(out, element.tag);
            out.push('\n');
        }
        children if !has_elements => {
            out.push('>');
            for node in children {
                push_leaf(out, node);
            }
            close_tag(out, element.tag);
            out.push('\n');
        }
        _ => {
            out.push_str(">\n");
            for child in element.elements() {
                if depth + 1 >= MAX_DEPTH {
                    let _ = writeln!(out, "{indent}  <!-- deeper elements omitted -->");
                    break;
                }
                render(out, child, Some(element.tag.page()), depth + 1);
            }
            out.push_str(&indent);
            close_tag(out, element.tag);
            out.push('\n');
        }
    }
}

fn render_compact(out: &mut String, element: &Element, parent: Option<Page>, depth: usize) {
    open_tag(out, element, parent);
    if element.children.is_empty() {
        out.push_str("/>");
        return;
    }
    if let [Node::Opaque(bytes)] = element.children.as_slice() {
        out.push_str(&opaque_attribute_and_body(bytes));
        close_tag(out, element.tag);
        return;
    }
    out.push('>');
    for node in &element.children {
        match node {
            Node::Element(child) if depth + 1 < MAX_DEPTH => {
                render_compact(out, child, Some(element.tag.page()), depth + 1);
            }
            Node::Element(_) => out.push_str("<!-- deeper elements omitted -->"),
            leaf => push_leaf(out, leaf),
        }
    }
    close_tag(out, element.tag);
}

fn open_tag(out: &mut String, element: &Element, parent: Option<Page>) {
    let page = element.tag.page();
    out.push('<');
    out.push_str(&element.tag.xml_name());
    if parent != Some(page) {
        let _ = write!(out, " xmlns=\"{}\"", page.namespace());
    }
}

fn close_tag(out: &mut String, tag: Tag) {
    let _ = write!(out, "</{}>", tag.xml_name());
}

/// The attribute and start-tag end plus body of an element whose content is one opaque node.
fn opaque_attribute_and_body(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if is_readable(text) => {
            let mut s = String::from(" opaque=\"1\">");
            escape_into(&mut s, text);
            s
        }
        _ => format!(" encoding=\"base64\">{}", BASE64.encode(bytes)),
    }
}

fn push_leaf(out: &mut String, node: &Node) {
    match node {
        Node::Text(text) => escape_into(out, text),
        // Opaque inside mixed content has no marker; it reads back as text.
        Node::Opaque(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => escape_into(out, text),
            Err(_) => out.push_str(&BASE64.encode(bytes)),
        },
        Node::Element(_) => {}
    }
}

fn is_readable(text: &str) -> bool {
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

/// Escapes text content: markup characters, and control characters other than tab, CR and
/// LF as character references. CR stays raw, as in the recordings; [`from_xml`] keeps it.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => {
                let _ = write!(out, "&#x{:X};", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::{airsyncbase, email, email2};

    #[test]
    fn renders_like_the_recordings() {
        let data = Element::new(airsyncbase::Body)
            .child(Element::with_text(airsyncbase::Type, "1"))
            .child(Element::new(airsyncbase::Preview))
            .child(Element::with_text(airsyncbase::Data, "Body.\n"));
        let root = Element::new(crate::tag::airsync::ApplicationData)
            .child(Element::with_text(email::To, "\"A\" <a@x>"))
            .child(data)
            .child(Element::new(email2::ConversationId).opaque(b"<id@x>".to_vec()))
            .child(Element::new(email2::ConversationIndex).opaque(vec![0xFF, 0x00]));
        let xml = to_xml(&root);
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <ApplicationData xmlns=\"AirSync:\">\n\
             \x20 <To xmlns=\"Email:\">\"A\" &lt;a@x&gt;</To>\n\
             \x20 <Body xmlns=\"AirSyncBase:\">\n\
             \x20   <Type>1</Type>\n\
             \x20   <Preview/>\n\
             \x20   <Data>Body.\n</Data>\n\
             \x20 </Body>\n\
             \x20 <ConversationId xmlns=\"Email2:\" opaque=\"1\">&lt;id@x&gt;</ConversationId>\n\
             \x20 <ConversationIndex xmlns=\"Email2:\" encoding=\"base64\">/wA=</ConversationIndex>\n\
             </ApplicationData>\n"
        );
        assert_eq!(from_xml(&xml).ok(), Some(root));
    }

    #[test]
    fn control_characters_survive() {
        let root = Element::with_text(email::Subject, "a\r\nb\u{1}c");
        assert_eq!(from_xml(&to_xml(&root)).ok(), Some(root));
    }

    #[test]
    fn rejects_what_is_not_activesync() {
        assert!(matches!(
            from_xml("<Sync/>"),
            Err(XmlError::NoNamespace { .. })
        ));
        assert!(matches!(
            from_xml("<Sync xmlns=\"Nope:\"/>"),
            Err(XmlError::UnknownNamespace { .. })
        ));
        assert!(matches!(
            from_xml("<Synk xmlns=\"AirSync:\"/>"),
            Err(XmlError::UnknownTag(_))
        ));
        assert!(matches!(
            from_xml("<Sync xmlns=\"AirSync:\" id=\"1\"/>"),
            Err(XmlError::UnsupportedAttribute { .. })
        ));
        assert!(matches!(
            from_xml("<Sync xmlns=\"AirSync:\"/><Sync xmlns=\"AirSync:\"/>"),
            Err(XmlError::OutsideRoot)
        ));
        assert!(matches!(from_xml(""), Err(XmlError::NoRoot)));
    }
}
