//! PatchObject (RFC 8620 §5.3).

use jmap_engine::{PatchError, PatchObject, SetError, SetErrorType};
use serde_json::{Value, json};

use crate::fixture::object;

#[track_caller]
fn check(target: Value, patch: Value, expected: Result<Value, &str>) {
    let patch = PatchObject::new(object(patch));
    let actual = patch.apply(&target).map_err(|e| e.to_string());
    assert_eq!(actual, expected.map_err(str::to_owned));
}

fn email() -> Value {
    json!({
        "id": "M1",
        "mailboxIds": {"abc": true, "def": true},
        "keywords": {"$seen": true},
        "alerts": [{"offset": 1}],
        "subject": "Hi",
        "a/b": {"c~d": 1}
    })
}

#[test]
fn applies() {
    let cases = [
        // Set and add through a pointer into an object.
        (
            json!({"keywords/$flagged": true}),
            json!({"id": "M1", "mailboxIds": {"abc": true, "def": true}, "keywords": {"$seen": true, "$flagged": true}, "alerts": [{"offset": 1}], "subject": "Hi", "a/b": {"c~d": 1}}),
        ),
        // null removes.
        (
            json!({"keywords/$seen": null, "mailboxIds/abc": null}),
            json!({"id": "M1", "mailboxIds": {"def": true}, "keywords": {}, "alerts": [{"offset": 1}], "subject": "Hi", "a/b": {"c~d": 1}}),
        ),
        // null on a missing key is a no-op.
        (
            json!({"keywords/$answered": null, "nothing": null}),
            email(),
        ),
        // Replace a whole property, including a whole array.
        (
            json!({"mailboxIds": {"xyz": true}, "alerts": []}),
            json!({"id": "M1", "mailboxIds": {"xyz": true}, "keywords": {"$seen": true}, "alerts": [], "subject": "Hi", "a/b": {"c~d": 1}}),
        ),
        // ~1 and ~0 escapes.
        (
            json!({"a~1b/c~0d": 2}),
            json!({"id": "M1", "mailboxIds": {"abc": true, "def": true}, "keywords": {"$seen": true}, "alerts": [{"offset": 1}], "subject": "Hi", "a/b": {"c~d": 2}}),
        ),
        // The empty patch changes nothing.
        (json!({}), email()),
    ];
    for (patch, expected) in cases {
        check(email(), patch, Ok(expected));
    }
}

/// A whole object is a valid patch (when no key holds a '/', which would be a path).
#[test]
fn whole_object_is_a_patch() {
    let todo = json!({"id": "a", "title": "t", "keywords": {"x": true}, "sub": null});
    check(
        todo.clone(),
        todo.clone(),
        Ok(json!({"id": "a", "title": "t", "keywords": {"x": true}})),
    );
    check(
        email(),
        json!({"a/b": 5}),
        Err("\"a/b\": \"a\" does not exist on the object"),
    );
}

#[test]
fn rejects() {
    let cases = [
        (
            json!({"alerts/0/offset": 2}),
            "\"alerts/0/offset\" points inside an array; replace the whole array instead",
        ),
        (
            json!({"alerts/0": {}}),
            "\"alerts/0\" points inside an array; replace the whole array instead",
        ),
        (
            json!({"alerts/1": {}}),
            "\"alerts/1\" points inside an array; replace the whole array instead",
        ),
        (
            json!({"missing/key": true}),
            "\"missing/key\": \"missing\" does not exist on the object",
        ),
        (
            json!({"keywords/a/b": true}),
            "\"keywords/a/b\": \"keywords/a\" does not exist on the object",
        ),
        (
            json!({"subject/x": 1}),
            "\"subject/x\": \"subject\" is a string, not an object",
        ),
        (
            json!({"alerts": [], "alerts/1/offset": 5}),
            "\"alerts\" is a prefix of \"alerts/1/offset\" in the same patch",
        ),
        (
            json!({"keywords": {}, "keywords/$seen": true}),
            "\"keywords\" is a prefix of \"keywords/$seen\" in the same patch",
        ),
        (
            json!({"a/b": 1, "a/b/c": 2, "z": 0}),
            "\"a/b\" is a prefix of \"a/b/c\" in the same patch",
        ),
        (
            json!({"bad~2escape": 1}),
            "\"bad~2escape\" is not a valid pointer: '~' must be followed by '0' or '1' in \"bad~2escape\"",
        ),
        (
            json!({"trailing~": 1}),
            "\"trailing~\" is not a valid pointer: '~' must be followed by '0' or '1' in \"trailing~\"",
        ),
    ];
    for (patch, message) in cases {
        check(email(), patch, Err(message));
    }
    // Prefix means a whole token, not a string prefix.
    check(
        json!({"alert": 1, "alerts": 2}),
        json!({"alert": 3, "alerts": 4}),
        Ok(json!({"alert": 3, "alerts": 4})),
    );
}

#[test]
fn a_failed_patch_leaves_the_target_alone() {
    let target = email();
    let patch = PatchObject::new(object(json!({"subject": "changed", "missing/x": 1})));
    assert!(patch.apply(&target).is_err());
    assert_eq!(target, email());
}

#[test]
fn target_must_be_an_object() {
    let patch = PatchObject::new(object(json!({"a": 1})));
    assert_eq!(patch.apply(&json!([1])), Err(PatchError::TargetNotObject));
}

#[test]
fn null_can_reset_to_a_default() {
    let patch = PatchObject::new(object(json!({"keywords": null, "subject": null})));
    let patched = patch
        .apply_with_defaults(&email(), |pointer| {
            (pointer.tokens() == ["keywords"]).then(|| json!({}))
        })
        .unwrap();
    assert_eq!(patched["keywords"], json!({}));
    assert!(patched.get("subject").is_none());
}

#[test]
fn properties_and_set_error() {
    let patch = PatchObject::new(object(
        json!({"keywords/$seen": true, "mailboxIds/a": null, "subject": "x"}),
    ));
    assert_eq!(
        patch.properties().into_iter().collect::<Vec<_>>(),
        ["keywords", "mailboxIds", "subject"]
    );
    let error: SetError = PatchError::TargetNotObject.into();
    assert_eq!(error.error_type, SetErrorType::InvalidPatch);
    assert_eq!(
        serde_json::to_value(&error).unwrap(),
        json!({"type": "invalidPatch", "description": "the record to patch is not an object"})
    );
}
