//! The Todo data type of RFC 8620 §5.8, in memory, built on the engine's generic standard-method
//! types the way a real data type would be.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use jmap_engine::standard::{
    AddedItem, ChangesRequest, ChangesResponse, CopyRequest, CopyResponse, GetRequest, GetResponse,
    QueryChangesRequest, QueryChangesResponse, QueryRequest, SetRequest, SetResponse,
};
use jmap_engine::{
    CreatedIds, Engine, FnHandler, Id, IdRef, MethodCall, MethodError, MethodOutput, NoExtra,
    SetError, UnsignedInt,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::fixture::{Directory, TODO};

pub const PROPERTIES: &[&str] = &[
    "id",
    "title",
    "keywords",
    "neuralNetworkTimeEstimation",
    "subTodoIds",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Created,
    Updated,
    Destroyed,
}

#[derive(Debug, Default)]
pub struct TodoStore {
    modseq: u64,
    todos: BTreeMap<Id, Map<String, Value>>,
    log: Vec<(u64, Id, Change)>,
    next_id: u64,
}

impl TodoStore {
    fn state(&self) -> String {
        self.modseq.to_string()
    }

    fn record(&mut self, id: Id, change: Change) {
        self.modseq += 1;
        self.log.push((self.modseq, id, change));
    }

    fn new_id(&mut self) -> Id {
        self.next_id += 1;
        Id::new(format!("T{}", self.next_id)).unwrap()
    }
}

type Stores = Arc<Mutex<BTreeMap<Id, TodoStore>>>;

fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

/// Account x holds the Todos of the RFC's examples at state 10324; y is empty.
pub fn seeded() -> Stores {
    let mut x = TodoStore {
        modseq: 10324,
        next_id: 0,
        ..TodoStore::default()
    };
    let todos = [
        json!({"id": "a", "title": "Practise Piano",
               "keywords": {"music": true, "beethoven": true, "mozart": true, "liszt": true, "rachmaninov": true},
               "neuralNetworkTimeEstimation": 3600, "subTodoIds": null}),
        json!({"id": "b", "title": "Watch Daft Punk music video",
               "keywords": {"music": true, "video": true, "trance": true},
               "neuralNetworkTimeEstimation": 18000, "subTodoIds": null}),
        json!({"id": "c", "title": "Buy milk", "keywords": {},
               "neuralNetworkTimeEstimation": 60, "subTodoIds": null}),
    ];
    for todo in todos {
        let todo = todo.as_object().cloned().unwrap();
        x.todos.insert(id(todo["id"].as_str().unwrap()), todo);
    }
    let mut stores = BTreeMap::new();
    stores.insert(id("x"), x);
    stores.insert(id("y"), TodoStore::default());
    stores.insert(id("ro"), TodoStore::default());
    Arc::new(Mutex::new(stores))
}

pub fn register(engine: &mut Engine<Directory>) {
    let stores = seeded();
    let s = stores.clone();
    engine.register(
        "Todo/get",
        TODO,
        FnHandler(move |call: MethodCall<'_, Directory>| get(&s, call)),
    );
    let s = stores.clone();
    engine.register(
        "Todo/set",
        TODO,
        FnHandler(move |call: MethodCall<'_, Directory>| set(&s, call)),
    );
    let s = stores.clone();
    engine.register(
        "Todo/changes",
        TODO,
        FnHandler(move |call: MethodCall<'_, Directory>| changes(&s, call)),
    );
    let s = stores.clone();
    engine.register(
        "Todo/query",
        TODO,
        FnHandler(move |call: MethodCall<'_, Directory>| query(&s, call)),
    );
    let s = stores.clone();
    engine.register(
        "Todo/queryChanges",
        TODO,
        FnHandler(move |call: MethodCall<'_, Directory>| query_changes(&s, call)),
    );
    engine.register(
        "Todo/copy",
        TODO,
        FnHandler(move |call: MethodCall<'_, Directory>| copy(&stores, call)),
    );
}

fn get(stores: &Stores, call: MethodCall<'_, Directory>) -> Result<MethodOutput, MethodError> {
    let request = GetRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
    let properties = request.properties_checked(PROPERTIES)?;
    let ids = request.resolved_ids(call.created_ids)?;
    let stores = stores.lock().unwrap();
    let store = &stores[&call.account()?.id];
    let ids = ids.unwrap_or_else(|| store.todos.keys().cloned().collect());
    let mut response = GetResponse {
        account_id: request.account_id.clone(),
        state: store.state(),
        list: Vec::new(),
        not_found: Vec::new(),
    };
    for id in ids {
        match store.todos.get(&id) {
            Some(todo) => response.list.push(
                todo.iter()
                    .filter(|(k, _)| properties.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Map<_, _>>(),
            ),
            None => response.not_found.push(id),
        }
    }
    Ok(call.reply(response.to_arguments()))
}

fn estimate(todo: &Map<String, Value>) -> Value {
    let keywords = todo
        .get("keywords")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    json!(900 * (keywords + 1))
}

/// Checks a Todo's client-settable properties, resolving `#creationId`s in `subTodoIds`.
fn validate(todo: &mut Map<String, Value>, created: &CreatedIds) -> Result<(), SetError> {
    let mut invalid = Vec::new();
    if !todo.get("title").is_some_and(Value::is_string) {
        invalid.push("title");
    }
    match todo.get("keywords") {
        Some(Value::Object(k)) if k.values().all(|v| *v == json!(true)) => {}
        _ => invalid.push("keywords"),
    }
    match todo.get_mut("subTodoIds") {
        Some(Value::Null) => {}
        Some(Value::Array(ids)) => {
            for item in ids.iter_mut() {
                match item.as_str().and_then(|s| created.resolve_str(s)) {
                    Some(resolved) => *item = json!(resolved),
                    None => {
                        invalid.push("subTodoIds");
                        break;
                    }
                }
            }
        }
        _ => invalid.push("subTodoIds"),
    }
    if let Some(unknown) = todo.keys().find(|k| !PROPERTIES.contains(&k.as_str())) {
        return Err(SetError::invalid_properties([unknown.clone()]));
    }
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(SetError::invalid_properties(invalid))
    }
}

fn set(stores: &Stores, call: MethodCall<'_, Directory>) -> Result<MethodOutput, MethodError> {
    let request = SetRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
    let mut stores = stores.lock().unwrap();
    let store = stores
        .get_mut(&call.account()?.id)
        .ok_or_else(MethodError::account_not_found)?;
    let output = apply_set(store, &request, call.created_ids)?;
    Ok(call.reply(output.to_arguments()))
}

fn apply_set(
    store: &mut TodoStore,
    request: &SetRequest,
    created_before: &CreatedIds,
) -> Result<SetResponse, MethodError> {
    request.check_state(&store.state())?;
    let mut response = SetResponse::new(
        request.account_id.clone(),
        Some(store.state()),
        String::new(),
    );
    let mut created = created_before.clone();
    for (creation_id, record) in request.create.iter().flatten() {
        if record.contains_key("id") || record.contains_key("neuralNetworkTimeEstimation") {
            let server_set = ["id", "neuralNetworkTimeEstimation"]
                .into_iter()
                .filter(|p| record.contains_key(*p));
            response.add_not_created(
                creation_id.clone(),
                SetError::invalid_properties(server_set),
            );
            continue;
        }
        let mut todo = record.clone();
        todo.entry("keywords").or_insert(json!({}));
        todo.entry("subTodoIds").or_insert(Value::Null);
        if let Err(error) = validate(&mut todo, &created) {
            response.add_not_created(creation_id.clone(), error);
            continue;
        }
        let new_id = store.new_id();
        todo.insert("id".into(), json!(new_id));
        todo.insert("neuralNetworkTimeEstimation".into(), estimate(&todo));
        let mut server_set = Map::new();
        for property in PROPERTIES {
            if !record.contains_key(*property) {
                server_set.insert((*property).to_owned(), todo[*property].clone());
            }
        }
        store.todos.insert(new_id.clone(), todo);
        store.record(new_id.clone(), Change::Created);
        created.insert(creation_id.clone(), new_id);
        response.add_created(creation_id.clone(), server_set);
    }
    let destroying: BTreeSet<Id> = request
        .destroy
        .iter()
        .flatten()
        .filter_map(|r| created.resolve(r))
        .collect();
    for (target, patch) in request.update.iter().flatten() {
        let Some(todo_id) = created.resolve(target) else {
            response.add_not_updated(target.clone(), SetError::not_found());
            continue;
        };
        let Some(current) = store.todos.get(&todo_id).cloned() else {
            response.add_not_updated(target.clone(), SetError::not_found());
            continue;
        };
        if destroying.contains(&todo_id) {
            response.add_not_updated(target.clone(), SetError::will_destroy());
            continue;
        }
        let mut patched = match patch.apply(&Value::Object(current.clone())) {
            Ok(Value::Object(patched)) => patched,
            Ok(_) => unreachable!("a patched object stays an object"),
            Err(error) => {
                response.add_not_updated(target.clone(), error.into());
                continue;
            }
        };
        let changed_server_set: Vec<&str> = ["id", "neuralNetworkTimeEstimation"]
            .into_iter()
            .filter(|p| patched.get(*p) != current.get(*p))
            .collect();
        if !changed_server_set.is_empty() {
            response.add_not_updated(
                target.clone(),
                SetError::invalid_properties(changed_server_set),
            );
            continue;
        }
        if let Err(error) = validate(&mut patched, &created) {
            response.add_not_updated(target.clone(), error);
            continue;
        }
        let new_estimate = estimate(&patched);
        let unrequested =
            (current.get("neuralNetworkTimeEstimation") != Some(&new_estimate)).then(|| {
                let mut changed = Map::new();
                changed.insert("neuralNetworkTimeEstimation".into(), new_estimate.clone());
                changed
            });
        patched.insert("neuralNetworkTimeEstimation".into(), new_estimate);
        store.todos.insert(todo_id.clone(), patched);
        store.record(todo_id.clone(), Change::Updated);
        response.add_updated(todo_id, unrequested);
    }
    for target in request.destroy.iter().flatten() {
        match created.resolve(target) {
            Some(todo_id) if store.todos.remove(&todo_id).is_some() => {
                store.record(todo_id.clone(), Change::Destroyed);
                response.add_destroyed(todo_id);
            }
            _ => response.add_not_destroyed(target.clone(), SetError::not_found()),
        }
    }
    response.new_state = store.state();
    Ok(response)
}

fn changes(stores: &Stores, call: MethodCall<'_, Directory>) -> Result<MethodOutput, MethodError> {
    let request = ChangesRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
    let stores = stores.lock().unwrap();
    let store = &stores[&call.account()?.id];
    let since: u64 = request
        .since_state
        .parse()
        .map_err(|_| MethodError::cannot_calculate_changes())?;
    if since > store.modseq {
        return Err(MethodError::cannot_calculate_changes());
    }
    let max = request.max_changes.map_or(usize::MAX, |m| m.get() as usize);
    // Per id: was it there at `since`, and is it there at the new state.
    let mut seen: BTreeMap<Id, (bool, bool)> = BTreeMap::new();
    let mut new_state = since;
    for (seq, todo_id, change) in store.log.iter().filter(|(seq, _, _)| *seq > since) {
        if !seen.contains_key(todo_id) && seen.len() == max {
            break;
        }
        let entry = seen
            .entry(todo_id.clone())
            .or_insert((*change != Change::Created, true));
        entry.1 = *change != Change::Destroyed;
        new_state = *seq;
    }
    let mut response = ChangesResponse {
        account_id: request.account_id.clone(),
        old_state: request.since_state.clone(),
        new_state: new_state.to_string(),
        has_more_changes: new_state < store.modseq,
        created: Vec::new(),
        updated: Vec::new(),
        destroyed: Vec::new(),
        extra: NoExtra {},
    };
    for (todo_id, (existed, exists)) in seen {
        match (existed, exists) {
            (false, true) => response.created.push(todo_id),
            (true, true) => response.updated.push(todo_id),
            (true, false) => response.destroyed.push(todo_id),
            (false, false) => {}
        }
    }
    Ok(call.reply(response.to_arguments()))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TodoCondition {
    has_keyword: Option<String>,
    /// Accepted by the syntax, refused as `unsupportedFilter`.
    text: Option<String>,
}

fn results(
    store: &TodoStore,
    filter: Option<&jmap_engine::standard::Filter<TodoCondition>>,
    sort: Option<&Vec<jmap_engine::standard::Comparator>>,
    collations: &[String],
) -> Result<Vec<Id>, MethodError> {
    if let Some(filter) = filter
        && filter.conditions().iter().any(|c| c.text.is_some())
    {
        return Err(MethodError::unsupported_filter());
    }
    let mut ascending = true;
    for comparator in sort.into_iter().flatten() {
        comparator.check_supported(&["title"], collations)?;
        ascending = comparator.is_ascending;
    }
    let mut matching: Vec<(&str, &Id)> = store
        .todos
        .iter()
        .filter(|(_, todo)| {
            filter.is_none_or(|f| {
                f.matches(&mut |c: &TodoCondition| {
                    c.has_keyword
                        .as_ref()
                        .is_none_or(|k| todo["keywords"].get(k).is_some())
                })
            })
        })
        .map(|(todo_id, todo)| (todo["title"].as_str().unwrap_or_default(), todo_id))
        .collect();
    matching.sort();
    if !ascending {
        matching.reverse();
    }
    Ok(matching.into_iter().map(|(_, id)| id.clone()).collect())
}

fn query(stores: &Stores, call: MethodCall<'_, Directory>) -> Result<MethodOutput, MethodError> {
    let request = QueryRequest::<TodoCondition>::from_arguments(call.arguments.clone())?;
    let stores = stores.lock().unwrap();
    let store = &stores[&call.account()?.id];
    let all = results(
        store,
        request.filter.as_ref(),
        request.sort.as_ref(),
        &call.core.collation_algorithms,
    )?;
    let page = request.paginate(&all, Some(50))?;
    let response = request.respond(page, format!("y{}", store.modseq), true);
    Ok(call.reply(response.to_arguments()))
}

fn query_changes(
    stores: &Stores,
    call: MethodCall<'_, Directory>,
) -> Result<MethodOutput, MethodError> {
    let request = QueryChangesRequest::<TodoCondition>::from_arguments(call.arguments.clone())?;
    let stores = stores.lock().unwrap();
    let store = &stores[&call.account()?.id];
    let since: u64 = request
        .since_query_state
        .strip_prefix('y')
        .and_then(|n| n.parse().ok())
        .ok_or_else(MethodError::cannot_calculate_changes)?;
    let all = results(
        store,
        request.filter.as_ref(),
        request.sort.as_ref(),
        &call.core.collation_algorithms,
    )?;
    // keywords are mutable, so every changed Todo is removed and re-added where it now is.
    let changed: BTreeSet<&Id> = store
        .log
        .iter()
        .filter(|(seq, _, _)| *seq > since)
        .map(|(_, todo_id, _)| todo_id)
        .collect();
    let removed: Vec<Id> = changed.iter().map(|id| (*id).clone()).collect();
    let added: Vec<AddedItem> = all
        .iter()
        .enumerate()
        .filter(|(_, id)| changed.contains(id))
        .map(|(index, id)| AddedItem {
            id: id.clone(),
            index: UnsignedInt::from_usize(index),
        })
        .collect();
    request.check_max_changes(removed.len(), added.len())?;
    let response = QueryChangesResponse {
        account_id: request.account_id.clone(),
        old_query_state: request.since_query_state.clone(),
        new_query_state: format!("y{}", store.modseq),
        total: request
            .calculate_total
            .then(|| UnsignedInt::from_usize(all.len())),
        removed,
        added,
    };
    Ok(call.reply(response.to_arguments()))
}

fn copy(stores: &Stores, call: MethodCall<'_, Directory>) -> Result<MethodOutput, MethodError> {
    let request = CopyRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
    let mut stores = stores.lock().unwrap();
    let from_id = call.from_account()?.id.clone();
    let to_id = call.account()?.id.clone();
    let from_state = stores[&from_id].state();
    if request
        .if_from_in_state
        .as_ref()
        .is_some_and(|s| *s != from_state)
    {
        return Err(MethodError::state_mismatch());
    }
    let mut copies = Vec::new();
    let mut response = {
        let to = &stores[&to_id];
        if request
            .if_in_state
            .as_ref()
            .is_some_and(|s| *s != to.state())
        {
            return Err(MethodError::state_mismatch());
        }
        CopyResponse::new(
            from_id.clone(),
            to_id.clone(),
            Some(to.state()),
            String::new(),
        )
    };
    for (creation_id, record) in &request.create {
        let source = match CopyRequest::<NoExtra>::source_id(record, call.created_ids) {
            Ok(source) => source,
            Err(error) => {
                response.add_not_created(creation_id.clone(), error);
                continue;
            }
        };
        let Some(original) = stores[&from_id].todos.get(&source).cloned() else {
            response.add_not_created(creation_id.clone(), SetError::not_found());
            continue;
        };
        let mut todo = original;
        for (k, v) in record {
            if k != "id" {
                todo.insert(k.clone(), v.clone());
            }
        }
        copies.push((creation_id.clone(), source, todo));
    }
    let mut copied_originals = Vec::new();
    {
        let to = stores.get_mut(&to_id).unwrap();
        for (creation_id, source, mut todo) in copies {
            let new_id = Id::new(format!("DAf{}", 97 + to.next_id)).unwrap();
            to.next_id += 1;
            todo.insert("id".into(), json!(new_id));
            to.todos.insert(new_id.clone(), todo);
            to.record(new_id.clone(), Change::Created);
            let mut server_set = Map::new();
            server_set.insert("id".into(), json!(new_id));
            response.add_created(creation_id, server_set);
            copied_originals.push(IdRef::Id(source));
        }
        response.new_state = to.state();
    }
    let mut output = call.reply(response.to_arguments());
    if request.on_success_destroy_original && !copied_originals.is_empty() {
        let destroy = SetRequest {
            account_id: from_id.clone(),
            if_in_state: request.destroy_from_if_in_state.clone(),
            create: None,
            update: None,
            destroy: Some(copied_originals),
            extra: NoExtra {},
        };
        let from = stores.get_mut(&from_id).unwrap();
        output = match apply_set(from, &destroy, call.created_ids) {
            Ok(set) => output.and_then("Todo/set", set.to_arguments()),
            Err(error) => output.and_then("error", error.to_arguments()),
        };
    }
    Ok(output)
}
