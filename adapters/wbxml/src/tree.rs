//! The element tree the codec reads and writes, and a small builder for requests.

use crate::pages::{Page, Tag, UnknownTag};

/// An element: a tag and its content in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The tag, which carries its code page.
    pub tag: Tag,
    /// Child elements, text and opaque data, in order.
    pub children: Vec<Node>,
}

/// One piece of an element's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// An inline string (STR_I), UTF-8.
    Text(String),
    /// Opaque bytes (OPAQUE), e.g. MIME in SendMail or an Email2 ConversationId.
    Opaque(Vec<u8>),
}

impl Element {
    /// An empty element.
    pub fn new(tag: Tag) -> Element {
        Element {
            tag,
            children: Vec::new(),
        }
    }

    /// An empty element named by page and tag name, checked against the code-page tables.
    pub fn named(page: Page, name: &str) -> Result<Element, UnknownTag> {
        Ok(Element::new(Tag::new(page, name)?))
    }

    /// An element holding one text node: `<tag>text</tag>`.
    pub fn with_text(tag: Tag, text: impl Into<String>) -> Element {
        Element::new(tag).text(text)
    }

    /// Appends a child element (builder style).
    #[must_use]
    pub fn child(mut self, child: Element) -> Element {
        self.children.push(Node::Element(child));
        self
    }

    /// Appends child elements (builder style).
    #[must_use]
    pub fn children(mut self, children: impl IntoIterator<Item = Element>) -> Element {
        self.children
            .extend(children.into_iter().map(Node::Element));
        self
    }

    /// Appends a text node (builder style).
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Element {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// Appends an opaque node (builder style).
    #[must_use]
    pub fn opaque(mut self, bytes: impl Into<Vec<u8>>) -> Element {
        self.children.push(Node::Opaque(bytes.into()));
        self
    }

    /// Child elements, skipping text and opaque nodes.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(element) => Some(element),
            _ => None,
        })
    }

    /// The first child element with `tag`.
    pub fn find(&self, tag: Tag) -> Option<&Element> {
        self.elements().find(|element| element.tag == tag)
    }

    /// Every child element with `tag`.
    pub fn find_all(&self, tag: Tag) -> impl Iterator<Item = &Element> {
        self.elements().filter(move |element| element.tag == tag)
    }

    /// Follows a path of child tags: `find_path(&[Collections, Collection, SyncKey])`.
    pub fn find_path(&self, path: &[Tag]) -> Option<&Element> {
        path.iter()
            .try_fold(self, |element, tag| element.find(*tag))
    }

    /// The element's text when its content is exactly one text node, or `""` when it is
    /// empty. `None` for elements holding children or opaque data.
    pub fn text_value(&self) -> Option<&str> {
        match self.children.as_slice() {
            [] => Some(""),
            [Node::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// The element's bytes when its content is one opaque or one text node.
    pub fn bytes_value(&self) -> Option<&[u8]> {
        match self.children.as_slice() {
            [] => Some(&[]),
            [Node::Opaque(bytes)] => Some(bytes),
            [Node::Text(text)] => Some(text.as_bytes()),
            _ => None,
        }
    }

    /// The text of the child with `tag`: `sync.child_text(airsync::Status)`.
    pub fn child_text(&self, tag: Tag) -> Option<&str> {
        self.find(tag).and_then(Element::text_value)
    }

    /// The element's nesting depth (1 for an element without child elements).
    pub fn depth(&self) -> usize {
        // Iterative so that a deep tree built by hand cannot overflow the stack.
        let mut max = 0;
        let mut stack = vec![(self, 1usize)];
        while let Some((element, depth)) = stack.pop() {
            max = max.max(depth);
            stack.extend(element.elements().map(|child| (child, depth + 1)));
        }
        max
    }
}

impl From<Element> for Node {
    fn from(element: Element) -> Node {
        Node::Element(element)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::{airsync, airsyncbase};

    #[test]
    fn builder_and_accessors() {
        let sync = Element::new(airsync::Sync).child(
            Element::new(airsync::Collections).child(
                Element::new(airsync::Collection)
                    .child(Element::with_text(airsync::SyncKey, "0"))
                    .child(
                        Element::new(airsync::Options).child(
                            Element::new(airsyncbase::BodyPreference)
                                .child(Element::with_text(airsyncbase::Type, "1")),
                        ),
                    ),
            ),
        );
        let key = sync.find_path(&[airsync::Collections, airsync::Collection, airsync::SyncKey]);
        assert_eq!(key.and_then(Element::text_value), Some("0"));
        assert_eq!(sync.depth(), 6);
        assert_eq!(
            Element::named(Page::AirSync, "Sync"),
            Ok(Element::new(airsync::Sync))
        );
        assert!(Element::named(Page::AirSync, "Synk").is_err());
    }
}
