//! PushSubscription (RFC 8620 §7.2): the /get and /set methods, the verification handshake, and
//! delivery of StateChange objects to verified subscriptions with retry and backoff.
//!
//! Subscriptions are stored as JSON in the owning user's home account (type PushSubscription),
//! so they survive restarts; [`PushManager::resume`] restarts delivery for them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jmap_engine::{
    Arguments, Handler, HandlerFuture, Id, IdRef, MethodCall, MethodError, MethodOutput,
    PatchObject, SetError, StateChange, UtcDate,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use state::{AsyncStore, Commit, DataType, ObjectId};

use crate::accounts::{Registry, UserEntry};
use crate::config::PushConfig;
use crate::methods::Directory;
use crate::push::policy::UrlPolicy;
use crate::push::watch::{StateWatcher, TypeNames};

/// Properties /get returns by default (`url` and `keys` are never returned).
const PUBLIC_PROPERTIES: &[&str] = &[
    "id",
    "deviceClientId",
    "verificationCode",
    "expires",
    "types",
];

/// A subscription as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    id: String,
    device_client_id: String,
    url: String,
    /// The code the client last set (null until it does).
    verification_code: Option<String>,
    /// The code we sent in the PushVerification.
    expected_code: String,
    /// Seconds since the epoch.
    expires: i64,
    types: Option<Vec<String>>,
}

impl Subscription {
    fn verified(&self) -> bool {
        self.verification_code.as_deref() == Some(self.expected_code.as_str())
    }

    fn public(&self, properties: &[String]) -> Map<String, Value> {
        let mut out = Map::new();
        for p in properties {
            let v = match p.as_str() {
                "id" => json!(self.id),
                "deviceClientId" => json!(self.device_client_id),
                "verificationCode" => json!(self.verification_code),
                "expires" => json!(UtcDate::from_timestamp(self.expires).as_str()),
                "types" => json!(self.types),
                _ => continue,
            };
            out.insert(p.clone(), v);
        }
        out
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn random_hex(bytes: usize) -> Result<String, MethodError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| MethodError::server_fail(format!("no randomness: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn store_fail(e: state::Error) -> MethodError {
    MethodError::server_fail(format!("store: {e}"))
}

/// Creates, checks and delivers push subscriptions.
pub struct PushManager {
    store: AsyncStore,
    registry: Arc<Registry>,
    config: PushConfig,
    policy: UrlPolicy,
    client: reqwest::Client,
    names: Arc<TypeNames>,
    /// (user, subscription id) → its delivery task.
    tasks: Mutex<HashMap<(String, String), tokio::task::AbortHandle>>,
    /// Serialises /set per process so read-modify-write of a subscription cannot interleave.
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PushManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushManager")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl PushManager {
    pub fn new(
        store: AsyncStore,
        registry: Arc<Registry>,
        config: PushConfig,
        names: Arc<TypeNames>,
    ) -> anyhow::Result<PushManager> {
        let tls = upstream::tls::client_config(None).map_err(|e| anyhow::anyhow!(e))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(15))
            // A redirect could lead around the URL policy.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(PushManager {
            policy: UrlPolicy::new(&config),
            store,
            registry,
            config,
            client,
            names,
            tasks: Mutex::new(HashMap::new()),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Active delivery tasks (the metrics' push subscriber count includes them).
    pub fn active(&self) -> usize {
        self.lock_tasks().len()
    }

    fn lock_tasks(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), tokio::task::AbortHandle>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn load_all(&self, user: &UserEntry) -> Result<Vec<Subscription>, MethodError> {
        let home = user.home;
        let rows = self
            .store
            .run(move |s| {
                let (_, ids) = s.ids(home, DataType::PushSubscription)?;
                let (_, rows) = s.get_many(home, DataType::PushSubscription, &ids)?;
                Ok(rows)
            })
            .await
            .map_err(store_fail)?;
        Ok(rows
            .into_iter()
            .flatten()
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect())
    }

    /// Restarts delivery for every verified, unexpired subscription of every known user.
    pub async fn resume(self: &Arc<Self>) {
        for name in self.registry.user_names() {
            let Some(user) = self.registry.user(&name) else {
                continue;
            };
            match self.load_all(&user).await {
                Ok(subs) => {
                    for sub in subs
                        .into_iter()
                        .filter(|s| s.verified() && s.expires > now())
                    {
                        self.start_delivery(user.clone(), sub).await;
                    }
                }
                Err(e) => tracing::warn!(user = name, "cannot load push subscriptions: {e:?}"),
            }
        }
    }

    fn stop_delivery(&self, user: &str, id: &str) {
        if let Some(task) = self.lock_tasks().remove(&(user.to_owned(), id.to_owned())) {
            task.abort();
        }
    }

    /// Starts delivering to a verified subscription. The watcher is in place when this
    /// returns, so every commit after the /set that verified it is delivered.
    async fn start_delivery(self: &Arc<Self>, user: Arc<UserEntry>, sub: Subscription) {
        self.stop_delivery(&user.name, &sub.id);
        let types = sub
            .types
            .clone()
            .map(|t| t.into_iter().collect::<HashSet<_>>());
        let watcher = match StateWatcher::new(&self.store, &user, self.names.clone(), types).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(subscription = sub.id, "cannot watch the store: {e}");
                return;
            }
        };
        let key = (user.name.clone(), sub.id.clone());
        let manager = self.clone();
        let mut tasks = self.lock_tasks();
        let task = tokio::spawn(async move {
            manager.deliver_changes(watcher, &sub).await;
            manager
                .lock_tasks()
                .remove(&(user.name.clone(), sub.id.clone()));
        });
        tasks.insert(key, task.abort_handle());
    }

    async fn deliver_changes(&self, mut watcher: StateWatcher, sub: &Subscription) {
        let remaining = u64::try_from(sub.expires - now()).unwrap_or(0);
        let expiry = tokio::time::sleep(Duration::from_secs(remaining));
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                change = watcher.next() => self.post_with_retry(sub, &state_change_body(&change)).await,
                () = &mut expiry => return,
            }
        }
    }

