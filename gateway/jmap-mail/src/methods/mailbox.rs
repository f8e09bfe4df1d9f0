//! Mailbox (RFC 8621 §2): /get, /changes, /query, /queryChanges and /set.
//!
//! Reads come from the Mailbox records the sync driver keeps and the counts the store
//! maintains. Writes go upstream through the account's sync driver (create, rename/move,
//! subscribe, delete) and are recorded by its immediate relisting, so the ids and states
//! the client sees are the driver's.
//!
//! What upstream cannot do is refused rather than faked: roles cannot be assigned and
//! `sortOrder` is the server's (derived from the role), so a create or update that asks for
//! another value is `invalidProperties`.
//!
//! Mailbox/queryChanges is exact: every Mailbox changed since the old state (and, for tree
//! queries, its descendants) is reported removed and, if still in the results, added at its
//! new index. Counts-only changes do not affect a Mailbox query, so they are left out.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jmap_engine::standard::{
    AddedItem, ChangesRequest, Comparator, Filter, FilterOperator, GetRequest, GetResponse,
    QueryChangesRequest, QueryChangesResponse, QueryRequest, SetRequest, SetResponse,
};
use jmap_engine::{
    AccountDirectory, Arguments, Engine, ExtraArguments, Handler, HandlerFuture, Id, IdRef,
    MethodCall, MethodError, MethodOutput, NoExtra, SetError, UnsignedInt,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use state::{AccountId, AsyncStore, DataType, MailboxCounts, ObjectId, State};
use upstream::{UpstreamError, WriteOp, WriteOutcome};

use super::{MAIL, MailAccount, object_id, store_error, sync_error};
use crate::{AccountSync, MailboxRecord, SyncError};

/// Every Mailbox property, in the RFC's order.
const PROPERTIES: [&str; 11] = [
    "id",
    "name",
    "parentId",
    "role",
    "sortOrder",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
    "isSubscribed",
];

/// Properties only the server sets.
const SERVER_SET: [&str; 6] = [
    "id",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
];

/// The sortOrder the sync driver gives a Mailbox without a role (see `apply::sort_order`).
const SORT_ORDER_NO_ROLE: u32 = 10;

/// The mail capability's `maxSizeMailboxName`, in octets.
const MAX_NAME_OCTETS: usize = 490;

/// Deepest hierarchy walked (a guard against a parent loop in the records).
const MAX_DEPTH: usize = 256;

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    engine.register("Mailbox/get", MAIL, MailboxGet);
    engine.register("Mailbox/changes", MAIL, MailboxChanges);
    engine.register("Mailbox/query", MAIL, MailboxQuery);
    engine.register("Mailbox/queryChanges", MAIL, MailboxQueryChanges);
    engine.register("Mailbox/set", MAIL, MailboxSet);
}

// ---------------------------------------------------------------------------------------
// Reading records

fn corrupt() -> MethodError {
    MethodError::server_fail("a stored Mailbox record does not decode")
}

/// Every Mailbox record and the state they were read at (the data is at least that new).
async fn load_all(
    store: &AsyncStore,
    a: AccountId,
) -> Result<(State, Vec<MailboxRecord>), MethodError> {
    let (state, blobs) = store
        .run(move |s| {
            let (state, ids) = s.ids(a, DataType::Mailbox)?;
            let (_, blobs) = s.get_many(a, DataType::Mailbox, &ids)?;
            Ok((state, blobs))
        })
        .await
        .map_err(store_error)?;
    let mut out = Vec::with_capacity(blobs.len());
    // A record destroyed between listing and reading is simply gone.
    for b in blobs.into_iter().flatten() {
        out.push(MailboxRecord::from_bytes(&b).ok_or_else(corrupt)?);
    }
    Ok((state, out))
}

async fn load_one(
    store: &AsyncStore,
    a: AccountId,
    id: &Id,
) -> Result<Option<(MailboxRecord, MailboxCounts)>, MethodError> {
    let Some(oid) = object_id(id) else {
        return Ok(None);
    };
    let found = store
        .run(move |s| match s.get(a, DataType::Mailbox, &oid)? {
            Some(b) => Ok(Some((b, s.mailbox_counts(a, &oid)?))),
            None => Ok(None),
        })
        .await
        .map_err(store_error)?;
    match found {
        Some((b, counts)) => Ok(Some((
            MailboxRecord::from_bytes(&b).ok_or_else(corrupt)?,
            counts,
        ))),
        None => Ok(None),
    }
}

fn may_rename_or_delete(m: &MailboxRecord) -> bool {
    m.role.as_deref() != Some("inbox")
}

/// MailboxRights: a placeholder that cannot hold messages allows no item operations; the
/// inbox cannot be renamed or deleted; nothing is submitted straight into a mailbox.
fn rights(m: &MailboxRecord) -> Value {
    let items = m.selectable;
    let change = may_rename_or_delete(m);
    json!({
        "mayReadItems": items,
        "mayAddItems": items,
        "mayRemoveItems": items,
        "maySetSeen": items,
        "maySetKeywords": items,
        "mayCreateChild": true,
        "mayRename": change,
        "mayDelete": change,
        "maySubmit": false,
    })
}

/// The full Mailbox object.
fn to_json(m: &MailboxRecord, c: &MailboxCounts) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("id".into(), json!(m.id));
    o.insert("name".into(), json!(m.name));
    o.insert("parentId".into(), json!(m.parent_id));
    o.insert("role".into(), json!(m.role));
    o.insert("sortOrder".into(), json!(m.sort_order));
    o.insert("totalEmails".into(), json!(c.total_emails));
    o.insert("unreadEmails".into(), json!(c.unread_emails));
    o.insert("totalThreads".into(), json!(c.total_threads));
    o.insert("unreadThreads".into(), json!(c.unread_threads));
    o.insert("myRights".into(), rights(m));
    o.insert("isSubscribed".into(), json!(m.is_subscribed));
    o
}

fn wants_counts(properties: &[String]) -> bool {
    properties.iter().any(|p| {
        matches!(
            p.as_str(),
            "totalEmails" | "unreadEmails" | "totalThreads" | "unreadThreads"
        )
    })
}

// ---------------------------------------------------------------------------------------
// Mailbox/get

#[derive(Debug, Clone, Copy)]
struct MailboxGet;

impl<D> Handler<D> for MailboxGet
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let account = call.account()?;
            let request = GetRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
            let properties = request.properties_checked(&PROPERTIES)?;
            let ids = request.resolved_ids(call.created_ids)?;
            let a = account.store_id();
            let counts = wants_counts(&properties);
            let wanted: Option<Vec<ObjectId>> = ids
                .as_ref()
                .map(|ids| ids.iter().filter_map(object_id).collect());
            let (state, rows) = account
                .store()
                .run(move |s| {
                    let (state, keys) = match wanted {
                        Some(keys) => (s.state(a, DataType::Mailbox)?, keys),
                        None => s.ids(a, DataType::Mailbox)?,
                    };
                    let (_, blobs) = s.get_many(a, DataType::Mailbox, &keys)?;
                    let mut rows = HashMap::new();
                    for (k, b) in keys.into_iter().zip(blobs) {
                        let Some(b) = b else { continue };
                        let c = if counts {
                            s.mailbox_counts(a, &k)?
                        } else {
                            MailboxCounts::default()
                        };
                        rows.insert(k.as_str().to_owned(), (b, c));
                    }
                    Ok((state, rows))
                })
                .await
                .map_err(store_error)?;
            let ids: Vec<Id> = match ids {
                Some(ids) => ids,
                None => {
                    request.check_fetch_all(rows.len(), call.limits())?;
                    let mut all: Vec<Id> = rows
                        .keys()
                        .filter_map(|k| Id::new(k.as_str()).ok())
                        .collect();
                    all.sort();
                    all
                }
            };
            let mut list = Vec::new();
            let mut not_found = Vec::new();
            for id in ids {
                match rows.get(id.as_str()) {
                    Some((b, c)) => {
                        let m = MailboxRecord::from_bytes(b).ok_or_else(corrupt)?;
                        let mut o = to_json(&m, c);
                        o.retain(|k, _| properties.contains(k));
                        list.push(o);
                    }
                    None => not_found.push(id),
                }
            }
            let response = GetResponse {
                account_id: request.account_id,
                state: state.to_string(),
                list,
                not_found,
            };
            Ok(call.reply(response.to_arguments()))
        })
    }
}

// ---------------------------------------------------------------------------------------
// Mailbox/changes

#[derive(Debug, Clone, Copy)]
struct MailboxChanges;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChangesExtra {
    /// Always present: the count properties, or null when anything else may have changed.
    updated_properties: Option<Vec<String>>,
}

