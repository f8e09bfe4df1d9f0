//! Email/query, Email/queryChanges and Email/changes (RFC 8621 §4.3–4.6).
//!
//! Email/query has two paths:
//! - **Index path**: no filter, `{inMailbox}` or `{hasKeyword}`, sorted by one of
//!   receivedAt/size/sentAt (what [`state::EmailQuery`] indexes): answered by the store,
//!   windowing and totals included, without reading a record.
//! - **Record path**: everything else. The candidates come from the narrowest index the filter
//!   allows (an `inMailbox` or `hasKeyword` that must hold), their records are read in chunks
//!   from one state, filtered, sorted and collapsed in memory, then windowed.
//!
//! Full-text conditions (`text`, `body`) are the one part of a query answered upstream: before
//! evaluation, each is sent as an [`upstream::Upstream::search`] to the mailbox of its
//! condition's `inMailbox`, else to every selectable mailbox, one after the other, and the
//! uids found are mapped to Email ids through the sync driver's uid index. A message
//! upstream has that is not synced yet is not in the result (it is not in the store either).
//! Without a sync driver or server-side search, `text` falls back to the records (headers
//! and preview) and `body` is `unsupportedFilter` (see `filter`); other upstream failures
//! fail the call with `serverUnavailable` rather than answer inexactly.
//!
//! Email/queryChanges is exact for the shapes the store logs membership for (no filter or
//! `{inMailbox}`, sorted by receivedAt, with or without collapseThreads) and
//! `cannotCalculateChanges` for every other one; Email/query says so in
//! `canCalculateChanges`.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use jmap_engine::standard::{
    ChangesRequest, Comparator, Filter, Operator, QueryChangesRequest, QueryChangesResponse,
    QueryRequest,
};
use jmap_engine::{
    AccountDirectory, Arguments, Engine, ExtraArguments, Handler, HandlerFuture, Id, MethodCall,
    MethodError, NoExtra, UnsignedInt,
};
use state::{AccountId, DataType, EmailQuery, EmailSort, EmailSource, ObjectId, State, Store};
use upstream::{SearchKind, SearchQuery, UpstreamError};

use super::filter::{self, Compiled, EmailCondition, Test, ThreadKeywords};
use super::{MailAccount, jmap_id, object_id, store_error};
use crate::tx::names;
use crate::{AccountSync, EmailRecord, base_subject};

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    engine.register("Email/query", super::MAIL, EmailQueryMethod);
    engine.register("Email/queryChanges", super::MAIL, EmailQueryChanges);
    engine.register("Email/changes", super::MAIL, EmailChanges);
}

/// Email/query's and Email/queryChanges' extra argument, and the `keyword` a comparator may
/// carry.
#[derive(Debug, Clone, Copy, Default)]
struct QueryExtra {
    collapse_threads: bool,
}

impl ExtraArguments for QueryExtra {
    fn take(arguments: &mut Arguments) -> Result<Self, MethodError> {
        Ok(QueryExtra {
            collapse_threads: arguments.flag("collapseThreads", false)?,
        })
    }

    fn comparator_properties() -> &'static [&'static str] {
        &["keyword"]
    }
}

const SORTABLE: [&str; 9] = [
    "receivedAt",
    "size",
    "from",
    "to",
    "subject",
    "sentAt",
    "hasKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
];