    /// POSTs `body`, retrying failures with doubling delays; a 429 doubles the delay as well.
    async fn post_with_retry(&self, sub: &Subscription, body: &Value) {
        let mut delay = Duration::from_millis(self.config.retry_initial_ms);
        for attempt in 1..=self.config.retry_attempts {
            match self.post(&sub.url, body).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(subscription = sub.id, attempt, "push delivery failed: {e}");
                    if attempt < self.config.retry_attempts {
                        tokio::time::sleep(delay).await;
                        delay = delay.saturating_mul(2);
                    }
                }
            }
        }
        tracing::info!(
            subscription = sub.id,
            "push delivery given up for this change"
        );
    }

    async fn post(&self, url: &str, body: &Value) -> Result<(), String> {
        let url = self.policy.parse(url)?;
        self.policy.check(&url).await?;
        let response = self
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .header("TTL", "86400")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the push endpoint answered {}", response.status()))
        }
    }

    fn clamp_expiry(&self, requested: Option<i64>) -> i64 {
        let max_days = i64::try_from(self.config.max_expiry_days).unwrap_or(7);
        let max = now() + max_days * 86_400;
        requested.map_or(max, |r| r.min(max))
    }

    async fn save(
        &self,
        user: &UserEntry,
        subs: &[&Subscription],
        destroy: &[String],
    ) -> Result<(), MethodError> {
        let mut commit = Commit::new(user.home);
        for sub in subs {
            let id = ObjectId::new(sub.id.clone()).map_err(store_fail)?;
            let bytes =
                serde_json::to_vec(sub).map_err(|e| MethodError::server_fail(e.to_string()))?;
            commit.put(DataType::PushSubscription, id, bytes);
        }
        for id in destroy {
            let id = ObjectId::new(id.clone()).map_err(store_fail)?;
            commit.destroy(DataType::PushSubscription, id);
        }
        if !commit.is_empty() {
            self.store.commit(commit).await.map_err(store_fail)?;
        }
        Ok(())
    }

    /// PushSubscription/get.
    async fn get(
        &self,
        user: &UserEntry,
        arguments: Map<String, Value>,
    ) -> Result<Map<String, Value>, MethodError> {
        let mut args = Arguments::new(arguments);
        let ids: Option<Vec<Id>> = args.optional("ids")?;
        let properties: Option<Vec<String>> = args.optional("properties")?;
        args.finish()?;
        let properties = match properties {
            None => PUBLIC_PROPERTIES.iter().map(|p| (*p).to_owned()).collect(),
            Some(ps) => {
                if ps.iter().any(|p| p == "url" || p == "keys") {
                    return Err(MethodError::forbidden()
                        .with_description("url and keys are never returned"));
                }
                if let Some(bad) = ps.iter().find(|p| !PUBLIC_PROPERTIES.contains(&p.as_str())) {
                    return Err(MethodError::invalid_arguments(format!(
                        "unknown property '{bad}'"
                    )));
                }
                let mut ps = ps;
                if !ps.iter().any(|p| p == "id") {
                    ps.insert(0, "id".into());
                }
                ps
            }
        };
        let all = self.load_all(user).await?;
        let mut list = Vec::new();
        let mut not_found = Vec::new();
        match ids {
            None => list.extend(all.iter().map(|s| Value::Object(s.public(&properties)))),
            Some(ids) => {
                for id in ids {
                    match all.iter().find(|s| s.id == id.as_str()) {
                        Some(s) => list.push(Value::Object(s.public(&properties))),
                        None => not_found.push(json!(id)),
                    }
                }
            }
        }
        let mut out = Map::new();
        out.insert("list".into(), Value::Array(list));
        out.insert("notFound".into(), Value::Array(not_found));
        Ok(out)
    }

    /// PushSubscription/set.
    async fn set(
        self: &Arc<Self>,
        user: &Arc<UserEntry>,
        arguments: Map<String, Value>,
    ) -> Result<(Map<String, Value>, Vec<(Id, Id)>), MethodError> {
        let mut args = Arguments::new(arguments);
        let create: Option<BTreeMap<Id, Map<String, Value>>> = args.optional("create")?;
        let update: Option<BTreeMap<IdRef, PatchObject>> = args.optional("update")?;
        let destroy: Option<Vec<IdRef>> = args.optional("destroy")?;
        args.finish()?;
        let _guard = self.writer.lock().await;
        let mut subs: BTreeMap<String, Subscription> = self
            .load_all(user)
            .await?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let mut created = Map::new();
        let mut not_created = Map::new();
        let mut updated = Map::new();
        let mut not_updated = Map::new();
        let mut destroyed = Vec::new();
        let mut not_destroyed = Map::new();
        let mut created_ids = Vec::new();
        let mut verify = Vec::new();
        let mut changed: Vec<String> = Vec::new();
        let mut gone: Vec<String> = Vec::new();

        for (creation_id, object) in create.unwrap_or_default() {
            match self.create_one(object).await {
                Ok(sub) => {
                    created.insert(
                        creation_id.as_str().to_owned(),
                        json!({
                            "id": sub.id,
                            "keys": null,
                            "expires": UtcDate::from_timestamp(sub.expires).as_str(),
                        }),
                    );
                    if let Ok(id) = Id::new(sub.id.clone()) {
                        created_ids.push((creation_id, id));
                    }
                    verify.push(sub.clone());
                    changed.push(sub.id.clone());
                    subs.insert(sub.id.clone(), sub);
                }
                Err(e) => {
                    not_created.insert(creation_id.as_str().to_owned(), to_value(&e));
                }
            }
        }
        for (id_ref, patch) in update.unwrap_or_default() {
            let key = id_ref.to_string();
            let Some(sub) = resolve_ref(&id_ref, &created_ids).and_then(|id| subs.get_mut(&id))
            else {
                not_updated.insert(key, to_value(&SetError::not_found()));
                continue;
            };
            match self.update_one(sub, &patch) {
                Ok(server_changed) => {
                    updated.insert(sub.id.clone(), server_changed);
                    changed.push(sub.id.clone());
                }
                Err(e) => {
                    not_updated.insert(key, to_value(&e));
                }
            }
        }
        for id_ref in destroy.unwrap_or_default() {
            let key = id_ref.to_string();
            match resolve_ref(&id_ref, &created_ids).and_then(|id| subs.remove(&id)) {
                Some(sub) => {
                    destroyed.push(json!(sub.id));
                    changed.retain(|c| *c != sub.id);
                    gone.push(sub.id);
                }
                None => {
                    not_destroyed.insert(key, to_value(&SetError::not_found()));
                }
            }
        }
        let to_save: Vec<&Subscription> = changed.iter().filter_map(|id| subs.get(id)).collect();
        self.save(user, &to_save, &gone).await?;
        for id in &gone {
            self.stop_delivery(&user.name, id);
        }
        for id in &changed {
            if let Some(sub) = subs.get(id) {
                if sub.verified() {
                    self.start_delivery(user.clone(), sub.clone()).await;
                } else {
                    self.stop_delivery(&user.name, id);
                }
            }
        }
        for sub in verify {
            let manager = self.clone();
            tokio::spawn(async move {
                let body = json!({
                    "@type": "PushVerification",
                    "pushSubscriptionId": sub.id,
                    "verificationCode": sub.expected_code,
                });
                manager.post_with_retry(&sub, &body).await;
            });
        }
        let mut out = Map::new();
        let opt = |m: Map<String, Value>| {
            if m.is_empty() {
                Value::Null
            } else {
                Value::Object(m)
            }
        };
        out.insert("created".into(), opt(created));
        out.insert("updated".into(), opt(updated));
        out.insert(
            "destroyed".into(),
            if destroyed.is_empty() {
                Value::Null
            } else {
                Value::Array(destroyed)
            },
        );
        out.insert("notCreated".into(), opt(not_created));
        out.insert("notUpdated".into(), opt(not_updated));
        out.insert("notDestroyed".into(), opt(not_destroyed));
        Ok((out, created_ids))
    }

    async fn create_one(&self, mut object: Map<String, Value>) -> Result<Subscription, SetError> {
        let allowed = [
            "deviceClientId",
            "url",
            "keys",
            "verificationCode",
            "expires",
            "types",
        ];
        let unknown: Vec<String> = object
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(SetError::invalid_properties(unknown)
                .with_description("unknown or server-set properties"));
        }
        let device_client_id = match object.remove("deviceClientId") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => {
                return Err(SetError::invalid_properties(["deviceClientId"])
                    .with_description("a non-empty string is required"));
            }
        };
        let url = match object.remove("url") {
            Some(Value::String(s)) => s,
            _ => {
                return Err(SetError::invalid_properties(["url"])
                    .with_description("a URL string is required"));
            }
        };
        let parsed = self
            .policy
            .parse(&url)
            .map_err(|e| SetError::invalid_properties(["url"]).with_description(e))?;
        self.policy
            .check(&parsed)
            .await
            .map_err(|e| SetError::invalid_properties(["url"]).with_description(e))?;
        if !matches!(object.remove("keys"), None | Some(Value::Null)) {
            return Err(SetError::invalid_properties(["keys"])
                .with_description("encrypted push (RFC 8291) is not supported; give keys null"));
        }
        if !matches!(object.remove("verificationCode"), None | Some(Value::Null)) {
            return Err(SetError::invalid_properties(["verificationCode"])
                .with_description("must be null when creating"));
        }
        let expires = parse_expires(object.remove("expires"))?;
        let types = parse_types(object.remove("types"))?;
        let id = format!("P{}", random_hex(12).map_err(|_| SetError::forbidden())?);
        Ok(Subscription {
            id,
            device_client_id,
            url,
            verification_code: None,
            expected_code: random_hex(16).map_err(|_| SetError::forbidden())?,
            expires: self.clamp_expiry(expires),
            types,
        })
    }

    /// Applies an update; returns the server-changed properties (`expires` when clamped).
    fn update_one(&self, sub: &mut Subscription, patch: &PatchObject) -> Result<Value, SetError> {
        let current = json!({
            "deviceClientId": sub.device_client_id,
            "verificationCode": sub.verification_code,
            "expires": UtcDate::from_timestamp(sub.expires).as_str(),
            "types": sub.types,
        });
        let patched = patch
            .apply(&current)
            .map_err(|e| SetError::invalid_patch(e.to_string()))?;
        let Value::Object(mut patched) = patched else {
            return Err(SetError::invalid_patch("the patch must leave an object"));
        };
        if let Some(bad) = patch
            .properties()
            .into_iter()
            .find(|p| !["verificationCode", "expires", "types"].contains(&p.as_str()))
        {
            return Err(SetError::invalid_properties([bad])
                .with_description("immutable or unknown property"));
        }
        let code = match patched.remove("verificationCode") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(SetError::invalid_properties(["verificationCode"])),
        };
        if code.is_some()
            && !crate::accounts::secrets_equal(
                code.as_deref().unwrap_or_default().as_bytes(),
                sub.expected_code.as_bytes(),
            )
        {
            return Err(SetError::invalid_properties(["verificationCode"])
                .with_description("wrong verification code"));
        }
        let requested = parse_expires(patched.remove("expires"))?;
        let types = parse_types(patched.remove("types"))?;
        let mut server_changed = Map::new();
        if patch.properties().contains("expires") {
            let clamped = self.clamp_expiry(requested);
            if Some(clamped) != requested {
                server_changed.insert(
                    "expires".into(),
                    json!(UtcDate::from_timestamp(clamped).as_str()),
                );
            }
            sub.expires = clamped;
        }
        sub.verification_code = code;
        sub.types = types;
        Ok(if server_changed.is_empty() {
            Value::Null
        } else {
            Value::Object(server_changed)
        })
    }
}