impl<D> Handler<D> for MailboxChanges
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let account = call.account()?;
            let request = ChangesRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
            let response = super::common::changes_from_log(
                account.store(),
                account.store_id(),
                DataType::Mailbox,
                request,
                |changes| ChangesExtra {
                    updated_properties: changes
                        .updated_properties
                        .as_ref()
                        .map(|p| p.iter().map(|s| (*s).to_owned()).collect()),
                },
            )
            .await?;
            Ok(call.reply(response.to_arguments()))
        })
    }
}

// ---------------------------------------------------------------------------------------
// Mailbox/query and Mailbox/queryChanges

/// `sortAsTree` and `filterAsTree`.
#[derive(Debug, Clone, Copy, Default)]
struct TreeArgs {
    sort_as_tree: bool,
    filter_as_tree: bool,
}

impl ExtraArguments for TreeArgs {
    fn take(args: &mut Arguments) -> Result<Self, MethodError> {
        Ok(TreeArgs {
            sort_as_tree: args.flag("sortAsTree", false)?,
            filter_as_tree: args.flag("filterAsTree", false)?,
        })
    }
}

/// A Mailbox FilterCondition (RFC 8621 §2.3). `Some(None)` is a condition on `null`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Condition {
    parent_id: Option<Option<String>>,
    name: Option<String>,
    role: Option<Option<String>>,
    has_any_role: Option<bool>,
    is_subscribed: Option<bool>,
}

fn parse_condition(raw: &Map<String, Value>) -> Result<Condition, MethodError> {
    let bad = |k: &str, what: &str| {
        MethodError::invalid_arguments(format!("filter condition '{k}' must be {what}"))
    };
    let mut c = Condition::default();
    for (k, v) in raw {
        match k.as_str() {
            "parentId" => {
                c.parent_id = Some(match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    _ => return Err(bad(k, "an Id or null")),
                });
            }
            "name" => c.name = Some(v.as_str().ok_or_else(|| bad(k, "a string"))?.to_owned()),
            "role" => {
                c.role = Some(match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    _ => return Err(bad(k, "a string or null")),
                });
            }
            "hasAnyRole" => c.has_any_role = Some(v.as_bool().ok_or_else(|| bad(k, "a boolean"))?),
            "isSubscribed" => {
                c.is_subscribed = Some(v.as_bool().ok_or_else(|| bad(k, "a boolean"))?);
            }
            other => {
                return Err(MethodError::unsupported_filter()
                    .with_description(format!("no Mailbox filter condition '{other}'")));
            }
        }
    }
    Ok(c)
}

fn parse_filter(f: &Filter<Map<String, Value>>) -> Result<Filter<Condition>, MethodError> {
    Ok(match f {
        Filter::Condition(c) => Filter::Condition(parse_condition(c)?),
        Filter::Operator(op) => Filter::Operator(FilterOperator {
            operator: op.operator,
            conditions: op
                .conditions
                .iter()
                .map(parse_filter)
                .collect::<Result<_, _>>()?,
        }),
    })
}

impl Condition {
    fn matches(&self, m: &MailboxRecord) -> bool {
        if let Some(p) = &self.parent_id
            && *p != m.parent_id
        {
            return false;
        }
        if let Some(n) = &self.name
            && !m.name.to_lowercase().contains(&n.to_lowercase())
        {
            return false;
        }
        if let Some(r) = &self.role
            && *r != m.role
        {
            return false;
        }
        if let Some(h) = self.has_any_role
            && h != m.role.is_some()
        {
            return false;
        }
        if let Some(s) = self.is_subscribed
            && s != m.is_subscribed
        {
            return false;
        }
        true
    }
}

/// A query's filter and sort, checked and ready to run.
#[derive(Debug, Clone)]
struct Query {
    filter: Option<Filter<Condition>>,
    sort: Vec<Comparator>,
    tree: TreeArgs,
}

impl Query {
    fn new(
        filter: Option<&Filter<Map<String, Value>>>,
        sort: Option<&Vec<Comparator>>,
        tree: TreeArgs,
        collations: &[String],
    ) -> Result<Query, MethodError> {
        let filter = filter.map(parse_filter).transpose()?;
        let sort = sort.cloned().unwrap_or_default();
        for c in &sort {
            c.check_supported(&["sortOrder", "name"], collations)?;
        }
        Ok(Query { filter, sort, tree })
    }

    fn matches(&self, m: &MailboxRecord) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| f.matches(&mut |c: &Condition| c.matches(m)))
    }

    /// Two mailboxes by the comparators (sortOrder, name when none), then by id for stability.
    fn compare(&self, a: &MailboxRecord, b: &MailboxRecord) -> Ordering {
        let default;
        let sort = if self.sort.is_empty() {
            default = [
                Comparator {
                    property: "sortOrder".into(),
                    is_ascending: true,
                    collation: None,
                    extra: Map::new(),
                },
                Comparator {
                    property: "name".into(),
                    is_ascending: true,
                    collation: None,
                    extra: Map::new(),
                },
            ];
            &default[..]
        } else {
            &self.sort[..]
        };
        for c in sort {
            let o = match c.property.as_str() {
                "sortOrder" => a.sort_order.cmp(&b.sort_order),
                _ => collate(&a.name, &b.name, c.collation.as_deref()),
            };
            let o = if c.is_ascending { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.id.cmp(&b.id)
    }

    /// The ids of the results, in order.
    fn run(&self, all: &[MailboxRecord]) -> Vec<Id> {
        let by_id: HashMap<&str, &MailboxRecord> = all.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut results: Vec<&MailboxRecord> = all
            .iter()
            .filter(|m| {
                if self.tree.filter_as_tree {
                    ancestry(m, &by_id).iter().all(|a| self.matches(a))
                } else {
                    self.matches(m)
                }
            })
            .collect();
        if self.tree.sort_as_tree {
            let paths: HashMap<&str, Vec<&MailboxRecord>> = results
                .iter()
                .map(|m| (m.id.as_str(), ancestry(m, &by_id)))
                .collect();
            results.sort_by(|a, b| {
                let (pa, pb) = (&paths[a.id.as_str()], &paths[b.id.as_str()]);
                for (x, y) in pa.iter().zip(pb.iter()) {
                    if x.id != y.id {
                        // The nearest ancestors (or selves) that are siblings decide.
                        return self.compare(x, y);
                    }
                }
                // One is an ancestor of the other: the ancestor first.
                pa.len().cmp(&pb.len())
            });
        } else {
            results.sort_by(|a, b| self.compare(a, b));
        }
        results
            .into_iter()
            .filter_map(|m| Id::new(m.id.as_str()).ok())
            .collect()
    }
}

/// A mailbox and its ancestors, root first. Stops at a missing parent or a loop.
fn ancestry<'a>(
    m: &'a MailboxRecord,
    by_id: &HashMap<&str, &'a MailboxRecord>,
) -> Vec<&'a MailboxRecord> {
    let mut path = vec![m];
    let mut seen: HashSet<&str> = HashSet::from([m.id.as_str()]);
    let mut cur = m;
    while let Some(p) = cur.parent_id.as_deref().and_then(|p| by_id.get(p)) {
        if !seen.insert(p.id.as_str()) || path.len() >= MAX_DEPTH {
            break;
        }
        path.push(p);
        cur = p;
    }
    path.reverse();
    path
}

