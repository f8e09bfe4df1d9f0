//! A data type whose records are plain JSON objects kept in the store: /get, /changes and /set
//! written once on top of the engine's generic request types. The data type only names its
//! properties; the store gives ids, states and the change log.

use std::collections::BTreeSet;

use jmap_engine::standard::{ChangesRequest, GetRequest, GetResponse, SetRequest, SetResponse};
use jmap_engine::{
    Engine, Handler, HandlerFuture, Id, IdRef, MethodCall, MethodError, MethodOutput, NoExtra,
    SetError,
};
use serde_json::{Map, Value};
use state::{Commit, DataType, ObjectId};

use super::{AccountHandle, Directory, store_error};

/// A JSON-object data type backed by one store data type.
#[derive(Debug, Clone)]
pub struct StoredType {
    /// The JMAP type name (`Foo` in `Foo/get`).
    pub name: String,
    /// The capability its methods need.
    pub capability: String,
    /// Where its records live in the store.
    pub data_type: DataType,
    /// Client-settable properties besides `id`.
    pub properties: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Changes,
    Set,
}

#[derive(Debug, Clone)]
struct StoredMethod {
    spec: StoredType,
    method: Method,
}

impl StoredType {
    /// Registers `{name}/get`, `/changes` and `/set`.
    pub fn register(&self, engine: &mut Engine<Directory>) {
        for (suffix, method) in [
            ("get", Method::Get),
            ("changes", Method::Changes),
            ("set", Method::Set),
        ] {
            engine.register(
                &format!("{}/{suffix}", self.name),
                &self.capability,
                StoredMethod {
                    spec: self.clone(),
                    method,
                },
            );
        }
    }
}

fn object_id(id: &Id) -> Result<ObjectId, MethodError> {
    ObjectId::new(id.as_str()).map_err(|e| MethodError::invalid_arguments(e.to_string()))
}

fn jmap_id(id: &ObjectId) -> Result<Id, MethodError> {
    Id::new(id.as_str()).map_err(|e| MethodError::server_fail(e.to_string()))
}

fn new_id() -> Result<Id, MethodError> {
    let mut buf = [0u8; 10];
    getrandom::fill(&mut buf)
        .map_err(|e| MethodError::server_fail(format!("no randomness: {e}")))?;
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    Id::new(format!("R{hex}")).map_err(|e| MethodError::server_fail(e.to_string()))
}

impl Handler<Directory> for StoredMethod {
    fn call<'a>(&'a self, call: MethodCall<'a, Directory>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let account = call.account()?.clone();
            let arguments = match self.method {
                Method::Get => self.get(&call, &account).await?,
                Method::Changes => self.changes(&call, &account).await?,
                Method::Set => self.set(&call, &account).await?,
            };
            Ok(MethodOutput::new(call.name.clone(), arguments))
        })
    }
}

impl StoredMethod {
    fn known(&self) -> Vec<&str> {
        std::iter::once("id")
            .chain(self.spec.properties.iter().map(String::as_str))
            .collect()
    }

    async fn get(
        &self,
        call: &MethodCall<'_, Directory>,
        account: &AccountHandle,
    ) -> Result<Map<String, Value>, MethodError> {
        let request = GetRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
        let properties = request.properties_checked(&self.known())?;
        let (a, t) = (account.entry.store_id, self.spec.data_type);
        let ids: Vec<Id> = match request.resolved_ids(call.created_ids)? {
            Some(ids) => ids,
            None => {
                let (_, all) = account
                    .store
                    .run(move |s| s.ids(a, t))
                    .await
                    .map_err(store_error)?;
                request.check_fetch_all(all.len(), call.limits())?;
                all.iter().map(jmap_id).collect::<Result<_, _>>()?
            }
        };
        // Ids that are not even valid store ids cannot exist.
        let (valid, invalid): (Vec<&Id>, Vec<&Id>) = ids
            .iter()
            .partition(|id| ObjectId::new(id.as_str()).is_ok());
        let keys: Vec<ObjectId> = valid
            .iter()
            .filter_map(|id| ObjectId::new(id.as_str()).ok())
            .collect();
        let (state, rows) = account
            .store
            .get_many(a, t, keys)
            .await
            .map_err(store_error)?;
        let mut list = Vec::new();
        let mut not_found: Vec<Id> = invalid.into_iter().cloned().collect();
        for (id, row) in valid.into_iter().zip(rows) {
            let Some(bytes) = row else {
                not_found.push(id.clone());
                continue;
            };
            let Ok(Value::Object(mut record)) = serde_json::from_slice::<Value>(&bytes) else {
                return Err(MethodError::server_fail(
                    "a stored record is not a JSON object",
                ));
            };
            record.insert("id".into(), Value::String(id.as_str().to_owned()));
            record.retain(|k, _| properties.contains(k));
            list.push(record);
        }
        Ok(GetResponse {
            account_id: request.account_id,
            state: state.to_string(),
            list,
            not_found,
        }
        .to_arguments())
    }

    async fn changes(
        &self,
        call: &MethodCall<'_, Directory>,
        account: &AccountHandle,
    ) -> Result<Map<String, Value>, MethodError> {
        let request = ChangesRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
        Ok(jmap_mail::methods::changes_from_log(
            &account.store,
            account.entry.store_id,
            self.spec.data_type,
            request,
            |_| NoExtra {},
        )
        .await?
        .to_arguments())
    }

