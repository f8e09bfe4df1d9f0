//! The standard methods (RFC 8620 §5) through the in-memory Todo type: the RFC's §5.8 examples,
//! the per-method errors, and strict argument parsing of the generic request types.

use jmap_engine::standard::{
    ChangesRequest, CopyRequest, Filter, GetRequest, Operator, QueryChangesRequest, QueryRequest,
    SetRequest,
};
use jmap_engine::{Arguments, CreatedIds, ExtraArguments, Id, MethodError, NoExtra};
use serde_json::{Value, json};

use crate::fixture::{check, check_with, engine, object, run};
use crate::todo::TodoCondition;

/// §5.8: query the music-or-video Todos sorted by title and fetch them by back-reference.
#[test]
fn query_then_get_by_reference() {
    check(
        json!([[ "Todo/query", {
          "accountId": "x",
          "filter": {
            "operator": "OR",
            "conditions": [
              { "hasKeyword": "music" },
              { "hasKeyword": "video" }
            ]
          },
          "sort": [{ "property": "title" }],
          "position": 0,
          "limit": 10
        }, "0" ],
        [ "Todo/get", {
          "accountId": "x",
          "#ids": {
            "resultOf": "0",
            "name": "Todo/query",
            "path": "/ids"
          }
        }, "1" ]]),
        json!([[ "Todo/query", {
          "accountId": "x",
          "queryState": "y10324",
          "canCalculateChanges": true,
          "position": 0,
          "ids": [ "a", "b" ]
        }, "0" ],
        [ "Todo/get", {
          "accountId": "x",
          "state": "10324",
          "list": [{
            "id": "a",
            "title": "Practise Piano",
            "keywords": {
              "music": true,
              "beethoven": true,
              "mozart": true,
              "liszt": true,
              "rachmaninov": true
            },
            "neuralNetworkTimeEstimation": 3600,
            "subTodoIds": null
          }, {
            "id": "b",
            "title": "Watch Daft Punk music video",
            "keywords": {
              "music": true,
              "video": true,
              "trance": true
            },
            "neuralNetworkTimeEstimation": 18000,
            "subTodoIds": null
          }],
          "notFound": []
        }, "1" ]]),
    );
}

/// The §5.8 /set response both patches produce.
fn piano_updated() -> Value {
    json!([[ "Todo/set", {
      "accountId": "x",
      "oldState": "10324",
      "newState": "10325",
      "updated": {
        "a": {
          "neuralNetworkTimeEstimation": 5400
        }
      }
    }, "0" ]])
}

/// §5.8: the minimal patch.
#[test]
fn minimal_patch() {
    check(
        json!([[ "Todo/set", {
          "accountId": "x",
          "ifInState": "10324",
          "update": {
            "a": {
              "keywords/chopin": true,
              "keywords/mozart": null
            }
          }
        }, "0" ]]),
        piano_updated(),
    );
}

/// §5.8: the whole object is a valid PatchObject with the same effect, provided server-set
/// properties are unchanged. (The RFC's example sends 360 where the server has 3600: that one
/// differs, so it is an invalidProperties SetError.)
#[test]
fn whole_object_as_patch() {
    let whole = |estimate: u64| {
        json!([[ "Todo/set", {
          "accountId": "x",
          "ifInState": "10324",
          "update": {
            "a": {
              "id": "a",
              "title": "Practise Piano",
              "keywords": {
                "music": true,
                "beethoven": true,
                "chopin": true,
                "liszt": true,
                "rachmaninov": true
              },
              "neuralNetworkTimeEstimation": estimate
            }
          }
        }, "0" ]])
    };
    check(whole(3600), piano_updated());
    check(
        whole(360),
        json!([[ "Todo/set", {
          "accountId": "x",
          "oldState": "10324",
          "newState": "10324",
          "notUpdated": {
            "a": { "type": "invalidProperties", "properties": ["neuralNetworkTimeEstimation"] }
          }
        }, "0" ]]),
    );
}

