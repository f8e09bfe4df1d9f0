//! The shared /query windowing: position, anchor, anchorOffset, limit (RFC 8620 §5.5).

use jmap_engine::standard::paginate;
use jmap_engine::{Id, Int, MethodErrorType, UnsignedInt};
use serde_json::{Value, json};

/// `args` holds position/anchor/anchorOffset/limit/maxLimit; the result is the page as JSON
/// (`position`, `ids`, `limit` when reported) or the error type.
#[track_caller]
fn check(args: Value, expected: Value) {
    let results: Vec<Id> = ["a", "b", "c", "d", "e"]
        .into_iter()
        .map(|s| Id::new(s).unwrap())
        .collect();
    let int = |name: &str| Int::new(args.get(name).and_then(Value::as_i64).unwrap_or(0)).unwrap();
    let anchor = args
        .get("anchor")
        .and_then(Value::as_str)
        .map(|s| Id::new(s).unwrap());
    let limit = args
        .get("limit")
        .and_then(Value::as_u64)
        .map(|n| UnsignedInt::new(n).unwrap());
    let max_limit = args.get("maxLimit").and_then(Value::as_u64);
    let actual = match paginate(
        &results,
        int("position"),
        anchor.as_ref(),
        int("anchorOffset"),
        limit,
        max_limit,
    ) {
        Ok(page) => {
            assert_eq!(page.total.get(), 5);
            let mut out = json!({"position": page.position, "ids": page.ids});
            if let Some(limit) = page.limit {
                out["limit"] = json!(limit);
            }
            out
        }
        Err(error) => json!(error.error_type.as_str()),
    };
    assert_eq!(actual, expected, "{args}");
}

#[test]
fn positions() {
    let cases = [
        (
            json!({}),
            json!({"position": 0, "ids": ["a", "b", "c", "d", "e"]}),
        ),
        (
            json!({"position": 2}),
            json!({"position": 2, "ids": ["c", "d", "e"]}),
        ),
        (json!({"position": 4}), json!({"position": 4, "ids": ["e"]})),
        // At or past the end: empty, not an error.
        (json!({"position": 5}), json!({"position": 5, "ids": []})),
        (json!({"position": 9}), json!({"position": 9, "ids": []})),
        // Negative counts from the end, clamped to 0.
        (
            json!({"position": -1}),
            json!({"position": 4, "ids": ["e"]}),
        ),
        (
            json!({"position": -5}),
            json!({"position": 0, "ids": ["a", "b", "c", "d", "e"]}),
        ),
        (
            json!({"position": -50}),
            json!({"position": 0, "ids": ["a", "b", "c", "d", "e"]}),
        ),
        (
            json!({"position": 1, "limit": 2}),
            json!({"position": 1, "ids": ["b", "c"]}),
        ),
        (
            json!({"position": -2, "limit": 1}),
            json!({"position": 3, "ids": ["d"]}),
        ),
        (json!({"limit": 0}), json!({"position": 0, "ids": []})),
        // anchorOffset without an anchor is ignored.
        (
            json!({"position": 1, "anchorOffset": 3}),
            json!({"position": 1, "ids": ["b", "c", "d", "e"]}),
        ),
    ];
    for (args, expected) in cases {
        check(args, expected);
    }
}

#[test]
fn anchors() {
    let cases = [
        (
            json!({"anchor": "c"}),
            json!({"position": 2, "ids": ["c", "d", "e"]}),
        ),
        // An anchor overrides position.
        (
            json!({"anchor": "c", "position": 4}),
            json!({"position": 2, "ids": ["c", "d", "e"]}),
        ),
        (
            json!({"anchor": "c", "anchorOffset": -1, "limit": 2}),
            json!({"position": 1, "ids": ["b", "c"]}),
        ),
        (
            json!({"anchor": "b", "anchorOffset": -5}),
            json!({"position": 0, "ids": ["a", "b", "c", "d", "e"]}),
        ),
        (
            json!({"anchor": "d", "anchorOffset": 1}),
            json!({"position": 4, "ids": ["e"]}),
        ),
        (
            json!({"anchor": "d", "anchorOffset": 7}),
            json!({"position": 10, "ids": []}),
        ),
        (json!({"anchor": "zz"}), json!("anchorNotFound")),
    ];
    for (args, expected) in cases {
        check(args, expected);
    }
}

#[test]
fn limit_clamping() {
    let cases = [
        // No client limit: the server's applies and is reported.
        (
            json!({"maxLimit": 3}),
            json!({"position": 0, "ids": ["a", "b", "c"], "limit": 3}),
        ),
        // A larger client limit is clamped and reported.
        (
            json!({"maxLimit": 3, "limit": 4}),
            json!({"position": 0, "ids": ["a", "b", "c"], "limit": 3}),
        ),
        // Within the maximum: not reported.
        (
            json!({"maxLimit": 3, "limit": 3}),
            json!({"position": 0, "ids": ["a", "b", "c"]}),
        ),
        (
            json!({"maxLimit": 3, "limit": 2}),
            json!({"position": 0, "ids": ["a", "b"]}),
        ),
        (
            json!({"limit": 10}),
            json!({"position": 0, "ids": ["a", "b", "c", "d", "e"]}),
        ),
    ];
    for (args, expected) in cases {
        check(args, expected);
    }
    assert_eq!(
        paginate(
            &[],
            Int::ZERO,
            Some(&Id::new("x").unwrap()),
            Int::ZERO,
            None,
            None
        )
        .unwrap_err()
        .error_type,
        MethodErrorType::AnchorNotFound
    );
}
