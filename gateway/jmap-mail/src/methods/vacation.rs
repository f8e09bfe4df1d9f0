//! VacationResponse (RFC 8621 §8): the one `"singleton"` object, kept in the store
//! (`DataType::VacationResponse`) and pushed upstream through the account's
//! [`VacationBackend`] before it is recorded.
//!
//! Only accounts with a backend advertise the capability; should the methods be reached for
//! an account without one, /get answers the stored (or default, disabled) setting and an
//! update is `forbidden`, since nothing would act on it.

use jmap_engine::standard::{SetRequest, SetResponse};
use jmap_engine::{
    AccountDirectory, Engine, Handler, HandlerFuture, Id, IdRef, MethodCall, MethodError,
    MethodOutput, NoExtra, SetError, SetErrorType, UtcDate,
};
use serde_json::{Map, Value, json};
use state::{Commit, DataType, ObjectId};
use upstream::{BoxFuture, UpstreamError};

use super::identity::{load_one, stored_get};
use super::{MailAccount, VACATION, store_error};

/// The only VacationResponse id.
const SINGLETON: &str = "singleton";

const PROPERTIES: [&str; 7] = [
    "id",
    "isEnabled",
    "fromDate",
    "toDate",
    "subject",
    "textBody",
    "htmlBody",
];

/// Serializes VacationResponse/set so two updates reach upstream and the store in one order.
static VACATION_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The vacation setting as a backend applies it (shared with the adapters).
pub use upstream::VacationSettings;

/// Applies the vacation setting upstream (EAS Settings Oof, a Sieve script, …).
pub trait VacationBackend: Send + Sync + std::fmt::Debug {
    /// Makes `settings` the account's vacation response. `Refused`/`Unsupported` become a
    /// `forbidden` SetError carrying the text; anything else `serverUnavailable`.
    fn apply<'a>(
        &'a self,
        settings: &'a VacationSettings,
    ) -> BoxFuture<'a, Result<(), UpstreamError>>;
}

fn default_record() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("isEnabled".into(), json!(false));
    for p in ["fromDate", "toDate", "subject", "textBody", "htmlBody"] {
        m.insert(p.into(), Value::Null);
    }
    m
}

/// Checks a whole record and turns it into settings.
fn settings_of(record: &Map<String, Value>) -> Result<VacationSettings, SetError> {
    let mut bad = Vec::new();
    let mut s = VacationSettings::default();
    for (k, v) in record {
        let ok = match (k.as_str(), v) {
            ("isEnabled", Value::Bool(b)) => {
                s.is_enabled = *b;
                true
            }
            ("fromDate" | "toDate", Value::Null) => true,
            ("fromDate" | "toDate", Value::String(d)) => match UtcDate::parse(d) {
                Ok(d) if k == "fromDate" => {
                    s.from_date = Some(d.timestamp());
                    true
                }
                Ok(d) => {
                    s.to_date = Some(d.timestamp());
                    true
                }
                Err(_) => false,
            },
            ("subject" | "textBody" | "htmlBody", Value::Null) => true,
            ("subject" | "textBody" | "htmlBody", Value::String(t)) => {
                let slot = match k.as_str() {
                    "subject" => &mut s.subject,
                    "textBody" => &mut s.text_body,
                    _ => &mut s.html_body,
                };
                *slot = Some(t.clone());
                true
            }
            _ => false,
        };
        if !ok {
            bad.push(k.clone());
        }
    }
    if bad.is_empty() {
        Ok(s)
    } else {
        Err(SetError::invalid_properties(bad))
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Set,
}

#[derive(Debug, Clone, Copy)]
struct VacationMethod(Op);

impl<D> Handler<D> for VacationMethod
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let account = call.account()?.clone();
            let arguments = match self.0 {
                Op::Get => get(&call, &account).await?,
                Op::Set => set(&call, &account).await?,
            };
            Ok(MethodOutput::new(call.name.clone(), arguments))
        })
    }
}

