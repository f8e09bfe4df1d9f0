//! Quota (RFC 9425): get, changes, query and queryChanges over what the account's
//! [`MailAccount::quotas`] hook reports (upstream quota roots, read from the account's cache,
//! never fetched per request).
//!
//! Quotas are not stored, so the state string carries the snapshot itself: per quota its id,
//! a digest of everything but `used`, and `used`. /changes compares that snapshot with the
//! current list, exactly, and answers `updatedProperties: ["used"]` when only usage moved.
//! A page of at most `maxChanges` gets an intermediate state built the same way (the old
//! snapshot with the reported changes applied).
//!
//! Per RFC 9425 §4, types whose capability is not in the request's `using` are left out, and
//! quotas left with no type are not shown at all.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use jmap_engine::standard::{
    AddedItem, ChangesRequest, GetRequest, GetResponse, QueryChangesRequest, QueryChangesResponse,
    QueryRequest,
};
use jmap_engine::{
    AccountDirectory, Engine, Handler, HandlerFuture, Id, MethodCall, MethodError, MethodOutput,
    NoExtra, UnsignedInt,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{MAIL, MailAccount, QUOTA, SUBMISSION, VACATION};

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaResource {
    /// Storage, in octets (IMAP `STORAGE` is in KiB: multiply by 1024).
    Octets,
    /// Number of messages (IMAP `MESSAGE`).
    Count,
}

impl QuotaResource {
    fn as_str(self) -> &'static str {
        match self {
            QuotaResource::Octets => "octets",
            QuotaResource::Count => "count",
        }
    }
}

/// One quota of an account, as the hook reports it. The scope is always `"account"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaInfo {
    /// Stable across calls (e.g. derived from the IMAP quota root and resource).
    pub id: String,
    pub resource: QuotaResource,
    pub used: u64,
    pub hard_limit: u64,
    pub warn_limit: Option<u64>,
    pub soft_limit: Option<u64>,
    pub name: String,
    pub description: Option<String>,
    /// JMAP type names it applies to, e.g. `["Mail"]`.
    pub types: Vec<String>,
}

/// The capability a JMAP type name belongs to, for the types this gateway knows.
fn capability_of(type_name: &str) -> Option<&'static str> {
    match type_name {
        "Mail" | "Email" | "Mailbox" | "Thread" | "SearchSnippet" => Some(MAIL),
        "EmailSubmission" | "Identity" => Some(SUBMISSION),
        "VacationResponse" => Some(VACATION),
        _ => None,
    }
}

/// The quota as the client may see it: only the types it asked for; `None` if none is left.
fn visible(q: &QuotaInfo, using: &[String]) -> Option<Map<String, Value>> {
    let types: Vec<&String> = q
        .types
        .iter()
        .filter(|t| capability_of(t).is_some_and(|c| using.iter().any(|u| u == c)))
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut m = Map::new();
    m.insert("id".into(), json!(q.id));
    m.insert("resourceType".into(), json!(q.resource.as_str()));
    m.insert("used".into(), json!(q.used));
    m.insert("hardLimit".into(), json!(q.hard_limit));
    m.insert("warnLimit".into(), json!(q.warn_limit));
    m.insert("softLimit".into(), json!(q.soft_limit));
    m.insert("scope".into(), json!("account"));
    m.insert("name".into(), json!(q.name));
    m.insert("description".into(), json!(q.description));
    m.insert("types".into(), json!(types));
    Some(m)
}

const PROPERTIES: [&str; 10] = [
    "id",
    "resourceType",
    "used",
    "hardLimit",
    "warnLimit",
    "softLimit",
    "scope",
    "name",
    "description",
    "types",
];

// --- state snapshots ---------------------------------------------------------------------

/// (id, digest of everything but `used`, used), sorted by id.
type Snapshot = BTreeMap<String, (String, u64)>;

fn fixed_digest(q: &QuotaInfo) -> String {
    let fixed = json!([
        q.resource.as_str(),
        q.hard_limit,
        q.warn_limit,
        q.soft_limit,
        q.name,
        q.description,
        q.types
    ]);
    let d = ring::digest::digest(&ring::digest::SHA256, fixed.to_string().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d.as_ref()[..6])
}

fn snapshot(quotas: &[QuotaInfo]) -> Snapshot {
    quotas
        .iter()
        .map(|q| (q.id.clone(), (fixed_digest(q), q.used)))
        .collect()
}