#[test]
fn set_errors_per_record() {
    check(
        json!([[ "Todo/set", {
          "accountId": "x",
          "create": {
            "k1": { "title": 5 },
            "k2": { "title": "ok", "id": "mine" }
          },
          "update": {
            "a": { "keywords/x/y": true },
            "b": { "keywords": {} },
            "zz": { "title": "ghost" }
          },
          "destroy": [ "b", "zz" ]
        }, "0" ]]),
        json!([[ "Todo/set", {
          "accountId": "x",
          "oldState": "10324",
          "newState": "10325",
          "destroyed": [ "b" ],
          "notCreated": {
            "k1": { "type": "invalidProperties", "properties": ["title"] },
            "k2": { "type": "invalidProperties", "properties": ["id"] }
          },
          "notUpdated": {
            "a": { "type": "invalidPatch", "description": "\"keywords/x/y\": \"keywords/x\" does not exist on the object" },
            "b": { "type": "willDestroy" },
            "zz": { "type": "notFound" }
          },
          "notDestroyed": { "zz": { "type": "notFound" } }
        }, "0" ]]),
    );
}

#[test]
fn state_mismatch() {
    check(
        json!([["Todo/set", {"accountId": "x", "ifInState": "999", "destroy": ["a"]}, "0"]]),
        json!([["error", {"type": "stateMismatch"}, "0"]]),
    );
}

/// §5.8: after another user deletes "b", /changes and /queryChanges report it.
#[test]
fn changes_and_query_changes_after_a_delete() {
    let engine = engine();
    run(
        &engine,
        json!([["Todo/set", {"accountId": "x", "destroy": ["b"]}, "0"]]),
    );
    check_with(
        &engine,
        json!([[ "Todo/changes", {
          "accountId": "x",
          "sinceState": "10324",
          "maxChanges": 50
        }, "0" ],
        [ "Todo/queryChanges", {
          "accountId": "x",
          "filter": {
            "operator": "OR",
            "conditions": [
              { "hasKeyword": "music" },
              { "hasKeyword": "video" }
            ]
          },
          "sort": [{ "property": "title" }],
          "sinceQueryState": "y10324",
          "maxChanges": 50
        }, "1" ]]),
        json!([[ "Todo/changes", {
          "accountId": "x",
          "oldState": "10324",
          "newState": "10325",
          "hasMoreChanges": false,
          "created": [],
          "updated": [],
          "destroyed": ["b"]
        }, "0" ],
        [ "Todo/queryChanges", {
          "accountId": "x",
          "oldQueryState": "y10324",
          "newQueryState": "y10325",
          "removed": ["b"],
          "added": []
        }, "1" ]]),
    );
}

#[test]
fn changes_page_through_intermediate_states() {
    let engine = engine();
    run(
        &engine,
        json!([["Todo/set", {"accountId": "x", "create": {"n1": {"title": "one"}, "n2": {"title": "two"}}, "update": {"a": {"title": "Piano"}}, "destroy": ["c"]}, "0"]]),
    );
    check_with(
        &engine,
        json!([
            ["Todo/changes", {"accountId": "x", "sinceState": "10324", "maxChanges": 2}, "0"],
            ["Todo/changes", {"accountId": "x", "#sinceState": {"resultOf": "0", "name": "Todo/changes", "path": "/newState"}, "maxChanges": 2}, "1"],
            ["Todo/changes", {"accountId": "x", "sinceState": "10328"}, "2"],
            ["Todo/changes", {"accountId": "x", "sinceState": "99999"}, "3"],
            ["Todo/changes", {"accountId": "x", "sinceState": "10324", "maxChanges": 0}, "4"],
            ["Todo/changes", {"accountId": "x"}, "5"]
        ]),
        json!([
            ["Todo/changes", {"accountId": "x", "oldState": "10324", "newState": "10326", "hasMoreChanges": true,
              "created": ["T1", "T2"], "updated": [], "destroyed": []}, "0"],
            ["Todo/changes", {"accountId": "x", "oldState": "10326", "newState": "10328", "hasMoreChanges": false,
              "created": [], "updated": ["a"], "destroyed": ["c"]}, "1"],
            ["Todo/changes", {"accountId": "x", "oldState": "10328", "newState": "10328", "hasMoreChanges": false,
              "created": [], "updated": [], "destroyed": []}, "2"],
            ["error", {"type": "cannotCalculateChanges"}, "3"],
            ["error", {"type": "invalidArguments", "description": "the 'maxChanges' argument must be greater than 0"}, "4"],
            ["error", {"type": "invalidArguments", "description": "the 'sinceState' argument is required"}, "5"]
        ]),
    );
}