/// Records are read in chunks of this many.
const CHUNK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collation {
    AsciiNumeric,
    AsciiCasemap,
    UnicodeCasemap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SortBy {
    ReceivedAt,
    Size,
    SentAt,
    From(Collation),
    To(Collation),
    Subject(Collation),
    HasKeyword(String),
    AllInThreadHaveKeyword(String),
    SomeInThreadHaveKeyword(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SortKey {
    by: SortBy,
    ascending: bool,
}

/// The sort to use: the client's, or newest first when it gave none.
fn parse_sort(
    sort: Option<&[Comparator]>,
    advertised: &[String],
) -> Result<Vec<SortKey>, MethodError> {
    let Some(sort) = sort.filter(|s| !s.is_empty()) else {
        return Ok(vec![SortKey {
            by: SortBy::ReceivedAt,
            ascending: false,
        }]);
    };
    sort.iter()
        .map(|c| {
            c.check_supported(&SORTABLE, advertised)?;
            let collation = match c.collation.as_deref() {
                None | Some("i;unicode-casemap") => Collation::UnicodeCasemap,
                Some("i;ascii-casemap") => Collation::AsciiCasemap,
                Some("i;ascii-numeric") => Collation::AsciiNumeric,
                Some(other) => {
                    return Err(MethodError::unsupported_sort(format!(
                        "collation '{other}' is not implemented"
                    )));
                }
            };
            let keyword = || -> Result<String, MethodError> {
                match c.extra.get("keyword") {
                    Some(serde_json::Value::String(k)) if !k.is_empty() => Ok(k.to_lowercase()),
                    _ => Err(MethodError::invalid_arguments(format!(
                        "a '{}' comparator needs a 'keyword'",
                        c.property
                    ))),
                }
            };
            if c.extra.contains_key("keyword")
                && !matches!(
                    c.property.as_str(),
                    "hasKeyword" | "allInThreadHaveKeyword" | "someInThreadHaveKeyword"
                )
            {
                return Err(MethodError::invalid_arguments(format!(
                    "a '{}' comparator takes no 'keyword'",
                    c.property
                )));
            }
            let by = match c.property.as_str() {
                "receivedAt" => SortBy::ReceivedAt,
                "size" => SortBy::Size,
                "sentAt" => SortBy::SentAt,
                "from" => SortBy::From(collation),
                "to" => SortBy::To(collation),
                "subject" => SortBy::Subject(collation),
                "hasKeyword" => SortBy::HasKeyword(keyword()?),
                "allInThreadHaveKeyword" => SortBy::AllInThreadHaveKeyword(keyword()?),
                "someInThreadHaveKeyword" => SortBy::SomeInThreadHaveKeyword(keyword()?),
                other => {
                    return Err(MethodError::unsupported_sort(format!(
                        "cannot sort on '{other}'"
                    )));
                }
            };
            Ok(SortKey {
                by,
                ascending: c.is_ascending,
            })
        })
        .collect()
}

/// Whether the index path answers this filter and sort: the source, sort and direction.
fn index_shape(
    filter: Option<&Compiled>,
    sort: &[SortKey],
    collapse: bool,
) -> Option<(EmailSource, EmailSort, bool)> {
    let [key] = sort else { return None };
    let by = match key.by {
        SortBy::ReceivedAt => EmailSort::ReceivedAt,
        SortBy::Size => EmailSort::Size,
        SortBy::SentAt => EmailSort::SentAt,
        _ => return None,
    };
    let source = match filter {
        None => EmailSource::AllMail,
        Some(Filter::Condition(tests)) => match tests.as_slice() {
            [] => EmailSource::AllMail,
            [Test::InMailbox(m)] => EmailSource::Mailbox(ObjectId::new(m.clone()).ok()?),
            [Test::HasKeyword(k)] => EmailSource::Keyword(k.clone()),
            _ => return None,
        },
        Some(Filter::Operator(_)) => return None,
    };
    let ok = match &source {
        EmailSource::Keyword(_) => by == EmailSort::ReceivedAt && !collapse,
        _ => !collapse || by == EmailSort::ReceivedAt,
    };
    ok.then_some((source, by, key.ascending))
}

/// Whether Email/queryChanges is exact for this filter and sort; the mailbox (None: all mail)
/// and the direction.
fn changes_shape(filter: Option<&Compiled>, sort: &[SortKey]) -> Option<(Option<ObjectId>, bool)> {
    let [key] = sort else { return None };
    if key.by != SortBy::ReceivedAt {
        return None;
    }
    match filter {
        None => Some((None, key.ascending)),
        Some(Filter::Condition(tests)) => match tests.as_slice() {
            [] => Some((None, key.ascending)),
            [Test::InMailbox(m)] => Some((Some(ObjectId::new(m.clone()).ok()?), key.ascending)),
            _ => None,
        },
        Some(Filter::Operator(_)) => None,
    }
}

/// The narrowest index source every match must be in.
fn candidate_source(filter: Option<&Compiled>) -> EmailSource {
    let from_tests = |tests: &[Test]| {
        tests
            .iter()
            .find_map(|t| match t {
                Test::InMailbox(m) => ObjectId::new(m.clone()).ok().map(EmailSource::Mailbox),
                _ => None,
            })
            .or_else(|| {
                tests.iter().find_map(|t| match t {
                    Test::HasKeyword(k) => Some(EmailSource::Keyword(k.clone())),
                    _ => None,
                })
            })
    };
    match filter {
        Some(Filter::Condition(tests)) => from_tests(tests),
        Some(Filter::Operator(op)) if op.operator == Operator::And => {
            op.conditions.iter().find_map(|c| match c {
                Filter::Condition(tests) => from_tests(tests),
                Filter::Operator(_) => None,
            })
        }
        _ => None,
    }
    .unwrap_or(EmailSource::AllMail)
}

/// What the record path reads: the candidates' records and, when asked, the keywords of every
/// Email of their threads.
struct Loaded {
    state: State,
    records: Vec<EmailRecord>,
    threads: ThreadKeywords,
}

/// Reads the records of every Email of `source` at one Email state (retrying when a commit
/// lands between the chunks), plus thread keywords when `with_threads`.
fn load(s: &Store, a: AccountId, source: EmailSource, with_threads: bool) -> state::Result<Loaded> {
    let q = EmailQuery {
        source,
        sort: EmailSort::ReceivedAt,
        ascending: false,
        collapse_threads: false,
        position: 0,
        anchor: None,
        anchor_offset: 0,
        limit: None,
    };
    let mut attempt = 0;
    let (state, records) = loop {
        attempt += 1;
        let r = s.query_emails(a, &q)?;
        let mut records = Vec::with_capacity(r.ids.len());
        let mut consistent = true;
        for chunk in r.ids.chunks(CHUNK) {
            let (st, rows) = s.get_many(a, DataType::Email, chunk)?;
            if st != r.query_state {
                consistent = false;
                break;
            }
            records.extend(
                rows.iter()
                    .flatten()
                    .filter_map(|b| EmailRecord::from_bytes(b)),
            );
        }
        if consistent || attempt >= 3 {
            break (r.query_state, records);
        }
    };
    let mut threads = ThreadKeywords::default();
    if with_threads {
        let known: HashMap<&str, BTreeSet<String>> = records
            .iter()
            .map(|r| (r.id.as_str(), r.keywords()))
            .collect();
        let thread_ids: BTreeSet<&str> = records.iter().map(|r| r.thread_id.as_str()).collect();
        for t in thread_ids {
            let Ok(tid) = ObjectId::new(t) else { continue };
            let mut list = Vec::new();
            for id in s.thread_email_ids(a, &tid)? {
                match known.get(id.as_str()) {
                    Some(k) => list.push(k.clone()),
                    None => {
                        if let Some(f) = s.email_facts(a, &id)? {
                            list.push(f.keywords.into_iter().collect());
                        }
                    }
                }
            }
            threads.0.insert(t.to_owned(), list);
        }
    }
    Ok(Loaded {
        state,
        records,
        threads,
    })
}

/// The first address's display name, else its email, else "".
fn first_address(list: &[crate::EmailAddress]) -> &str {
    match list.first() {
        Some(a) => match a.name.as_deref() {
            Some(n) if !n.is_empty() => n,
            _ => &a.email,
        },
        None => "",
    }
}

/// A sort value of one record under one key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Int(i64),
    Bool(bool),
    Text(String),
    /// i;ascii-numeric: a leading number, else after every number (RFC 4790 §9.1).
    Numeric(Option<u128>),
}

fn collate(s: &str, c: Collation) -> Value {
    match c {
        Collation::AsciiCasemap => Value::Text(s.to_ascii_lowercase()),
        Collation::UnicodeCasemap => Value::Text(s.chars().map(filter::fold).collect()),
        Collation::AsciiNumeric => {
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            Value::Numeric(if digits.is_empty() {
                None
            } else {
                Some(digits.parse().unwrap_or(u128::MAX))
            })
        }
    }
}

fn value_of(by: &SortBy, r: &EmailRecord, threads: &ThreadKeywords) -> Value {
    match by {
        SortBy::ReceivedAt => Value::Int(r.received_at),
        SortBy::Size => Value::Int(i64::try_from(r.size).unwrap_or(i64::MAX)),
        SortBy::SentAt => Value::Int(r.sent_at.unwrap_or(i64::MIN)),
        SortBy::From(c) => collate(first_address(&r.from), *c),
        SortBy::To(c) => collate(first_address(&r.to), *c),
        SortBy::Subject(c) => collate(&base_subject(r.subject.as_deref()), *c),
        SortBy::HasKeyword(k) => Value::Bool(r.keywords().contains(k)),
        SortBy::AllInThreadHaveKeyword(k) => Value::Bool(threads.all(r, k)),
        SortBy::SomeInThreadHaveKeyword(k) => Value::Bool(threads.some(r, k)),
    }
}

fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        // "No number" sorts after every number.
        (Value::Numeric(None), Value::Numeric(Some(_))) => Ordering::Greater,
        (Value::Numeric(Some(_)), Value::Numeric(None)) => Ordering::Less,
        _ => a.cmp(b),
    }
}