fn resolve_ref(id: &IdRef, created: &[(Id, Id)]) -> Option<String> {
    match id {
        IdRef::Id(id) => Some(id.as_str().to_owned()),
        IdRef::Creation(c) => created
            .iter()
            .find(|(k, _)| k == c)
            .map(|(_, v)| v.as_str().to_owned()),
    }
}

fn to_value(e: &SetError) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

fn parse_expires(v: Option<Value>) -> Result<Option<i64>, SetError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => UtcDate::parse(&s)
            .map(|d| Some(d.timestamp()))
            .map_err(|e| SetError::invalid_properties(["expires"]).with_description(e.to_string())),
        Some(_) => Err(SetError::invalid_properties(["expires"])),
    }
}

fn parse_types(v: Option<Value>) -> Result<Option<Vec<String>>, SetError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v).map(Some).map_err(|_| {
            SetError::invalid_properties(["types"]).with_description("a list of type names or null")
        }),
    }
}

/// The StateChange body POSTed to a subscription.
fn state_change_body(change: &StateChange) -> Value {
    change.to_json()
}

/// PushSubscription/get and /set as engine handlers.
#[derive(Debug, Clone)]
pub struct PushMethods(pub Arc<PushManager>, pub bool);

impl Handler<Directory> for PushMethods {
    fn call<'a>(&'a self, call: MethodCall<'a, Directory>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let user = call.user;
            if self.1 {
                let (out, created) = self.0.set(user, call.arguments.clone()).await?;
                let mut output = MethodOutput::new(call.name.clone(), out);
                for (c, id) in created {
                    output = output.with_created_id(c, id);
                }
                Ok(output)
            } else {
                let out = self.0.get(user, call.arguments.clone()).await?;
                Ok(MethodOutput::new(call.name.clone(), out))
            }
        })
    }
}