#[derive(Serialize, Deserialize)]
struct Entry(String, String, u64);

fn encode(s: &Snapshot) -> String {
    let entries: Vec<Entry> = s
        .iter()
        .map(|(id, (d, used))| Entry(id.clone(), d.clone(), *used))
        .collect();
    let json = serde_json::to_vec(&entries).unwrap_or_default();
    format!(
        "Q{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    )
}

fn decode(state: &str) -> Result<Snapshot, MethodError> {
    let bytes = state
        .strip_prefix('Q')
        .and_then(|b| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b)
                .ok()
        })
        .ok_or_else(MethodError::cannot_calculate_changes)?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&bytes).map_err(|_| MethodError::cannot_calculate_changes())?;
    Ok(entries
        .into_iter()
        .map(|Entry(id, d, used)| (id, (d, used)))
        .collect())
}

#[derive(Debug, Default)]
struct Diff {
    created: Vec<String>,
    updated: Vec<String>,
    destroyed: Vec<String>,
    only_used: bool,
}

fn diff(old: &Snapshot, new: &Snapshot) -> Diff {
    let mut d = Diff {
        only_used: true,
        ..Diff::default()
    };
    let ids: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for id in ids {
        match (old.get(id), new.get(id)) {
            (None, Some(_)) => d.created.push(id.clone()),
            (Some(_), None) => d.destroyed.push(id.clone()),
            (Some(a), Some(b)) if a != b => {
                d.only_used &= a.0 == b.0;
                d.updated.push(id.clone());
            }
            _ => {}
        }
    }
    d
}

fn ids(v: &[String]) -> Result<Vec<Id>, MethodError> {
    v.iter()
        .map(|s| Id::new(s.as_str()).map_err(|e| MethodError::server_fail(e.to_string())))
        .collect()
}

// --- query ------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Condition {
    name: Option<String>,
    scope: Option<String>,
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(rename = "type")]
    type_name: Option<String>,
}

fn matches(c: &Condition, q: &Map<String, Value>) -> bool {
    let text = |k: &str| q.get(k).and_then(Value::as_str).unwrap_or_default();
    c.name
        .as_ref()
        .is_none_or(|n| text("name").contains(n.as_str()))
        && c.scope.as_ref().is_none_or(|s| text("scope") == s)
        && c.resource_type
            .as_ref()
            .is_none_or(|r| text("resourceType") == r)
        && c.type_name.as_ref().is_none_or(|t| {
            q.get("types")
                .and_then(Value::as_array)
                .is_some_and(|ts| ts.iter().any(|x| x.as_str() == Some(t.as_str())))
        })
}

/// The visible quotas matching `filter`, sorted; ids only.
fn results(
    quotas: &[QuotaInfo],
    using: &[String],
    filter: Option<&jmap_engine::standard::Filter<Condition>>,
    sort: Option<&[jmap_engine::standard::Comparator]>,
    collations: &[String],
) -> Result<Vec<Id>, MethodError> {
    let sort = sort.unwrap_or_default();
    for c in sort {
        c.check_supported(&["name", "used"], collations)?;
    }
    let mut list: Vec<Map<String, Value>> = quotas
        .iter()
        .filter_map(|q| visible(q, using))
        .filter(|q| filter.is_none_or(|f| f.matches(&mut |c| matches(c, q))))
        .collect();
    list.sort_by(|a, b| {
        for c in sort {
            let ord = match c.property.as_str() {
                "used" => a["used"].as_u64().cmp(&b["used"].as_u64()),
                _ => {
                    let (x, y) = (
                        a["name"].as_str().unwrap_or_default(),
                        b["name"].as_str().unwrap_or_default(),
                    );
                    x.to_lowercase().cmp(&y.to_lowercase()).then(x.cmp(y))
                }
            };
            let ord = if c.is_ascending { ord } else { ord.reverse() };
            if ord.is_ne() {
                return ord;
            }
        }
        a["id"].as_str().cmp(&b["id"].as_str())
    });
    list.iter()
        .map(|q| {
            Id::new(q["id"].as_str().unwrap_or_default())
                .map_err(|e| MethodError::server_fail(e.to_string()))
        })
        .collect()
}

// --- handlers ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Changes,
    Query,
    QueryChanges,
}

#[derive(Debug, Clone, Copy)]
struct QuotaMethod(Op);

