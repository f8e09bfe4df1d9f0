//! JSON Pointer (RFC 6901) and the JMAP `*` extension, unit by unit.

use jmap_engine::{JsonPointer, PointerError};
use serde_json::{Value, json};

/// The example document of RFC 6901 §5.
fn rfc6901_document() -> Value {
    json!({
        "foo": ["bar", "baz"],
        "": 0,
        "a/b": 1,
        "c%d": 2,
        "e^f": 3,
        "g|h": 4,
        "i\\j": 5,
        "k\"l": 6,
        " ": 7,
        "m~n": 8
    })
}

#[track_caller]
fn check(document: &Value, pointer: &str, expected: Value) {
    let parsed = JsonPointer::parse(pointer).unwrap();
    assert_eq!(parsed.evaluate(document).unwrap(), expected, "{pointer}");
    assert_eq!(parsed.to_string(), pointer, "round trip");
}

#[test]
fn rfc6901_examples() {
    let doc = rfc6901_document();
    check(&doc, "", doc.clone());
    for (pointer, expected) in [
        ("/foo", json!(["bar", "baz"])),
        ("/foo/0", json!("bar")),
        ("/", json!(0)),
        ("/a~1b", json!(1)),
        ("/c%d", json!(2)),
        ("/e^f", json!(3)),
        ("/g|h", json!(4)),
        ("/i\\j", json!(5)),
        ("/k\"l", json!(6)),
        ("/ ", json!(7)),
        ("/m~0n", json!(8)),
    ] {
        check(&doc, pointer, expected);
    }
}

#[test]
fn plain_get_has_no_wildcard() {
    let doc = json!({"list": [{"id": 1}], "*": "star"});
    let pointer = JsonPointer::parse("/list/*/id").unwrap();
    assert!(matches!(
        pointer.get(&doc),
        Err(PointerError::BadIndex { .. })
    ));
    assert_eq!(pointer.evaluate(&doc).unwrap(), json!([1]));
    // On an object `*` is an ordinary member name.
    assert_eq!(
        JsonPointer::parse("/*").unwrap().evaluate(&doc).unwrap(),
        json!("star")
    );
    assert_eq!(
        JsonPointer::parse("/*").unwrap().get(&doc).unwrap(),
        &json!("star")
    );
}

#[test]
fn wildcard() {
    let doc = json!({
        "list": [
            {"id": "a", "tags": ["x", "y"], "n": {"m": 1}},
            {"id": "b", "tags": [], "n": {"m": 2}},
            {"id": "c", "tags": ["z"], "n": {"m": 3}}
        ],
        "empty": [],
        "nested": [[1, 2], [3]],
        "deep": [{"rows": [{"v": 1}, {"v": 2}]}, {"rows": [{"v": 3}]}]
    });
    for (pointer, expected) in [
        ("/list/*/id", json!(["a", "b", "c"])),
        // Arrays from each item are flattened into one.
        ("/list/*/tags", json!(["x", "y", "z"])),
        ("/list/*/n/m", json!([1, 2, 3])),
        (
            "/list/*",
            json!([
                {"id": "a", "tags": ["x", "y"], "n": {"m": 1}},
                {"id": "b", "tags": [], "n": {"m": 2}},
                {"id": "c", "tags": ["z"], "n": {"m": 3}}
            ]),
        ),
        ("/empty/*/id", json!([])),
        ("/nested/*", json!([1, 2, 3])),
        ("/nested/*/0", json!([1, 3])),
        ("/deep/*/rows/*/v", json!([1, 2, 3])),
        ("/list/1/tags", json!([])),
    ] {
        assert_eq!(
            JsonPointer::parse(pointer).unwrap().evaluate(&doc).unwrap(),
            expected,
            "{pointer}"
        );
    }
}

#[test]
fn errors() {
    let doc = json!({"a": [1, 2], "s": "text", "o": {"k": null}});
    let error = |pointer: &str| {
        JsonPointer::parse(pointer)
            .and_then(|p| p.evaluate(&doc))
            .unwrap_err()
            .to_string()
    };
    for (pointer, message) in [
        ("a", "a JSON Pointer must be empty or start with '/': \"a\""),
        ("/a/~", "'~' must be followed by '0' or '1' in \"/a/~\""),
        ("/a/~2", "'~' must be followed by '0' or '1' in \"/a/~2\""),
        ("/missing", "(root): no member \"missing\""),
        ("/a/2", "/a: \"2\" is not an index into an array of 2"),
        ("/a/-", "/a: \"-\" is not an index into an array of 2"),
        ("/a/00", "/a: \"00\" is not an index into an array of 2"),
        ("/a/+1", "/a: \"+1\" is not an index into an array of 2"),
        ("/a/", "/a: \"\" is not an index into an array of 2"),
        ("/a/x", "/a: \"x\" is not an index into an array of 2"),
        ("/s/0", "/s: cannot descend into a string with \"0\""),
        ("/o/k/z", "/o/k: cannot descend into a null with \"z\""),
        ("/a/*/x", "/a/*: cannot descend into a number with \"x\""),
    ] {
        assert_eq!(error(pointer), message, "{pointer}");
    }
    // null is a value a pointer may reach.
    assert_eq!(
        JsonPointer::parse("/o/k").unwrap().evaluate(&doc).unwrap(),
        Value::Null
    );
}

#[test]
fn prefixes_compare_by_token() {
    let p = |s| JsonPointer::parse(s).unwrap();
    assert!(p("/alerts").is_prefix_of(&p("/alerts/1/offset")));
    assert!(p("/alerts").is_prefix_of(&p("/alerts")));
    assert!(!p("/alert").is_prefix_of(&p("/alerts")));
    assert!(!p("/a/b").is_prefix_of(&p("/a")));
    assert!(JsonPointer::root().is_prefix_of(&p("/x")));
    assert_eq!(
        JsonPointer::parse_patch_path("keywords/$seen")
            .unwrap()
            .tokens(),
        ["keywords", "$seen"]
    );
    assert_eq!(
        JsonPointer::parse_patch_path("a~1b/c~0d").unwrap().tokens(),
        ["a/b", "c~d"]
    );
}