/// Compares names under an RFC 4790 collation (default `i;unicode-casemap`).
fn collate(a: &str, b: &str, collation: Option<&str>) -> Ordering {
    match collation {
        Some("i;ascii-casemap") => a
            .to_ascii_lowercase()
            .cmp(&b.to_ascii_lowercase())
            .then_with(|| a.cmp(b)),
        Some("i;ascii-numeric") => {
            // Strings not starting with a digit are "positive infinity" (RFC 4790 §9.1).
            let num = |s: &str| -> Option<u128> {
                let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
                if digits.is_empty() {
                    None
                } else {
                    Some(digits.parse().unwrap_or(u128::MAX))
                }
            };
            match (num(a), num(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        }
        _ => a
            .to_lowercase()
            .cmp(&b.to_lowercase())
            .then_with(|| a.cmp(b)),
    }
}

#[derive(Debug, Clone, Copy)]
struct MailboxQuery;

impl<D> Handler<D> for MailboxQuery
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let account = call.account()?;
            let request = QueryRequest::<Map<String, Value>, TreeArgs>::from_arguments(
                call.arguments.clone(),
            )?;
            let query = Query::new(
                request.filter.as_ref(),
                request.sort.as_ref(),
                request.extra,
                &call.core.collation_algorithms,
            )?;
            let (state, all) = load_all(account.store(), account.store_id()).await?;
            let results = query.run(&all);
            let page = request.paginate(&results, None)?;
            Ok(call.reply(
                request
                    .respond(page, state.to_string(), true)
                    .to_arguments(),
            ))
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct MailboxQueryChanges;

/// Every Mailbox changed (created, updated other than in counts, destroyed) since `since`,
/// up to the current state, which is returned with them.
async fn changed_since(
    store: &AsyncStore,
    a: AccountId,
    since: &str,
) -> Result<(String, BTreeSet<String>), MethodError> {
    let since = since.to_owned();
    store
        .run(move |s| changed_since_blocking(s, a, &since))
        .await
        .map_err(store_error)
}

fn changed_since_blocking(
    s: &state::Store,
    a: AccountId,
    since: &str,
) -> state::Result<(String, BTreeSet<String>)> {
    let t = DataType::Mailbox;
    let mut changed = BTreeSet::new();
    let mut from = since.to_owned();
    loop {
        let c = s.changes(a, t, &from, None)?;
        changed.extend(
            c.created
                .iter()
                .chain(&c.destroyed)
                .map(|i| i.as_str().to_owned()),
        );
        if c.updated_properties.is_none() && !c.updated.is_empty() {
            // Some update in this window was more than counts: one id per page tells the
            // counts-only ones apart.
            let mut f = from.clone();
            loop {
                let p = s.changes(a, t, &f, Some(1))?;
                if p.updated_properties.is_none() {
                    changed.extend(p.updated.iter().map(|i| i.as_str().to_owned()));
                }
                f = p.new_state.to_string();
                if !p.has_more_changes || p.new_state.modseq() >= c.new_state.modseq() {
                    break;
                }
            }
        }
        from = c.new_state.to_string();
        if !c.has_more_changes {
            return Ok((from, changed));
        }
    }
}

impl<D> Handler<D> for MailboxQueryChanges
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let account = call.account()?;
            let request = QueryChangesRequest::<Map<String, Value>, TreeArgs>::from_arguments(
                call.arguments.clone(),
            )?;
            let query = Query::new(
                request.filter.as_ref(),
                request.sort.as_ref(),
                request.extra,
                &call.core.collation_algorithms,
            )?;
            let (store, a) = (account.store(), account.store_id());
            // The changes and the records must describe the same state: retry when a commit
            // lands in between.
            let mut attempt = 0;
            let (new_state, changed, all) = loop {
                attempt += 1;
                let (until, changed) = changed_since(store, a, &request.since_query_state).await?;
                let (state, all) = load_all(store, a).await?;
                if state.to_string() == until {
                    break (until, changed, all);
                }
                if attempt >= 5 {
                    return Err(MethodError::cannot_calculate_changes()
                        .with_description("Mailboxes keep changing; query again".to_owned()));
                }
            };
            let mut affected: BTreeSet<String> = changed;
            if query.tree.sort_as_tree || query.tree.filter_as_tree {
                // A change to a mailbox moves or filters its whole subtree.
                let by_id: HashMap<&str, &MailboxRecord> =
                    all.iter().map(|m| (m.id.as_str(), m)).collect();
                for m in &all {
                    if ancestry(m, &by_id).iter().any(|x| affected.contains(&x.id)) {
                        affected.insert(m.id.clone());
                    }
                }
            }
            let results = query.run(&all);
            let removed: Vec<Id> = affected
                .iter()
                .filter_map(|i| Id::new(i.as_str()).ok())
                .collect();
            let added: Vec<AddedItem> = results
                .iter()
                .enumerate()
                .filter(|(_, id)| affected.contains(id.as_str()))
                .map(|(i, id)| AddedItem {
                    id: id.clone(),
                    index: UnsignedInt::from_usize(i),
                })
                .collect();
            request.check_max_changes(removed.len(), added.len())?;
            let response = QueryChangesResponse {
                account_id: request.account_id.clone(),
                old_query_state: request.since_query_state.clone(),
                new_query_state: new_state,
                total: request
                    .calculate_total
                    .then(|| UnsignedInt::from_usize(results.len())),
                removed,
                added,
            };
            Ok(call.reply(response.to_arguments()))
        })
    }
}

// ---------------------------------------------------------------------------------------
// Mailbox/set

#[derive(Debug, Clone, Copy, Default)]
struct SetArgs {
    on_destroy_remove_emails: bool,
}

impl ExtraArguments for SetArgs {
    fn take(args: &mut Arguments) -> Result<Self, MethodError> {
        Ok(SetArgs {
            on_destroy_remove_emails: args.flag("onDestroyRemoveEmails", false)?,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct MailboxSet;

/// Why one create/update/destroy did not happen: the object's SetError, or a failure that
/// ends the whole call (upstream or the store unavailable).
#[derive(Debug)]
enum Fail {
    Object(SetError),
    Abort(MethodError),
}

impl From<SetError> for Fail {
    fn from(e: SetError) -> Fail {
        Fail::Object(e)
    }
}

impl From<MethodError> for Fail {
    fn from(e: MethodError) -> Fail {
        Fail::Abort(e)
    }
}

/// A write-through failure: upstream's refusal becomes the object's SetError with the
/// server's text (`invalidProperties` naming `properties` when given, else `forbidden`);
/// anything transient ends the call.
fn write_failure(e: SyncError, properties: &[&str]) -> Fail {
    match e {
        SyncError::Upstream(UpstreamError::Refused(text)) if !properties.is_empty() => {
            Fail::Object(
                SetError::invalid_properties(properties.iter().copied()).with_description(text),
            )
        }
        SyncError::Upstream(UpstreamError::Refused(text) | UpstreamError::Unsupported(text)) => {
            Fail::Object(SetError::forbidden().with_description(text))
        }
        SyncError::Upstream(UpstreamError::NotFound(text)) => {
            Fail::Object(SetError::not_found().with_description(text))
        }
        SyncError::UnknownMailbox(m) => Fail::Object(
            SetError::not_found().with_description(format!("mailbox {m} is gone upstream")),
        ),
        other => Fail::Abort(sync_error(other)),
    }
}

/// A Mailbox name as RFC 8621 allows it and the capability bounds it.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("the name must not be empty")
    } else if name.len() > MAX_NAME_OCTETS {
        Some("the name is longer than maxSizeMailboxName")
    } else if name.chars().any(char::is_control) {
        Some("the name must not contain control characters")
    } else {
        None
    }
}

struct SetContext<'c> {
    sync: AccountSync,
    store: AsyncStore,
    a: AccountId,
    /// Creation ids known before this call.
    earlier: &'c jmap_engine::CreatedIds,
    /// Creation ids this call assigned.
    created: BTreeMap<Id, Id>,
    /// Whether anything was changed upstream yet (then a failure is a partial one).
    changed_any: bool,
}

impl SetContext<'_> {
    fn resolve(&self, r: &IdRef) -> Option<Id> {
        match r {
            IdRef::Id(id) => Some(id.clone()),
            IdRef::Creation(c) => self
                .created
                .get(c)
                .cloned()
                .or_else(|| self.earlier.get(c.as_str()).cloned()),
        }
    }