impl<D> Handler<D> for QuotaMethod
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let quotas = call.account()?.quotas();
            let arguments = match self.0 {
                Op::Get => get(&call, &quotas)?,
                Op::Changes => changes(&call, &quotas)?,
                Op::Query => query(&call, &quotas)?,
                Op::QueryChanges => query_changes(&call, &quotas)?,
            };
            Ok(MethodOutput::new(call.name.clone(), arguments))
        })
    }
}

fn get<D: AccountDirectory>(
    call: &MethodCall<'_, D>,
    quotas: &[QuotaInfo],
) -> Result<Map<String, Value>, MethodError> {
    let request = GetRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
    let properties = request.properties_checked(&PROPERTIES)?;
    let shown: Vec<Map<String, Value>> = quotas
        .iter()
        .filter_map(|q| visible(q, call.using))
        .collect();
    let trim = |mut q: Map<String, Value>| {
        q.retain(|k, _| properties.iter().any(|p| p == k));
        q
    };
    let (list, not_found) = match request.resolved_ids(call.created_ids)? {
        None => {
            request.check_fetch_all(shown.len(), call.limits())?;
            (shown.into_iter().map(trim).collect(), Vec::new())
        }
        Some(wanted) => {
            let mut list = Vec::new();
            let mut not_found = Vec::new();
            for id in wanted {
                match shown.iter().find(|q| q["id"].as_str() == Some(id.as_str())) {
                    Some(q) => list.push(trim(q.clone())),
                    None => not_found.push(id),
                }
            }
            (list, not_found)
        }
    };
    Ok(GetResponse {
        account_id: request.account_id,
        state: encode(&snapshot(quotas)),
        list,
        not_found,
    }
    .to_arguments())
}

fn changes<D: AccountDirectory>(
    call: &MethodCall<'_, D>,
    quotas: &[QuotaInfo],
) -> Result<Map<String, Value>, MethodError> {
    let request = ChangesRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
    let old = decode(&request.since_state)?;
    let current = snapshot(quotas);
    let shown: BTreeSet<&str> = quotas
        .iter()
        .filter(|q| visible(q, call.using).is_some())
        .map(|q| q.id.as_str())
        .collect();
    let d = diff(&old, &current);
    let max = request.max_changes.map_or(usize::MAX, |m| {
        usize::try_from(m.get()).unwrap_or(usize::MAX)
    });
    // Changes in id order, cut at maxChanges; the state after them is the old snapshot with
    // exactly those applied.
    let mut all: Vec<(&String, u8)> = d
        .created
        .iter()
        .map(|i| (i, 0))
        .chain(d.updated.iter().map(|i| (i, 1)))
        .chain(d.destroyed.iter().map(|i| (i, 2)))
        .collect();
    all.sort();
    let has_more = all.len() > max;
    all.truncate(max);
    let mut reached = old.clone();
    let (mut created, mut updated, mut destroyed) = (Vec::new(), Vec::new(), Vec::new());
    let mut only_used = true;
    for (id, kind) in all {
        match current.get(id) {
            Some(v) => {
                if let Some(prev) = reached.insert(id.clone(), v.clone()) {
                    only_used &= prev.0 == v.0;
                }
            }
            None => {
                reached.remove(id);
            }
        }
        // A quota the client cannot see is not reported (its state still moves on).
        if shown.contains(id.as_str()) || kind == 2 {
            match kind {
                0 => created.push(id.clone()),
                1 => updated.push(id.clone()),
                _ => destroyed.push(id.clone()),
            }
        }
    }
    let updated_properties = if only_used && !updated.is_empty() {
        json!(["used"])
    } else {
        Value::Null
    };
    let mut out = Map::new();
    out.insert("accountId".into(), json!(request.account_id));
    out.insert("oldState".into(), json!(request.since_state));
    out.insert("newState".into(), json!(encode(&reached)));
    out.insert("hasMoreChanges".into(), json!(has_more));
    out.insert("created".into(), json!(ids(&created)?));
    out.insert("updated".into(), json!(ids(&updated)?));
    out.insert("destroyed".into(), json!(ids(&destroyed)?));
    out.insert("updatedProperties".into(), updated_properties);
    Ok(out)
}