#[test]
fn query_changes_too_many_changes() {
    let engine = engine();
    run(
        &engine,
        json!([["Todo/set", {"accountId": "x", "update": {"a": {"title": "A"}, "b": {"title": "B"}}}, "0"]]),
    );
    check_with(
        &engine,
        json!([
            ["Todo/queryChanges", {"accountId": "x", "sinceQueryState": "y10324", "maxChanges": 3}, "0"],
            ["Todo/queryChanges", {"accountId": "x", "sinceQueryState": "y10324", "calculateTotal": true}, "1"],
            ["Todo/queryChanges", {"accountId": "x", "sinceQueryState": "garbage"}, "2"]
        ]),
        json!([
            ["error", {"type": "tooManyChanges"}, "0"],
            ["Todo/queryChanges", {"accountId": "x", "oldQueryState": "y10324", "newQueryState": "y10326", "total": 3,
              "removed": ["a", "b"], "added": [{"id": "a", "index": 0}, {"id": "b", "index": 1}]}, "1"],
            ["error", {"type": "cannotCalculateChanges"}, "2"]
        ]),
    );
}

/// §5.8: copy a Todo from x to y and destroy the original: two responses, one call id.
#[test]
fn copy_with_destroy_original() {
    check(
        json!([[ "Todo/copy", {
          "fromAccountId": "x",
          "accountId": "y",
          "create": {
            "k5122": {
              "id": "a"
            }
          },
          "onSuccessDestroyOriginal": true
        }, "0" ]]),
        json!([[ "Todo/copy", {
          "fromAccountId": "x",
          "accountId": "y",
          "created": {
            "k5122": {
              "id": "DAf97"
            }
          },
          "oldState": "0",
          "newState": "1"
        }, "0" ],
        [ "Todo/set", {
          "accountId": "x",
          "oldState": "10324",
          "newState": "10325",
          "destroyed": [ "a" ]
        }, "0" ]]),
    );
}

#[test]
fn copy_errors() {
    check(
        json!([
            ["Todo/copy", {"fromAccountId": "x", "accountId": "y", "create": {"k1": {"id": "nope"}, "k2": {"title": "no id"}}}, "0"],
            ["Todo/copy", {"fromAccountId": "x", "accountId": "x", "create": {}}, "1"],
            ["Todo/copy", {"fromAccountId": "x", "accountId": "y", "ifFromInState": "1", "create": {}}, "2"],
            ["Todo/copy", {"fromAccountId": "x", "accountId": "y"}, "3"]
        ]),
        json!([
            ["Todo/copy", {"fromAccountId": "x", "accountId": "y", "oldState": "0", "newState": "0", "notCreated": {
                "k1": {"type": "notFound"},
                "k2": {"type": "invalidProperties", "properties": ["id"], "description": "a copied record must name its original in 'id'"}
            }}, "0"],
            ["error", {"type": "invalidArguments", "description": "accountId must differ from fromAccountId"}, "1"],
            ["error", {"type": "stateMismatch"}, "2"],
            ["error", {"type": "invalidArguments", "description": "the 'create' argument is required"}, "3"]
        ]),
    );
}

#[test]
fn query_errors() {
    check(
        json!([
            ["Todo/query", {"accountId": "x", "anchor": "zz"}, "0"],
            ["Todo/query", {"accountId": "x", "sort": [{"property": "keywords"}]}, "1"],
            ["Todo/query", {"accountId": "x", "sort": [{"property": "title", "collation": "i;klingon"}]}, "2"],
            ["Todo/query", {"accountId": "x", "filter": {"operator": "NOT", "conditions": [{"text": "x"}]}}, "3"],
            ["Todo/query", {"accountId": "x", "filter": {"colour": "red"}}, "4"],
            ["Todo/query", {"accountId": "x", "filter": {"operator": "XOR", "conditions": []}}, "5"],
            ["Todo/query", {"accountId": "x", "limit": -1}, "6"],
            ["Todo/query", {"accountId": "x", "position": 1.5}, "7"],
            ["Todo/query", {"accountId": "x", "sort": [{"property": "title", "keyword": "$seen"}]}, "8"],
            ["Todo/query", {"accountId": "x", "collapseThreads": true}, "9"]
        ]),
        json!([
            ["error", {"type": "anchorNotFound"}, "0"],
            ["error", {"type": "unsupportedSort", "description": "cannot sort on 'keywords'"}, "1"],
            ["error", {"type": "unsupportedSort", "description": "unknown collation 'i;klingon'"}, "2"],
            ["error", {"type": "unsupportedFilter"}, "3"],
            ["error", {"type": "invalidArguments", "description": "invalid filter condition: unknown field `colour`, expected `hasKeyword` or `text`"}, "4"],
            ["error", {"type": "invalidArguments", "description": "a filter operator must be \"AND\", \"OR\" or \"NOT\", not \"XOR\""}, "5"],
            ["error", {"type": "invalidArguments", "description": "the 'limit' argument is invalid: -1 is negative, an UnsignedInt must be >= 0"}, "6"],
            ["error", {"type": "invalidArguments", "description": "the 'position' argument is invalid: 1.5 is not an integer"}, "7"],
            ["error", {"type": "invalidArguments", "description": "unknown Comparator property 'keyword'"}, "8"],
            ["error", {"type": "invalidArguments", "description": "unknown argument 'collapseThreads'"}, "9"]
        ]),
    );
}