    /// A `parentId` value: null, an id or `#creationId`; Err(()) when it is not a valid one.
    fn parent_value(&self, v: &Value) -> Result<Option<Id>, ()> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => {
                let r = IdRef::parse(s).map_err(|_| ())?;
                self.resolve(&r).map(Some).ok_or(())
            }
            _ => Err(()),
        }
    }

    async fn write(&mut self, op: WriteOp, properties: &[&str]) -> Result<WriteOutcome, Fail> {
        let out = self
            .sync
            .write(op)
            .await
            .map_err(|e| write_failure(e, properties))?;
        self.changed_any = true;
        Ok(out)
    }

    /// Checks a wanted name and parent against the current mailboxes: the parent exists and
    /// is not `moving` or inside it, and no sibling has the name.
    fn check_place(
        all: &[MailboxRecord],
        name: &str,
        parent: Option<&Id>,
        moving: Option<&str>,
    ) -> Result<Option<MailboxRecord>, SetError> {
        let parent_rec = match parent {
            None => None,
            Some(p) => {
                let Some(rec) = all.iter().find(|m| m.id == p.as_str()) else {
                    return Err(SetError::invalid_properties(["parentId"])
                        .with_description(format!("no Mailbox {p}")));
                };
                if let Some(me) = moving {
                    let by_id: HashMap<&str, &MailboxRecord> =
                        all.iter().map(|m| (m.id.as_str(), m)).collect();
                    if ancestry(rec, &by_id).iter().any(|x| x.id == me) {
                        return Err(SetError::invalid_properties(["parentId"]).with_description(
                            "a Mailbox cannot be moved under itself or its descendants",
                        ));
                    }
                }
                Some(rec.clone())
            }
        };
        let parent_id = parent.map(Id::as_str);
        if all.iter().any(|m| {
            m.parent_id.as_deref() == parent_id && m.name == name && Some(m.id.as_str()) != moving
        }) {
            return Err(SetError::invalid_properties(["name"])
                .with_description("a sibling Mailbox already has this name"));
        }
        Ok(parent_rec)
    }

    async fn create(&mut self, object: &Map<String, Value>) -> Result<Map<String, Value>, Fail> {
        let (_, all) = load_all(&self.store, self.a).await?;
        let mut invalid: Vec<&str> = Vec::new();
        let mut why: Vec<String> = Vec::new();
        for k in object.keys() {
            if !PROPERTIES.contains(&k.as_str()) {
                invalid.push(k);
                why.push(format!("unknown property '{k}'"));
            } else if SERVER_SET.contains(&k.as_str()) {
                invalid.push(k);
                why.push(format!("'{k}' is set by the server"));
            }
        }
        let name = match object.get("name") {
            Some(Value::String(n)) => match name_problem(n) {
                None => Some(n.clone()),
                Some(p) => {
                    invalid.push("name");
                    why.push(p.into());
                    None
                }
            },
            _ => {
                invalid.push("name");
                why.push("a name string is required".into());
                None
            }
        };
        let parent = match self.parent_value(object.get("parentId").unwrap_or(&Value::Null)) {
            Ok(p) => p,
            Err(()) => {
                invalid.push("parentId");
                why.push("parentId is not an existing Mailbox".into());
                None
            }
        };
        match object.get("role") {
            None | Some(Value::Null) => {}
            Some(Value::String(r)) if all.iter().any(|m| m.role.as_deref() == Some(r)) => {
                invalid.push("role");
                why.push(format!("another Mailbox has the role '{r}'"));
            }
            Some(_) => {
                invalid.push("role");
                why.push("roles cannot be assigned upstream".into());
            }
        }
        match object.get("sortOrder") {
            None => {}
            Some(v) if v.as_u64() == Some(u64::from(SORT_ORDER_NO_ROLE)) => {}
            Some(_) => {
                invalid.push("sortOrder");
                why.push(format!(
                    "sortOrder is set by the server ({SORT_ORDER_NO_ROLE} for a new Mailbox)"
                ));
            }
        }
        let subscribe = match object.get("isSubscribed") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                invalid.push("isSubscribed");
                why.push("isSubscribed must be a boolean".into());
                true
            }
        };
        if !invalid.is_empty() {
            invalid.dedup();
            return Err(SetError::invalid_properties(invalid)
                .with_description(why.join("; "))
                .into());
        }
        let Some(name) = name else {
            return Err(SetError::invalid_properties(["name"]).into());
        };
        let parent_rec = Self::check_place(&all, &name, parent.as_ref(), None)?;
        let outcome = self
            .write(
                WriteOp::CreateMailbox {
                    parent: parent_rec.map(|p| p.remote_id),
                    name,
                },
                &["name", "parentId"],
            )
            .await?;
        let WriteOutcome::Mailbox(remote) = outcome else {
            return Err(MethodError::server_fail("upstream did not report the new mailbox").into());
        };
        if remote.subscribed != subscribe {
            let op = WriteOp::Subscribe {
                remote_id: remote.remote_id.clone(),
                subscribed: subscribe,
            };
            if let Err(e) = self.sync.write(op).await {
                // The Mailbox exists; its isSubscribed says how it really is.
                tracing::warn!(error = %e, "subscribing a new mailbox failed");
            }
        }
        let id = self
            .sync
            .mailbox_id(&remote.remote_id)
            .and_then(|i| Id::new(i).ok())
            .ok_or_else(|| MethodError::server_fail("the new mailbox was not listed upstream"))?;
        let (rec, counts) = load_one(&self.store, self.a, &id)
            .await?
            .ok_or_else(|| MethodError::server_fail("the new mailbox was not recorded"))?;
        let mut created = to_json(&rec, &counts);
        // What the client sent is not repeated, unless the server holds something else.
        created.retain(|k, v| k == "id" || object.get(k) != Some(v));
        Ok(created)
    }

    async fn update(
        &mut self,
        id: &Id,
        patch: &jmap_engine::PatchObject,
    ) -> Result<Option<Map<String, Value>>, Fail> {
        let (_, all) = load_all(&self.store, self.a).await?;
        let Some(rec) = all.iter().find(|m| m.id == id.as_str()).cloned() else {
            return Err(SetError::not_found().into());
        };
        let counts = load_one(&self.store, self.a, id)
            .await?
            .map(|(_, c)| c)
            .unwrap_or_default();
        let current = Value::Object(to_json(&rec, &counts));
        let patched = match patch.apply(&current) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err(SetError::invalid_patch("the result is not an object").into()),
            Err(e) => return Err(SetError::from(e).into()),
        };
        let Value::Object(current) = current else {
            return Err(MethodError::server_fail("unreachable").into());
        };
        let mut invalid: Vec<String> = Vec::new();
        let mut why: Vec<String> = Vec::new();
        for (k, v) in &patched {
            if !PROPERTIES.contains(&k.as_str()) {
                invalid.push(k.clone());
                why.push(format!("unknown property '{k}'"));
                continue;
            }
            if matches!(k.as_str(), "name" | "parentId" | "isSubscribed") {
                continue;
            }
            if current.get(k) != Some(v) {
                invalid.push(k.clone());
                why.push(match k.as_str() {
                    "role" => "roles cannot be changed upstream".into(),
                    "sortOrder" => "sortOrder is set by the server".into(),
                    _ => format!("'{k}' is set by the server"),
                });
            }
        }
        let name = match patched.get("name") {
            Some(Value::String(n)) => match name_problem(n) {
                None => n.clone(),
                Some(p) => {
                    invalid.push("name".into());
                    why.push(p.into());
                    rec.name.clone()
                }
            },
            _ => {
                invalid.push("name".into());
                why.push("the name must be a string".into());
                rec.name.clone()
            }
        };
        let parent = match self.parent_value(patched.get("parentId").unwrap_or(&Value::Null)) {
            Ok(p) => p,
            Err(()) => {
                invalid.push("parentId".into());
                why.push("parentId is not an existing Mailbox".into());
                rec.parent_id.as_deref().and_then(|p| Id::new(p).ok())
            }
        };
        let subscribe = match patched.get("isSubscribed") {
            Some(Value::Bool(b)) => *b,
            _ => {
                invalid.push("isSubscribed".into());
                why.push("isSubscribed must be a boolean".into());
                rec.is_subscribed
            }
        };
        if !invalid.is_empty() {
            return Err(SetError::invalid_properties(invalid)
                .with_description(why.join("; "))
                .into());
        }
        let mut remote_id = rec.remote_id.clone();
        let moved = name != rec.name || parent.as_ref().map(Id::as_str) != rec.parent_id.as_deref();
        if moved {
            if !may_rename_or_delete(&rec) {
                return Err(SetError::forbidden()
                    .with_description("the inbox cannot be renamed or moved")
                    .into());
            }
            let parent_rec = Self::check_place(&all, &name, parent.as_ref(), Some(&rec.id))?;
            let outcome = self
                .write(
                    WriteOp::RenameMailbox {
                        remote_id: rec.remote_id.clone(),
                        parent: parent_rec.map(|p| p.remote_id),
                        name,
                    },
                    &["name", "parentId"],
                )
                .await?;
            if let WriteOutcome::Mailbox(m) = outcome {
                remote_id = m.remote_id;
            }
        }
        if subscribe != rec.is_subscribed {
            self.write(
                WriteOp::Subscribe {
                    remote_id,
                    subscribed: subscribe,
                },
                &[],
            )
            .await?;
        }
        Ok(None)
    }

    async fn destroy(&mut self, id: &Id, remove_emails: bool) -> Result<(), Fail> {
        let (_, all) = load_all(&self.store, self.a).await?;
        let Some(rec) = all.iter().find(|m| m.id == id.as_str()) else {
            return Err(SetError::not_found().into());
        };
        if !may_rename_or_delete(rec) {
            return Err(SetError::forbidden()
                .with_description("the inbox cannot be destroyed")
                .into());
        }
        if all
            .iter()
            .any(|m| m.parent_id.as_deref() == Some(id.as_str()))
        {
            return Err(SetError::new(jmap_engine::SetErrorType::MailboxHasChild).into());
        }
        let counts = load_one(&self.store, self.a, id)
            .await?
            .map(|(_, c)| c)
            .unwrap_or_default();
        if counts.total_emails > 0 && !remove_emails {
            return Err(SetError::new(jmap_engine::SetErrorType::MailboxHasEmail)
                .with_description(format!(
                    "{} Emails are in this Mailbox",
                    counts.total_emails
                ))
                .into());
        }
        // Upstream removes the mailbox with its messages; the relisting then drops those
        // copies, destroying the Emails that were only here.
        self.write(
            WriteOp::DeleteMailbox {
                remote_id: rec.remote_id.clone(),
            },
            &[],
        )
        .await?;
        Ok(())
    }
}

/// The creation id a create's `parentId` refers to, when it is one of this call's.
fn parent_creation(object: &Map<String, Value>) -> Option<Id> {
    match object.get("parentId") {
        Some(Value::String(s)) => match IdRef::parse(s) {
            Ok(IdRef::Creation(c)) => Some(c),
            _ => None,
        },
        _ => None,
    }
}

