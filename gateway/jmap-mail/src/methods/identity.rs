//! Identity (RFC 8621 §6): get, changes and set over records kept in the store
//! (`DataType::Identity`, JSON objects without their id).
//!
//! Every account that has an address gets one Identity for it without asking: its id is
//! derived from the address, it is written only when absent (so reading never makes a state
//! change once it exists) and it cannot be destroyed (`mayDelete: false`). Further identities
//! may be created, but only for the account's own address (anything else is
//! `forbiddenFrom`): upstream accepts mail only from that address.
//!
//! Also home to the helpers the other store-backed JSON types here (EmailSubmission,
//! VacationResponse) share: random ids, loading records, the standard /get and /changes.

use std::collections::BTreeSet;

use jmap_engine::standard::{ChangesRequest, GetRequest, GetResponse, SetRequest, SetResponse};
use jmap_engine::{
    AccountDirectory, Engine, Handler, HandlerFuture, Id, IdRef, MethodCall, MethodError,
    MethodOutput, NoExtra, SetError, SetErrorType,
};
use serde_json::{Map, Value, json};
use state::{AccountId, AsyncStore, Commit, DataType, ObjectId, State};

use super::{MailAccount, SUBMISSION, jmap_id, store_error};

/// Serializes writes of Identity records (seeding and Identity/set), so a seed written by a
/// racing /get cannot overwrite an update made in between.
static IDENTITY_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The properties of an Identity, `id` first.
const PROPERTIES: [&str; 8] = [
    "id",
    "name",
    "email",
    "replyTo",
    "bcc",
    "textSignature",
    "htmlSignature",
    "mayDelete",
];

/// The properties a client may give on create (and change on update, except `email`).
const CLIENT_PROPERTIES: [&str; 6] = [
    "name",
    "email",
    "replyTo",
    "bcc",
    "textSignature",
    "htmlSignature",
];

// ---------------------------------------------------------------------------------------
// Helpers shared by the store-backed JSON types of this module tree.

/// A fresh random id: `prefix` then 20 hex digits.
pub(super) fn new_id(prefix: char) -> Result<Id, MethodError> {
    use ring::rand::SecureRandom;
    let mut buf = [0u8; 10];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| MethodError::server_fail("no randomness"))?;
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    Id::new(format!("{prefix}{hex}")).map_err(|e| MethodError::server_fail(e.to_string()))
}

fn to_object_id(id: &Id) -> Result<ObjectId, MethodError> {
    ObjectId::new(id.as_str()).map_err(|e| MethodError::server_fail(e.to_string()))
}

fn parse_record(bytes: &[u8]) -> Result<Map<String, Value>, MethodError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(MethodError::server_fail(
            "a stored record is not a JSON object",
        )),
    }
}

/// Every record of a type, with the state it was read at.
pub(super) async fn load_all(
    store: &AsyncStore,
    a: AccountId,
    t: DataType,
) -> Result<(State, Vec<(Id, Map<String, Value>)>), MethodError> {
    let (state, ids) = store.run(move |s| s.ids(a, t)).await.map_err(store_error)?;
    if ids.is_empty() {
        return Ok((state, Vec::new()));
    }
    let (state, rows) = store
        .get_many(a, t, ids.clone())
        .await
        .map_err(store_error)?;
    let mut out = Vec::with_capacity(ids.len());
    for (id, row) in ids.iter().zip(rows) {
        if let Some(bytes) = row {
            out.push((jmap_id(id)?, parse_record(&bytes)?));
        }
    }
    Ok((state, out))
}

/// One record, if it exists (an id the store cannot hold cannot exist).
pub(super) async fn load_one(
    store: &AsyncStore,
    a: AccountId,
    t: DataType,
    id: &Id,
) -> Result<Option<Map<String, Value>>, MethodError> {
    let Ok(oid) = ObjectId::new(id.as_str()) else {
        return Ok(None);
    };
    let (_, rows) = store.get_many(a, t, vec![oid]).await.map_err(store_error)?;
    match rows.into_iter().next().flatten() {
        Some(bytes) => Ok(Some(parse_record(&bytes)?)),
        None => Ok(None),
    }
}