#[test]
fn query_windows_and_totals() {
    check(
        json!([
            ["Todo/query", {"accountId": "x", "sort": [{"property": "title", "isAscending": false}], "calculateTotal": true}, "0"],
            ["Todo/query", {"accountId": "x", "sort": [{"property": "title"}], "position": -2, "limit": 1}, "1"],
            ["Todo/query", {"accountId": "x", "sort": [{"property": "title", "collation": "i;unicode-casemap"}], "anchor": "a", "anchorOffset": -1}, "2"],
            ["Todo/query", {"accountId": "x", "limit": 500}, "3"],
            ["Todo/query", {"accountId": "x", "filter": {"operator": "AND", "conditions": [{"hasKeyword": "music"}, {"operator": "NOT", "conditions": [{"hasKeyword": "video"}]}]}}, "4"]
        ]),
        json!([
            ["Todo/query", {"accountId": "x", "queryState": "y10324", "canCalculateChanges": true, "position": 0, "ids": ["b", "a", "c"], "total": 3, "limit": 50}, "0"],
            ["Todo/query", {"accountId": "x", "queryState": "y10324", "canCalculateChanges": true, "position": 1, "ids": ["a"]}, "1"],
            ["Todo/query", {"accountId": "x", "queryState": "y10324", "canCalculateChanges": true, "position": 0, "ids": ["c", "a", "b"], "limit": 50}, "2"],
            ["Todo/query", {"accountId": "x", "queryState": "y10324", "canCalculateChanges": true, "position": 0, "ids": ["c", "a", "b"], "limit": 50}, "3"],
            ["Todo/query", {"accountId": "x", "queryState": "y10324", "canCalculateChanges": true, "position": 0, "ids": ["a"], "limit": 50}, "4"]
        ]),
    );
}

#[test]
fn get_arguments() {
    check(
        json!([
            ["Todo/get", {"accountId": "x", "ids": ["a", "a", "zz"], "properties": ["title"]}, "0"],
            ["Todo/get", {"accountId": "x", "ids": [], "properties": ["colour"]}, "1"],
            ["Todo/get", {"accountId": "x", "ids": ["bad id"]}, "2"],
            ["Todo/get", {"accountId": "x", "ids": "a"}, "3"],
            ["Todo/get", {"accountId": "x", "ids": [], "frob": 1, "zap": 2}, "4"],
            ["Todo/get", {"accountId": "x", "ids": null, "properties": null}, "5"]
        ]),
        json!([
            ["Todo/get", {"accountId": "x", "state": "10324", "list": [{"id": "a", "title": "Practise Piano"}], "notFound": ["zz"]}, "0"],
            ["error", {"type": "invalidArguments", "description": "unknown property 'colour'"}, "1"],
            ["error", {"type": "invalidArguments", "description": "the 'ids' argument is invalid: an Id may only contain A-Z a-z 0-9 - _, found ' '"}, "2"],
            ["error", {"type": "invalidArguments", "description": "the 'ids' argument is invalid: invalid type: string \"a\", expected a sequence"}, "3"],
            ["error", {"type": "invalidArguments", "description": "unknown arguments 'frob', 'zap'"}, "4"],
            ["Todo/get", {"accountId": "x", "state": "10324", "list": [
                {"id": "a", "title": "Practise Piano", "keywords": {"music": true, "beethoven": true, "mozart": true, "liszt": true, "rachmaninov": true}, "neuralNetworkTimeEstimation": 3600, "subTodoIds": null},
                {"id": "b", "title": "Watch Daft Punk music video", "keywords": {"music": true, "video": true, "trance": true}, "neuralNetworkTimeEstimation": 18000, "subTodoIds": null},
                {"id": "c", "title": "Buy milk", "keywords": {}, "neuralNetworkTimeEstimation": 60, "subTodoIds": null}
            ], "notFound": []}, "5"]
        ]),
    );
}