/// Filters, sorts and collapses loaded records into the full result list.
fn evaluate(
    loaded: &Loaded,
    filter: Option<&Compiled>,
    sort: &[SortKey],
    collapse: bool,
) -> Vec<String> {
    let mut rows: Vec<(Vec<Value>, &EmailRecord)> = loaded
        .records
        .iter()
        .filter(|r| filter.is_none_or(|f| filter::matches(f, r, &loaded.threads)))
        .map(|r| {
            let values = sort
                .iter()
                .map(|k| value_of(&k.by, r, &loaded.threads))
                .collect();
            (values, r)
        })
        .collect();
    // Ties are broken by id in the direction of the last comparator, as the indexes do.
    let last_ascending = sort.last().is_none_or(|k| k.ascending);
    rows.sort_by(|(va, ra), (vb, rb)| {
        for ((a, b), k) in va.iter().zip(vb).zip(sort) {
            let o = compare_values(a, b);
            let o = if k.ascending { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        let o = ra.id.as_bytes().cmp(rb.id.as_bytes());
        if last_ascending { o } else { o.reverse() }
    });
    let mut seen: HashSet<&str> = HashSet::new();
    rows.into_iter()
        .filter(|(_, r)| !collapse || seen.insert(r.thread_id.as_str()))
        .map(|(_, r)| r.id.clone())
        .collect()
}

/// Which keywords' thread aggregates the filter and the sort need.
fn needs_threads(filter: Option<&Compiled>, sort: &[SortKey]) -> bool {
    filter.is_some_and(|f| !filter::thread_keywords(f).is_empty())
        || sort.iter().any(|k| {
            matches!(
                k.by,
                SortBy::AllInThreadHaveKeyword(_) | SortBy::SomeInThreadHaveKeyword(_)
            )
        })
}

/// Emails found by one upstream search, `None` when upstream cannot search.
type Found = Option<Arc<HashSet<String>>>;

/// Answers the filter's `text` and `body` tests upstream (see the module documentation),
/// turning each into a [`Test::Found`]; a `text` upstream cannot answer stays as it is, a
/// `body` is `unsupportedFilter`.
async fn resolve_full_text<A: MailAccount>(
    account: &A,
    filter: &mut Compiled,
) -> Result<(), MethodError> {
    let mut asked: HashMap<(Option<String>, SearchQuery), Found> = HashMap::new();
    for (mailbox, test) in filter::full_text_tests(filter) {
        let (kind, q) = match &*test {
            Test::Text(q) => (SearchKind::Text, q),
            Test::Body(q) => (SearchKind::Body, q),
            _ => continue,
        };
        if q.terms.is_empty() {
            // Matches every Email either way; nothing to ask.
            continue;
        }
        let query = SearchQuery {
            kind,
            terms: q.term_strings(),
        };
        let key = (mailbox, query);
        let found = match asked.get(&key) {
            Some(f) => f.clone(),
            None => {
                let f = match account.sync() {
                    Some(sync) => search_upstream(account, sync, key.0.as_deref(), &key.1).await?,
                    None => None,
                };
                asked.insert(key.clone(), f.clone());
                f
            }
        };
        match found {
            Some(ids) => *test = Test::Found(ids),
            None if key.1.kind == SearchKind::Body => return Err(filter::body_unsupported()),
            // `text`: the approximation over headers and preview.
            None => {}
        }
    }
    Ok(())
}

/// The Emails upstream finds for `query` in one mailbox (a JMAP id) or in every selectable
/// one; `None` when upstream cannot search.
async fn search_upstream<A: MailAccount>(
    account: &A,
    sync: &AccountSync,
    mailbox_id: Option<&str>,
    query: &SearchQuery,
) -> Result<Found, MethodError> {
    let targets: Vec<(String, String)> = sync
        .mailboxes()
        .into_iter()
        .filter(|(r, m)| r.selectable && mailbox_id.is_none_or(|id| m.id == id))
        .map(|(r, m)| (r.remote_id, m.id))
        .collect();
    let mut ids = HashSet::new();
    for (remote, id) in targets {
        let uids = match sync.upstream().search(&remote, query).await {
            Ok(uids) => uids,
            Err(UpstreamError::Unsupported(why)) => {
                tracing::debug!(account = %sync.account(), %why, "no upstream search");
                return Ok(None);
            }
            // Gone since the last listing: nothing of it can match.
            Err(UpstreamError::NotFound(_)) => continue,
            Err(e) => {
                tracing::warn!(account = %sync.account(), mailbox = %remote, error = %e, "upstream search failed");
                return Err(MethodError::server_unavailable()
                    .with_description(format!("searching upstream failed: {e}")));
            }
        };
        if uids.is_empty() {
            continue;
        }
        ids.extend(emails_at(account, id, uids).await?);
    }
    Ok(Some(Arc::new(ids)))
}

/// The Emails a mailbox holds at these uids after the last sync: [`AccountSync::email_at`]
/// for many uids in one store call. Uids not synced yet are skipped.
async fn emails_at<A: MailAccount>(
    account: &A,
    mailbox_id: String,
    uids: Vec<String>,
) -> Result<Vec<String>, MethodError> {
    let a = account.store_id();
    account
        .store()
        .run(move |s| {
            let mut out = Vec::with_capacity(uids.len());
            for uid in &uids {
                if let Some(v) = s.cursor(a, &names::loc(&mailbox_id, uid))?
                    && let Ok(id) = String::from_utf8(v)
                {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await
        .map_err(store_error)
}

/// The filtered, sorted and collapsed ids of a query over records, and the state they were
/// read at.
async fn full_results<A: MailAccount>(
    account: &A,
    filter: Option<&Compiled>,
    sort: &[SortKey],
    collapse: bool,
) -> Result<(State, Vec<String>), MethodError> {
    let a = account.store_id();
    let source = candidate_source(filter);
    let with_threads = needs_threads(filter, sort);
    let loaded = account
        .store()
        .run(move |s| load(s, a, source, with_threads))
        .await
        .map_err(store_error)?;
    let ids = evaluate(&loaded, filter, sort, collapse);
    Ok((loaded.state, ids))
}

struct EmailQueryMethod;

impl<D> Handler<D> for EmailQueryMethod
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let request =
                QueryRequest::<EmailCondition, QueryExtra>::from_arguments(call.arguments.clone())?;
            let account = call.account()?;
            let mut filter = request
                .filter
                .as_ref()
                .map(filter::compile_for_query)
                .transpose()?;
            let sort = parse_sort(request.sort.as_deref(), &call.core.collation_algorithms)?;
            if let Some(f) = &mut filter {
                resolve_full_text(account, f).await?;
            }
            let collapse = request.extra.collapse_threads;
            let can_calculate_changes = changes_shape(filter.as_ref(), &sort).is_some();

            if let Some((source, by, ascending)) = index_shape(filter.as_ref(), &sort, collapse) {
                let anchor = match &request.anchor {
                    Some(id) => Some(object_id(id).ok_or_else(MethodError::anchor_not_found)?),
                    None => None,
                };
                let q = EmailQuery {
                    source,
                    sort: by,
                    ascending,
                    collapse_threads: collapse,
                    position: request.position.get(),
                    anchor,
                    anchor_offset: request.anchor_offset.get(),
                    limit: request
                        .limit
                        .map(|l| usize::try_from(l.get()).unwrap_or(usize::MAX)),
                };
                let r = account
                    .store()
                    .query_emails(account.store_id(), q)
                    .await
                    .map_err(store_error)?;
                let ids = r.ids.iter().map(jmap_id).collect::<Result<Vec<_>, _>>()?;
                let page = jmap_engine::standard::QueryPage {
                    position: UnsignedInt::saturating(r.position),
                    ids,
                    total: UnsignedInt::saturating(r.total),
                    limit: None,
                };
                let response =
                    request.respond(page, r.query_state.to_string(), can_calculate_changes);
                return Ok(call.reply(response.to_arguments()));
            }

            let (state, ids) = full_results(account, filter.as_ref(), &sort, collapse).await?;
            let ids = ids
                .into_iter()
                .map(|i| Id::new(i).map_err(|e| MethodError::server_fail(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            let page = request.paginate(&ids, None)?;
            let response = request.respond(page, state.to_string(), can_calculate_changes);
            Ok(call.reply(response.to_arguments()))
        })
    }
}

struct EmailQueryChanges;

impl<D> Handler<D> for EmailQueryChanges
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let request = QueryChangesRequest::<EmailCondition, QueryExtra>::from_arguments(
                call.arguments.clone(),
            )?;
            let account = call.account()?;
            // A full-text filter is never of an exact shape, so nothing is searched here;
            // `body` is unsupportedFilter, as in Email/query, where nothing could search it.
            let compile = if account.sync().is_some() {
                filter::compile_for_query
            } else {
                filter::compile
            };
            let filter = request.filter.as_ref().map(compile).transpose()?;
            let sort = parse_sort(request.sort.as_deref(), &call.core.collation_algorithms)?;
            let (mailbox, ascending) = changes_shape(filter.as_ref(), &sort)
                .ok_or_else(MethodError::cannot_calculate_changes)?;
            let req = state::QueryChangesRequest {
                mailbox,
                ascending,
                collapse_threads: request.extra.collapse_threads,
                since_query_state: request.since_query_state.clone(),
                max_changes: request.max_changes.map(UnsignedInt::get),
                // An id the store cannot hold is in no result list.
                up_to_id: request.up_to_id.as_ref().and_then(object_id),
            };
            let c = account
                .store()
                .query_changes(account.store_id(), req)
                .await
                .map_err(store_error)?;
            let response = QueryChangesResponse {
                account_id: request.account_id.clone(),
                old_query_state: c.old_query_state.to_string(),
                new_query_state: c.new_query_state.to_string(),
                total: request
                    .calculate_total
                    .then(|| UnsignedInt::saturating(c.total)),
                removed: c.removed.iter().map(jmap_id).collect::<Result<_, _>>()?,
                added: c
                    .added
                    .iter()
                    .map(|(id, index)| {
                        Ok(jmap_engine::standard::AddedItem {
                            id: jmap_id(id)?,
                            index: UnsignedInt::saturating(*index),
                        })
                    })
                    .collect::<Result<_, MethodError>>()?,
            };
            Ok(call.reply(response.to_arguments()))
        })
    }
}

struct EmailChanges;

impl<D> Handler<D> for EmailChanges
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let request = ChangesRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
            let account = call.account()?;
            let response = super::common::changes_from_log(
                account.store(),
                account.store_id(),
                DataType::Email,
                request,
                |_| NoExtra {},
            )
            .await?;
            Ok(call.reply(response.to_arguments()))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};
    use state::{Commit, DataType, ObjectId};

    use crate::methods::testing::{Fixture, email, mailbox};

    /// inbox: e1 e2 e4; archive: e3 e4. Threads: t1 = e1 e2, t2 = e3, t3 = e4.
    async fn fixture() -> Fixture {
        let f = Fixture::new();
        f.put_mailbox(&mailbox("inbox", "INBOX", Some("inbox")))
            .await;
        f.put_mailbox(&mailbox("archive", "Archive", Some("archive")))
            .await;
        let mut e1 = email(
            "e1",
            "t1",
            "inbox",
            "1",
            &["$seen"],
            100,
            "From: Alice <alice@x.org>\r\nTo: bob@y.org\r\nSubject: Hello world\r\n\
             Date: Thu, 1 Jan 1970 00:10:00 +0000",
        );
        e1.size = 500;
        let mut e2 = email(
            "e2",
            "t1",
            "inbox",
            "2",
            &[],
            200,
            "From: Bob <bob@y.org>\r\nTo: alice@x.org\r\nCc: carol@z.org\r\n\
             Subject: Re: Hello world\r\nDate: Thu, 1 Jan 1970 00:01:00 +0000",
        );
        e2.size = 1500;
        let mut e3 = email(
            "e3",
            "t2",
            "archive",
            "1",
            &["$flagged", "$seen"],
            300,
            "From: carol@z.org\r\nTo: Zoe <zoe@q.org>\r\nBcc: dave@d.org\r\nSubject: Budget\r\n\
             X-Custom: Yes indeed",
        );
        e3.size = 2500;
        e3.has_attachment = true;
        let mut e4 = email(
            "e4",
            "t3",
            "inbox",
            "3",
            &["$seen"],
            400,
            "From: \"Zed\" <zed@q.org>\r\nSubject: [list] ants",
        );
        e4.size = 800;
        e4.preview = "the quick brown fox & friends".into();
        e4.locations
            .insert("archive".into(), e4.locations["inbox"].clone());
        for e in [e1, e2, e3, e4] {
            f.put_email(&e).await;
        }
        f
    }

    fn ids(v: &Value) -> Vec<String> {
        v["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect()
    }

    async fn query(f: &Fixture, filter: Value) -> Vec<String> {
        let r = f
            .ok(
                "Email/query",
                json!({"filter": filter, "sort": [{"property": "receivedAt"}]}),
            )
            .await;
        ids(&r)
    }

    async fn error(f: &Fixture, method: &str, args: Value) -> String {
        let r = f.call(method, args).await;
        assert_eq!(r[0][0], json!("error"), "{r:?}");
        r[0][1]["type"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn every_filter_condition() {
        let f = fixture().await;
        let cases = [
            (json!(null), vec!["e1", "e2", "e3", "e4"]),
            (json!({}), vec!["e1", "e2", "e3", "e4"]),
            (json!({"inMailbox": "inbox"}), vec!["e1", "e2", "e4"]),
            (json!({"inMailboxOtherThan": ["inbox"]}), vec!["e3", "e4"]),
            (json!({"inMailboxOtherThan": ["inbox", "archive"]}), vec![]),
            (json!({"before": "1970-01-01T00:03:20Z"}), vec!["e1"]),
            (
                json!({"after": "1970-01-01T00:03:20Z"}),
                vec!["e2", "e3", "e4"],
            ),
            (json!({"minSize": 1500}), vec!["e2", "e3"]),
            (json!({"maxSize": 1500}), vec!["e1", "e4"]),
            (json!({"hasKeyword": "$SEEN"}), vec!["e1", "e3", "e4"]),
            (json!({"notKeyword": "$seen"}), vec!["e2"]),
            (json!({"allInThreadHaveKeyword": "$seen"}), vec!["e3", "e4"]),
            (
                json!({"someInThreadHaveKeyword": "$seen"}),
                vec!["e1", "e2", "e3", "e4"],
            ),
            (
                json!({"noneInThreadHaveKeyword": "$flagged"}),
                vec!["e1", "e2", "e4"],
            ),
            (json!({"hasAttachment": true}), vec!["e3"]),
            (json!({"hasAttachment": false}), vec!["e1", "e2", "e4"]),
            (json!({"from": "ALICE"}), vec!["e1"]),
            (json!({"from": "y.org"}), vec!["e2"]),
            (json!({"to": "alice"}), vec!["e2"]),
            (json!({"cc": "carol"}), vec!["e2"]),
            (json!({"bcc": "dave"}), vec!["e3"]),
            (json!({"subject": "hello"}), vec!["e1", "e2"]),
            (json!({"subject": "\"world hello\""}), vec![]),
            (json!({"subject": "world hello"}), vec!["e1", "e2"]),
            (json!({"text": "carol"}), vec!["e2", "e3"]),
            (json!({"text": "brown fox"}), vec!["e4"]),
            (json!({"header": ["X-Custom"]}), vec!["e3"]),
            (json!({"header": ["x-custom", "indeed"]}), vec!["e3"]),
            (json!({"header": ["x-custom", "nope"]}), vec![]),
            (
                json!({"inMailbox": "inbox", "hasKeyword": "$seen"}),
                vec!["e1", "e4"],
            ),
            (
                json!({"operator": "OR", "conditions": [{"from": "alice"}, {"from": "zed"}]}),
                vec!["e1", "e4"],
            ),
            (
                json!({"operator": "AND", "conditions": [{"inMailbox": "inbox"}, {"minSize": 600}]}),
                vec!["e2", "e4"],
            ),
            (
                json!({"operator": "NOT", "conditions": [{"inMailbox": "inbox"}, {"hasAttachment": true}]}),
                vec![],
            ),
            (
                json!({"operator": "NOT", "conditions": [{"inMailbox": "archive"}]}),
                vec!["e1", "e2"],
            ),
        ];
        for (filter, want) in cases {
            assert_eq!(query(&f, filter.clone()).await, want, "filter {filter}");
        }
    }

    #[tokio::test]
    async fn unsupported_and_invalid_filters() {
        let f = fixture().await;
        for filter in [
            json!({"body": "x"}),
            json!({"unknownThing": 1}),
            json!({"operator": "OR", "conditions": [{"body": "x"}]}),
        ] {
            assert_eq!(
                error(&f, "Email/query", json!({ "filter": filter })).await,
                "unsupportedFilter"
            );
        }
        for filter in [json!({"header": []}), json!({"inMailbox": 5})] {
            assert_eq!(
                error(&f, "Email/query", json!({ "filter": filter })).await,
                "invalidArguments"
            );
        }
    }

    #[tokio::test]
    async fn every_sort() {
        let f = fixture().await;
        let cases = [
            (
                json!([{"property": "receivedAt", "isAscending": false}]),
                vec!["e4", "e3", "e2", "e1"],
            ),
            (json!([{"property": "size"}]), vec!["e1", "e4", "e2", "e3"]),
            // sentAt: e2 00:01, e1 00:10, e3/e4 none (sentAt falls back to receivedAt in the fixture)
            (
                json!([{"property": "sentAt"}]),
                vec!["e2", "e3", "e4", "e1"],
            ),
            // from: Alice, Bob, carol@z.org, Zed
            (json!([{"property": "from"}]), vec!["e1", "e2", "e3", "e4"]),
            (
                json!([{"property": "from", "collation": "i;ascii-casemap", "isAscending": false}]),
                vec!["e4", "e3", "e2", "e1"],
            ),
            // to: "" (e4), alice@x.org, bob@y.org, Zoe
            (json!([{"property": "to"}]), vec!["e4", "e2", "e1", "e3"]),
            // subject (base): ants, budget, hello world ×2 (ties by id)
            (
                json!([{"property": "subject"}]),
                vec!["e4", "e3", "e1", "e2"],
            ),
            (
                json!([{"property": "hasKeyword", "keyword": "$flagged", "isAscending": false},
                       {"property": "receivedAt"}]),
                vec!["e3", "e1", "e2", "e4"],
            ),
            (
                json!([{"property": "allInThreadHaveKeyword", "keyword": "$seen"},
                       {"property": "receivedAt"}]),
                vec!["e1", "e2", "e3", "e4"],
            ),
            (
                json!([{"property": "someInThreadHaveKeyword", "keyword": "$flagged", "isAscending": false},
                       {"property": "size", "isAscending": false}]),
                vec!["e3", "e2", "e4", "e1"],
            ),
        ];
        for (sort, want) in cases {
            let r = f.ok("Email/query", json!({ "sort": sort })).await;
            assert_eq!(ids(&r), want, "sort {sort}");
        }
        for sort in [
            json!([{"property": "subject", "collation": "i;klingon"}]),
            json!([{"property": "preview"}]),
        ] {
            assert_eq!(
                error(&f, "Email/query", json!({ "sort": sort })).await,
                "unsupportedSort"
            );
        }
        assert_eq!(
            error(
                &f,
                "Email/query",
                json!({"sort": [{"property": "hasKeyword"}]})
            )
            .await,
            "invalidArguments"
        );
    }

    #[tokio::test]
    async fn collapse_threads_on_both_paths() {
        let f = fixture().await;
        // Index path: inMailbox, receivedAt.
        let r = f
            .ok(
                "Email/query",
                json!({"filter": {"inMailbox": "inbox"}, "collapseThreads": true,
                       "calculateTotal": true}),
            )
            .await;
        assert_eq!(ids(&r), vec!["e4", "e2"]);
        assert_eq!(r["total"], json!(2));
        assert_eq!(r["canCalculateChanges"], json!(true));
        // Record path: sorted by size, smallest first, so e1 stands for t1.
        let r = f
            .ok(
                "Email/query",
                json!({"sort": [{"property": "size"}], "collapseThreads": true,
                       "calculateTotal": true}),
            )
            .await;
        assert_eq!(ids(&r), vec!["e1", "e4", "e3"]);
        assert_eq!(r["total"], json!(3));
        assert_eq!(r["canCalculateChanges"], json!(false));
    }

    #[tokio::test]
    async fn windows_on_both_paths() {
        let f = fixture().await;
        for filter in [json!(null), json!({"minSize": 0})] {
            let q = |extra: Value| {
                let mut args = json!({"filter": filter, "sort": [{"property": "receivedAt"}],
                                      "calculateTotal": true});
                for (k, v) in extra.as_object().unwrap() {
                    args[k] = v.clone();
                }
                args
            };
            let r = f
                .ok("Email/query", q(json!({"position": 1, "limit": 2})))
                .await;
            assert_eq!(
                (ids(&r), &r["position"], &r["total"]),
                (vec!["e2".to_owned(), "e3".into()], &json!(1), &json!(4))
            );
            let r = f.ok("Email/query", q(json!({"position": -1}))).await;
            assert_eq!(
                (ids(&r), &r["position"]),
                (vec!["e4".to_owned()], &json!(3))
            );
            let r = f
                .ok(
                    "Email/query",
                    q(json!({"anchor": "e3", "anchorOffset": -1, "limit": 2})),
                )
                .await;
            assert_eq!(
                (ids(&r), &r["position"]),
                (vec!["e2".to_owned(), "e3".into()], &json!(1))
            );
            let r = f
                .ok(
                    "Email/query",
                    q(json!({"anchor": "e1", "anchorOffset": -5})),
                )
                .await;
            assert_eq!(r["position"], json!(0));
            assert_eq!(ids(&r).len(), 4);
            let r = f.ok("Email/query", q(json!({"position": 10}))).await;
            assert!(ids(&r).is_empty());
            let r = f.ok("Email/query", q(json!({}))).await;
            assert!(r.get("limit").is_none());
            let r = f
                .ok("Email/query", q(json!({"calculateTotal": false})))
                .await;
            assert!(r.get("total").is_none());
            assert_eq!(
                error(&f, "Email/query", q(json!({"anchor": "nope"}))).await,
                "anchorNotFound"
            );
        }
    }

    mod full_text {
        use std::sync::Arc;
        use std::time::Duration;

        use serde_json::json;
        use upstream::{
            BoxFuture, RemoteMailbox, SyncSink, Upstream, UpstreamError, WriteOp, WriteOutcome,
        };

        use super::{error, query};
        use crate::methods::fake::{FakeUpstream, fingerprint, fixture_with, message};
        use crate::methods::testing::Fixture;
        use crate::{AccountSync, SyncOptions, email_id};

        /// Past the preview (256 characters), so only a body search can see what follows.
        fn long_body(tail: &str) -> String {
            format!("{}{tail}", "filler ".repeat(60))
        }

        /// INBOX: m1 (the word deep in its body), m2 (the word in its subject only), m4
        /// (neither); Trash: m3 (the word deep in its body). Returns the fixture, the fake,
        /// the ids m1..m4 and the INBOX id.
        async fn seeded(fake: FakeUpstream) -> (Fixture, Arc<FakeUpstream>, Vec<String>, String) {
            let raws = [
                message("Plans", "m1@x", &long_body("Zanzibar trip")),
                message("Zanzibar", "m2@x", "short"),
                message("Old", "m3@x", &long_body("zanzibar again")),
                message("Other", "m4@x", "nothing to see"),
            ];
            for (i, (mailbox, raw)) in [("INBOX", &raws[0]), ("INBOX", &raws[1])]
                .into_iter()
                .chain([("Trash", &raws[2]), ("INBOX", &raws[3])])
                .enumerate()
            {
                fake.deliver_at(mailbox, raw, &[], 1000 + i64::try_from(i).unwrap());
            }
            let (f, fake) = fixture_with(fake).await;
            let inbox = f
                .account
                .sync
                .as_ref()
                .unwrap()
                .mailbox_id("INBOX")
                .unwrap();
            let ids = raws
                .iter()
                .map(|r| email_id(&fingerprint(r)).as_str().to_owned())
                .collect();
            (f, fake, ids, inbox)
        }

        #[tokio::test]
        async fn text_and_body_are_searched_upstream() {
            let (f, fake, m, inbox) = seeded(FakeUpstream::new()).await;
            let (m1, m2, m3, m4) = (m[0].as_str(), m[1].as_str(), m[2].as_str(), m[3].as_str());
            let cases = [
                (json!({"text": "zanzibar"}), vec![m1, m2, m3]),
                (json!({"text": "ZANZIBAR trip"}), vec![m1]),
                (json!({"text": "\"filler zanzibar\""}), vec![m1, m3]),
                (json!({"body": "zanzibar"}), vec![m1, m3]),
                (json!({"body": "zanzibar", "inMailbox": inbox}), vec![m1]),
                (json!({"body": "plans"}), vec![]),
                (json!({"body": ""}), vec![m1, m2, m3, m4]),
                (
                    json!({"operator": "NOT", "conditions": [{"body": "zanzibar"}]}),
                    vec![m2, m4],
                ),
                (
                    json!({"operator": "OR", "conditions": [
                        {"body": "trip"}, {"text": "nothing"}]}),
                    vec![m1, m4],
                ),
                (
                    json!({"operator": "AND", "conditions": [
                        {"inMailbox": inbox}, {"text": "zanzibar"}, {"subject": "plans"}]}),
                    vec![m1],
                ),
            ];
            for (filter, want) in cases {
                assert_eq!(query(&f, filter.clone()).await, want, "filter {filter}");
            }
            // A message upstream has but the gateway has not synced yet is not found (and
            // does not break the query).
            fake.deliver_at("INBOX", message("New", "m5@x", "zanzibar too"), &[], 2000);
            assert_eq!(query(&f, json!({"body": "zanzibar"})).await, vec![m1, m3]);
            // queryChanges cannot follow a full-text query.
            let q = f
                .ok("Email/query", json!({"filter": {"body": "zanzibar"}}))
                .await;
            assert_eq!(q["canCalculateChanges"], json!(false));
            assert_eq!(
                error(
                    &f,
                    "Email/queryChanges",
                    json!({"filter": {"body": "zanzibar"}, "sinceQueryState": q["queryState"]})
                )
                .await,
                "cannotCalculateChanges"
            );
        }

        /// A fixture whose one mailbox answers every search with `e`.
        async fn failing(e: UpstreamError) -> Fixture {
            let mut f = Fixture::new();
            let sync = AccountSync::new(
                f.account.store.clone(),
                f.account.id,
                Arc::new(Failing(e)),
                SyncOptions::default(),
            );
            sync.sync_all().await.unwrap();
            f.account.sync = Some(sync);
            f.rebuild();
            f
        }

        #[tokio::test]
        async fn upstream_failures() {
            let f = failing(UpstreamError::Unavailable("down".into())).await;
            assert_eq!(
                error(&f, "Email/query", json!({"filter": {"text": "x"}})).await,
                "serverUnavailable"
            );
            // A mailbox gone upstream since the last listing holds no match.
            let f = failing(UpstreamError::NotFound("gone".into())).await;
            assert!(query(&f, json!({"body": "x"})).await.is_empty());
        }

        /// The fake without server-side search: the contract's default `search`.
        #[derive(Debug)]
        struct NoSearch(Arc<FakeUpstream>);

        impl Upstream for NoSearch {
            fn list_mailboxes(&self) -> BoxFuture<'_, Result<Vec<RemoteMailbox>, UpstreamError>> {
                self.0.list_mailboxes()
            }
            fn sync_mailbox<'a>(
                &'a self,
                mailbox: &'a RemoteMailbox,
                cursor: Option<&'a [u8]>,
                sink: &'a mut dyn SyncSink,
            ) -> BoxFuture<'a, Result<(), UpstreamError>> {
                self.0.sync_mailbox(mailbox, cursor, sink)
            }
            fn wait_for_changes<'a>(
                &'a self,
                mailboxes: &'a [RemoteMailbox],
                timeout: Duration,
            ) -> BoxFuture<'a, Result<Vec<String>, UpstreamError>> {
                self.0.wait_for_changes(mailboxes, timeout)
            }
            fn fetch_message<'a>(
                &'a self,
                mailbox: &'a str,
                uid: &'a str,
            ) -> BoxFuture<'a, Result<Vec<u8>, UpstreamError>> {
                self.0.fetch_message(mailbox, uid)
            }
            fn apply(&self, op: WriteOp) -> BoxFuture<'_, Result<WriteOutcome, UpstreamError>> {
                self.0.apply(op)
            }
            fn mailbox_identity(&self, remote_id: &str) -> Option<String> {
                self.0.mailbox_identity(remote_id)
            }
        }

        /// An upstream with one mailbox whose search always fails with the given error.
        #[derive(Debug)]
        struct Failing(UpstreamError);

        impl Upstream for Failing {
            fn list_mailboxes(&self) -> BoxFuture<'_, Result<Vec<RemoteMailbox>, UpstreamError>> {
                Box::pin(async {
                    Ok(vec![RemoteMailbox {
                        remote_id: "INBOX".into(),
                        name: "INBOX".into(),
                        parent: None,
                        role: Some(upstream::MailboxRole::Inbox),
                        subscribed: true,
                        selectable: true,
                    }])
                })
            }
            fn sync_mailbox<'a>(
                &'a self,
                _: &'a RemoteMailbox,
                _: Option<&'a [u8]>,
                _: &'a mut dyn SyncSink,
            ) -> BoxFuture<'a, Result<(), UpstreamError>> {
                Box::pin(async { Ok(()) })
            }
            fn wait_for_changes<'a>(
                &'a self,
                _: &'a [RemoteMailbox],
                _: Duration,
            ) -> BoxFuture<'a, Result<Vec<String>, UpstreamError>> {
                Box::pin(async { Ok(Vec::new()) })
            }
            fn fetch_message<'a>(
                &'a self,
                _: &'a str,
                _: &'a str,
            ) -> BoxFuture<'a, Result<Vec<u8>, UpstreamError>> {
                Box::pin(async { Err(UpstreamError::NotFound("none".into())) })
            }
            fn apply(&self, _: WriteOp) -> BoxFuture<'_, Result<WriteOutcome, UpstreamError>> {
                Box::pin(async { Err(UpstreamError::Unsupported("read-only".into())) })
            }
            fn search<'a>(
                &'a self,
                _: &'a str,
                _: &'a upstream::SearchQuery,
            ) -> BoxFuture<'a, Result<Vec<String>, UpstreamError>> {
                Box::pin(async { Err(self.0.clone()) })
            }
        }

        #[tokio::test]
        async fn without_upstream_search_text_approximates_and_body_is_refused() {
            let fake = Arc::new(FakeUpstream::new());
            let mut f = Fixture::new();
            let sync = AccountSync::new(
                f.account.store.clone(),
                f.account.id,
                Arc::new(NoSearch(fake.clone())),
                SyncOptions::default(),
            );
            let raws = [
                message("Plans", "m1@x", &long_body("Zanzibar trip")),
                message("Zanzibar", "m2@x", "short"),
            ];
            for (i, raw) in raws.iter().enumerate() {
                fake.deliver_at("INBOX", raw, &[], 1000 + i64::try_from(i).unwrap());
            }
            sync.sync_all().await.unwrap();
            f.account.sync = Some(sync);
            f.rebuild();
            let m2 = email_id(&fingerprint(&raws[1])).as_str().to_owned();
            // Headers and preview only: m1's word is past its preview.
            assert_eq!(query(&f, json!({"text": "zanzibar"})).await, vec![m2]);
            for filter in [
                json!({"body": "zanzibar"}),
                json!({"operator": "OR", "conditions": [{"text": "a"}, {"body": "b"}]}),
            ] {
                assert_eq!(
                    error(&f, "Email/query", json!({ "filter": filter })).await,
                    "unsupportedFilter"
                );
            }
        }
    }

    #[tokio::test]
    async fn query_state_is_the_email_state() {
        let f = fixture().await;
        let q = f.ok("Email/query", json!({"filter": {"from": "a"}})).await;
        let i = f.ok("Email/query", json!({})).await;
        assert_eq!(q["queryState"], i["queryState"]);
        let c = f
            .ok("Email/changes", json!({"sinceState": q["queryState"]}))
            .await;
        assert_eq!(c["newState"], q["queryState"]);
    }

    #[test]
    fn collations() {
        use super::{Collation, Value, collate, compare_values};
        let n = |s: &str| collate(s, Collation::AsciiNumeric);
        let mut v = vec![n("10 apples"), n("none"), n("9"), n("010")];
        v.sort_by(compare_values);
        assert_eq!(
            v,
            vec![
                Value::Numeric(Some(9)),
                Value::Numeric(Some(10)),
                Value::Numeric(Some(10)),
                Value::Numeric(None)
            ]
        );
        assert_eq!(
            collate("ÄBC", Collation::UnicodeCasemap),
            collate("äbc", Collation::UnicodeCasemap)
        );
        assert_ne!(
            collate("ÄBC", Collation::AsciiCasemap),
            collate("äbc", Collation::AsciiCasemap)
        );
    }

    async fn destroy(f: &Fixture, id: &str) {
        let mut c = Commit::new(f.account.id);
        c.destroy(DataType::Email, ObjectId::new(id).unwrap());
        f.commit(c).await;
    }

    /// Applies a queryChanges response to the old ids (RFC 8620 §5.6).
    fn apply(old: &[String], changes: &Value) -> Vec<String> {
        let removed: Vec<&str> = changes["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut out: Vec<String> = old
            .iter()
            .filter(|i| !removed.contains(&i.as_str()))
            .cloned()
            .collect();
        for a in changes["added"].as_array().unwrap() {
            let index = usize::try_from(a["index"].as_u64().unwrap()).unwrap();
            out.insert(index.min(out.len()), a["id"].as_str().unwrap().to_owned());
        }
        out
    }

    #[tokio::test]
    async fn query_changes_match_a_recomputation() {
        for (filter, ascending, collapse) in [
            (json!({"inMailbox": "inbox"}), false, false),
            (json!({"inMailbox": "inbox"}), true, true),
            (json!(null), false, true),
            (json!({}), true, false),
        ] {
            let f = fixture().await;
            let args = json!({"filter": filter, "collapseThreads": collapse,
                              "sort": [{"property": "receivedAt", "isAscending": ascending}]});
            let before = f.ok("Email/query", args.clone()).await;
            assert_eq!(before["canCalculateChanges"], json!(true));
            // New mail in t1 and a new thread, one removal, a move out of the inbox.
            f.put_email(&email("e5", "t1", "inbox", "9", &[], 250, "Subject: x"))
                .await;
            f.put_email(&email("e6", "t9", "inbox", "10", &[], 50, "Subject: y"))
                .await;
            destroy(&f, "e4").await;
            f.put_email(&email(
                "e1",
                "t1",
                "archive",
                "7",
                &["$seen"],
                100,
                "Subject: Hello",
            ))
            .await;
            let after = f.ok("Email/query", args.clone()).await;
            let mut qc = args.clone();
            qc["sinceQueryState"] = before["queryState"].clone();
            qc["calculateTotal"] = json!(true);
            let changes = f.ok("Email/queryChanges", qc).await;
            assert_eq!(changes["oldQueryState"], before["queryState"]);
            assert_eq!(changes["newQueryState"], after["queryState"]);
            assert_eq!(
                apply(&ids(&before), &changes),
                ids(&after),
                "{args} {changes}"
            );
            assert_eq!(changes["total"], json!(ids(&after).len()));
            // upToId: the changes are exact up to it.
            let old = ids(&before);
            if old.len() >= 2 {
                let up_to = old[1].clone();
                let mut qc = args.clone();
                qc["sinceQueryState"] = before["queryState"].clone();
                qc["upToId"] = json!(up_to);
                let changes = f.ok("Email/queryChanges", qc).await;
                let new = ids(&after);
                if let Some(pos) = new.iter().position(|i| *i == up_to) {
                    let got = apply(&old[..2], &changes);
                    assert_eq!(got[..=pos], new[..=pos], "{args} upTo {up_to} {changes}");
                }
            }
            // maxChanges too small.
            let mut qc = args.clone();
            qc["sinceQueryState"] = before["queryState"].clone();
            qc["maxChanges"] = json!(1);
            assert_eq!(error(&f, "Email/queryChanges", qc).await, "tooManyChanges");
        }
    }

    #[tokio::test]
    async fn query_changes_refuses_other_shapes() {
        let f = fixture().await;
        let state = f.ok("Email/query", json!({})).await["queryState"].clone();
        for args in [
            json!({"filter": {"hasKeyword": "$seen"}}),
            json!({"filter": {"inMailbox": "inbox", "minSize": 1}}),
            json!({"sort": [{"property": "size"}]}),
            json!({"sort": [{"property": "receivedAt"}, {"property": "size"}]}),
        ] {
            let mut a = args.clone();
            a["sinceQueryState"] = state.clone();
            assert_eq!(
                error(&f, "Email/queryChanges", a).await,
                "cannotCalculateChanges",
                "{args}"
            );
            let q = f.ok("Email/query", args.clone()).await;
            assert_eq!(q["canCalculateChanges"], json!(false), "{args}");
        }
        assert_eq!(
            error(
                &f,
                "Email/queryChanges",
                json!({"sinceQueryState": "garbage"})
            )
            .await,
            "cannotCalculateChanges"
        );
        assert_eq!(
            error(
                &f,
                "Email/queryChanges",
                json!({"sinceQueryState": state, "filter": {"body": "x"}})
            )
            .await,
            "unsupportedFilter"
        );
    }

    #[tokio::test]
    async fn changes_page_through_the_log() {
        let f = Fixture::new();
        f.put_mailbox(&mailbox("inbox", "INBOX", Some("inbox")))
            .await;
        let start = f.ok("Email/query", json!({})).await["queryState"].clone();
        for i in 0..5 {
            f.put_email(&email(
                &format!("m{i}"),
                "t",
                "inbox",
                &i.to_string(),
                &[],
                i,
                "Subject: s",
            ))
            .await;
        }
        destroy(&f, "m0").await;
        let mut since = start;
        let mut created = Vec::new();
        let mut rounds = 0;
        loop {
            let c = f
                .ok(
                    "Email/changes",
                    json!({"sinceState": since, "maxChanges": 2}),
                )
                .await;
            rounds += 1;
            assert!(
                c["created"].as_array().unwrap().len()
                    + c["updated"].as_array().unwrap().len()
                    + c["destroyed"].as_array().unwrap().len()
                    <= 2
            );
            created.extend(c["created"].as_array().unwrap().iter().cloned());
            // A page may show m0 created and a later one destroyed (intermediate states).
            for d in c["destroyed"].as_array().unwrap() {
                created.retain(|x| x != d);
            }
            since = c["newState"].clone();
            if c["hasMoreChanges"] == json!(false) {
                break;
            }
        }
        assert!(rounds >= 2);
        created.sort_by_key(|v| v.as_str().unwrap().to_owned());
        assert_eq!(
            created,
            vec![json!("m1"), json!("m2"), json!("m3"), json!("m4")]
        );
        assert_eq!(
            error(&f, "Email/changes", json!({"sinceState": "nope"})).await,
            "cannotCalculateChanges"
        );
    }
}
