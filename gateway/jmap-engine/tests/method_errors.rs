//! Method-level errors (RFC 8620 §3.6.2, §5) and SetErrors (§5.3, §5.4, RFC 8621) as JSON.

use jmap_engine::{Id, MethodError, MethodErrorType, SetError, SetErrorType};
use serde_json::{Value, json};

#[test]
fn every_method_error_type_serializes_to_its_rfc_name() {
    let cases = [
        (
            MethodError::server_unavailable(),
            json!({"type": "serverUnavailable"}),
        ),
        (
            MethodError::server_fail("disk on fire"),
            json!({"type": "serverFail", "description": "disk on fire"}),
        ),
        (
            MethodError::server_partial_fail(),
            json!({"type": "serverPartialFail"}),
        ),
        (
            MethodError::unknown_method(),
            json!({"type": "unknownMethod"}),
        ),
        (
            MethodError::invalid_arguments("the 'ids' argument is invalid"),
            json!({"type": "invalidArguments", "description": "the 'ids' argument is invalid"}),
        ),
        (
            MethodError::invalid_result_reference("no t9"),
            json!({"type": "invalidResultReference", "description": "no t9"}),
        ),
        (MethodError::forbidden(), json!({"type": "forbidden"})),
        (
            MethodError::account_not_found(),
            json!({"type": "accountNotFound"}),
        ),
        (
            MethodError::account_not_supported_by_method(),
            json!({"type": "accountNotSupportedByMethod"}),
        ),
        (
            MethodError::account_read_only(),
            json!({"type": "accountReadOnly"}),
        ),
        (
            MethodError::request_too_large("too many"),
            json!({"type": "requestTooLarge", "description": "too many"}),
        ),
        (
            MethodError::state_mismatch(),
            json!({"type": "stateMismatch"}),
        ),
        (
            MethodError::cannot_calculate_changes(),
            json!({"type": "cannotCalculateChanges"}),
        ),
        (
            MethodError::anchor_not_found(),
            json!({"type": "anchorNotFound"}),
        ),
        (
            MethodError::unsupported_sort("no"),
            json!({"type": "unsupportedSort", "description": "no"}),
        ),
        (
            MethodError::unsupported_filter(),
            json!({"type": "unsupportedFilter"}),
        ),
        (
            MethodError::too_many_changes(),
            json!({"type": "tooManyChanges"}),
        ),
        (
            MethodError::from_account_not_found(),
            json!({"type": "fromAccountNotFound"}),
        ),
        (
            MethodError::from_account_not_supported_by_method(),
            json!({"type": "fromAccountNotSupportedByMethod"}),
        ),
        (
            MethodError::new(MethodErrorType::Other("overQuota".into())),
            json!({"type": "overQuota"}),
        ),
        (
            MethodError::new(MethodErrorType::Other("tooManyRequests".into()))
                .with_property("retryAfter", json!(30)),
            json!({"type": "tooManyRequests", "retryAfter": 30}),
        ),
    ];
    for (error, expected) in cases {
        assert_eq!(serde_json::to_value(&error).unwrap(), expected);
        assert_eq!(Value::Object(error.to_arguments()), expected);
    }
}

#[test]
fn method_error_as_invocation() {
    assert_eq!(
        MethodError::unknown_method()
            .to_invocation("call-id")
            .to_json(),
        json!([ "error", { "type": "unknownMethod" }, "call-id" ])
    );
}

#[test]
fn method_error_display() {
    assert_eq!(MethodError::state_mismatch().to_string(), "stateMismatch");
    assert_eq!(
        MethodError::invalid_arguments("x").to_string(),
        "invalidArguments: x"
    );
    let extra_cannot_shadow_type = MethodError::forbidden().with_property("type", json!("sneaky"));
    assert_eq!(
        serde_json::to_value(&extra_cannot_shadow_type).unwrap(),
        json!({"type": "forbidden"})
    );
}

#[test]
fn every_set_error_type_serializes_to_its_rfc_name() {
    let named = [
        (SetError::forbidden(), "forbidden"),
        (SetError::over_quota(), "overQuota"),
        (SetError::too_large(), "tooLarge"),
        (SetError::rate_limit(), "rateLimit"),
        (SetError::not_found(), "notFound"),
        (SetError::will_destroy(), "willDestroy"),
        (SetError::singleton(), "singleton"),
        (
            SetError::new(SetErrorType::MailboxHasChild),
            "mailboxHasChild",
        ),
        (
            SetError::new(SetErrorType::MailboxHasEmail),
            "mailboxHasEmail",
        ),
        (SetError::new(SetErrorType::BlobNotFound), "blobNotFound"),
        (
            SetError::new(SetErrorType::TooManyKeywords),
            "tooManyKeywords",
        ),
        (
            SetError::new(SetErrorType::TooManyMailboxes),
            "tooManyMailboxes",
        ),
        (SetError::new(SetErrorType::InvalidEmail), "invalidEmail"),
        (
            SetError::new(SetErrorType::TooManyRecipients),
            "tooManyRecipients",
        ),
        (SetError::new(SetErrorType::NoRecipients), "noRecipients"),
        (
            SetError::new(SetErrorType::InvalidRecipients),
            "invalidRecipients",
        ),
        (
            SetError::new(SetErrorType::ForbiddenMailFrom),
            "forbiddenMailFrom",
        ),
        (SetError::new(SetErrorType::ForbiddenFrom), "forbiddenFrom"),
        (
            SetError::new(SetErrorType::ForbiddenToSend),
            "forbiddenToSend",
        ),
        (SetError::new(SetErrorType::CannotUnsend), "cannotUnsend"),
        (
            SetError::new(SetErrorType::Other("x-vendorThing".into())),
            "x-vendorThing",
        ),
    ];
    for (error, name) in named {
        assert_eq!(serde_json::to_value(&error).unwrap(), json!({"type": name}));
        // And back: named types come back named, others stay open.
        let parsed: SetError = serde_json::from_value(json!({"type": name})).unwrap();
        assert_eq!(parsed, error);
    }
}

#[test]
fn set_errors_with_their_properties() {
    let cases = [
        (
            SetError::invalid_properties(["title", "keywords"]),
            json!({"type": "invalidProperties", "properties": ["title", "keywords"]}),
        ),
        (
            SetError::already_exists(Id::new("M42").unwrap()),
            json!({"type": "alreadyExists", "existingId": "M42"}),
        ),
        (
            SetError::invalid_patch("bad pointer"),
            json!({"type": "invalidPatch", "description": "bad pointer"}),
        ),
        // RFC 8621 §7.5: blobNotFound lists the missing blob ids in notFound.
        (
            SetError::new(SetErrorType::BlobNotFound).with_property("notFound", json!(["B1"])),
            json!({"type": "blobNotFound", "notFound": ["B1"]}),
        ),
        // RFC 8621 §7.5: tooLarge for an EmailSubmission carries maxSize.
        (
            SetError::too_large()
                .with_property("maxSize", json!(1000))
                .with_description("too big"),
            json!({"type": "tooLarge", "maxSize": 1000, "description": "too big"}),
        ),
    ];
    for (error, expected) in cases {
        assert_eq!(serde_json::to_value(&error).unwrap(), expected);
        assert_eq!(serde_json::from_value::<SetError>(expected).unwrap(), error);
    }
    assert_eq!(
        SetError::not_found().with_description("gone").to_string(),
        "notFound: gone"
    );
}