/// The depth of a mailbox in the hierarchy (0 at the top).
fn depth(id: &str, all: &[MailboxRecord]) -> usize {
    let by_id: HashMap<&str, &MailboxRecord> = all.iter().map(|m| (m.id.as_str(), m)).collect();
    by_id.get(id).map_or(0, |m| ancestry(m, &by_id).len())
}

impl<D> Handler<D> for MailboxSet
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let account = call.account()?;
            let request = SetRequest::<SetArgs>::from_arguments(call.arguments.clone())?;
            let (store, a) = (account.store().clone(), account.store_id());
            let old_state = store
                .state(a, DataType::Mailbox)
                .await
                .map_err(store_error)?
                .to_string();
            request.check_state(&old_state)?;
            let mut response: SetResponse = SetResponse::new(
                request.account_id.clone(),
                Some(old_state.clone()),
                old_state,
            );
            if request.object_count() == 0 {
                return Ok(call.reply(response.to_arguments()));
            }
            let Some(sync) = account.sync() else {
                return Err(MethodError::server_unavailable()
                    .with_description("the account's upstream is not connected"));
            };
            let mut cx = SetContext {
                sync: sync.clone(),
                store: store.clone(),
                a,
                earlier: call.created_ids,
                created: BTreeMap::new(),
                changed_any: false,
            };
            match run_set(&mut cx, &request, &mut response).await {
                Ok(()) => {}
                Err(e) if cx.changed_any => {
                    return Err(MethodError::server_partial_fail().with_description(format!(
                        "some changes were made before this failure: {e}"
                    )));
                }
                Err(e) => return Err(e),
            }
            response.new_state = store
                .state(a, DataType::Mailbox)
                .await
                .map_err(store_error)?
                .to_string();
            // The engine records the `created` map's ids for later calls.
            Ok::<MethodOutput, MethodError>(call.reply(response.to_arguments()))
        })
    }
}