fn query<D: AccountDirectory>(
    call: &MethodCall<'_, D>,
    quotas: &[QuotaInfo],
) -> Result<Map<String, Value>, MethodError> {
    let request = QueryRequest::<Condition, NoExtra>::from_arguments(call.arguments.clone())?;
    let all = results(
        quotas,
        call.using,
        request.filter.as_ref(),
        request.sort.as_deref(),
        &call.core.collation_algorithms,
    )?;
    let page = request.paginate(&all, None)?;
    Ok(request
        .respond(page, encode(&snapshot(quotas)), true)
        .to_arguments())
}

fn query_changes<D: AccountDirectory>(
    call: &MethodCall<'_, D>,
    quotas: &[QuotaInfo],
) -> Result<Map<String, Value>, MethodError> {
    let request =
        QueryChangesRequest::<Condition, NoExtra>::from_arguments(call.arguments.clone())?;
    let old = decode(&request.since_query_state)?;
    let current = snapshot(quotas);
    let d = diff(&old, &current);
    let all = results(
        quotas,
        call.using,
        request.filter.as_ref(),
        request.sort.as_deref(),
        &call.core.collation_algorithms,
    )?;
    // Every quota that changed may have left or moved: report it removed, and added again
    // where it now is (RFC 8620 §5.6 allows removed ids that were not in the old results).
    let removed: Vec<String> = d.updated.iter().chain(&d.destroyed).cloned().collect();
    let touched: BTreeSet<&String> = d.created.iter().chain(&d.updated).collect();
    let added: Vec<AddedItem> = all
        .iter()
        .enumerate()
        .filter(|(_, id)| touched.iter().any(|t| t.as_str() == id.as_str()))
        .map(|(i, id)| AddedItem {
            id: id.clone(),
            index: UnsignedInt::from_usize(i),
        })
        .collect();
    request.check_max_changes(removed.len(), added.len())?;
    Ok(QueryChangesResponse {
        account_id: request.account_id.clone(),
        old_query_state: request.since_query_state.clone(),
        new_query_state: encode(&current),
        total: request
            .calculate_total
            .then(|| UnsignedInt::from_usize(all.len())),
        removed: ids(&removed)?,
        added,
    }
    .to_arguments())
}

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    engine.register("Quota/get", QUOTA, QuotaMethod(Op::Get));
    engine.register("Quota/changes", QUOTA, QuotaMethod(Op::Changes));
    engine.register("Quota/query", QUOTA, QuotaMethod(Op::Query));
    engine.register("Quota/queryChanges", QUOTA, QuotaMethod(Op::QueryChanges));
}

