//! The Session object (RFC 8620 §2), Limits and StateChange (§7.1).

use jmap_engine::{CORE_CAPABILITY, Id, Limits, Session, StateChange};
use serde_json::json;

/// RFC 8620 §2.1, with the example's `...` elisions dropped and its wrapped URLs joined.
fn example_session() -> serde_json::Value {
    json!({
      "capabilities": {
        "urn:ietf:params:jmap:core": {
          "maxSizeUpload": 50000000,
          "maxConcurrentUpload": 8,
          "maxSizeRequest": 10000000,
          "maxConcurrentRequests": 8,
          "maxCallsInRequest": 32,
          "maxObjectsInGet": 256,
          "maxObjectsInSet": 128,
          "collationAlgorithms": [
            "i;ascii-numeric",
            "i;ascii-casemap",
            "i;unicode-casemap"
          ]
        },
        "urn:ietf:params:jmap:mail": {},
        "urn:ietf:params:jmap:contacts": {},
        "https://example.com/apis/foobar": {
          "maxFoosFinangled": 42
        }
      },
      "accounts": {
        "A13824": {
          "name": "john@example.com",
          "isPersonal": true,
          "isReadOnly": false,
          "accountCapabilities": {
            "urn:ietf:params:jmap:mail": {
              "maxMailboxesPerEmail": null,
              "maxMailboxDepth": 10
            },
            "urn:ietf:params:jmap:contacts": {}
          }
        },
        "A97813": {
          "name": "jane@example.com",
          "isPersonal": false,
          "isReadOnly": true,
          "accountCapabilities": {
            "urn:ietf:params:jmap:mail": {
              "maxMailboxesPerEmail": 1,
              "maxMailboxDepth": 10
            }
          }
        }
      },
      "primaryAccounts": {
        "urn:ietf:params:jmap:mail": "A13824",
        "urn:ietf:params:jmap:contacts": "A13824"
      },
      "username": "john@example.com",
      "apiUrl": "https://jmap.example.com/api/",
      "downloadUrl": "https://jmap.example.com/download/{accountId}/{blobId}/{name}?accept={type}",
      "uploadUrl": "https://jmap.example.com/upload/{accountId}/",
      "eventSourceUrl": "https://jmap.example.com/eventsource/?types={types}&closeafter={closeafter}&ping={ping}",
      "state": "75128aab4b1b"
    })
}

#[test]
fn example_session_round_trips() {
    let session: Session = serde_json::from_value(example_session()).unwrap();
    assert_eq!(
        session.capabilities.core.limits.max_calls_in_request.get(),
        32
    );
    assert_eq!(session.capabilities.core.collation_algorithms.len(), 3);
    assert_eq!(
        session.capabilities.others["https://example.com/apis/foobar"]["maxFoosFinangled"],
        42
    );
    assert!(
        session
            .capabilities
            .supports("urn:ietf:params:jmap:contacts")
    );
    let jane = &session.accounts[&Id::new("A97813").unwrap()];
    assert!(jane.is_read_only && !jane.is_personal);
    assert_eq!(
        session.primary_accounts["urn:ietf:params:jmap:mail"].as_str(),
        "A13824"
    );
    assert_eq!(serde_json::to_value(&session).unwrap(), example_session());
}

#[test]
fn session_needs_the_core_capability() {
    let mut without_core = example_session();
    without_core["capabilities"]
        .as_object_mut()
        .unwrap()
        .remove(CORE_CAPABILITY);
    let error = serde_json::from_value::<Session>(without_core).unwrap_err();
    assert!(
        error.to_string().contains("urn:ietf:params:jmap:core"),
        "{error}"
    );
}

#[test]
fn limits_default_to_the_rfc_suggested_minimums() {
    assert_eq!(
        serde_json::to_value(Limits::default()).unwrap(),
        json!({
            "maxSizeUpload": 50000000,
            "maxConcurrentUpload": 4,
            "maxSizeRequest": 10000000,
            "maxConcurrentRequests": 4,
            "maxCallsInRequest": 16,
            "maxObjectsInGet": 500,
            "maxObjectsInSet": 500
        })
    );
    let core = serde_json::to_value(jmap_engine::CoreCapability::default()).unwrap();
    assert_eq!(
        core["collationAlgorithms"],
        json!(["i;ascii-numeric", "i;ascii-casemap", "i;unicode-casemap"])
    );
    assert_eq!(core["maxObjectsInSet"], 500);
}

/// RFC 8620 §7.1.1.
#[test]
fn state_change_example() {
    let expected = json!({
      "@type": "StateChange",
      "changed": {
        "a3123": {
          "Email": "d35ecb040aab",
          "EmailDelivery": "428d565f2440",
          "CalendarEvent": "87accfac587a"
        },
        "a43461d": {
          "Mailbox": "0af7a512ce70",
          "CalendarEvent": "7a4297cecd76"
        }
      }
    });
    let mut change = StateChange::new();
    let a3123 = Id::new("a3123").unwrap();
    change.record(a3123.clone(), "Email", "d35ecb040aab");
    change.record(a3123.clone(), "EmailDelivery", "428d565f2440");
    change.record(a3123.clone(), "CalendarEvent", "87accfac587a");
    let mut later = StateChange::new();
    later.record(Id::new("a43461d").unwrap(), "Mailbox", "0af7a512ce70");
    later.record(Id::new("a43461d").unwrap(), "CalendarEvent", "7a4297cecd76");
    change.merge(later);
    assert_eq!(change.to_json(), expected);
    assert_eq!(
        serde_json::from_value::<StateChange>(expected).unwrap(),
        change
    );
}

#[test]
fn state_change_coalesces_to_the_last_state() {
    let mut change = StateChange::new();
    let account = Id::new("A1").unwrap();
    assert!(change.is_empty());
    change.record(account.clone(), "Email", "s1");
    change.record(account.clone(), "Email", "s2");
    assert_eq!(
        change.to_json(),
        json!({"@type": "StateChange", "changed": {"A1": {"Email": "s2"}}})
    );
    assert!(
        serde_json::from_value::<StateChange>(json!({"@type": "Other", "changed": {}})).is_err()
    );
}