#[test]
fn set_arguments() {
    check(
        json!([
            ["Todo/set", {"accountId": "x", "create": {"bad key!": {}}}, "0"],
            ["Todo/set", {"accountId": "x", "create": {"k1": "not an object"}}, "1"],
            ["Todo/set", {"accountId": "x", "update": {"a": []}}, "2"],
            ["Todo/set", {"accountId": "x", "destroy": "a"}, "3"],
            ["Todo/set", {"accountId": "x", "ifInState": 5}, "4"],
            ["Todo/set", {"accountId": "x", "onDestroyRemoveEmails": true}, "5"],
            ["Todo/set", {"accountId": "x", "create": null, "update": null, "destroy": null, "ifInState": null}, "6"]
        ]),
        json!([
            ["error", {"type": "invalidArguments", "description": "the 'create' argument is invalid: an Id may only contain A-Z a-z 0-9 - _, found ' '"}, "0"],
            ["error", {"type": "invalidArguments", "description": "the 'create' argument is invalid: invalid type: string \"not an object\", expected a map"}, "1"],
            ["error", {"type": "invalidArguments", "description": "the 'update' argument is invalid: invalid type: sequence, expected a map"}, "2"],
            ["error", {"type": "invalidArguments", "description": "the 'destroy' argument is invalid: invalid type: string \"a\", expected a sequence"}, "3"],
            ["error", {"type": "invalidArguments", "description": "the 'ifInState' argument is invalid: invalid type: integer `5`, expected a string"}, "4"],
            ["error", {"type": "invalidArguments", "description": "unknown argument 'onDestroyRemoveEmails'"}, "5"],
            ["Todo/set", {"accountId": "x", "oldState": "10324", "newState": "10324"}, "6"]
        ]),
    );
}

/// A type's extra arguments come in through ExtraArguments and are no longer unknown.
#[derive(Debug, PartialEq)]
struct MailboxSetExtra {
    on_destroy_remove_emails: bool,
}

impl ExtraArguments for MailboxSetExtra {
    fn take(arguments: &mut Arguments) -> Result<Self, MethodError> {
        Ok(MailboxSetExtra {
            on_destroy_remove_emails: arguments.flag("onDestroyRemoveEmails", false)?,
        })
    }
}

#[derive(Debug, PartialEq)]
struct EmailQueryExtra {
    collapse_threads: bool,
}

impl ExtraArguments for EmailQueryExtra {
    fn take(arguments: &mut Arguments) -> Result<Self, MethodError> {
        Ok(EmailQueryExtra {
            collapse_threads: arguments.flag("collapseThreads", false)?,
        })
    }
    fn comparator_properties() -> &'static [&'static str] {
        &["keyword"]
    }
}

#[test]
fn extra_arguments() {
    let request = SetRequest::<MailboxSetExtra>::from_arguments(object(json!({
        "accountId": "A1", "onDestroyRemoveEmails": true, "destroy": ["m1"]
    })))
    .unwrap();
    assert!(request.extra.on_destroy_remove_emails);
    assert_eq!(request.object_count(), 1);

    let request = QueryRequest::<Value, EmailQueryExtra>::from_arguments(object(json!({
        "accountId": "A1",
        "collapseThreads": true,
        "sort": [{"property": "hasKeyword", "keyword": "$flagged", "isAscending": false}]
    })))
    .unwrap();
    assert!(request.extra.collapse_threads);
    let sort = request.sort.unwrap();
    assert_eq!(sort[0].extra["keyword"], "$flagged");
    assert_eq!(
        serde_json::to_value(&sort[0]).unwrap(),
        json!({"property": "hasKeyword", "isAscending": false, "keyword": "$flagged"})
    );
}

