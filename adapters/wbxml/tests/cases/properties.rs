//! Property tests: random trees round-trip; random input never panics.

use proptest::prelude::*;
use wbxml::{Element, MAX_DEPTH, Node, Page, Tag, decode, encode, from_xml, to_xml};

fn any_tag() -> impl Strategy<Value = Tag> {
    (
        0..Page::ALL.len(),
        any::<prop::sample::Index>(),
        0x05u8..=0x3F,
        any::<bool>(),
    )
        .prop_map(|(page, index, raw, named)| {
            let page = Page::ALL[page];
            let token = if named {
                page.tags()[index.index(page.tags().len())].0
            } else {
                raw
            };
            Tag::from_token(page, token).unwrap()
        })
}

fn any_text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,24}"
}

/// Any tree the encoder accepts: mixed content, empty strings, opaque anywhere.
fn any_tree() -> impl Strategy<Value = Element> {
    let leaf = any_tag().prop_map(Element::new);
    leaf.prop_recursive(6, 64, 6, |inner| {
        let node = prop_oneof![
            inner.prop_map(Node::Element),
            any_text().prop_map(Node::Text),
            prop::collection::vec(any::<u8>(), 0..24).prop_map(Node::Opaque),
        ];
        (any_tag(), prop::collection::vec(node, 0..6))
            .prop_map(|(tag, children)| Element { tag, children })
    })
}

/// Trees in the shape ActiveSync uses, which XML carries exactly: an element holds child
/// elements, or one non-empty text, or one opaque value, or nothing.
fn activesync_tree() -> impl Strategy<Value = Element> {
    let leaf = prop_oneof![
        any_tag().prop_map(Element::new),
        (any_tag(), "[^\u{0}]{1,24}").prop_map(|(tag, text)| Element::with_text(tag, text)),
        (any_tag(), prop::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(tag, bytes)| Element::new(tag).opaque(bytes)),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        (any_tag(), prop::collection::vec(inner, 1..6))
            .prop_map(|(tag, children)| Element::new(tag).children(children))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity(tree in any_tree()) {
        let bytes = encode(&tree).unwrap();
        prop_assert_eq!(decode(&bytes).unwrap(), tree);
    }

    #[test]
    fn xml_round_trip_is_identity(tree in activesync_tree()) {
        // Whitespace-only text next to elements is layout in XML; the strategy's texts sit
        // alone in their element, where they are kept.
        let xml = to_xml(&tree);
        prop_assert_eq!(from_xml(&xml).unwrap(), tree, "{}", xml);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn random_bodies_after_a_valid_header_never_panic(
        body in prop::collection::vec(
            prop_oneof![Just(0x00u8), Just(0x01), Just(0x03), Just(0xC3), Just(0x45), any::<u8>()],
            0..512,
        )
    ) {
        let bytes = [&[0x03, 0x01, 0x6a, 0x00][..], &body].concat();
        if let Err(e) = decode(&bytes) {
            prop_assert!(e.offset() <= bytes.len());
        }
    }

    #[test]
    fn mutated_recordings_never_panic(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let exchanges = crate::support::exchanges();
        let x = which.get(&exchanges);
        let mut bytes = x.response.clone();
        if bytes.is_empty() { bytes = x.request.clone(); }
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(tree) = decode(&bytes) {
            // Whatever decodes must re-encode and decode to the same tree.
            prop_assert_eq!(decode(&encode(&tree).unwrap()).unwrap(), tree);
        }
    }

    #[test]
    fn random_xml_never_panics(text in "\\PC{0,200}") {
        let _ = from_xml(&text);
    }
}

#[test]
fn encoder_refuses_what_the_decoder_would_refuse() {
    let mut tree = Element::new(wbxml::tag::airsync::Sync);
    for _ in 1..MAX_DEPTH {
        tree = Element::new(wbxml::tag::airsync::Add).child(tree);
    }
    let bytes = encode(&tree).unwrap();
    assert_eq!(decode(&bytes).unwrap(), tree);
    let deeper = Element::new(wbxml::tag::airsync::Add).child(tree);
    assert!(encode(&deeper).is_err());
    assert!(encode(&Element::with_text(wbxml::tag::airsync::Class, "a\0b")).is_err());
}