/// The standard /get over stored JSON records; `known` lists the properties, `id` first.
pub(super) async fn stored_get<D: AccountDirectory>(
    call: &MethodCall<'_, D>,
    store: &AsyncStore,
    a: AccountId,
    t: DataType,
    known: &[&str],
) -> Result<Map<String, Value>, MethodError> {
    let request = GetRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
    let properties = request.properties_checked(known)?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    let state = match request.resolved_ids(call.created_ids)? {
        None => {
            let (state, all) = load_all(store, a, t).await?;
            request.check_fetch_all(all.len(), call.limits())?;
            for (id, record) in all {
                list.push(shape(id, record, &properties));
            }
            state
        }
        Some(ids) => {
            let valid: Vec<(Id, ObjectId)> = ids
                .iter()
                .filter_map(|id| ObjectId::new(id.as_str()).ok().map(|o| (id.clone(), o)))
                .collect();
            let (state, rows) = store
                .get_many(a, t, valid.iter().map(|(_, o)| o.clone()).collect())
                .await
                .map_err(store_error)?;
            let mut found = BTreeSet::new();
            for ((id, _), row) in valid.into_iter().zip(rows) {
                if let Some(bytes) = row {
                    found.insert(id.clone());
                    list.push(shape(id, parse_record(&bytes)?, &properties));
                }
            }
            not_found.extend(ids.into_iter().filter(|id| !found.contains(id)));
            state
        }
    };
    Ok(GetResponse {
        account_id: request.account_id,
        state: state.to_string(),
        list,
        not_found,
    }
    .to_arguments())
}

fn shape(id: Id, mut record: Map<String, Value>, properties: &[String]) -> Map<String, Value> {
    record.insert("id".into(), Value::String(id.into_string()));
    record.retain(|k, _| properties.iter().any(|p| p == k));
    record
}

/// The standard /changes from the store's change log.
pub(super) async fn stored_changes<D: AccountDirectory>(
    call: &MethodCall<'_, D>,
    store: &AsyncStore,
    a: AccountId,
    t: DataType,
) -> Result<Map<String, Value>, MethodError> {
    let request = ChangesRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
    Ok(
        super::common::changes_from_log(store, a, t, request, |_| NoExtra {})
            .await?
            .to_arguments(),
    )
}

/// Resolves an id that may be a `#creationId` of this call (`here`) or of earlier calls.
pub(super) fn resolve_ref<D: AccountDirectory>(
    call: &MethodCall<'_, D>,
    here: &[(Id, Id)],
    id: &IdRef,
) -> Option<Id> {
    match id {
        IdRef::Id(id) => Some(id.clone()),
        IdRef::Creation(c) => here
            .iter()
            .find(|(k, _)| k == c)
            .map(|(_, v)| v.clone())
            .or_else(|| call.created_ids.get(c.as_str()).cloned()),
    }
}

/// Properties of `object` that are not in `allowed`, as an `invalidProperties` error.
pub(super) fn only_properties(
    object: &Map<String, Value>,
    allowed: &[&str],
) -> Result<(), SetError> {
    let bad: Vec<String> = object
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .cloned()
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(SetError::invalid_properties(bad)
            .with_description("unknown, immutable or server-set properties"))
    }
}

fn json_bytes(v: &Map<String, Value>) -> Result<Vec<u8>, MethodError> {
    serde_json::to_vec(v).map_err(|e| MethodError::server_fail(e.to_string()))
}

// ---------------------------------------------------------------------------------------
// Identity.

/// The id of the Identity seeded for `address`: stable across restarts and rebuilds.
pub(super) fn seeded_id(address: &str) -> String {
    use base64::Engine as _;
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("identity\0{}", address.to_ascii_lowercase()).as_bytes(),
    );
    format!(
        "I{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d.as_ref()[..12])
    )
}

fn seeded_record(address: &str) -> Map<String, Value> {
    let name = address.split_once('@').map_or("", |(local, _)| local);
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("email".into(), json!(address));
    m.insert("replyTo".into(), Value::Null);
    m.insert("bcc".into(), Value::Null);
    m.insert("textSignature".into(), json!(""));
    m.insert("htmlSignature".into(), json!(""));
    m.insert("mayDelete".into(), json!(false));
    m
}