/// Creates (parents before the children that refer to them), then updates, then destroys
/// (children before parents). Stops at the first failure that is not one object's.
async fn run_set(
    cx: &mut SetContext<'_>,
    request: &SetRequest<SetArgs>,
    response: &mut SetResponse,
) -> Result<(), MethodError> {
    let mut pending: Vec<(Id, Map<String, Value>)> = request
        .create
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut failed: HashSet<Id> = HashSet::new();
    while !pending.is_empty() {
        let waiting: HashSet<Id> = pending.iter().map(|(c, _)| c.clone()).collect();
        let next = pending
            .iter()
            .position(|(_, o)| parent_creation(o).is_none_or(|p| !waiting.contains(&p)));
        let Some(i) = next else {
            for (c, _) in pending.drain(..) {
                response.add_not_created(
                    c,
                    SetError::invalid_properties(["parentId"])
                        .with_description("the creations refer to each other in a loop"),
                );
            }
            break;
        };
        let (creation_id, object) = pending.remove(i);
        if let Some(p) = parent_creation(&object)
            && failed.contains(&p)
        {
            failed.insert(creation_id.clone());
            response.add_not_created(
                creation_id,
                SetError::invalid_properties(["parentId"])
                    .with_description(format!("the parent #{p} was not created")),
            );
            continue;
        }
        match cx.create(&object).await {
            Ok(created) => {
                if let Some(id) = created.get("id").and_then(Value::as_str)
                    && let Ok(id) = Id::new(id)
                {
                    cx.created.insert(creation_id.clone(), id);
                }
                response.add_created(creation_id, created);
            }
            Err(Fail::Object(e)) => {
                failed.insert(creation_id.clone());
                response.add_not_created(creation_id, e);
            }
            Err(Fail::Abort(e)) => return Err(e),
        }
    }

    let destroying: Vec<Option<Id>> = request
        .destroy
        .iter()
        .flatten()
        .map(|r| cx.resolve(r))
        .collect();
    for (id_ref, patch) in request.update.clone().unwrap_or_default() {
        let Some(id) = cx.resolve(&id_ref) else {
            response.add_not_updated(id_ref, SetError::not_found());
            continue;
        };
        if destroying.contains(&Some(id.clone())) {
            response.add_not_updated(id_ref, SetError::will_destroy());
            continue;
        }
        match cx.update(&id, &patch).await {
            Ok(changed) => response.add_updated(id, changed),
            Err(Fail::Object(e)) => response.add_not_updated(id_ref, e),
            Err(Fail::Abort(e)) => return Err(e),
        }
    }

    let mut destroys: Vec<(IdRef, Option<Id>)> = request
        .destroy
        .clone()
        .unwrap_or_default()
        .into_iter()
        .zip(destroying)
        .collect();
    if destroys.len() > 1 {
        let (_, all) = load_all(&cx.store, cx.a).await?;
        destroys.sort_by_key(|(_, id)| {
            std::cmp::Reverse(id.as_ref().map_or(0, |i| depth(i.as_str(), &all)))
        });
    }
    for (id_ref, id) in destroys {
        let Some(id) = id else {
            response.add_not_destroyed(id_ref, SetError::not_found());
            continue;
        };
        match cx
            .destroy(&id, request.extra.on_destroy_remove_emails)
            .await
        {
            Ok(()) => response.add_destroyed(id),
            Err(Fail::Object(e)) => response.add_not_destroyed(id_ref, e),
            Err(Fail::Abort(e)) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};
    use upstream::{MailboxRole, UpstreamError};

    use super::super::fake::{self, FakeUpstream, fixture_with, fixture_with_fake};
    use super::super::testing::{Fixture, email, mailbox};
    use super::*;

    /// INBOX, Archive (placeholder) with child 2024, Trash; one unread and one seen Email in
    /// INBOX (two threads), one Email in 2024.
    async fn reads_fixture() -> Fixture {
        let f = Fixture::new();
        let mut inbox = mailbox("Minbox", "INBOX", Some("inbox"));
        inbox.sort_order = 1;
        f.put_mailbox(&inbox).await;
        let mut archive = mailbox("Marchive", "Archive", None);
        archive.selectable = false;
        archive.is_subscribed = false;
        archive.sort_order = 10;
        f.put_mailbox(&archive).await;
        let mut y = mailbox("M2024", "2024", None);
        y.parent_id = Some("Marchive".into());
        y.sort_order = 10;
        f.put_mailbox(&y).await;
        let mut trash = mailbox("Mtrash", "Trash", Some("trash"));
        trash.sort_order = 6;
        f.put_mailbox(&trash).await;
        f.put_email(&email("Ea", "Ta", "Minbox", "1", &[], 100, "Subject: a"))
            .await;
        f.put_email(&email(
            "Eb",
            "Tb",
            "Minbox",
            "2",
            &["$seen"],
            200,
            "Subject: b",
        ))
        .await;
        f.put_email(&email(
            "Ec",
            "Tc",
            "M2024",
            "1",
            &["$seen"],
            300,
            "Subject: c",
        ))
        .await;
        f
    }

    fn by_id(list: &Value, id: &str) -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == json!(id))
            .cloned()
            .unwrap_or(Value::Null)
    }

    async fn error_type(f: &Fixture, method: &str, args: Value) -> String {
        let r = f.call(method, args).await;
        assert_eq!(r[0][0], json!("error"), "expected an error: {r:?}");
        r[0][1]["type"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn get_returns_every_property_and_not_found() {
        let f = reads_fixture().await;
        let r = f.ok("Mailbox/get", json!({"ids": null})).await;
        assert_eq!(r["list"].as_array().unwrap().len(), 4);
        assert_eq!(r["notFound"], json!([]));
        let inbox = by_id(&r["list"], "Minbox");
        assert_eq!(
            inbox,
            json!({
                "id": "Minbox", "name": "INBOX", "parentId": null, "role": "inbox",
                "sortOrder": 1, "totalEmails": 2, "unreadEmails": 1, "totalThreads": 2,
                "unreadThreads": 1, "isSubscribed": true,
                "myRights": {
                    "mayReadItems": true, "mayAddItems": true, "mayRemoveItems": true,
                    "maySetSeen": true, "maySetKeywords": true, "mayCreateChild": true,
                    "mayRename": false, "mayDelete": false, "maySubmit": false
                }
            })
        );
        let archive = by_id(&r["list"], "Marchive");
        assert_eq!(archive["isSubscribed"], json!(false));
        assert_eq!(archive["myRights"]["mayAddItems"], json!(false));
        assert_eq!(archive["myRights"]["mayReadItems"], json!(false));
        assert_eq!(archive["myRights"]["mayCreateChild"], json!(true));
        assert_eq!(archive["myRights"]["mayDelete"], json!(true));
        let y = by_id(&r["list"], "M2024");
        assert_eq!(y["parentId"], json!("Marchive"));
        assert_eq!(y["totalEmails"], json!(1));
        assert_eq!(y["unreadThreads"], json!(0));
        let state = f
            .account
            .store
            .state(AccountId(1), DataType::Mailbox)
            .await
            .unwrap();
        assert_eq!(r["state"], json!(state.to_string()));

        let r = f
            .ok(
                "Mailbox/get",
                json!({"ids": ["Mtrash", "Mnope", "Mtrash"], "properties": ["name", "unreadEmails"]}),
            )
            .await;
        assert_eq!(
            r["list"],
            json!([{"id": "Mtrash", "name": "Trash", "unreadEmails": 0}])
        );
        assert_eq!(r["notFound"], json!(["Mnope"]));
        assert_eq!(
            error_type(&f, "Mailbox/get", json!({"properties": ["colour"]})).await,
            "invalidArguments"
        );
    }

    #[tokio::test]
    async fn changes_report_counts_only_updates_and_page() {
        let f = reads_fixture().await;
        let s0 = f.ok("Mailbox/get", json!({"ids": []})).await["state"].clone();
        // A new Email changes only INBOX's counts.
        f.put_email(&email("Ed", "Td", "Minbox", "3", &[], 400, "Subject: d"))
            .await;
        let r = f.ok("Mailbox/changes", json!({"sinceState": s0})).await;
        assert_eq!(r["updated"], json!(["Minbox"]));
        assert_eq!(
            r["updatedProperties"],
            json!([
                "totalEmails",
                "unreadEmails",
                "totalThreads",
                "unreadThreads"
            ])
        );
        assert_eq!(r["hasMoreChanges"], json!(false));
        let s1 = r["newState"].clone();
        // A rename is more than counts; a new mailbox is created.
        let mut trash = mailbox("Mtrash", "Bin", Some("trash"));
        trash.sort_order = 6;
        f.put_mailbox(&trash).await;
        f.put_mailbox(&mailbox("Mnew", "New", None)).await;
        let r = f.ok("Mailbox/changes", json!({"sinceState": s1})).await;
        assert_eq!(r["updated"], json!(["Mtrash"]));
        assert_eq!(r["created"], json!(["Mnew"]));
        assert_eq!(r["updatedProperties"], json!(null));
        // Paging one change at a time.
        let r = f
            .ok(
                "Mailbox/changes",
                json!({"sinceState": s1, "maxChanges": 1}),
            )
            .await;
        assert_eq!(r["hasMoreChanges"], json!(true));
        assert_eq!(r["updated"], json!(["Mtrash"]));
        let r = f
            .ok(
                "Mailbox/changes",
                json!({"sinceState": r["newState"], "maxChanges": 1}),
            )
            .await;
        assert_eq!(r["created"], json!(["Mnew"]));
        assert_eq!(r["hasMoreChanges"], json!(false));
        assert_eq!(
            error_type(&f, "Mailbox/changes", json!({"sinceState": "junk"})).await,
            "cannotCalculateChanges"
        );
        assert_eq!(
            error_type(
                &f,
                "Mailbox/changes",
                json!({"sinceState": s1, "maxChanges": 0})
            )
            .await,
            "invalidArguments"
        );
    }

    async fn query(f: &Fixture, args: Value) -> Vec<String> {
        let r = f.ok("Mailbox/query", args).await;
        serde_json::from_value(r["ids"].clone()).unwrap()
    }

    #[tokio::test]
    async fn query_filters_and_operators() {
        let f = reads_fixture().await;
        let q = |filter: Value| json!({"filter": filter, "sort": [{"property": "name"}]});
        assert_eq!(
            query(&f, q(json!({"parentId": null}))).await,
            ["Marchive", "Minbox", "Mtrash"]
        );
        assert_eq!(
            query(&f, q(json!({"parentId": "Marchive"}))).await,
            ["M2024"]
        );
        assert_eq!(query(&f, q(json!({"name": "rAsH"}))).await, ["Mtrash"]);
        assert_eq!(query(&f, q(json!({"role": "inbox"}))).await, ["Minbox"]);
        assert_eq!(
            query(&f, q(json!({"role": null}))).await,
            ["M2024", "Marchive"]
        );
        assert_eq!(
            query(&f, q(json!({"hasAnyRole": true}))).await,
            ["Minbox", "Mtrash"]
        );
        assert_eq!(
            query(&f, q(json!({"hasAnyRole": false}))).await,
            ["M2024", "Marchive"]
        );
        assert_eq!(
            query(&f, q(json!({"isSubscribed": false}))).await,
            ["Marchive"]
        );
        assert_eq!(query(&f, q(json!({}))).await.len(), 4);
        assert_eq!(
            query(
                &f,
                q(json!({"operator": "OR", "conditions": [{"role": "trash"}, {"name": "2024"}]}))
            )
            .await,
            ["M2024", "Mtrash"]
        );
        assert_eq!(
            query(
                &f,
                q(json!({"operator": "AND", "conditions": [{"parentId": null}, {"isSubscribed": true}]}))
            )
            .await,
            ["Minbox", "Mtrash"]
        );
        assert_eq!(
            query(
                &f,
                q(json!({"operator": "NOT", "conditions": [{"hasAnyRole": true}, {"name": "arch"}]}))
            )
            .await,
            ["M2024"]
        );
        assert_eq!(
            error_type(&f, "Mailbox/query", json!({"filter": {"colour": "red"}})).await,
            "unsupportedFilter"
        );
        assert_eq!(
            error_type(
                &f,
                "Mailbox/query",
                json!({"filter": {"hasAnyRole": "yes"}})
            )
            .await,
            "invalidArguments"
        );
        assert_eq!(
            error_type(
                &f,
                "Mailbox/query",
                json!({"filter": {"operator": "XOR", "conditions": []}})
            )
            .await,
            "invalidArguments"
        );
    }

    #[tokio::test]
    async fn query_sorts_windows_and_trees() {
        let f = reads_fixture().await;
        // Default: sortOrder, then name.
        assert_eq!(
            query(&f, json!({})).await,
            ["Minbox", "Mtrash", "M2024", "Marchive"]
        );
        assert_eq!(
            query(
                &f,
                json!({"sort": [{"property": "name", "isAscending": false}]})
            )
            .await,
            ["Mtrash", "Minbox", "Marchive", "M2024"]
        );
        assert_eq!(
            query(
                &f,
                json!({"sort": [{"property": "sortOrder", "isAscending": false}, {"property": "name", "collation": "i;ascii-casemap"}]})
            )
            .await,
            ["M2024", "Marchive", "Mtrash", "Minbox"]
        );
        // As a tree: the parent before its child whatever the comparators say.
        assert_eq!(
            query(&f, json!({"sort": [{"property": "sortOrder", "isAscending": false}, {"property": "name"}], "sortAsTree": true}))
                .await,
            ["Marchive", "M2024", "Mtrash", "Minbox"]
        );
        // filterAsTree: 2024 is subscribed but its parent is not.
        let subscribed = json!({"filter": {"isSubscribed": true}, "sort": [{"property": "name"}]});
        assert_eq!(
            query(&f, subscribed.clone()).await,
            ["M2024", "Minbox", "Mtrash"]
        );
        let mut as_tree = subscribed;
        as_tree["filterAsTree"] = json!(true);
        assert_eq!(query(&f, as_tree).await, ["Minbox", "Mtrash"]);
        // Windowing.
        let r = f
            .ok(
                "Mailbox/query",
                json!({"position": 1, "limit": 2, "calculateTotal": true}),
            )
            .await;
        assert_eq!(r["ids"], json!(["Mtrash", "M2024"]));
        assert_eq!(r["position"], json!(1));
        assert_eq!(r["total"], json!(4));
        assert_eq!(r["canCalculateChanges"], json!(true));
        let state = f
            .account
            .store
            .state(AccountId(1), DataType::Mailbox)
            .await
            .unwrap();
        assert_eq!(r["queryState"], json!(state.to_string()));
        let r = f
            .ok(
                "Mailbox/query",
                json!({"anchor": "Mtrash", "anchorOffset": 1}),
            )
            .await;
        assert_eq!(r["ids"], json!(["M2024", "Marchive"]));
        assert!(r.get("total").is_none());
        assert_eq!(
            error_type(&f, "Mailbox/query", json!({"anchor": "Mnope"})).await,
            "anchorNotFound"
        );
        assert_eq!(
            error_type(
                &f,
                "Mailbox/query",
                json!({"sort": [{"property": "totalEmails"}]})
            )
            .await,
            "unsupportedSort"
        );
        assert_eq!(
            error_type(
                &f,
                "Mailbox/query",
                json!({"sort": [{"property": "name", "collation": "i;klingon"}]})
            )
            .await,
            "unsupportedSort"
        );
    }

    #[tokio::test]
    async fn query_changes_are_exact() {
        let f = reads_fixture().await;
        let args = json!({"sort": [{"property": "name"}], "filter": {"parentId": null}});
        let r = f.ok("Mailbox/query", args.clone()).await;
        assert_eq!(r["ids"], json!(["Marchive", "Minbox", "Mtrash"]));
        let s0 = r["queryState"].clone();
        let qc = |since: &Value| {
            let mut a = args.clone();
            a["sinceQueryState"] = since.clone();
            a["calculateTotal"] = json!(true);
            a
        };
        let r = f.ok("Mailbox/queryChanges", qc(&s0)).await;
        assert_eq!(
            (r["removed"].clone(), r["added"].clone()),
            (json!([]), json!([]))
        );
        assert_eq!(r["newQueryState"], s0);
        // Counts-only changes do not touch the results.
        f.put_email(&email("Ed", "Td", "Minbox", "3", &[], 400, "Subject: d"))
            .await;
        let r = f.ok("Mailbox/queryChanges", qc(&s0)).await;
        assert_eq!(
            (r["removed"].clone(), r["added"].clone()),
            (json!([]), json!([]))
        );
        assert_ne!(r["newQueryState"], s0);
        // A rename moves Trash to the front; a new top-level mailbox comes in.
        let mut trash = mailbox("Mtrash", "Bin", Some("trash"));
        trash.sort_order = 6;
        f.put_mailbox(&trash).await;
        f.put_mailbox(&mailbox("Mzz", "Zz", None)).await;
        let r = f.ok("Mailbox/queryChanges", qc(&s0)).await;
        assert_eq!(r["removed"], json!(["Mtrash", "Mzz"]));
        assert_eq!(
            r["added"],
            json!([{"id": "Mtrash", "index": 1}, {"id": "Mzz", "index": 3}])
        );
        assert_eq!(r["total"], json!(4));
        let now = f.ok("Mailbox/query", args.clone()).await;
        assert_eq!(r["newQueryState"], now["queryState"]);
        assert_eq!(now["ids"], json!(["Marchive", "Mtrash", "Minbox", "Mzz"]));
        let mut few = qc(&s0);
        few["maxChanges"] = json!(3);
        assert_eq!(
            error_type(&f, "Mailbox/queryChanges", few).await,
            "tooManyChanges"
        );
        assert_eq!(
            error_type(&f, "Mailbox/queryChanges", qc(&json!("bogus"))).await,
            "cannotCalculateChanges"
        );
        // In a tree query a moved parent takes its subtree along.
        let tree = json!({"sortAsTree": true, "sort": [{"property": "name"}]});
        let r = f.ok("Mailbox/query", tree.clone()).await;
        let s1 = r["queryState"].clone();
        let mut archive = mailbox("Marchive", "Old", None);
        archive.selectable = false;
        archive.is_subscribed = false;
        archive.sort_order = 10;
        f.put_mailbox(&archive).await;
        let mut a = tree;
        a["sinceQueryState"] = s1;
        let r = f.ok("Mailbox/queryChanges", a).await;
        assert_eq!(r["removed"], json!(["M2024", "Marchive"]));
        assert_eq!(
            r["added"],
            json!([{"id": "Marchive", "index": 2}, {"id": "M2024", "index": 3}])
        );
    }

    // --- Mailbox/set ------------------------------------------------------------------

    async fn set(f: &Fixture, args: Value) -> Value {
        f.ok("Mailbox/set", args).await
    }

    fn sync_of(f: &Fixture) -> AccountSync {
        f.account.sync.clone().unwrap()
    }

    #[tokio::test]
    async fn create_writes_through_and_reports_server_set_properties() {
        let (f, fake) = fixture_with_fake().await;
        let r = set(
            &f,
            json!({"create": {
                "child": {"name": "Q1", "parentId": "#top"},
                "top": {"name": "Projects"}
            }}),
        )
        .await;
        assert!(r.get("notCreated").is_none(), "{r}");
        let sync = sync_of(&f);
        let top = sync.mailbox_id("Projects").unwrap();
        let child = sync.mailbox_id("Projects/Q1").unwrap();
        assert_eq!(
            r["created"]["top"],
            json!({
                "id": top, "parentId": null, "role": null, "sortOrder": SORT_ORDER_NO_ROLE,
                "totalEmails": 0, "unreadEmails": 0, "totalThreads": 0, "unreadThreads": 0,
                "isSubscribed": true,
                "myRights": {
                    "mayReadItems": true, "mayAddItems": true, "mayRemoveItems": true,
                    "maySetSeen": true, "maySetKeywords": true, "mayCreateChild": true,
                    "mayRename": true, "mayDelete": true, "maySubmit": false
                }
            })
        );
        assert_eq!(r["created"]["child"]["id"], json!(child));
        assert!(r["created"]["child"].get("name").is_none());
        assert_eq!(r["created"]["child"]["parentId"], json!(top));
        assert!(fake.mailbox("Projects").unwrap().subscribed);
        assert_ne!(r["oldState"], r["newState"]);
        let now = f.ok("Mailbox/get", json!({"ids": [child]})).await;
        assert_eq!(now["state"], r["newState"]);
        assert_eq!(now["list"][0]["name"], json!("Q1"));
        // Unsubscribed on request; the created id is usable later in the request.
        let r = f
            .request(json!([
                ["Mailbox/set", {"accountId": "a1", "create": {"u": {"name": "Quiet", "isSubscribed": false}}}, "0"],
                ["Mailbox/get", {"accountId": "a1", "ids": ["#u"], "properties": ["isSubscribed"]}, "1"]
            ]))
            .await;
        assert!(r[0][1]["created"]["u"].get("isSubscribed").is_none());
        assert_eq!(r[1][1]["list"][0]["isSubscribed"], json!(false));
        assert!(!fake.mailbox("Quiet").unwrap().subscribed);
    }

    #[tokio::test]
    async fn create_errors() {
        let (f, fake) = fixture_with_fake().await;
        let r = set(
            &f,
            json!({"create": {
                "empty": {"name": ""},
                "noname": {},
                "slash": {"name": "a/b"},
                "role": {"name": "R", "role": "inbox"},
                "newrole": {"name": "R", "role": "flagged"},
                "order": {"name": "O", "sortOrder": 3},
                "server": {"name": "S", "totalEmails": 0, "myRights": {}},
                "unknown": {"name": "U", "colour": "red"},
                "parent": {"name": "P", "parentId": "Mnope"},
                "orphan": {"name": "P", "parentId": "#slash"},
                "dup": {"name": "Trash"},
                "loop1": {"name": "L1", "parentId": "#loop2"},
                "loop2": {"name": "L2", "parentId": "#loop1"},
                "sub": {"name": "X", "isSubscribed": "yes"}
            }}),
        )
        .await;
        let nc = &r["notCreated"];
        let props = |k: &str| nc[k]["properties"].clone();
        for k in [
            "empty", "noname", "slash", "role", "newrole", "order", "server", "unknown", "parent",
            "orphan", "dup", "loop1", "loop2", "sub",
        ] {
            assert_eq!(nc[k]["type"], json!("invalidProperties"), "{k}: {r}");
        }
        assert_eq!(props("empty"), json!(["name"]));
        assert_eq!(props("noname"), json!(["name"]));
        // Upstream refused the name: its text is passed on.
        assert_eq!(props("slash"), json!(["name", "parentId"]));
        assert!(
            nc["slash"]["description"]
                .as_str()
                .unwrap()
                .contains("Invalid mailbox name")
        );
        assert_eq!(props("role"), json!(["role"]));
        assert!(
            nc["role"]["description"]
                .as_str()
                .unwrap()
                .contains("another Mailbox")
        );
        assert_eq!(props("newrole"), json!(["role"]));
        assert_eq!(props("order"), json!(["sortOrder"]));
        assert_eq!(props("server"), json!(["myRights", "totalEmails"]));
        assert_eq!(props("unknown"), json!(["colour"]));
        assert_eq!(props("parent"), json!(["parentId"]));
        assert_eq!(props("orphan"), json!(["parentId"]));
        assert_eq!(props("dup"), json!(["name"]));
        assert_eq!(props("sub"), json!(["isSubscribed"]));
        assert!(r.get("created").is_none());
        assert_eq!(r["oldState"], r["newState"]);
        assert!(
            fake.ops()
                .iter()
                .all(|op| matches!(op, WriteOp::CreateMailbox { name, .. } if name == "a/b")),
            "only the name upstream judges went upstream: {:?}",
            fake.ops()
        );
    }

    #[tokio::test]
    async fn update_renames_moves_and_subscribes() {
        let (f, fake) = fixture_with_fake().await;
        let parent = fake.add_mailbox(None, "Projects", None);
        fake.add_mailbox(Some(&parent), "Q1", None);
        let sync = sync_of(&f);
        sync.sync_all().await.unwrap();
        let projects = sync.mailbox_id("Projects").unwrap();
        let q1 = sync.mailbox_id("Projects/Q1").unwrap();
        let trash = sync.mailbox_id("Trash").unwrap();
        let r = set(
            &f,
            json!({"update": {
                projects.clone(): {"name": "Work", "isSubscribed": false},
            }}),
        )
        .await;
        assert_eq!(r["updated"], json!({projects.clone(): null}), "{r}");
        assert!(!fake.mailbox("Work").unwrap().subscribed);
        assert_eq!(sync.mailbox_id("Work").unwrap(), projects);
        assert_eq!(
            sync.mailbox_id("Work/Q1").unwrap(),
            q1,
            "the child keeps its id"
        );
        // Move Q1 under Trash, sending the whole object back (server-set values unchanged).
        let whole = f.ok("Mailbox/get", json!({"ids": [q1]})).await["list"][0].clone();
        let mut patch = whole.clone();
        patch["parentId"] = json!(trash);
        let r = set(&f, json!({"update": {q1.clone(): patch}})).await;
        assert_eq!(r["updated"], json!({q1.clone(): null}), "{r}");
        assert!(fake.mailbox("Trash/Q1").is_some());
        let got = f.ok("Mailbox/get", json!({"ids": [q1]})).await;
        assert_eq!(got["list"][0]["parentId"], json!(trash));
        assert_eq!(got["state"], r["newState"]);
        // And back to the top level.
        let r = set(&f, json!({"update": {q1.clone(): {"parentId": null}}})).await;
        assert!(r.get("notUpdated").is_none(), "{r}");
        assert!(fake.mailbox("Q1").is_some());
    }

    #[tokio::test]
    async fn update_errors() {
        let (f, fake) = fixture_with_fake().await;
        fake.add_mailbox(None, "A", None);
        let sync = sync_of(&f);
        sync.sync_all().await.unwrap();
        let sync = sync_of(&f);
        let a = sync.mailbox_id("A").unwrap();
        let r = set(&f, json!({"create": {"b": {"name": "B", "parentId": a}}})).await;
        let b = r["created"]["b"]["id"].as_str().unwrap().to_owned();
        let inbox = sync.mailbox_id("INBOX").unwrap();
        let ops_before = fake.ops().len();
        let r = set(
            &f,
            json!({
                "update": {
                    a.clone(): {"parentId": b},
                    b.clone(): {"role": "archive", "sortOrder": 1, "totalEmails": 5},
                    inbox.clone(): {"name": "Post"},
                    "Mnope": {"name": "x"},
                    sync.mailbox_id("Sent").unwrap(): {"name": "Trash"},
                    sync.mailbox_id("Drafts").unwrap(): {"myRights/mayDelete": false},
                    sync.mailbox_id("Trash").unwrap(): {"name/x": "y"},
                },
                "destroy": []
            }),
        )
        .await;
        let nu = &r["notUpdated"];
        assert_eq!(nu[&a]["type"], json!("invalidProperties"), "{r}");
        assert_eq!(nu[&a]["properties"], json!(["parentId"]));
        assert_eq!(
            nu[&b]["properties"],
            json!(["role", "sortOrder", "totalEmails"])
        );
        assert_eq!(nu[&inbox]["type"], json!("forbidden"));
        assert_eq!(nu["Mnope"]["type"], json!("notFound"));
        assert_eq!(
            nu[sync.mailbox_id("Sent").unwrap()]["properties"],
            json!(["name"])
        );
        assert_eq!(
            nu[sync.mailbox_id("Drafts").unwrap()]["properties"],
            json!(["myRights"])
        );
        assert_eq!(
            nu[sync.mailbox_id("Trash").unwrap()]["type"],
            json!("invalidPatch")
        );
        assert!(r.get("updated").is_none());
        assert_eq!(fake.ops().len(), ops_before, "nothing went upstream");
        // willDestroy.
        let r = set(
            &f,
            json!({"update": {b.clone(): {"name": "C"}}, "destroy": [b]}),
        )
        .await;
        assert_eq!(r["notUpdated"][&b]["type"], json!("willDestroy"));
        assert_eq!(r["destroyed"], json!([b]));
    }

    #[tokio::test]
    async fn destroy_paths() {
        let (f, fake) = fixture_with_fake().await;
        let parent = fake.add_mailbox(None, "Old", None);
        fake.add_mailbox(Some(&parent), "Inner", None);
        fake.add_mailbox(None, "Full", None);
        let only = fake::message("only here", "only@x", "1");
        let both = fake::message("in two", "both@x", "2");
        fake.deliver("Full", &only, &[]);
        fake.deliver("Full", &both, &[]);
        fake.deliver("INBOX", &both, &[]);
        let sync = sync_of(&f);
        sync.sync_all().await.unwrap();
        let id = |r: &str| sync.mailbox_id(r).unwrap();
        let (old, inner, full) = (id("Old"), id("Old/Inner"), id("Full"));
        let r = set(&f, json!({"destroy": [old, full, id("INBOX"), "Mnope"]})).await;
        let nd = &r["notDestroyed"];
        assert_eq!(nd[&old]["type"], json!("mailboxHasChild"), "{r}");
        assert_eq!(nd[&full]["type"], json!("mailboxHasEmail"));
        assert_eq!(nd[id("INBOX")]["type"], json!("forbidden"));
        assert_eq!(nd["Mnope"]["type"], json!("notFound"));
        assert!(r.get("destroyed").is_none());
        // Parent and child in one call: the child goes first.
        let r = set(&f, json!({"destroy": [old, inner]})).await;
        assert_eq!(r["destroyed"], json!([inner, old]), "{r}");
        assert!(fake.mailbox("Old").is_none());
        // onDestroyRemoveEmails: the Email only in Full is destroyed, the other stays in INBOX.
        let r = set(
            &f,
            json!({"destroy": [full], "onDestroyRemoveEmails": true}),
        )
        .await;
        assert_eq!(r["destroyed"], json!([full]), "{r}");
        let only_id = crate::email_id(&fake::fingerprint(&only));
        let both_id = crate::email_id(&fake::fingerprint(&both));
        assert!(sync.email(&only_id).await.unwrap().is_none());
        let rec = sync.email(&both_id).await.unwrap().unwrap();
        assert_eq!(rec.mailbox_ids().collect::<Vec<_>>(), [id("INBOX")]);
        let got = f.ok("Mailbox/get", json!({"ids": [full]})).await;
        assert_eq!(got["notFound"], json!([full]));
    }

    #[tokio::test]
    async fn set_method_level_errors_and_upstream_failures() {
        // No sync driver: nothing can be written.
        let f = reads_fixture().await;
        assert_eq!(
            error_type(&f, "Mailbox/set", json!({"create": {"x": {"name": "X"}}})).await,
            "serverUnavailable"
        );
        // An empty /set needs no upstream.
        let r = set(&f, json!({})).await;
        assert_eq!(r["oldState"], r["newState"]);
        assert_eq!(
            error_type(
                &f,
                "Mailbox/set",
                json!({"ifInState": "nope", "destroy": ["Mtrash"]})
            )
            .await,
            "stateMismatch"
        );
        assert_eq!(
            error_type(&f, "Mailbox/set", json!({"onDestroyRemoveEmails": 1})).await,
            "invalidArguments"
        );

        let fake = FakeUpstream::new();
        fake.add_mailbox(None, "Keep", Some(MailboxRole::Archive));
        let (f, fake) = fixture_with(fake).await;
        let state = f.ok("Mailbox/get", json!({"ids": []})).await["state"].clone();
        let r = set(
            &f,
            json!({"ifInState": state, "create": {"c1": {"name": "C1"}, "c2": {"name": "C2"}}}),
        )
        .await;
        let c1 = r["created"]["c1"]["id"].as_str().unwrap().to_owned();
        let c2 = r["created"]["c2"]["id"].as_str().unwrap().to_owned();
        let keep = sync_of(&f).mailbox_id("Keep").unwrap();
        // Upstream refusal: the object's error, with the server's text.
        fake.fail_next(UpstreamError::Refused("[NOPERM] no".into()));
        let r = set(&f, json!({"destroy": [keep]})).await;
        assert_eq!(r["notDestroyed"][&keep]["type"], json!("forbidden"));
        assert_eq!(
            r["notDestroyed"][&keep]["description"],
            json!("[NOPERM] no")
        );
        fake.fail_next(UpstreamError::NotFound("no such mailbox".into()));
        let r = set(&f, json!({"update": {keep.clone(): {"name": "K"}}})).await;
        assert_eq!(r["notUpdated"][&keep]["type"], json!("notFound"));
        // Upstream down before anything happened: serverUnavailable.
        fake.fail_next(UpstreamError::Unavailable("connection reset".into()));
        assert_eq!(
            error_type(&f, "Mailbox/set", json!({"destroy": [c1]})).await,
            "serverUnavailable"
        );
        // Down after the first destroy went through: serverPartialFail.
        fake.pass_next();
        fake.fail_next(UpstreamError::Unavailable("connection reset".into()));
        assert_eq!(
            error_type(&f, "Mailbox/set", json!({"destroy": [c1, c2]})).await,
            "serverPartialFail"
        );
        let got = f.ok("Mailbox/get", json!({"ids": [c1, c2]})).await;
        assert_eq!(got["notFound"].as_array().unwrap().len(), 1, "{got}");
    }
}