/// A fixture whose account also has the hooks the shared one leaves at their defaults
/// (vacation backend, quotas, submitter).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod ext {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use jmap_engine::{
        AccountDirectory, AccountError, CORE_CAPABILITY, Capabilities, CoreCapability, Engine, Id,
    };
    use serde_json::{Value, json};
    use state::{AccountId, AsyncStore};

    use super::super::testing::{Fixture, TestAccount};
    use super::super::{MailAccount, Submitter, VacationBackend};
    use super::QuotaInfo;
    use crate::AccountSync;

    #[derive(Clone, Debug)]
    pub struct ExtAccount {
        pub inner: TestAccount,
        pub vacation: Option<Arc<dyn VacationBackend>>,
        pub quotas: Arc<Mutex<Vec<QuotaInfo>>>,
    }

    impl MailAccount for ExtAccount {
        fn store(&self) -> &AsyncStore {
            &self.inner.store
        }
        fn store_id(&self) -> AccountId {
            self.inner.id
        }
        fn sync(&self) -> Option<&AccountSync> {
            self.inner.sync.as_ref()
        }
        fn address(&self) -> Option<&str> {
            self.inner.address.as_deref()
        }
        fn submitter(&self) -> Option<&Arc<dyn Submitter>> {
            self.inner.submitter.as_ref()
        }
        fn vacation(&self) -> Option<&Arc<dyn VacationBackend>> {
            self.vacation.as_ref()
        }
        fn quotas(&self) -> Vec<QuotaInfo> {
            self.quotas.lock().unwrap().clone()
        }
    }

    #[derive(Clone, Debug)]
    pub struct ExtDirectory(pub ExtAccount);

    impl AccountDirectory for ExtDirectory {
        type User = ();
        type Account = ExtAccount;

        fn resolve(&self, _: &(), id: &Id, _: &str) -> Result<ExtAccount, AccountError> {
            if id.as_str() == "a1" {
                Ok(self.0.clone())
            } else {
                Err(AccountError::NotFound)
            }
        }
    }

    pub struct ExtFixture {
        /// Keeps the store's folder alive.
        _base: Fixture,
        pub account: ExtAccount,
        pub engine: Engine<ExtDirectory>,
    }

    impl std::fmt::Debug for ExtFixture {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ExtFixture").finish_non_exhaustive()
        }
    }

    const ALL: [&str; 5] = [
        CORE_CAPABILITY,
        super::MAIL,
        super::SUBMISSION,
        super::VACATION,
        super::QUOTA,
    ];

    impl ExtFixture {
        pub fn new() -> ExtFixture {
            Self::over(Fixture::new())
        }

        /// Wraps a fixture (after its account got a sync driver or submitter).
        pub fn over(base: Fixture) -> ExtFixture {
            let account = ExtAccount {
                inner: base.account.clone(),
                vacation: None,
                quotas: Arc::new(Mutex::new(Vec::new())),
            };
            let engine = Self::engine_for(&account);
            ExtFixture {
                _base: base,
                account,
                engine,
            }
        }

        fn engine_for(account: &ExtAccount) -> Engine<ExtDirectory> {
            let others: BTreeMap<String, Value> = ALL[1..]
                .iter()
                .map(|c| ((*c).to_owned(), json!({})))
                .collect();
            let mut engine = Engine::new(
                ExtDirectory(account.clone()),
                Capabilities {
                    core: CoreCapability::default(),
                    others,
                },
            );
            super::super::register(&mut engine);
            engine
        }

        pub fn set_vacation(&mut self, backend: Arc<dyn VacationBackend>) {
            self.account.vacation = Some(backend);
            self.engine = Self::engine_for(&self.account);
        }

        pub fn set_quotas(&self, quotas: Vec<QuotaInfo>) {
            *self.account.quotas.lock().unwrap() = quotas;
        }

        pub async fn request_using(&self, using: &[&str], calls: Value) -> Vec<Value> {
            let body = json!({"using": using, "methodCalls": calls});
            let response = self
                .engine
                .handle(&(), body.to_string().as_bytes(), "s0")
                .await
                .unwrap();
            let v = serde_json::to_value(&response).unwrap();
            v["methodResponses"].as_array().unwrap().clone()
        }

        pub async fn call(&self, method: &str, mut args: Value) -> Vec<Value> {
            if let Some(o) = args.as_object_mut() {
                o.entry("accountId").or_insert(json!("a1"));
            }
            self.request_using(&ALL, json!([[method, args, "c0"]]))
                .await
        }

        pub async fn ok(&self, method: &str, args: Value) -> Value {
            let r = self.call(method, args).await;
            assert_eq!(r[0][0], json!(method), "error response: {r:?}");
            r[0][1].clone()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::ext::ExtFixture;
    use super::*;

    fn quota(id: &str, resource: QuotaResource, used: u64, limit: u64, name: &str) -> QuotaInfo {
        QuotaInfo {
            id: id.into(),
            resource,
            used,
            hard_limit: limit,
            warn_limit: None,
            soft_limit: None,
            name: name.into(),
            description: None,
            types: vec!["Mail".into()],
        }
    }

    fn two() -> Vec<QuotaInfo> {
        vec![
            quota("qs", QuotaResource::Octets, 1000, 5000, "storage"),
            quota("qm", QuotaResource::Count, 10, 100, "messages"),
        ]
    }

    #[tokio::test]
    async fn get_lists_the_hooks_quotas() {
        let f = ExtFixture::new();
        let empty = f.ok("Quota/get", json!({"ids": null})).await;
        assert_eq!(empty["list"], json!([]));
        f.set_quotas(two());
        let r = f.ok("Quota/get", json!({"ids": null})).await;
        assert_eq!(r["list"].as_array().unwrap().len(), 2);
        assert_eq!(
            r["list"][0],
            json!({"id": "qs", "resourceType": "octets", "used": 1000, "hardLimit": 5000,
                   "warnLimit": null, "softLimit": null, "scope": "account",
                   "name": "storage", "description": null, "types": ["Mail"]})
        );
        assert_ne!(r["state"], empty["state"]);
        let r = f
            .ok(
                "Quota/get",
                json!({"ids": ["qm", "nope"], "properties": ["used"]}),
            )
            .await;
        assert_eq!(r["list"], json!([{"id": "qm", "used": 10}]));
        assert_eq!(r["notFound"], json!(["nope"]));
    }

    #[tokio::test]
    async fn types_follow_using() {
        let f = ExtFixture::new();
        f.set_quotas(two());
        let r = f
            .request_using(
                &[CORE_CAPABILITY_FOR_TEST, QUOTA],
                json!([["Quota/get", {"accountId": "a1"}, "0"]]),
            )
            .await;
        assert_eq!(r[0][1]["list"], json!([]));
    }

    const CORE_CAPABILITY_FOR_TEST: &str = jmap_engine::CORE_CAPABILITY;

    #[tokio::test]
    async fn changes_tell_used_only_updates_and_page() {
        let f = ExtFixture::new();
        f.set_quotas(two());
        let s0 = f.ok("Quota/get", json!({"ids": []})).await["state"].clone();
        let same = f.ok("Quota/changes", json!({"sinceState": s0})).await;
        assert_eq!(same["newState"], s0);
        assert_eq!(same["updated"], json!([]));

        let mut q = two();
        q[0].used = 2000;
        f.set_quotas(q.clone());
        let r = f.ok("Quota/changes", json!({"sinceState": s0})).await;
        assert_eq!(r["updated"], json!(["qs"]));
        assert_eq!(r["updatedProperties"], json!(["used"]));
        assert_eq!(r["hasMoreChanges"], json!(false));
        let s1 = r["newState"].clone();
        assert_eq!(f.ok("Quota/get", json!({"ids": []})).await["state"], s1);

        q[1].hard_limit = 200;
        q.push(quota("qx", QuotaResource::Count, 0, 1, "extra"));
        q.remove(0);
        f.set_quotas(q);
        let page = f
            .ok("Quota/changes", json!({"sinceState": s1, "maxChanges": 2}))
            .await;
        assert_eq!(page["hasMoreChanges"], json!(true));
        assert_eq!(page["updated"], json!(["qm"]));
        assert_eq!(page["destroyed"], json!(["qs"]));
        assert_eq!(page["updatedProperties"], Value::Null);
        let rest = f
            .ok("Quota/changes", json!({"sinceState": page["newState"]}))
            .await;
        assert_eq!(rest["created"], json!(["qx"]));
        assert_eq!(rest["hasMoreChanges"], json!(false));

        let bad = f.call("Quota/changes", json!({"sinceState": "junk"})).await;
        assert_eq!(bad[0][1]["type"], json!("cannotCalculateChanges"));
    }

    #[tokio::test]
    async fn query_filters_sorts_and_tracks_changes() {
        let f = ExtFixture::new();
        f.set_quotas(two());
        let r = f
            .ok(
                "Quota/query",
                json!({"sort": [{"property": "name"}], "calculateTotal": true}),
            )
            .await;
        assert_eq!(r["ids"], json!(["qm", "qs"]));
        assert_eq!(r["total"], json!(2));
        assert_eq!(r["canCalculateChanges"], json!(true));
        let r2 = f
            .ok(
                "Quota/query",
                json!({"filter": {"resourceType": "octets", "type": "Mail", "scope": "account"}}),
            )
            .await;
        assert_eq!(r2["ids"], json!(["qs"]));
        let r3 = f
            .ok(
                "Quota/query",
                json!({"sort": [{"property": "used", "isAscending": false}],
                       "filter": {"operator": "NOT", "conditions": [{"name": "stor"}]}}),
            )
            .await;
        assert_eq!(r3["ids"], json!(["qm"]));
        let bad = f
            .call("Quota/query", json!({"sort": [{"property": "hardLimit"}]}))
            .await;
        assert_eq!(bad[0][1]["type"], json!("unsupportedSort"));

        let mut q = two();
        q[1].used = 9999;
        f.set_quotas(q);
        let c = f
            .ok(
                "Quota/queryChanges",
                json!({"sinceQueryState": r["queryState"],
                       "sort": [{"property": "used"}], "calculateTotal": true}),
            )
            .await;
        assert_eq!(c["removed"], json!(["qm"]));
        assert_eq!(c["added"], json!([{"id": "qm", "index": 1}]));
        assert_eq!(c["total"], json!(2));
        let tight = f
            .call(
                "Quota/queryChanges",
                json!({"sinceQueryState": r["queryState"], "maxChanges": 1}),
            )
            .await;
        assert_eq!(tight[0][1]["type"], json!("tooManyChanges"));
    }
}