    fn check_properties(&self, object: &Map<String, Value>) -> Result<(), SetError> {
        let bad: Vec<String> = object
            .keys()
            .filter(|k| !self.spec.properties.contains(k))
            .cloned()
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(SetError::invalid_properties(bad)
                .with_description("unknown or server-set properties"))
        }
    }

    async fn set(
        &self,
        call: &MethodCall<'_, Directory>,
        account: &AccountHandle,
    ) -> Result<Map<String, Value>, MethodError> {
        let request = SetRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
        let (a, t) = (account.entry.store_id, self.spec.data_type);
        let old_state = account
            .store
            .state(a, t)
            .await
            .map_err(store_error)?
            .to_string();
        request.check_state(&old_state)?;
        let mut response: SetResponse = SetResponse::new(
            request.account_id.clone(),
            Some(old_state.clone()),
            old_state,
        );
        let mut commit = Commit::new(a);
        let mut created_here: Vec<(Id, Id)> = Vec::new();
        let mut touched: BTreeSet<Id> = BTreeSet::new();

        for (creation_id, object) in request.create.clone().unwrap_or_default() {
            if let Err(e) = self.check_properties(&object) {
                response.add_not_created(creation_id, e);
                continue;
            }
            let id = new_id()?;
            let bytes =
                serde_json::to_vec(&object).map_err(|e| MethodError::server_fail(e.to_string()))?;
            commit.put(t, object_id(&id)?, bytes);
            let mut server_set = Map::new();
            server_set.insert("id".into(), Value::String(id.as_str().to_owned()));
            response.add_created(creation_id.clone(), server_set);
            created_here.push((creation_id, id.clone()));
            touched.insert(id);
        }
        let resolve = |id_ref: &IdRef| -> Option<Id> {
            match id_ref {
                IdRef::Id(id) => Some(id.clone()),
                IdRef::Creation(c) => created_here
                    .iter()
                    .find(|(k, _)| k == c)
                    .map(|(_, v)| v.clone())
                    .or_else(|| call.created_ids.get(c.as_str()).cloned()),
            }
        };
        let destroy_ids: Vec<Option<Id>> = request.destroy.iter().flatten().map(&resolve).collect();
        for (id_ref, patch) in request.update.clone().unwrap_or_default() {
            let Some(id) = resolve(&id_ref) else {
                response.add_not_updated(id_ref, SetError::not_found());
                continue;
            };
            if destroy_ids.contains(&Some(id.clone())) {
                response.add_not_updated(id_ref, SetError::will_destroy());
                continue;
            }
            let Ok(oid) = ObjectId::new(id.as_str()) else {
                response.add_not_updated(id_ref, SetError::not_found());
                continue;
            };
            let current = account
                .store
                .get_many(a, t, vec![oid.clone()])
                .await
                .map_err(store_error)?
                .1;
            let Some(Some(bytes)) = current.into_iter().next() else {
                response.add_not_updated(id_ref, SetError::not_found());
                continue;
            };
            let current: Value = serde_json::from_slice(&bytes)
                .map_err(|e| MethodError::server_fail(e.to_string()))?;
            if patch.properties().contains("id") {
                response.add_not_updated(id_ref, SetError::invalid_properties(["id"]));
                continue;
            }
            let patched = match patch.apply(&current) {
                Ok(Value::Object(o)) => o,
                Ok(_) => {
                    response.add_not_updated(
                        id_ref,
                        SetError::invalid_patch("the result is not an object"),
                    );
                    continue;
                }
                Err(e) => {
                    response.add_not_updated(id_ref, SetError::invalid_patch(e.to_string()));
                    continue;
                }
            };
            if let Err(e) = self.check_properties(&patched) {
                response.add_not_updated(id_ref, e);
                continue;
            }
            let bytes = serde_json::to_vec(&patched)
                .map_err(|e| MethodError::server_fail(e.to_string()))?;
            commit.put(t, oid, bytes);
            response.add_updated(id.clone(), None);
            touched.insert(id);
        }
        for (id_ref, id) in request
            .destroy
            .clone()
            .unwrap_or_default()
            .into_iter()
            .zip(destroy_ids)
        {
            let Some(id) = id else {
                response.add_not_destroyed(id_ref, SetError::not_found());
                continue;
            };
            let exists = match ObjectId::new(id.as_str()) {
                Ok(oid) => {
                    matches!(
                        account
                            .store
                            .get_many(a, t, vec![oid.clone()])
                            .await
                            .map_err(store_error)?
                            .1
                            .first(),
                        Some(Some(_))
                    ) || touched.contains(&id)
                }
                Err(_) => false,
            };
            if !exists {
                response.add_not_destroyed(id_ref, SetError::not_found());
                continue;
            }
            commit.destroy(t, object_id(&id)?);
            response.add_destroyed(id);
        }
        if !commit.is_empty() {
            let committed = account.store.commit(commit).await.map_err(store_error)?;
            if let Some(state) = committed.state(t) {
                response.new_state = state.to_string();
            }
        }
        Ok(response.to_arguments())
    }
}