#[test]
fn request_types_parse_every_argument() {
    let get = GetRequest::<NoExtra>::from_arguments(object(
        json!({"accountId": "A1", "ids": ["a", "#k"], "properties": ["x"]}),
    ))
    .unwrap();
    let mut created = CreatedIds::new();
    created.insert(Id::new("k").unwrap(), Id::new("b").unwrap());
    assert_eq!(
        get.resolved_ids(&created).unwrap().unwrap(),
        [Id::new("a").unwrap(), Id::new("b").unwrap()]
    );
    assert_eq!(
        get.properties_checked(&["id", "x", "y"]).unwrap(),
        ["id", "x"]
    );

    let limits = crate::fixture::limits();
    assert!(get.check_fetch_all(11, &limits).is_ok(), "ids were given");
    let all = GetRequest::<NoExtra>::from_arguments(object(json!({"accountId": "A1"}))).unwrap();
    assert!(all.check_fetch_all(10, &limits).is_ok());
    assert_eq!(
        all.check_fetch_all(11, &limits).unwrap_err().to_string(),
        "requestTooLarge: all 11 records requested, more than maxObjectsInGet (10)"
    );

    let changes = ChangesRequest::<NoExtra>::from_arguments(object(
        json!({"accountId": "A1", "sinceState": "s", "maxChanges": 7}),
    ))
    .unwrap();
    assert_eq!(changes.max_changes.unwrap().get(), 7);

    let copy = CopyRequest::<NoExtra>::from_arguments(object(json!({
        "fromAccountId": "A1", "ifFromInState": "f", "accountId": "A2", "ifInState": "t",
        "create": {"c1": {"id": "m1"}}, "onSuccessDestroyOriginal": true, "destroyFromIfInState": "d"
    }))).unwrap();
    assert!(copy.on_success_destroy_original);
    assert_eq!(copy.destroy_from_if_in_state.as_deref(), Some("d"));

    let query = QueryChangesRequest::<TodoCondition>::from_arguments(object(json!({
        "accountId": "A1", "sinceQueryState": "q", "maxChanges": 3, "upToId": "u", "calculateTotal": true,
        "filter": {"hasKeyword": "k"}, "sort": [{"property": "title"}]
    }))).unwrap();
    assert_eq!(query.up_to_id.unwrap().as_str(), "u");
    assert!(matches!(query.filter, Some(Filter::Condition(_))));

    let bad =
        QueryChangesRequest::<TodoCondition>::from_arguments(object(json!({"accountId": "A1"})))
            .unwrap_err();
    assert_eq!(
        bad.description.as_deref(),
        Some("the 'sinceQueryState' argument is required")
    );
}

#[test]
fn filters_nest_and_evaluate() {
    let filter = Filter::<Value>::from_json(json!({
        "operator": "OR",
        "conditions": [
            {"n": 1},
            {"operator": "AND", "conditions": [{"n": 2}, {"operator": "NOT", "conditions": [{"n": 3}]}]}
        ]
    }))
    .unwrap();
    let Filter::Operator(op) = &filter else {
        panic!("an operator")
    };
    assert_eq!(op.operator, Operator::Or);
    assert_eq!(filter.conditions().len(), 3);
    let eval = |x: i64| {
        filter.matches(&mut |c: &Value| match c["n"].as_i64() {
            Some(1) => x == 1,
            Some(2) => x >= 2,
            _ => x == 3,
        })
    };
    assert!(eval(1));
    assert!(eval(2));
    assert!(!eval(3));
    assert!(!eval(0));
    assert_eq!(
        serde_json::to_value(&filter).unwrap()["conditions"][1]["operator"],
        "AND"
    );
    for (bad, message) in [
        (json!([]), "a filter must be an object"),
        (
            json!({"operator": "AND"}),
            "a FilterOperator needs a 'conditions' array",
        ),
        (
            json!({"operator": "AND", "conditions": {}}),
            "a FilterOperator needs a 'conditions' array",
        ),
        (
            json!({"operator": "AND", "conditions": [], "x": 1}),
            "unknown FilterOperator property 'x'",
        ),
        (
            json!({"operator": null, "conditions": []}),
            "a filter operator must be \"AND\", \"OR\" or \"NOT\", not null",
        ),
        (
            json!({"operator": "OR", "conditions": [5]}),
            "a filter must be an object",
        ),
    ] {
        let error = Filter::<Value>::from_json(bad).unwrap_err();
        assert_eq!(error.description.as_deref(), Some(message));
    }
}