/// Writes the account's seeded Identity if it is not there yet. Once it exists this is one
/// point read and no write.
pub(super) async fn ensure_seeded<A: MailAccount>(account: &A) -> Result<(), MethodError> {
    let Some(address) = account.address() else {
        return Ok(());
    };
    let (store, a) = (account.store(), account.store_id());
    let id =
        ObjectId::new(seeded_id(address)).map_err(|e| MethodError::server_fail(e.to_string()))?;
    let exists = |id: ObjectId| async move {
        store
            .run(move |s| s.get(a, DataType::Identity, &id))
            .await
            .map(|v| v.is_some())
            .map_err(store_error)
    };
    if exists(id.clone()).await? {
        return Ok(());
    }
    let _guard = IDENTITY_WRITES.lock().await;
    if exists(id.clone()).await? {
        return Ok(());
    }
    let mut c = Commit::new(a);
    c.put(DataType::Identity, id, json_bytes(&seeded_record(address))?);
    store.commit(c).await.map_err(store_error)?;
    Ok(())
}

/// An Identity by id (after seeding), for EmailSubmission.
pub(super) async fn identity<A: MailAccount>(
    account: &A,
    id: &Id,
) -> Result<Option<Map<String, Value>>, MethodError> {
    ensure_seeded(account).await?;
    load_one(account.store(), account.store_id(), DataType::Identity, id).await
}

fn is_email_addresses(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.iter().all(|a| {
            let Value::Object(o) = a else { return false };
            matches!(o.get("email"), Some(Value::String(_)))
                && matches!(
                    o.get("name"),
                    None | Some(Value::Null) | Some(Value::String(_))
                )
                && o.keys().all(|k| k == "name" || k == "email")
        }),
        _ => false,
    }
}

/// Type checks of a whole Identity record (client properties only).
fn check_types(record: &Map<String, Value>) -> Result<(), SetError> {
    let mut bad = Vec::new();
    for (k, v) in record {
        let ok = match k.as_str() {
            "name" | "email" | "textSignature" | "htmlSignature" => v.is_string(),
            "replyTo" | "bcc" => is_email_addresses(v),
            "mayDelete" => v.is_boolean(),
            _ => false,
        };
        if !ok {
            bad.push(k.clone());
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(SetError::invalid_properties(bad))
    }
}

fn may_send_from(account_address: Option<&str>, email: &str) -> bool {
    account_address.is_some_and(|a| a.eq_ignore_ascii_case(email.trim()))
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Changes,
    Set,
}

#[derive(Debug, Clone, Copy)]
struct IdentityMethod(Op);

impl<D> Handler<D> for IdentityMethod
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let account = call.account()?.clone();
            ensure_seeded(&account).await?;
            let (store, a) = (account.store(), account.store_id());
            let arguments = match self.0 {
                Op::Get => stored_get(&call, store, a, DataType::Identity, &PROPERTIES).await?,
                Op::Changes => stored_changes(&call, store, a, DataType::Identity).await?,
                Op::Set => set(&call, &account).await?,
            };
            Ok(MethodOutput::new(call.name.clone(), arguments))
        })
    }
}