async fn get<D>(
    call: &MethodCall<'_, D>,
    account: &D::Account,
) -> Result<Map<String, Value>, MethodError>
where
    D: AccountDirectory,
    D::Account: MailAccount,
{
    let (store, a, t) = (
        account.store(),
        account.store_id(),
        DataType::VacationResponse,
    );
    let mut r = stored_get(call, store, a, t, &PROPERTIES).await?;
    // No record yet: the default object stands in for it (the state is unchanged: nothing
    // was ever written).
    let asked_singleton = match call.arguments.get("ids") {
        None | Some(Value::Null) => true,
        Some(Value::Array(ids)) => ids.iter().any(|i| i.as_str() == Some(SINGLETON)),
        Some(_) => false,
    };
    let listed = r
        .get("list")
        .and_then(Value::as_array)
        .is_some_and(|l| !l.is_empty());
    if asked_singleton && !listed {
        let wanted: Vec<String> = match call.arguments.get("properties") {
            Some(Value::Array(p)) => p
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => PROPERTIES.iter().map(|p| (*p).to_owned()).collect(),
        };
        let mut object = default_record();
        object.insert("id".into(), json!(SINGLETON));
        object.retain(|k, _| k == "id" || wanted.iter().any(|w| w == k));
        r.insert("list".into(), json!([object]));
        if let Some(Value::Array(nf)) = r.get_mut("notFound") {
            nf.retain(|v| v.as_str() != Some(SINGLETON));
        }
    }
    Ok(r)
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
    let _guard = VACATION_WRITES.lock().await;
    let (store, a, t) = (
        account.store(),
        account.store_id(),
        DataType::VacationResponse,
    );
    let old_state = store.state(a, t).await.map_err(store_error)?.to_string();
    request.check_state(&old_state)?;
    let mut response: SetResponse = SetResponse::new(
        request.account_id.clone(),
        Some(old_state.clone()),
        old_state,
    );
    let singleton_error = || {
        SetError::new(SetErrorType::Singleton)
            .with_description("there is exactly one VacationResponse, \"singleton\"")
    };
    for (creation_id, _) in request.create.clone().unwrap_or_default() {
        response.add_not_created(creation_id, singleton_error());
    }
    for id in request.destroy.clone().unwrap_or_default() {
        let error = match &id {
            IdRef::Id(i) if i.as_str() == SINGLETON => singleton_error(),
            _ => SetError::not_found(),
        };
        response.add_not_destroyed(id, error);
    }
    let singleton_id = Id::new(SINGLETON).map_err(|e| MethodError::server_fail(e.to_string()))?;
    for (id, patch) in request.update.clone().unwrap_or_default() {
        if id != IdRef::Id(singleton_id.clone()) {
            response.add_not_updated(id, SetError::not_found());
            continue;
        }
        let current = load_one(store, a, t, &singleton_id)
            .await?
            .unwrap_or_else(default_record);
        let patched = match patch.apply(&Value::Object(current.clone())) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                response.add_not_updated(id, SetError::invalid_patch("not an object"));
                continue;
            }
            Err(e) => {
                response.add_not_updated(id, SetError::from(e));
                continue;
            }
        };
        if patched.contains_key("id") {
            response.add_not_updated(id, SetError::invalid_properties(["id"]));
            continue;
        }
        let settings = match settings_of(&patched) {
            Ok(s) => s,
            Err(e) => {
                response.add_not_updated(id, e);
                continue;
            }
        };
        let Some(backend) = account.vacation() else {
            response.add_not_updated(
                id,
                SetError::forbidden()
                    .with_description("this account cannot send vacation responses"),
            );
            continue;
        };
        if patched != current {
            match backend.apply(&settings).await {
                Ok(()) => {}
                Err(
                    e @ (UpstreamError::Refused(_)
                    | UpstreamError::Unsupported(_)
                    | UpstreamError::NotFound(_)),
                ) => {
                    response
                        .add_not_updated(id, SetError::forbidden().with_description(e.to_string()));
                    continue;
                }
                Err(e) => {
                    tracing::warn!("vacation response not applied upstream: {e}");
                    return Err(MethodError::server_unavailable().with_description(e.to_string()));
                }
            }
            let mut c = Commit::new(a);
            let bytes = serde_json::to_vec(&patched)
                .map_err(|e| MethodError::server_fail(e.to_string()))?;
            c.put(
                t,
                ObjectId::new(SINGLETON).map_err(|e| MethodError::server_fail(e.to_string()))?,
                bytes,
            );
            let committed = store.commit(c).await.map_err(store_error)?;
            if let Some(state) = committed.state(t) {
                response.new_state = state.to_string();
            }
        }
        response.add_updated(singleton_id.clone(), None);
    }
    Ok(response.to_arguments())
}

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    engine.register("VacationResponse/get", VACATION, VacationMethod(Op::Get));
    engine.register("VacationResponse/set", VACATION, VacationMethod(Op::Set));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::super::quota::ext::ExtFixture;
    use super::super::testing::Fixture;
    use super::*;

    #[derive(Debug, Default)]
    struct Recorder {
        applied: Mutex<Vec<VacationSettings>>,
        fail: Option<UpstreamError>,
    }

    impl VacationBackend for Recorder {
        fn apply<'a>(
            &'a self,
            settings: &'a VacationSettings,
        ) -> BoxFuture<'a, Result<(), UpstreamError>> {
            Box::pin(async move {
                if let Some(e) = &self.fail {
                    return Err(e.clone());
                }
                self.applied.lock().unwrap().push(settings.clone());
                Ok(())
            })
        }
    }

    fn with_backend(r: Arc<Recorder>) -> ExtFixture {
        let mut f = ExtFixture::new();
        f.set_vacation(r);
        f
    }

    #[tokio::test]
    async fn get_gives_the_disabled_default_without_a_write() {
        let f = Fixture::new();
        let r = f.ok("VacationResponse/get", json!({"ids": null})).await;
        assert_eq!(
            r["list"],
            json!([{"id": "singleton", "isEnabled": false, "fromDate": null, "toDate": null,
                    "subject": null, "textBody": null, "htmlBody": null}])
        );
        let r2 = f
            .ok(
                "VacationResponse/get",
                json!({"ids": ["singleton", "other"], "properties": ["isEnabled"]}),
            )
            .await;
        assert_eq!(r2["list"], json!([{"id": "singleton", "isEnabled": false}]));
        assert_eq!(r2["notFound"], json!(["other"]));
        assert_eq!(r2["state"], r["state"]);
    }

    #[tokio::test]
    async fn without_a_backend_an_update_is_forbidden() {
        let f = Fixture::new();
        let r = f
            .ok(
                "VacationResponse/set",
                json!({"update": {"singleton": {"isEnabled": true}}}),
            )
            .await;
        assert_eq!(r["notUpdated"]["singleton"]["type"], json!("forbidden"));
    }

    #[tokio::test]
    async fn an_update_goes_upstream_then_into_the_store() {
        let rec = Arc::new(Recorder::default());
        let f = with_backend(rec.clone());
        let r = f
            .ok(
                "VacationResponse/set",
                json!({
                    "update": {"singleton": {
                        "isEnabled": true,
                        "fromDate": "2030-01-01T00:00:00Z",
                        "subject": "Away",
                        "textBody": "Back soon"
                    }},
                    "create": {"x": {"isEnabled": true}},
                    "destroy": ["singleton"]
                }),
            )
            .await;
        assert_eq!(r["updated"], json!({"singleton": null}));
        assert_eq!(r["notCreated"]["x"]["type"], json!("singleton"));
        assert_eq!(r["notDestroyed"]["singleton"]["type"], json!("singleton"));
        assert_ne!(r["oldState"], r["newState"]);
        let applied = rec.applied.lock().unwrap().clone();
        assert_eq!(
            applied,
            vec![VacationSettings {
                is_enabled: true,
                from_date: Some(1_893_456_000),
                to_date: None,
                subject: Some("Away".into()),
                text_body: Some("Back soon".into()),
                html_body: None,
            }]
        );
        let got = f.ok("VacationResponse/get", json!({})).await;
        assert_eq!(got["list"][0]["subject"], json!("Away"));
        assert_eq!(got["state"], r["newState"]);
    }

    #[tokio::test]
    async fn bad_values_and_upstream_failures() {
        let rec = Arc::new(Recorder::default());
        let f = with_backend(rec.clone());
        let r = f
            .ok(
                "VacationResponse/set",
                json!({"update": {
                    "singleton": {"fromDate": "tomorrow", "isEnabled": "yes"},
                    "other": {"isEnabled": true}
                }}),
            )
            .await;
        let err = &r["notUpdated"]["singleton"];
        assert_eq!(err["type"], json!("invalidProperties"));
        assert_eq!(err["properties"], json!(["fromDate", "isEnabled"]));
        assert_eq!(r["notUpdated"]["other"]["type"], json!("notFound"));
        assert!(rec.applied.lock().unwrap().is_empty());

        let refusing = Arc::new(Recorder {
            fail: Some(UpstreamError::Refused("no Oof here".into())),
            ..Recorder::default()
        });
        let f = with_backend(refusing);
        let r = f
            .ok(
                "VacationResponse/set",
                json!({"update": {"singleton": {"isEnabled": true}}}),
            )
            .await;
        assert_eq!(r["notUpdated"]["singleton"]["type"], json!("forbidden"));
        assert_eq!(r["oldState"], r["newState"]);

        let down = Arc::new(Recorder {
            fail: Some(UpstreamError::Unavailable("timeout".into())),
            ..Recorder::default()
        });
        let f = with_backend(down);
        let r = f
            .call(
                "VacationResponse/set",
                json!({"update": {"singleton": {"isEnabled": true}}}),
            )
            .await;
        assert_eq!(r[0][1]["type"], json!("serverUnavailable"));
    }
}