async fn set<D>(
    call: &MethodCall<'_, D>,
    account: &D::Account,
) -> Result<Map<String, Value>, MethodError>
where
    D: AccountDirectory,
    D::Account: MailAccount,
{
    let request = SetRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
    let _guard = IDENTITY_WRITES.lock().await;
    let (store, a, t) = (account.store(), account.store_id(), DataType::Identity);
    let old_state = store.state(a, t).await.map_err(store_error)?.to_string();
    request.check_state(&old_state)?;
    let mut response: SetResponse = SetResponse::new(
        request.account_id.clone(),
        Some(old_state.clone()),
        old_state,
    );
    let mut commit = Commit::new(a);
    let mut created_here: Vec<(Id, Id)> = Vec::new();

    for (creation_id, object) in request.create.clone().unwrap_or_default() {
        if let Err(e) =
            only_properties(&object, &CLIENT_PROPERTIES).and_then(|()| check_types(&object))
        {
            response.add_not_created(creation_id, e);
            continue;
        }
        let Some(Value::String(email)) = object.get("email") else {
            response.add_not_created(
                creation_id,
                SetError::invalid_properties(["email"]).with_description("email is required"),
            );
            continue;
        };
        if !may_send_from(account.address(), email) {
            response.add_not_created(
                creation_id,
                SetError::new(SetErrorType::ForbiddenFrom)
                    .with_description("this account may only send from its own address"),
            );
            continue;
        }
        let mut record = seeded_record(email);
        record.insert("name".into(), json!(""));
        record.insert("mayDelete".into(), json!(true));
        let mut server_set = Map::new();
        for (k, v) in &record {
            if !object.contains_key(k) {
                server_set.insert(k.clone(), v.clone());
            }
        }
        record.extend(object);
        let id = new_id('I')?;
        commit.put(t, to_object_id(&id)?, json_bytes(&record)?);
        server_set.insert("id".into(), json!(id.as_str()));
        response.add_created(creation_id.clone(), server_set);
        created_here.push((creation_id, id));
    }

    let destroy: Vec<(IdRef, Option<Id>)> = request
        .destroy
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let id = resolve_ref(call, &created_here, &r);
            (r, id)
        })
        .collect();
    for (id_ref, patch) in request.update.clone().unwrap_or_default() {
        let Some(id) = resolve_ref(call, &created_here, &id_ref) else {
            response.add_not_updated(id_ref, SetError::not_found());
            continue;
        };
        if destroy.iter().any(|(_, d)| d.as_ref() == Some(&id)) {
            response.add_not_updated(id_ref, SetError::will_destroy());
            continue;
        }
        // A record created in this call is not in the store yet: it is not updatable here.
        let Some(current) = load_one(store, a, t, &id).await? else {
            response.add_not_updated(id_ref, SetError::not_found());
            continue;
        };
        let patched = match patch.apply(&Value::Object(current.clone())) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                response.add_not_updated(id_ref, SetError::invalid_patch("not an object"));
                continue;
            }
            Err(e) => {
                response.add_not_updated(id_ref, SetError::from(e));
                continue;
            }
        };
        let changed_fixed: Vec<&str> = ["id", "email", "mayDelete"]
            .into_iter()
            .filter(|p| patched.get(*p) != current.get(*p))
            .collect();
        if !changed_fixed.is_empty() {
            response.add_not_updated(
                id_ref,
                SetError::invalid_properties(changed_fixed)
                    .with_description("id and email are immutable, mayDelete is server-set"),
            );
            continue;
        }
        if let Err(e) = check_types(&patched) {
            response.add_not_updated(id_ref, e);
            continue;
        }
        commit.put(t, to_object_id(&id)?, json_bytes(&patched)?);
        response.add_updated(id, None);
    }

    for (id_ref, id) in destroy {
        let Some(id) = id else {
            response.add_not_destroyed(id_ref, SetError::not_found());
            continue;
        };
        if created_here.iter().any(|(_, c)| c == &id) {
            commit.destroy(t, to_object_id(&id)?);
            response.add_destroyed(id);
            continue;
        }
        let Some(current) = load_one(store, a, t, &id).await? else {
            response.add_not_destroyed(id_ref, SetError::not_found());
            continue;
        };
        if current.get("mayDelete") != Some(&Value::Bool(true)) {
            response.add_not_destroyed(
                id_ref,
                SetError::forbidden().with_description("this Identity cannot be deleted"),
            );
            continue;
        }
        commit.destroy(t, to_object_id(&id)?);
        response.add_destroyed(id);
    }

    if !commit.is_empty() {
        let committed = store.commit(commit).await.map_err(store_error)?;
        if let Some(state) = committed.state(t) {
            response.new_state = state.to_string();
        }
    }
    Ok(response.to_arguments())
}

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    // RFC 8621 §1.3.2: Identity belongs to the submission capability.
    engine.register("Identity/get", SUBMISSION, IdentityMethod(Op::Get));
    engine.register("Identity/changes", SUBMISSION, IdentityMethod(Op::Changes));
    engine.register("Identity/set", SUBMISSION, IdentityMethod(Op::Set));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::super::testing::Fixture;
    use super::*;

    #[tokio::test]
    async fn the_seeded_identity_appears_once_and_stays_quiet() {
        let f = Fixture::new();
        let r = f.ok("Identity/get", json!({"ids": null})).await;
        let list = r["list"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        let seeded = &list[0];
        assert_eq!(seeded["id"], json!(seeded_id("alice@example.com")));
        assert_eq!(seeded["email"], json!("alice@example.com"));
        assert_eq!(seeded["name"], json!("alice"));
        assert_eq!(seeded["mayDelete"], json!(false));
        assert_eq!(seeded["replyTo"], Value::Null);
        assert_eq!(seeded["textSignature"], json!(""));
        let state = r["state"].clone();
        // A second read is no change.
        let again = f.ok("Identity/get", json!({"ids": null})).await;
        assert_eq!(again["state"], state);
        let changes = f.ok("Identity/changes", json!({"sinceState": state})).await;
        assert_eq!(changes["created"], json!([]));
        assert_eq!(changes["newState"], state);
    }

    #[tokio::test]
    async fn properties_and_not_found() {
        let f = Fixture::new();
        let id = seeded_id("alice@example.com");
        let r = f
            .ok(
                "Identity/get",
                json!({"ids": [id, "Inope"], "properties": ["email"]}),
            )
            .await;
        assert_eq!(r["list"], json!([{"id": id, "email": "alice@example.com"}]));
        assert_eq!(r["notFound"], json!(["Inope"]));
        let bad = f
            .call("Identity/get", json!({"properties": ["colour"]}))
            .await;
        assert_eq!(bad[0][1]["type"], json!("invalidArguments"));
    }

    #[tokio::test]
    async fn create_update_destroy() {
        let f = Fixture::new();
        let state0 = f.ok("Identity/get", json!({"ids": []})).await["state"].clone();
        let r = f
            .ok(
                "Identity/set",
                json!({
                    "ifInState": state0,
                    "create": {
                        "work": {"email": "Alice@Example.com", "name": "Alice at work",
                                 "bcc": [{"name": null, "email": "archive@example.com"}]},
                        "other": {"email": "mallory@example.com"},
                        "typo": {"email": "alice@example.com", "replyTo": "x"},
                        "server": {"email": "alice@example.com", "mayDelete": false}
                    }
                }),
            )
            .await;
        let created = &r["created"]["work"];
        let work = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["mayDelete"], json!(true));
        assert_eq!(created["textSignature"], json!(""));
        assert!(created.get("name").is_none());
        assert_eq!(r["notCreated"]["other"]["type"], json!("forbiddenFrom"));
        assert_eq!(r["notCreated"]["typo"]["type"], json!("invalidProperties"));
        assert_eq!(r["notCreated"]["typo"]["properties"], json!(["replyTo"]));
        assert_eq!(
            r["notCreated"]["server"]["type"],
            json!("invalidProperties")
        );
        assert_ne!(r["newState"], r["oldState"]);

        let seeded = seeded_id("alice@example.com");
        let r = f
            .ok(
                "Identity/set",
                json!({"update": {
                    work.clone(): {"textSignature": "-- \nA"},
                    seeded.clone(): {"email": "bob@example.com"},
                    "Inope": {"name": "x"}
                }}),
            )
            .await;
        assert_eq!(r["updated"], json!({work.clone(): null}));
        assert_eq!(r["notUpdated"][&seeded]["type"], json!("invalidProperties"));
        assert_eq!(r["notUpdated"]["Inope"]["type"], json!("notFound"));
        let got = f.ok("Identity/get", json!({"ids": [work.clone()]})).await;
        assert_eq!(got["list"][0]["textSignature"], json!("-- \nA"));
        assert_eq!(got["list"][0]["name"], json!("Alice at work"));

        let r = f
            .ok(
                "Identity/set",
                json!({"destroy": [work.clone(), seeded.clone()]}),
            )
            .await;
        assert_eq!(r["destroyed"], json!([work]));
        assert_eq!(r["notDestroyed"][&seeded]["type"], json!("forbidden"));

        let changes = f
            .ok("Identity/changes", json!({"sinceState": state0}))
            .await;
        assert_eq!(changes["created"], json!([]));
        assert_eq!(changes["destroyed"], json!([]));
    }

    #[tokio::test]
    async fn state_mismatch_and_no_address() {
        let f = Fixture::new();
        let r = f
            .call("Identity/set", json!({"ifInState": "nope", "create": {}}))
            .await;
        assert_eq!(r[0][1]["type"], json!("stateMismatch"));
        let mut f = Fixture::new();
        f.account.address = None;
        f.rebuild();
        let r = f.ok("Identity/get", json!({})).await;
        assert_eq!(r["list"], json!([]));
        let r = f
            .ok("Identity/set", json!({"create": {"x": {"email": "a@b.c"}}}))
            .await;
        assert_eq!(r["notCreated"]["x"]["type"], json!("forbiddenFrom"));
    }
}
