//! Email/set, Email/import and Email/copy (RFC 8621 §4.6–4.8), written through the account's
//! sync driver: every change is applied upstream first and recorded by the driver's
//! immediate re-sync, so the store (and the state strings) only ever show what upstream has.
//!
//! - **update**: `keywords` (whole or `keywords/…` patches) → keyword changes on every copy;
//!   `mailboxIds` (whole or `mailboxIds/…` patches) → upstream Copy into added mailboxes,
//!   Move out of a removed one, Delete in the other removed ones. Every other property is
//!   immutable (`invalidProperties`); an empty `mailboxIds` is `invalidProperties`.
//! - **destroy**: every copy deleted upstream.
//! - **create**: the message is built from the Email object ([`build`]) and appended to the
//!   first mailbox (copied to the others); its id is what the driver recorded at the uid the
//!   append returned (or, without APPENDUID, the message with our generated Message-ID).
//!   When upstream cannot store messages at all (the append is `Unsupported`: EAS), the
//!   Email is kept as a local draft instead (see `local`), so that it can still be sent;
//!   updates and destroys of a local draft never reach upstream.
//! - **import**: an uploaded blob appended as is. Duplicates (a message whose Email already
//!   exists, as the id is derived from the message) are refused with `alreadyExists` and the
//!   new copy is removed again. A server that cannot store messages gives `forbidden` (also
//!   for copy), saying so.
//! - **copy**: the raw message of the from-account's Email appended in the target account;
//!   `onSuccessDestroyOriginal` adds the implicit Email/set response of the destroy.
//!
//! Upstream failures that concern one object (not found, refused) are that object's
//! SetError; an unreachable upstream ends the method with `serverUnavailable` (what was
//! applied before stays applied and shows in Email/changes).

use std::collections::{BTreeMap, BTreeSet};

use jmap_engine::standard::{CopyRequest, CopyResponse, SetRequest, SetResponse};
use jmap_engine::{
    AccountDirectory, Arguments, CreatedIds, Engine, Handler, HandlerFuture, Id, IdRef, MethodCall,
    MethodError, NoExtra, PatchObject, SetError, SetErrorType, UtcDate,
};
use serde_json::{Map, Value, json};
use state::{DataType, EmailQuery, ObjectId};
use upstream::{UpstreamError, WriteOp, WriteOutcome};

use super::{MailAccount, jmap_id, object_id, store_error, sync_error};
use crate::{AccountSync, EmailRecord, SyncError};

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    engine.register("Email/set", super::MAIL, EmailSet);
    engine.register("Email/import", super::MAIL, EmailImport);
    engine.register("Email/copy", super::MAIL, EmailCopy);
}

/// A per-object outcome, or a failure of the whole method.
type ObjectResult<T> = Result<Result<T, SetError>, MethodError>;

use upstream::civil::unix_now as now;

async fn email_state<A: MailAccount>(account: &A) -> Result<String, MethodError> {
    Ok(account
        .store()
        .state(account.store_id(), DataType::Email)
        .await
        .map_err(store_error)?
        .to_string())
}

async fn load_email<A: MailAccount>(
    account: &A,
    id: &str,
) -> Result<Option<EmailRecord>, MethodError> {
    let Ok(oid) = ObjectId::new(id) else {
        return Ok(None);
    };
    let (_, rows) = account
        .store()
        .get_many(account.store_id(), DataType::Email, vec![oid])
        .await
        .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .next()
        .flatten()
        .and_then(|b| EmailRecord::from_bytes(&b)))
}

fn sync_of<A: MailAccount>(account: &A) -> Result<&AccountSync, MethodError> {
    account.sync().ok_or_else(|| {
        MethodError::server_unavailable()
            .with_description("the account's mail server is not connected")
    })
}

/// The upstream name of a JMAP mailbox.
fn remote_of(sync: &AccountSync, mailbox_id: &str) -> Option<String> {
    sync.mailboxes()
        .into_iter()
        .find(|(_, m)| m.id == mailbox_id && m.selectable)
        .map(|(r, _)| r.remote_id)
}

/// A sync failure as one object's SetError, or as the end of the method.
fn object_error(e: SyncError) -> Result<SetError, MethodError> {
    match e {
        SyncError::Upstream(UpstreamError::NotFound(d)) => {
            Ok(SetError::not_found().with_description(d))
        }
        SyncError::UnknownEmail(_) => Ok(SetError::not_found()),
        SyncError::Upstream(UpstreamError::Refused(d) | UpstreamError::Unsupported(d)) => {
            Ok(SetError::forbidden().with_description(d))
        }
        SyncError::UnknownMailbox(m) => Ok(SetError::invalid_properties(["mailboxIds"])
            .with_description(format!("unknown mailbox {m}"))),
        e => Err(sync_error(e)),
    }
}

/// RFC 8621 §4.1.1: 1–255 characters of `%x21-%x7E` except `( ) { ] % * " \`.
fn valid_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 255
        && k.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"(){]%*\"\\".contains(&b))
}

/// A `String[Boolean]` keywords value (every value `true`), lowercased.
fn parse_keywords(v: Option<&Value>) -> Result<BTreeSet<String>, SetError> {
    let bad = || SetError::invalid_properties(["keywords"]);
    match v {
        None | Some(Value::Null) => Ok(BTreeSet::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                if v == &Value::Bool(true) && valid_keyword(k) {
                    Ok(k.to_lowercase())
                } else {
                    Err(bad().with_description(format!("invalid keyword '{k}'")))
                }
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// Resolves a mailbox id that may be a `#creationId`.
fn resolve_id(id: &str, created: &CreatedIds) -> Option<String> {
    match id.strip_prefix('#') {
        Some(_) => created.resolve_str(id).map(Id::into_string),
        None => Some(id.to_owned()),
    }
}

/// A `Id[Boolean]` mailboxIds value: non-empty, every value `true`, every mailbox known
/// upstream.
fn parse_mailbox_ids(
    v: Option<&Value>,
    sync: &AccountSync,
    created: &CreatedIds,
) -> Result<Vec<String>, SetError> {
    let bad = |d: String| SetError::invalid_properties(["mailboxIds"]).with_description(d);
    let Some(Value::Object(m)) = v else {
        return Err(bad("mailboxIds must be a non-empty Id[Boolean]".into()));
    };
    if m.is_empty() {
        return Err(bad("an Email must be in at least one mailbox".into()));
    }
    let mut out = Vec::new();
    for (k, v) in m {
        if v != &Value::Bool(true) {
            return Err(bad(format!("the value for mailbox {k} must be true")));
        }
        let id = resolve_id(k, created).ok_or_else(|| bad(format!("unknown mailbox {k}")))?;
        if remote_of(sync, &id).is_none() {
            return Err(bad(format!("unknown mailbox {k}")));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// The created-object properties of an Email (RFC 8621 §4.6).
fn created_properties(r: &EmailRecord) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("blobId".into(), json!(r.id));
    m.insert("threadId".into(), json!(r.thread_id));
    m.insert("size".into(), json!(r.size));
    m
}

/// Where the driver recorded an appended message.
async fn locate_appended<A: MailAccount>(
    account: &A,
    sync: &AccountSync,
    mailbox_id: &str,
    uid: Option<&str>,
    message_id: Option<&str>,
) -> Result<Option<EmailRecord>, MethodError> {
    if let Some(uid) = uid {
        let id = sync.email_at(mailbox_id, uid).await.map_err(sync_error)?;
        return match id {
            Some(id) => load_email(account, id.as_str()).await,
            None => Ok(None),
        };
    }
    // No APPENDUID: the newest Emails of the mailbox with our Message-ID.
    let (Some(mid), Ok(mailbox)) = (message_id, ObjectId::new(mailbox_id)) else {
        return Ok(None);
    };
    let r = account
        .store()
        .query_emails(account.store_id(), EmailQuery::newest_in(mailbox, 200))
        .await
        .map_err(store_error)?;
    let (_, rows) = account
        .store()
        .get_many(account.store_id(), DataType::Email, r.ids)
        .await
        .map_err(store_error)?;
    let mid = mid.trim_matches(|c| c == '<' || c == '>');
    Ok(rows
        .into_iter()
        .flatten()
        .filter_map(|b| EmailRecord::from_bytes(&b))
        .find(|r| {
            r.message_id
                .iter()
                .any(|m| m.trim_matches(|c| c == '<' || c == '>') == mid)
        }))
}

/// A message to store: where, with which keywords and arrival time.
struct NewMessage<'a> {
    mailbox_ids: &'a [String],
    raw: Vec<u8>,
    keywords: BTreeSet<String>,
    received_at: Option<i64>,
    /// Finds the message after the append when upstream does not tell its uid.
    message_id: Option<&'a str>,
    /// When the message turns out to be an Email that already existed, remove the new copy
    /// and answer `alreadyExists`.
    reject_duplicate: bool,
    /// When upstream cannot store messages at all (`Unsupported`), keep it as a local draft
    /// (Email/set create) instead of failing.
    local_fallback: bool,
}

/// Appends `raw` to the first mailbox, copies it to the others and returns its record.
async fn append<A: MailAccount>(
    account: &A,
    sync: &AccountSync,
    new: NewMessage<'_>,
) -> ObjectResult<EmailRecord> {
    let NewMessage {
        mailbox_ids,
        raw,
        keywords,
        received_at,
        message_id,
        reject_duplicate,
        local_fallback,
    } = new;
    let Some((first, others)) = mailbox_ids.split_first() else {
        return Ok(Err(SetError::invalid_properties(["mailboxIds"])));
    };
    let Some(remote) = remote_of(sync, first) else {
        return Ok(Err(SetError::invalid_properties(["mailboxIds"])));
    };
    let fallback = local_fallback.then(|| (raw.clone(), keywords.clone()));
    let outcome = match sync
        .write(WriteOp::Append {
            mailbox: remote.clone(),
            raw,
            keywords,
            received_at,
        })
        .await
    {
        Ok(o) => o,
        Err(SyncError::Upstream(UpstreamError::Unsupported(why))) => {
            if let Some((raw, keywords)) = fallback {
                let at = received_at.unwrap_or_else(now);
                return super::local::create(account, mailbox_ids, raw, keywords, at).await;
            }
            return Ok(Err(SetError::forbidden().with_description(format!(
                "this account's mail server cannot store messages in a mailbox, so nothing \
                 can be imported or copied into it ({why})"
            ))));
        }
        Err(e) => return object_error(e).map(Err),
    };
    let uid = match &outcome {
        WriteOutcome::Appended(uid) => uid.clone(),
        _ => None,
    };
    let Some(record) = locate_appended(account, sync, first, uid.as_deref(), message_id).await?
    else {
        return Err(MethodError::server_fail(
            "the message was stored upstream but could not be found after the sync",
        ));
    };
    let new_uid = uid.or_else(|| {
        record
            .locations
            .get(first)
            .and_then(|c| c.uids.keys().next_back().cloned())
    });
    if reject_duplicate && record.copies().len() > 1 {
        if let Some(u) = &new_uid {
            sync.write(WriteOp::Delete {
                mailbox: remote,
                uids: vec![u.clone()],
            })
            .await
            .map_err(sync_error)?;
        }
        let existing = jmap_id(&ObjectId::new(record.id.clone()).map_err(store_error)?)?;
        return Ok(Err(SetError::already_exists(existing)));
    }
    if let Some(u) = &new_uid {
        for m in others {
            let Some(to) = remote_of(sync, m) else {
                continue;
            };
            if let Err(e) = sync
                .write(WriteOp::Copy {
                    from: remote.clone(),
                    uids: vec![u.clone()],
                    to,
                })
                .await
            {
                return object_error(e).map(Err);
            }
        }
    }
    Ok(load_email(account, &record.id)
        .await?
        .ok_or_else(SetError::not_found))
}

// ---------------------------------------------------------------------------------------
// Email/set

struct EmailSet;

impl<D> Handler<D> for EmailSet
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let request = SetRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
            let account = call.account()?;
            let old_state = email_state(account).await?;
            request.check_state(&old_state)?;
            let mut response: SetResponse = SetResponse::new(
                request.account_id.clone(),
                Some(old_state.clone()),
                old_state,
            );
            if request.object_count() == 0 {
                return Ok(call.reply(response.to_arguments()));
            }
            let sync = sync_of(account)?;
            let mut created = call.created_ids.clone();

            for (cid, object) in request.create.iter().flatten() {
                match create_one(account, sync, object, &created).await? {
                    Ok(r) => {
                        if let Ok(id) = Id::new(r.id.clone()) {
                            created.insert(cid.clone(), id);
                        }
                        response.add_created(cid.clone(), created_properties(&r));
                    }
                    Err(e) => response.add_not_created(cid.clone(), e),
                }
            }
            for (id_ref, patch) in request.update.iter().flatten() {
                let Some(id) = created.resolve(id_ref) else {
                    response.add_not_updated(id_ref.clone(), SetError::not_found());
                    continue;
                };
                match update_one(account, sync, &id, patch, &created).await? {
                    Ok(()) => response.add_updated(id, None),
                    Err(e) => response.add_not_updated(id_ref.clone(), e),
                }
            }
            for id_ref in request.destroy.iter().flatten() {
                let Some(id) = created.resolve(id_ref) else {
                    response.add_not_destroyed(id_ref.clone(), SetError::not_found());
                    continue;
                };
                match destroy_one(account, sync, &id).await? {
                    Ok(()) => response.add_destroyed(id),
                    Err(e) => response.add_not_destroyed(id_ref.clone(), e),
                }
            }
            response.new_state = email_state(account).await?;
            Ok(call.reply(response.to_arguments()))
        })
    }
}

async fn destroy_one<A: MailAccount>(account: &A, sync: &AccountSync, id: &Id) -> ObjectResult<()> {
    let Some(oid) = object_id(id) else {
        return Ok(Err(SetError::not_found()));
    };
    let Some(record) = load_email(account, id.as_str()).await? else {
        return Ok(Err(SetError::not_found()));
    };
    if super::local::is_local(&record) {
        return Ok(if super::local::destroy(account, &oid).await? {
            Ok(())
        } else {
            Err(SetError::not_found())
        });
    }
    match sync.destroy_email(&oid).await {
        Ok(()) => Ok(Ok(())),
        Err(e) => object_error(e).map(Err),
    }
}

/// The patch with `keywords/…` keys lowercased and `mailboxIds/#creationId` keys resolved.
fn normalise_patch(patch: &PatchObject, created: &CreatedIds) -> PatchObject {
    let map = patch
        .as_map()
        .iter()
        .map(|(k, v)| {
            let key = if let Some(kw) = k.strip_prefix("keywords/") {
                format!("keywords/{}", kw.to_lowercase())
            } else if let Some(m) = k.strip_prefix("mailboxIds/")
                && m.starts_with('#')
            {
                match resolve_id(m, created) {
                    Some(id) => format!("mailboxIds/{id}"),
                    None => k.clone(),
                }
            } else {
                k.clone()
            };
            (key, v.clone())
        })
        .collect();
    PatchObject::new(map)
}

async fn update_one<A: MailAccount>(
    account: &A,
    sync: &AccountSync,
    id: &Id,
    patch: &PatchObject,
    created: &CreatedIds,
) -> ObjectResult<()> {
    let Some(record) = load_email(account, id.as_str()).await? else {
        return Ok(Err(SetError::not_found()));
    };
    let immutable: Vec<String> = patch
        .properties()
        .into_iter()
        .filter(|p| p != "keywords" && p != "mailboxIds")
        .collect();
    if !immutable.is_empty() {
        return Ok(Err(SetError::invalid_properties(immutable)
            .with_description(
                "only keywords and mailboxIds of an Email can change",
            )));
    }
    let old_keywords = record.keywords();
    let old_mailboxes: Vec<String> = record.mailbox_ids().map(str::to_owned).collect();
    let current = json!({
        "keywords": old_keywords.iter().map(|k| (k.clone(), json!(true))).collect::<Map<_, _>>(),
        "mailboxIds": old_mailboxes.iter().map(|m| (m.clone(), json!(true))).collect::<Map<_, _>>(),
    });
    let patched = match normalise_patch(patch, created).apply(&current) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e.into())),
    };
    let new_keywords = match parse_keywords(patched.get("keywords")) {
        Ok(k) => k,
        Err(e) => return Ok(Err(e)),
    };
    let new_mailboxes = match parse_mailbox_ids(patched.get("mailboxIds"), sync, created) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    let Some(oid) = object_id(id) else {
        return Ok(Err(SetError::not_found()));
    };
    if super::local::is_local(&record) {
        let mailboxes: BTreeSet<String> = new_mailboxes.into_iter().collect();
        return Ok(
            if super::local::update(account, &oid, &new_keywords, &mailboxes).await? {
                Ok(())
            } else {
                Err(SetError::not_found())
            },
        );
    }

    // Keywords first, so that copies made below carry the new ones.
    let add: BTreeSet<String> = new_keywords.difference(&old_keywords).cloned().collect();
    let remove: BTreeSet<String> = old_keywords.difference(&new_keywords).cloned().collect();
    if (!add.is_empty() || !remove.is_empty())
        && let Err(e) = sync.set_email_keywords(&oid, add, remove).await
    {
        return object_error(e).map(Err);
    }

    let added: Vec<&String> = new_mailboxes
        .iter()
        .filter(|m| !old_mailboxes.contains(m))
        .collect();
    let removed: Vec<&String> = old_mailboxes
        .iter()
        .filter(|m| !new_mailboxes.contains(m))
        .collect();
    if added.is_empty() && removed.is_empty() {
        return Ok(Ok(()));
    }
    let uids_in = |m: &str| -> Vec<String> {
        record
            .locations
            .get(m)
            .map(|c| c.uids.keys().cloned().collect())
            .unwrap_or_default()
    };
    // The copy the new mailboxes get theirs from: one being removed (it can be moved),
    // else any.
    let source = removed
        .first()
        .map(|m| (*m).clone())
        .or_else(|| old_mailboxes.first().cloned());
    let mut ops = Vec::new();
    let remote = |m: &str| remote_of(sync, m);
    match (source, added.split_last()) {
        (Some(src), Some((last, rest))) => {
            let Some(from) = remote(&src) else {
                return Ok(Err(SetError::invalid_properties(["mailboxIds"])));
            };
            let uids = uids_in(&src);
            for m in rest {
                if let Some(to) = remote(m) {
                    ops.push(WriteOp::Copy {
                        from: from.clone(),
                        uids: uids.clone(),
                        to,
                    });
                }
            }
            if let Some(to) = remote(last) {
                if removed.iter().any(|m| **m == src) {
                    ops.push(WriteOp::Move { from, uids, to });
                } else {
                    ops.push(WriteOp::Copy { from, uids, to });
                }
            }
            for m in removed.iter().filter(|m| ***m != src) {
                if let Some(mailbox) = remote(m) {
                    ops.push(WriteOp::Delete {
                        mailbox,
                        uids: uids_in(m),
                    });
                }
            }
        }
        _ => {
            for m in &removed {
                if let Some(mailbox) = remote(m) {
                    ops.push(WriteOp::Delete {
                        mailbox,
                        uids: uids_in(m),
                    });
                }
            }
        }
    }
    for op in ops {
        if let Err(e) = sync.write(op).await {
            return object_error(e).map(Err);
        }
    }
    Ok(Ok(()))
}

/// Reads a blob for a body part or an import: an upload, an Email's raw message, or a part
/// of either (see [`super::read_blob`]).
async fn read_blob<A: MailAccount>(
    account: &A,
    blob_id: &str,
) -> Result<Option<Vec<u8>>, MethodError> {
    super::read_blob(account, blob_id)
        .await
        .map(|b| b.map(|d| d.bytes))
        .map_err(super::blob_error)
}

async fn create_one<A: MailAccount>(
    account: &A,
    sync: &AccountSync,
    object: &Map<String, Value>,
    created: &CreatedIds,
) -> ObjectResult<EmailRecord> {
    let mailbox_ids = match parse_mailbox_ids(object.get("mailboxIds"), sync, created) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    let keywords = match parse_keywords(object.get("keywords")) {
        Ok(k) => k,
        Err(e) => return Ok(Err(e)),
    };
    let received_at = match object.get("receivedAt") {
        None | Some(Value::Null) => now(),
        Some(Value::String(s)) => match UtcDate::parse(s) {
            Ok(d) => d.timestamp(),
            Err(_) => return Ok(Err(SetError::invalid_properties(["receivedAt"]))),
        },
        Some(_) => return Ok(Err(SetError::invalid_properties(["receivedAt"]))),
    };
    // Every blob the body parts name, read up front.
    let mut blobs = BTreeMap::new();
    let mut missing = Vec::new();
    for blob_id in build::blob_ids(object) {
        match read_blob(account, &blob_id).await? {
            Some(b) => {
                blobs.insert(blob_id, b);
            }
            None => missing.push(blob_id),
        }
    }
    if !missing.is_empty() {
        return Ok(Err(
            SetError::new(SetErrorType::BlobNotFound).with_property("notFound", json!(missing))
        ));
    }
    let message = match build::message(object, &blobs, received_at) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    let new = NewMessage {
        mailbox_ids: &mailbox_ids,
        raw: message.raw,
        keywords,
        received_at: Some(received_at),
        message_id: Some(&message.message_id),
        reject_duplicate: false,
        local_fallback: true,
    };
    append(account, sync, new).await
}

// ---------------------------------------------------------------------------------------
// Email/import

struct EmailImport;

impl<D> Handler<D> for EmailImport
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let mut args = Arguments::new(call.arguments.clone());
            let account_id: Id = args.required("accountId")?;
            let if_in_state: Option<String> = args.optional("ifInState")?;
            let emails: BTreeMap<Id, Map<String, Value>> = args.required("emails")?;
            args.finish()?;
            let max = call.limits().max_objects_in_set.get();
            if u64::try_from(emails.len()).unwrap_or(u64::MAX) > max {
                return Err(MethodError::request_too_large(format!(
                    "{} emails, more than maxObjectsInSet ({max})",
                    emails.len()
                )));
            }
            let account = call.account()?;
            let old_state = email_state(account).await?;
            if if_in_state.as_ref().is_some_and(|s| *s != old_state) {
                return Err(MethodError::state_mismatch());
            }
            let mut response: SetResponse =
                SetResponse::new(account_id, Some(old_state.clone()), old_state);
            if !emails.is_empty() {
                let sync = sync_of(account)?;
                for (cid, object) in &emails {
                    match import_one(account, sync, object, call.created_ids).await? {
                        Ok(r) => response.add_created(cid.clone(), created_properties(&r)),
                        Err(e) => response.add_not_created(cid.clone(), e),
                    }
                }
                response.new_state = email_state(account).await?;
            }
            let mut out = Map::new();
            out.insert("accountId".into(), json!(response.account_id));
            out.insert("oldState".into(), json!(response.old_state));
            out.insert("newState".into(), json!(response.new_state));
            out.insert("created".into(), json!(response.created));
            out.insert("notCreated".into(), json!(response.not_created));
            Ok(call.reply(out))
        })
    }
}

/// The message begins with a header field (`name:`), as RFC 5322 wants.
fn starts_with_header_field(raw: &[u8]) -> bool {
    let line = raw.split(|b| *b == b'\n').next().unwrap_or_default();
    match line.iter().position(|b| *b == b':') {
        Some(colon) if colon > 0 => line[..colon].iter().all(|b| (0x21..=0x7e).contains(b)),
        _ => false,
    }
}

async fn import_one<A: MailAccount>(
    account: &A,
    sync: &AccountSync,
    object: &Map<String, Value>,
    created: &CreatedIds,
) -> ObjectResult<EmailRecord> {
    if let Some(k) = object
        .keys()
        .find(|k| !["blobId", "mailboxIds", "keywords", "receivedAt"].contains(&k.as_str()))
    {
        return Ok(Err(SetError::invalid_properties([k.clone()])
            .with_description(
                "an EmailImport has blobId, mailboxIds, keywords, receivedAt",
            )));
    }
    let Some(Value::String(blob_id)) = object.get("blobId") else {
        return Ok(Err(SetError::invalid_properties(["blobId"])));
    };
    let blob_id = created
        .resolve_str(blob_id)
        .map_or_else(|| blob_id.clone(), Id::into_string);
    let mailbox_ids = match parse_mailbox_ids(object.get("mailboxIds"), sync, created) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    let keywords = match parse_keywords(object.get("keywords")) {
        Ok(k) => k,
        Err(e) => return Ok(Err(e)),
    };
    let explicit_received = match object.get("receivedAt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match UtcDate::parse(s) {
            Ok(d) => Some(d.timestamp()),
            Err(_) => return Ok(Err(SetError::invalid_properties(["receivedAt"]))),
        },
        Some(_) => return Ok(Err(SetError::invalid_properties(["receivedAt"]))),
    };
    // RFC 8621 §4.8: a blob id that is not found is an invalid property.
    let Some(raw) = read_blob(account, &blob_id).await? else {
        return Ok(Err(SetError::invalid_properties(["blobId"])
            .with_description(format!("blob {blob_id} not found"))));
    };
    let Some(parsed) = mail_parser::MessageParser::default().parse(&raw[..]) else {
        return Ok(Err(SetError::new(SetErrorType::InvalidEmail)
            .with_description("the blob is not an RFC 5322 message")));
    };
    if parsed.headers().is_empty() || !starts_with_header_field(&raw) {
        return Ok(Err(SetError::new(SetErrorType::InvalidEmail)
            .with_description("the blob has no header fields")));
    }
    let received_at = explicit_received.unwrap_or_else(|| {
        parsed
            .received_all()
            .next()
            .and_then(|r| r.date())
            .map_or_else(now, |d| d.to_timestamp())
    });
    let message_id = parsed.message_id().map(str::to_owned);
    drop(parsed);
    let new = NewMessage {
        mailbox_ids: &mailbox_ids,
        raw,
        keywords,
        received_at: Some(received_at),
        message_id: message_id.as_deref(),
        reject_duplicate: true,
        local_fallback: false,
    };
    append(account, sync, new).await
}

// ---------------------------------------------------------------------------------------
// Email/copy

struct EmailCopy;

impl<D> Handler<D> for EmailCopy
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let request = CopyRequest::<NoExtra>::from_arguments(call.arguments.clone())?;
            let from = call.from_account()?;
            let to = call.account()?;
            let from_state = email_state(from).await?;
            if request
                .if_from_in_state
                .as_ref()
                .is_some_and(|s| *s != from_state)
            {
                return Err(MethodError::state_mismatch());
            }
            let old_state = email_state(to).await?;
            if request
                .if_in_state
                .as_ref()
                .is_some_and(|s| *s != old_state)
            {
                return Err(MethodError::state_mismatch());
            }
            let mut response: CopyResponse = CopyResponse::new(
                request.from_account_id.clone(),
                request.account_id.clone(),
                Some(old_state.clone()),
                old_state,
            );
            let mut copied: Vec<Id> = Vec::new();
            if !request.create.is_empty() {
                let sync = sync_of(to)?;
                for (cid, object) in &request.create {
                    let source = match CopyRequest::<NoExtra>::source_id(object, call.created_ids) {
                        Ok(s) => s,
                        Err(e) => {
                            response.add_not_created(cid.clone(), e);
                            continue;
                        }
                    };
                    match copy_one(from, to, sync, &source, object, call.created_ids).await? {
                        Ok(r) => {
                            response.add_created(cid.clone(), created_properties(&r));
                            copied.push(source);
                        }
                        Err(e) => response.add_not_created(cid.clone(), e),
                    }
                }
                response.new_state = email_state(to).await?;
            }
            let output = call.reply(response.to_arguments());
            if !request.on_success_destroy_original || copied.is_empty() {
                return Ok(output);
            }
            // The implicit Email/set in the from-account (RFC 8620 §5.4).
            let destroy = destroy_in(
                from,
                &request.from_account_id,
                &copied,
                request.destroy_from_if_in_state.as_deref(),
            )
            .await;
            Ok(match destroy {
                Ok(args) => output.and_then("Email/set", args),
                Err(e) => output.and_then("error", e.to_arguments()),
            })
        })
    }
}

/// Email/set { destroy } in `account`, as the arguments of its response.
async fn destroy_in<A: MailAccount>(
    account: &A,
    account_id: &Id,
    ids: &[Id],
    if_in_state: Option<&str>,
) -> Result<Map<String, Value>, MethodError> {
    let old_state = email_state(account).await?;
    if if_in_state.is_some_and(|s| s != old_state) {
        return Err(MethodError::state_mismatch());
    }
    let sync = sync_of(account)?;
    let mut response: SetResponse =
        SetResponse::new(account_id.clone(), Some(old_state.clone()), old_state);
    for id in ids {
        match destroy_one(account, sync, id).await? {
            Ok(()) => response.add_destroyed(id.clone()),
            Err(e) => response.add_not_destroyed(IdRef::Id(id.clone()), e),
        }
    }
    response.new_state = email_state(account).await?;
    Ok(response.to_arguments())
}

async fn copy_one<A: MailAccount>(
    from: &A,
    to: &A,
    sync: &AccountSync,
    source: &Id,
    object: &Map<String, Value>,
    created: &CreatedIds,
) -> ObjectResult<EmailRecord> {
    if let Some(k) = object
        .keys()
        .find(|k| !["id", "mailboxIds", "keywords", "receivedAt"].contains(&k.as_str()))
    {
        return Ok(Err(SetError::invalid_properties([k.clone()])
            .with_description(
                "only mailboxIds, keywords and receivedAt may be set on a copied Email",
            )));
    }
    let Some(original) = load_email(from, source.as_str()).await? else {
        return Ok(Err(SetError::not_found()));
    };
    let mailbox_ids = match parse_mailbox_ids(object.get("mailboxIds"), sync, created) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    let keywords = match object.get("keywords") {
        None => original.keywords(),
        v => match parse_keywords(v) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        },
    };
    let received_at = match object.get("receivedAt") {
        None | Some(Value::Null) => original.received_at,
        Some(Value::String(s)) => match UtcDate::parse(s) {
            Ok(d) => d.timestamp(),
            Err(_) => return Ok(Err(SetError::invalid_properties(["receivedAt"]))),
        },
        Some(_) => return Ok(Err(SetError::invalid_properties(["receivedAt"]))),
    };
    // The raw message: from the blob cache, else fetched upstream by the from-account.
    let Some(raw) = read_blob(from, source.as_str()).await? else {
        return match from.sync() {
            Some(_) => Ok(Err(SetError::not_found())),
            None => Err(MethodError::server_unavailable()
                .with_description("the from-account's mail server is not connected")),
        };
    };
    let new = NewMessage {
        mailbox_ids: &mailbox_ids,
        raw,
        keywords,
        received_at: Some(received_at),
        message_id: original.message_id.first().map(String::as_str),
        reject_duplicate: true,
        local_fallback: false,
    };
    append(to, sync, new).await
}

// ---------------------------------------------------------------------------------------
// Building an RFC 5322 message from an Email object.

/// The JMAP side of Email/set create: which properties are allowed where, what their values
/// must look like, and the tree of parts they describe. The encoding (RFC 2047 words, address
/// and Message-ID lists, folding, parameters, transfer encodings, boundaries) is
/// mail-builder's; the few places where it is not used say why.
mod build {
    use std::borrow::Cow;
    use std::collections::BTreeMap;
    use std::fmt::Write as _;

    use jmap_engine::{Date, SetError};
    use mail_builder::headers::address::{Address, EmailAddress, GroupedAddresses};
    use mail_builder::headers::content_type::ContentType;
    use mail_builder::headers::message_id::MessageId;
    use mail_builder::headers::raw::Raw;
    use mail_builder::headers::text::Text;
    use mail_builder::headers::url::URL;
    use mail_builder::headers::{Header as _, HeaderType};
    use mail_builder::mime::{BodyPart, MimePart};
    use ring::rand::SecureRandom as _;
    use serde_json::{Map, Value};

    /// The message and the Message-ID it carries.
    pub struct Built {
        pub raw: Vec<u8>,
        pub message_id: String,
    }

    /// A header field: its name and its value for mail-builder to write.
    type Field = (String, HeaderType<'static>);

    /// Properties a created Email may not have (server-set, or `headers`).
    const FORBIDDEN: [&str; 7] = [
        "id",
        "blobId",
        "threadId",
        "size",
        "hasAttachment",
        "preview",
        "headers",
    ];

    const CONVENIENCE: [(&str, &str, Form); 11] = [
        ("messageId", "Message-ID", Form::MessageIds),
        ("inReplyTo", "In-Reply-To", Form::MessageIds),
        ("references", "References", Form::MessageIds),
        ("sender", "Sender", Form::Addresses),
        ("from", "From", Form::Addresses),
        ("to", "To", Form::Addresses),
        ("cc", "Cc", Form::Addresses),
        ("bcc", "Bcc", Form::Addresses),
        ("replyTo", "Reply-To", Form::Addresses),
        ("subject", "Subject", Form::Text),
        ("sentAt", "Date", Form::Date),
    ];

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Form {
        Raw,
        Text,
        Addresses,
        GroupedAddresses,
        MessageIds,
        Date,
        Urls,
    }

    fn invalid(p: &str, why: impl Into<String>) -> SetError {
        SetError::invalid_properties([p.to_owned()]).with_description(why.into())
    }

    fn random_hex(n: usize) -> String {
        let mut buf = vec![0u8; n];
        let _ = ring::rand::SystemRandom::new().fill(&mut buf);
        buf.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Every blobId the body parts of an Email object name.
    pub fn blob_ids(object: &Map<String, Value>) -> Vec<String> {
        fn walk(v: &Value, out: &mut Vec<String>) {
            if let Value::Object(p) = v {
                if let Some(Value::String(b)) = p.get("blobId") {
                    out.push(b.clone());
                }
                if let Some(Value::Array(sub)) = p.get("subParts") {
                    sub.iter().for_each(|s| walk(s, out));
                }
            }
        }
        let mut out = Vec::new();
        for key in ["bodyStructure", "textBody", "htmlBody", "attachments"] {
            match object.get(key) {
                Some(Value::Array(parts)) => parts.iter().for_each(|p| walk(p, &mut out)),
                Some(v) => walk(v, &mut out),
                None => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }

    // --- header values ---------------------------------------------------------------

    /// An EmailAddress object; `None` when it is not one we can write.
    fn email_address(a: &Value) -> Option<EmailAddress<'static>> {
        let a = a.as_object()?;
        let email = match a.get("email") {
            Some(Value::String(e)) if !e.contains(['\r', '\n', '<', '>']) => e.clone(),
            _ => return None,
        };
        let name = match a.get("name") {
            Some(Value::String(n)) if !n.is_empty() => Some(Cow::Owned(n.clone())),
            None | Some(Value::Null | Value::String(_)) => None,
            _ => return None,
        };
        Some(EmailAddress {
            name,
            email: email.into(),
        })
    }

    fn addresses(v: &Value) -> Option<Vec<EmailAddress<'static>>> {
        v.as_array()?.iter().map(email_address).collect()
    }

    /// An `asGroupedAddresses` value: a list of groups, where a group without a name stands
    /// for addresses outside any group.
    fn grouped_addresses(v: &Value) -> Option<Address<'static>> {
        let mut items = Vec::new();
        for g in v.as_array()? {
            let g = g.as_object()?;
            let list = addresses(g.get("addresses")?)?
                .into_iter()
                .map(Address::Address);
            match g.get("name") {
                None | Some(Value::Null) => items.extend(list),
                Some(Value::String(n)) => items.push(Address::Group(GroupedAddresses {
                    name: Some(Cow::Owned(n.clone())),
                    addresses: list.collect(),
                })),
                Some(_) => return None,
            }
        }
        Some(Address::new_list(items))
    }

    fn rfc5322_date(d: &Date) -> String {
        // The offset as written in the Date (…Z or …±hh:mm).
        let text = d.as_str();
        let offset_minutes: i64 = if text.ends_with('Z') || text.ends_with('z') {
            0
        } else {
            let tail = &text[text.len().saturating_sub(6)..];
            let sign = if tail.starts_with('-') { -1 } else { 1 };
            let h: i64 = tail.get(1..3).and_then(|x| x.parse().ok()).unwrap_or(0);
            let m: i64 = tail.get(4..6).and_then(|x| x.parse().ok()).unwrap_or(0);
            sign * (h * 60 + m)
        };
        format_date(d.timestamp(), offset_minutes)
    }

    /// An RFC 5322 date-time at a UTC offset. mail-builder's Date (2.0 too) is a bare
    /// timestamp written in +0000, and a `sentAt` keeps the sender's offset (RFC 8621 §4.1.2.4).
    pub fn format_date(timestamp: i64, offset_minutes: i64) -> String {
        let local = timestamp + offset_minutes * 60;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, mo, d) = upstream::civil::civil_from_days(days);
        const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let wd = WEEKDAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
        let mon = MONTHS[usize::try_from(mo - 1).unwrap_or(0).min(11)];
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let off = offset_minutes.abs();
        format!(
            "{wd}, {d} {mon} {y:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            off / 60,
            off % 60
        )
    }

    /// Message-IDs and URLs: no angle brackets, white space or line breaks inside.
    fn bracketable(list: &Value, may_be_empty: bool) -> Option<Vec<Cow<'static, str>>> {
        list.as_array()?
            .iter()
            .map(|i| {
                let i = i.as_str()?;
                ((may_be_empty || !i.is_empty()) && !i.contains(['<', '>', ' ', '\r', '\n']))
                    .then(|| Cow::Owned(i.to_owned()))
            })
            .collect()
    }

    /// One header value in a parsed form.
    fn format_value(form: Form, v: &Value) -> Option<HeaderType<'static>> {
        Some(match form {
            Form::Raw => {
                let s = v.as_str()?;
                // Folding is fine; a line break that starts a new field or ends the header
                // section is not.
                let unfolded_ok = s
                    .replace("\r\n", "\n")
                    .split('\n')
                    .skip(1)
                    .all(|l| l.starts_with([' ', '\t']));
                if !unfolded_ok || s.replace("\r\n", "").contains('\r') {
                    return None;
                }
                Raw::new(s.strip_prefix(' ').unwrap_or(s).to_owned()).into()
            }
            // Unstructured text has no line breaks: they become spaces.
            Form::Text => Text::new(v.as_str()?.replace(['\r', '\n'], " ")).into(),
            Form::Addresses => {
                Address::new_list(addresses(v)?.into_iter().map(Address::Address).collect()).into()
            }
            Form::GroupedAddresses => grouped_addresses(v)?.into(),
            Form::MessageIds => MessageId {
                id: bracketable(v, false)?,
            }
            .into(),
            // Written by hand: see `format_date`.
            Form::Date => Raw::new(rfc5322_date(&Date::parse(v.as_str()?).ok()?)).into(),
            Form::Urls => URL {
                url: bracketable(v, true)?,
            }
            .into(),
        })
    }

    /// `header:Name[:form][:all]` → (name, form, all).
    fn parse_header_property(p: &str) -> Option<(String, Form, bool)> {
        let rest = p.strip_prefix("header:")?;
        let mut parts: Vec<&str> = rest.split(':').collect();
        let all = parts.last() == Some(&"all");
        if all {
            parts.pop();
        }
        let (name, form) = match parts.as_slice() {
            [name] => (*name, Form::Raw),
            [name, form] => (
                *name,
                match *form {
                    "asRaw" => Form::Raw,
                    "asText" => Form::Text,
                    "asAddresses" => Form::Addresses,
                    "asGroupedAddresses" => Form::GroupedAddresses,
                    "asMessageIds" => Form::MessageIds,
                    "asDate" => Form::Date,
                    "asURLs" => Form::Urls,
                    _ => return None,
                },
            ),
            _ => return None,
        };
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b':');
        valid.then(|| (name.to_owned(), form, all))
    }

    /// The header fields an object (Email or body part) sets, in order, each with the property
    /// that set it: convenience properties (when `convenience`) and `header:` properties.
    /// Duplicates of one field and values that do not fit the form are invalid.
    fn headers_of(
        object: &Map<String, Value>,
        convenience: bool,
        content_allowed: bool,
    ) -> Result<Vec<(String, Field)>, SetError> {
        let mut out: Vec<(String, Field)> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let add = |name: &str, p: &str, seen: &mut Vec<String>| -> Result<(), SetError> {
            let lower = name.to_ascii_lowercase();
            if seen.contains(&lower) {
                return Err(invalid(
                    p,
                    format!("the {name} header field is given twice"),
                ));
            }
            if !content_allowed && lower.starts_with("content-") {
                return Err(invalid(p, "Content-* header fields belong on body parts"));
            }
            if lower == "content-transfer-encoding" {
                return Err(invalid(
                    p,
                    "Content-Transfer-Encoding is chosen by the server",
                ));
            }
            seen.push(lower);
            Ok(())
        };
        if convenience {
            for (p, name, form) in CONVENIENCE {
                match object.get(p) {
                    None | Some(Value::Null) => {}
                    Some(v) => {
                        add(name, p, &mut seen)?;
                        let value = format_value(form, v)
                            .ok_or_else(|| invalid(p, format!("invalid {p}")))?;
                        out.push((p.to_owned(), (name.to_owned(), value)));
                    }
                }
            }
        }
        for (p, v) in object {
            if !p.starts_with("header:") {
                continue;
            }
            let (name, form, all) =
                parse_header_property(p).ok_or_else(|| invalid(p, "invalid header property"))?;
            add(&name, p, &mut seen)?;
            let values: Vec<&Value> = match (all, v) {
                (_, Value::Null) => Vec::new(),
                (true, Value::Array(list)) => list.iter().collect(),
                (true, _) => return Err(invalid(p, "a ':all' header property takes an array")),
                (false, v) => vec![v],
            };
            for v in values {
                let value = format_value(form, v).ok_or_else(|| invalid(p, "invalid value"))?;
                out.push((p.clone(), (name.clone(), value)));
            }
        }
        Ok(out)
    }

    /// Writes the message's own header fields. Not mail-builder's `MessageBuilder`: it adds a
    /// Message-ID, a Date and a MIME-Version of its own unless a field of exactly that
    /// spelling is there (`header:date:asDate` would get a second Date). Raw values (validated
    /// as folded correctly) are written as given, folds and line lengths the client's, as
    /// `asRaw` gives them back; every other value is mail-builder's.
    fn write_fields(fields: &[Field], out: &mut Vec<u8>) {
        for (name, value) in fields {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            write_value(value, name.len() + 2, out);
        }
    }

    /// One field's value and the CRLF that ends it, from `column` on.
    fn write_value(value: &HeaderType<'_>, column: usize, out: &mut Vec<u8>) {
        match value {
            HeaderType::Raw(raw) => {
                out.extend_from_slice(raw.raw.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            value => value.write_header(out, column),
        }
    }

    /// A body part's header fields for mail-builder, which writes them (and folds them) itself.
    /// A raw value keeps the folds it has; mail-builder only adds folds where a line is long.
    fn part_field((name, value): Field) -> (Cow<'static, str>, HeaderType<'static>) {
        (Cow::Owned(name), value)
    }

    // --- MIME parts --------------------------------------------------------------------

    fn string_prop<'a>(p: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, SetError> {
        match p.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.contains(['\r', '\n']) => Ok(Some(s)),
            Some(_) => Err(invalid(key, format!("invalid body part {key}"))),
        }
    }

    /// The Content-Disposition a body part gets: its `disposition`, else `attachment` when it
    /// has a `name`.
    fn disposition(p: &Map<String, Value>) -> Result<Option<String>, SetError> {
        let name = string_prop(p, "name")?;
        Ok(string_prop(p, "disposition")?
            .map(str::to_ascii_lowercase)
            .or_else(|| name.map(|_| "attachment".to_owned())))
    }

    fn content_type(ty: &str) -> (Cow<'static, str>, HeaderType<'static>) {
        (
            "Content-Type".into(),
            ContentType::new(ty.to_owned()).into(),
        )
    }

    /// An EmailBodyPart for creation as a MIME part, with the properties that set its
    /// header fields (for the conflict check of `message`).
    fn part(
        v: &Value,
        body_values: &Map<String, Value>,
        blobs: &BTreeMap<String, Vec<u8>>,
        depth: usize,
    ) -> Result<(MimePart<'static>, Vec<String>), SetError> {
        let p = v
            .as_object()
            .ok_or_else(|| invalid("bodyStructure", "a body part must be an object"))?;
        if depth > 20 {
            return Err(invalid("bodyStructure", "body parts nested too deep"));
        }
        if p.contains_key("headers") {
            return Err(invalid(
                "headers",
                "set header fields as header:* properties",
            ));
        }
        let headers = headers_of(p, false, true)?;
        if headers
            .iter()
            .any(|(_, (n, _))| n.eq_ignore_ascii_case("content-type"))
        {
            return Err(invalid("bodyStructure", "give the type as 'type'"));
        }
        let ty = string_prop(p, "type")?.map(str::to_ascii_lowercase);
        let mut mime = if let Some(Value::Array(subs)) = p.get("subParts") {
            let ty = ty.unwrap_or_else(|| "multipart/mixed".into());
            if !ty.starts_with("multipart/") {
                return Err(invalid(
                    "bodyStructure",
                    "only multipart parts have subParts",
                ));
            }
            let parts = subs
                .iter()
                .map(|s| part(s, body_values, blobs, depth + 1).map(|(m, _)| m))
                .collect::<Result<Vec<_>, _>>()?;
            // mail-builder adds the boundary parameter.
            MimePart {
                headers: vec![content_type(&ty)],
                contents: BodyPart::Multipart(parts),
            }
        } else {
            leaf(p, ty, body_values, blobs)?
        };
        // RFC 8621 §4.6: no two properties may set the same header field (`cid` and
        // `header:Content-ID`, say).
        for (prop, (name, _)) in &headers {
            if mime
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                return Err(invalid(prop, format!("{name} is also set by a property")));
            }
        }
        let props = headers.iter().map(|(p, _)| p.clone()).collect();
        mime.headers
            .extend(headers.into_iter().map(|(_, f)| part_field(f)));
        Ok((mime, props))
    }

    /// A body part with content: a body value (`partId`) or a blob (`blobId`).
    fn leaf(
        p: &Map<String, Value>,
        ty: Option<String>,
        body_values: &Map<String, Value>,
        blobs: &BTreeMap<String, Vec<u8>>,
    ) -> Result<MimePart<'static>, SetError> {
        let contents = match (p.get("partId"), p.get("blobId")) {
            (Some(Value::String(id)), None) => {
                if p.contains_key("charset") {
                    return Err(invalid("charset", "no charset with a partId"));
                }
                if p.contains_key("size") {
                    return Err(invalid("size", "no size with a partId"));
                }
                let bv = body_values
                    .get(id)
                    .and_then(Value::as_object)
                    .ok_or_else(|| invalid("bodyValues", format!("no body value {id}")))?;
                if bv.get("isEncodingProblem") == Some(&Value::Bool(true))
                    || bv.get("isTruncated") == Some(&Value::Bool(true))
                {
                    return Err(invalid("bodyValues", "a body value may not be truncated"));
                }
                let text = bv.get("value").and_then(Value::as_str).ok_or_else(|| {
                    invalid("bodyValues", format!("body value {id} has no value"))
                })?;
                BodyPart::Text(text.to_owned().into())
            }
            (None, Some(Value::String(b))) => BodyPart::Binary(
                blobs
                    .get(b)
                    .cloned()
                    .ok_or_else(|| invalid("blobId", format!("blob {b} not found")))?
                    .into(),
            ),
            _ => {
                return Err(invalid(
                    "bodyStructure",
                    "a body part needs exactly one of partId and blobId",
                ));
            }
        };
        let from_value = matches!(contents, BodyPart::Text(_));
        let ty = ty.unwrap_or_else(|| {
            if from_value {
                "text/plain".into()
            } else {
                "application/octet-stream".into()
            }
        });
        if ty.starts_with("multipart/") {
            return Err(invalid("bodyStructure", "a multipart part needs subParts"));
        }
        let charset = if from_value {
            Some("utf-8")
        } else {
            string_prop(p, "charset")?
        };
        let name = string_prop(p, "name")?;
        let mut ct = ContentType::new(ty.clone());
        if let Some(c) = charset
            && ty.starts_with("text/")
        {
            ct = ct.attribute("charset", c.to_owned());
        }
        if let Some(n) = name {
            ct = ct.attribute("name", n.to_owned());
        }
        // Built field by field: `MimePart::new` would add a charset to any text it holds.
        let mut mime = MimePart {
            headers: vec![("Content-Type".into(), ct.into())],
            contents,
        };
        if let Some(d) = disposition(p)? {
            let mut value = ContentType::new(d);
            if let Some(n) = name {
                value = value.attribute("filename", n.to_owned());
            }
            mime = mime.header("Content-Disposition", value);
        }
        if let Some(cid) = string_prop(p, "cid")? {
            mime = mime.cid(cid.trim_matches(['<', '>']).to_owned());
        }
        if let Some(Value::Array(langs)) = p.get("language") {
            let l: Vec<&str> = langs.iter().filter_map(Value::as_str).collect();
            if l.len() != langs.len() || l.iter().any(|x| x.contains(['\r', '\n', ','])) {
                return Err(invalid("language", "invalid language tags"));
            }
            if !l.is_empty() {
                mime = mime.language(l.join(", "));
            }
        }
        if let Some(loc) = string_prop(p, "location")? {
            mime = mime.location(loc.to_owned());
        }
        // mail-builder picks 7bit, quoted-printable or base64 itself; but RFC 2046 §5.2.1
        // allows only 7bit, 8bit or binary for message/* (mail-builder would base64 it), so
        // an encapsulated message goes as it is, with the identity encoding named here.
        if ty.starts_with("message/") {
            let bytes = match &mime.contents {
                BodyPart::Text(t) => t.as_bytes(),
                BodyPart::Binary(b) => b.as_ref(),
                BodyPart::Multipart(_) => &[],
            };
            let encoding = if bytes.is_ascii() { "7bit" } else { "8bit" };
            mime = mime.transfer_encoding(encoding);
        }
        Ok(mime)
    }

    fn single_part(
        object: &Map<String, Value>,
        key: &str,
        want: &str,
        body_values: &Map<String, Value>,
        blobs: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Option<MimePart<'static>>, SetError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(list)) if list.len() == 1 => {
                let ty = list[0]
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or(want)
                    .to_ascii_lowercase();
                if ty != want {
                    return Err(invalid(key, format!("{key} must be one {want} part")));
                }
                let mut p = list[0].clone();
                if let Some(o) = p.as_object_mut() {
                    o.insert("type".into(), Value::String(want.into()));
                }
                part(&p, body_values, blobs, 0).map(|(m, _)| Some(m))
            }
            Some(_) => Err(invalid(key, format!("{key} must be one {want} part"))),
        }
    }

    fn multipart(ty: ContentType<'static>, parts: Vec<MimePart<'static>>) -> MimePart<'static> {
        MimePart {
            headers: vec![("Content-Type".into(), ty.into())],
            contents: BodyPart::Multipart(parts),
        }
    }

    /// An attachment that belongs with the HTML body in its multipart/related: one with a
    /// `cid` that is not an attachment proper (its disposition, as `part` gives it, is not
    /// `attachment`).
    fn is_related(a: &Value) -> bool {
        let Some(p) = a.as_object() else {
            return false;
        };
        matches!(string_prop(p, "cid"), Ok(Some(_)))
            && !matches!(disposition(p), Ok(Some(d)) if d == "attachment")
    }

    /// The body of `textBody`, `htmlBody` and `attachments` (RFC 8621 §4.6): a
    /// multipart/mixed of the body and the attachments, the body a multipart/alternative of
    /// the text and the HTML, and the HTML a multipart/related with the inline parts it
    /// refers to (by cid).
    fn flat_body(
        object: &Map<String, Value>,
        body_values: &Map<String, Value>,
        blobs: &BTreeMap<String, Vec<u8>>,
    ) -> Result<MimePart<'static>, SetError> {
        let text = single_part(object, "textBody", "text/plain", body_values, blobs)?;
        let html = single_part(object, "htmlBody", "text/html", body_values, blobs)?;
        let list = match object.get("attachments") {
            None | Some(Value::Null) => &Vec::new(),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(invalid("attachments", "attachments must be an array")),
        };
        let mut related = Vec::new();
        let mut attachments = Vec::new();
        for a in list {
            let (p, _) = part(a, body_values, blobs, 0)?;
            if html.is_some() && is_related(a) {
                related.push(p);
            } else {
                attachments.push(p);
            }
        }
        let html = html.map(|h| {
            if related.is_empty() {
                h
            } else {
                let ty = ContentType::new("multipart/related").attribute("type", "text/html");
                multipart(ty, [h].into_iter().chain(related).collect())
            }
        });
        let body = match (text, html) {
            (Some(t), Some(h)) => Some(multipart(
                ContentType::new("multipart/alternative"),
                vec![t, h],
            )),
            (Some(p), None) | (None, Some(p)) => Some(p),
            (None, None) => None,
        };
        let mixed = |parts| multipart(ContentType::new("multipart/mixed"), parts);
        Ok(match (body, attachments.is_empty()) {
            (Some(b), true) => b,
            (Some(b), false) => mixed([b].into_iter().chain(attachments).collect()),
            (None, false) => mixed(attachments),
            (None, true) => MimePart::new("text/plain", ""),
        })
    }

    /// The message an Email/set create object describes (RFC 8621 §4.6 constraints).
    pub fn message(
        object: &Map<String, Value>,
        blobs: &BTreeMap<String, Vec<u8>>,
        received_at: i64,
    ) -> Result<Built, SetError> {
        if let Some(p) = object.keys().find(|k| FORBIDDEN.contains(&k.as_str())) {
            return Err(invalid(p, "server-set or not allowed on create"));
        }
        let known = |k: &str| {
            k.starts_with("header:")
                || CONVENIENCE.iter().any(|(p, _, _)| *p == k)
                || [
                    "mailboxIds",
                    "keywords",
                    "receivedAt",
                    "bodyStructure",
                    "bodyValues",
                    "textBody",
                    "htmlBody",
                    "attachments",
                ]
                .contains(&k)
        };
        if let Some(p) = object.keys().find(|k| !known(k)) {
            return Err(invalid(p, "unknown Email property"));
        }
        let mut headers: Vec<Field> = headers_of(object, true, false)?
            .into_iter()
            .map(|(_, f)| f)
            .collect();
        let empty = Map::new();
        let body_values = match object.get("bodyValues") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(invalid("bodyValues", "bodyValues must be an object")),
        };
        let has_parts = ["textBody", "htmlBody", "attachments"]
            .iter()
            .any(|k| object.get(*k).is_some_and(|v| !v.is_null()));
        let root = match object.get("bodyStructure") {
            Some(v) if !v.is_null() => {
                if has_parts {
                    return Err(invalid(
                        "bodyStructure",
                        "bodyStructure excludes textBody, htmlBody and attachments",
                    ));
                }
                let (root, _) = part(v, body_values, blobs, 0)?;
                if let Some((n, _)) = root.headers.iter().find(|(n, _)| {
                    headers
                        .iter()
                        .any(|(h, _)| h.eq_ignore_ascii_case(n.as_ref()))
                }) {
                    return Err(invalid(
                        "bodyStructure",
                        format!("{n} is also set on the Email"),
                    ));
                }
                root
            }
            _ => flat_body(object, body_values, blobs)?,
        };
        let message_id = match headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case("message-id"))
        {
            Some((name, v)) => {
                let mut out = Vec::new();
                write_value(v, name.len() + 2, &mut out);
                String::from_utf8_lossy(&out).trim().to_owned()
            }
            None => {
                let id = format!("{}@jmap-gateway", random_hex(16));
                headers.push(("Message-ID".into(), MessageId::new(id.clone()).into()));
                format!("<{id}>")
            }
        };
        if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case("date")) {
            let date = mail_builder::headers::date::Date::new(received_at);
            headers.push(("Date".into(), date.into()));
        }
        // One MIME-Version field: the client's `header:MIME-Version`, if it gave one.
        if !headers
            .iter()
            .any(|(h, _)| h.eq_ignore_ascii_case("mime-version"))
        {
            headers.push(("MIME-Version".into(), Raw::new("1.0").into()));
        }
        let mut raw = Vec::new();
        write_fields(&headers, &mut raw);
        // The root part's own fields (Content-*) and its body.
        root.write_part(&mut raw);
        Ok(Built { raw, message_id })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use jmap_engine::{
        AccountDirectory, AccountError, CORE_CAPABILITY, Capabilities, CoreCapability, Engine, Id,
    };
    use serde_json::{Value, json};
    use state::{AccountId, AsyncStore, DataType, ObjectId, Store, StoreConfig};
    use upstream::{UpstreamError, WriteOp};

    use mail_parser::MimeHeaders as _;

    use crate::methods::fake::{FakeUpstream, fixture_with_fake, message};
    use crate::methods::testing::{Fixture, TestAccount};
    use crate::{AccountSync, EmailRecord, SyncOptions};

    fn mbox(f: &Fixture, remote: &str) -> String {
        f.account.sync.as_ref().unwrap().mailbox_id(remote).unwrap()
    }

    async fn record(f: &Fixture, id: &str) -> Option<EmailRecord> {
        f.account
            .store
            .blocking()
            .get(f.account.id, DataType::Email, &ObjectId::new(id).unwrap())
            .unwrap()
            .and_then(|b| EmailRecord::from_bytes(&b))
    }

    /// A message delivered to INBOX and synced; its Email id.
    async fn delivered(f: &Fixture, fake: &FakeUpstream, subject: &str) -> String {
        fake.deliver(
            "INBOX",
            message(subject, &format!("{subject}@x"), "body"),
            &[],
        );
        let sync = f.account.sync.as_ref().unwrap();
        sync.sync_all().await.unwrap();
        let inbox = mbox(f, "INBOX");
        let uid = fake.messages("INBOX").last().unwrap().uid.to_string();
        sync.email_at(&inbox, &uid)
            .await
            .unwrap()
            .unwrap()
            .to_string()
    }

    async fn set(f: &Fixture, args: Value) -> Value {
        f.ok("Email/set", args).await
    }

    #[tokio::test]
    async fn keywords_whole_and_patched() {
        let (f, fake) = fixture_with_fake().await;
        let id = delivered(&f, &fake, "one").await;
        let r = set(
            &f,
            json!({"update": {&id: {"keywords/$Seen": true, "keywords/$flagged": true}}}),
        )
        .await;
        assert_eq!(r["updated"], json!({&id: null}), "{r}");
        assert_ne!(r["oldState"], r["newState"]);
        let kw = &fake.messages("INBOX")[0].keywords;
        assert!(kw.contains("$seen") && kw.contains("$flagged"));
        let r = set(&f, json!({"update": {&id: {"keywords/$flagged": null}}})).await;
        assert!(r["updated"].get(&id).is_some());
        let r = set(
            &f,
            json!({"update": {&id: {"keywords": {"$answered": true}}}}),
        )
        .await;
        assert!(r["updated"].get(&id).is_some());
        let rec = record(&f, &id).await.unwrap();
        assert_eq!(
            rec.keywords().into_iter().collect::<Vec<_>>(),
            vec!["$answered"]
        );
        // Invalid keywords and values.
        for patch in [
            json!({"keywords": {"bad(kw": true}}),
            json!({"keywords/$seen": false}),
            json!({"keywords": ["$seen"]}),
        ] {
            let r = set(&f, json!({"update": {&id: patch}})).await;
            assert_eq!(
                r["notUpdated"][&id]["type"],
                json!("invalidProperties"),
                "{r}"
            );
        }
    }

    #[tokio::test]
    async fn mailbox_moves_copies_and_removals() {
        let (f, fake) = fixture_with_fake().await;
        let id = delivered(&f, &fake, "two").await;
        let (inbox, trash, drafts) = (mbox(&f, "INBOX"), mbox(&f, "Trash"), mbox(&f, "Drafts"));
        // Move: out of every old mailbox into a new one.
        let r = set(&f, json!({"update": {&id: {"mailboxIds": {&trash: true}}}})).await;
        assert!(r["updated"].get(&id).is_some(), "{r}");
        assert!(fake.messages("INBOX").is_empty());
        assert_eq!(fake.messages("Trash").len(), 1);
        assert!(matches!(fake.ops().last(), Some(WriteOp::Move { .. })));
        // Add: a copy.
        let r = set(
            &f,
            json!({"update": {&id: {format!("mailboxIds/{drafts}"): true}}}),
        )
        .await;
        assert!(r["updated"].get(&id).is_some(), "{r}");
        assert!(matches!(fake.ops().last(), Some(WriteOp::Copy { .. })));
        assert_eq!(fake.messages("Drafts").len(), 1);
        let rec = record(&f, &id).await.unwrap();
        assert_eq!(rec.locations.len(), 2);
        // Remove one of two: a delete there.
        let r = set(
            &f,
            json!({"update": {&id: {format!("mailboxIds/{trash}"): null}}}),
        )
        .await;
        assert!(r["updated"].get(&id).is_some(), "{r}");
        assert!(matches!(fake.ops().last(), Some(WriteOp::Delete { .. })));
        assert!(fake.messages("Trash").is_empty());
        let rec = record(&f, &id).await.unwrap();
        assert_eq!(rec.mailbox_ids().collect::<Vec<_>>(), vec![drafts.as_str()]);
        // Remove one and add two at once.
        let r = set(
            &f,
            json!({"update": {&id: {"mailboxIds": {&inbox: true, &trash: true}}}}),
        )
        .await;
        assert!(r["updated"].get(&id).is_some(), "{r}");
        assert!(fake.messages("Drafts").is_empty());
        assert_eq!(
            (fake.messages("INBOX").len(), fake.messages("Trash").len()),
            (1, 1)
        );
        let rec = record(&f, &id).await.unwrap();
        assert_eq!(rec.locations.len(), 2);
    }

    #[tokio::test]
    async fn update_errors() {
        let (f, fake) = fixture_with_fake().await;
        let id = delivered(&f, &fake, "three").await;
        let cases = [
            (json!({"mailboxIds": {}}), "invalidProperties"),
            (json!({"mailboxIds": {"Mnope": true}}), "invalidProperties"),
            (json!({"subject": "changed"}), "invalidProperties"),
            (json!({"mailboxIds/x/y": true}), "invalidPatch"),
        ];
        for (patch, want) in cases {
            let r = set(&f, json!({"update": {&id: patch}})).await;
            assert_eq!(r["notUpdated"][&id]["type"], json!(want), "{patch} {r}");
        }
        let r = set(
            &f,
            json!({"update": {"Enope": {"keywords": {}}}, "destroy": ["Enope"]}),
        )
        .await;
        assert_eq!(r["notUpdated"]["Enope"]["type"], json!("notFound"));
        assert_eq!(r["notDestroyed"]["Enope"]["type"], json!("notFound"));
        // Upstream refuses: that Email's error; upstream down: the method's.
        fake.fail_next(UpstreamError::Refused("no".into()));
        let r = set(&f, json!({"update": {&id: {"keywords/$seen": true}}})).await;
        assert_eq!(r["notUpdated"][&id]["type"], json!("forbidden"), "{r}");
        fake.fail_next(UpstreamError::Unavailable("down".into()));
        let r = f
            .call(
                "Email/set",
                json!({"update": {&id: {"keywords/$seen": true}}}),
            )
            .await;
        assert_eq!(r[0][1]["type"], json!("serverUnavailable"), "{r:?}");
        let r = f
            .call("Email/set", json!({"ifInState": "nope", "destroy": [&id]}))
            .await;
        assert_eq!(r[0][1]["type"], json!("stateMismatch"));
    }

    #[tokio::test]
    async fn destroy_removes_every_copy() {
        let (f, fake) = fixture_with_fake().await;
        let id = delivered(&f, &fake, "four").await;
        let trash = mbox(&f, "Trash");
        set(
            &f,
            json!({"update": {&id: {format!("mailboxIds/{trash}"): true}}}),
        )
        .await;
        let r = set(&f, json!({"destroy": [&id]})).await;
        assert_eq!(r["destroyed"], json!([&id]), "{r}");
        assert!(fake.messages("INBOX").is_empty() && fake.messages("Trash").is_empty());
        assert!(record(&f, &id).await.is_none());
    }

    #[tokio::test]
    async fn writes_need_a_live_upstream() {
        let f = Fixture::new();
        let r = f.call("Email/set", json!({"destroy": ["E1"]})).await;
        assert_eq!(r[0][1]["type"], json!("serverUnavailable"));
        let r = f.ok("Email/set", json!({})).await;
        assert!(r["newState"].is_string());
    }

    #[tokio::test]
    async fn create_builds_the_message() {
        let (f, fake) = fixture_with_fake().await;
        let drafts = mbox(&f, "Drafts");
        let pdf = b"%PDF-1.4 \x00\x01\x02 binary".to_vec();
        f.account
            .store
            .blob_put(f.account.id, b"Gpdf".to_vec(), pdf.clone())
            .await
            .unwrap();
        let r = set(
            &f,
            json!({"create": {"k1": {
                "mailboxIds": {&drafts: true},
                "keywords": {"$draft": true, "$seen": true},
                "receivedAt": "2024-03-01T10:00:00Z",
                "from": [{"name": "Alice Ünïcode", "email": "alice@example.com"}],
                "to": [{"name": "Bob, Jr.", "email": "bob@example.com"}, {"email": "c@example.com"}],
                "subject": "Grüße & more",
                "header:X-Priority:asText": "1",
                "bodyValues": {"t": {"value": "Hello\nwörld"}, "h": {"value": "<p>Hello</p>"}},
                "textBody": [{"partId": "t", "type": "text/plain"}],
                "htmlBody": [{"partId": "h", "type": "text/html"}],
                "attachments": [{"blobId": "Gpdf", "type": "application/pdf", "name": "report.pdf"}]
            }}}),
        )
        .await;
        let created = &r["created"]["k1"];
        let id = created["id"].as_str().unwrap_or_else(|| panic!("{r}"));
        assert_eq!(created["blobId"], json!(id));
        assert!(created["threadId"].is_string() && created["size"].as_u64().unwrap() > 0);
        let stored = fake.messages("Drafts");
        assert_eq!(stored.len(), 1);
        assert!(stored[0].keywords.contains("$draft"));
        assert_eq!(stored[0].received_at, 1_709_287_200);
        let parsed = mail_parser::MessageParser::default()
            .parse(&stored[0].raw[..])
            .unwrap();
        assert_eq!(parsed.subject(), Some("Grüße & more"));
        assert_eq!(
            parsed.from().unwrap().first().unwrap().name(),
            Some("Alice Ünïcode")
        );
        assert_eq!(
            parsed.to().unwrap().first().unwrap().name(),
            Some("Bob, Jr.")
        );
        assert_eq!(parsed.to().unwrap().iter().count(), 2);
        assert_eq!(parsed.header_raw("X-Priority").map(str::trim), Some("1"));
        assert!(parsed.message_id().is_some() && parsed.date().is_some());
        assert_eq!(
            parsed
                .body_text(0)
                .unwrap()
                .replace("\r\n", "\n")
                .trim_end(),
            "Hello\nwörld"
        );
        assert!(parsed.body_html(0).unwrap().contains("<p>Hello</p>"));
        let att = parsed.attachment(0).unwrap();
        assert_eq!(att.attachment_name(), Some("report.pdf"));
        assert_eq!(att.contents(), &pdf[..]);
        let rec = record(&f, id).await.unwrap();
        assert_eq!(rec.subject.as_deref(), Some("Grüße & more"));
        assert!(rec.locations.contains_key(&drafts));
        // The creation id can be used later in the same request.
        let r = f
            .request(json!([
                ["Email/set", {"accountId": "a1", "create": {"k2": {
                    "mailboxIds": {&drafts: true}, "subject": "s",
                    "bodyStructure": {"type": "multipart/mixed", "subParts": [
                        {"partId": "a", "type": "text/plain"},
                        {"blobId": "Gpdf", "type": "application/pdf", "disposition": "inline"}
                    ]},
                    "bodyValues": {"a": {"value": "x"}}
                }}}, "c1"],
                ["Email/set", {"accountId": "a1", "update": {"#k2": {"keywords/$flagged": true}}}, "c2"]
            ]))
            .await;
        let id2 = r[0][1]["created"]["k2"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{r:?}"))
            .to_owned();
        assert!(r[1][1]["updated"].get(&id2).is_some(), "{r:?}");
    }

    #[tokio::test]
    async fn create_errors() {
        let (f, _fake) = fixture_with_fake().await;
        let drafts = mbox(&f, "Drafts");
        let cases = [
            (json!({"subject": "no mailbox"}), "invalidProperties"),
            (
                json!({"mailboxIds": {}, "subject": "x"}),
                "invalidProperties",
            ),
            (
                json!({"mailboxIds": {&drafts: true}, "headers": []}),
                "invalidProperties",
            ),
            (
                json!({"mailboxIds": {&drafts: true}, "id": "x"}),
                "invalidProperties",
            ),
            (
                json!({"mailboxIds": {&drafts: true}, "subject": "a", "header:Subject": " b"}),
                "invalidProperties",
            ),
            (
                json!({"mailboxIds": {&drafts: true}, "header:Content-Type": "text/plain"}),
                "invalidProperties",
            ),
            (
                json!({"mailboxIds": {&drafts: true}, "textBody": [{"partId": "missing"}]}),
                "invalidProperties",
            ),
            (
                json!({"mailboxIds": {&drafts: true}, "textBody": [{"partId": "t", "type": "text/html"}],
                    "bodyValues": {"t": {"value": "x"}}}),
                "invalidProperties",
            ),
            (
                json!({"mailboxIds": {&drafts: true}, "bodyStructure": {"partId": "t"},
                    "textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "x"}}}),
                "invalidProperties",
            ),
            (
                json!({"mailboxIds": {&drafts: true}, "attachments": [{"blobId": "Gmissing"}]}),
                "blobNotFound",
            ),
            (
                json!({"mailboxIds": {&drafts: true}, "header:X-A": " a\r\nBcc: evil@x"}),
                "invalidProperties",
            ),
            (
                json!({"mailboxIds": {&drafts: true}, "header:X-A": " a\r\n\tfolded"}),
                "created",
            ),
        ];
        for (object, want) in cases {
            let r = set(&f, json!({"create": {"k": object}})).await;
            if want == "created" {
                assert!(r["created"]["k"]["id"].is_string(), "{object} {r}");
            } else {
                assert_eq!(r["notCreated"]["k"]["type"], json!(want), "{object} {r}");
            }
        }
        let r = set(
            &f,
            json!({"create": {"k": {"mailboxIds": {&drafts: true},
            "attachments": [{"blobId": "Gmissing"}]}}}),
        )
        .await;
        assert_eq!(r["notCreated"]["k"]["notFound"], json!(["Gmissing"]));
    }

    #[tokio::test]
    async fn import_an_uploaded_blob() {
        let (f, fake) = fixture_with_fake().await;
        let (inbox, trash) = (mbox(&f, "INBOX"), mbox(&f, "Trash"));
        let raw = b"Received: from a by b; Tue, 2 Jan 2024 08:00:00 +0000\r\n\
                    From: x@example.com\r\nSubject: imported\r\n\r\nbody\r\n"
            .to_vec();
        f.account
            .store
            .blob_put(f.account.id, b"Gmsg".to_vec(), raw.clone())
            .await
            .unwrap();
        f.account
            .store
            .blob_put(f.account.id, b"Gjunk".to_vec(), b"\x00\x01".to_vec())
            .await
            .unwrap();
        let r = f
            .ok(
                "Email/import",
                json!({"emails": {
                    "i1": {"blobId": "Gmsg", "mailboxIds": {&inbox: true, &trash: true},
                           "keywords": {"$seen": true}},
                    "i2": {"blobId": "Gnone", "mailboxIds": {&inbox: true}},
                    "i3": {"blobId": "Gmsg", "mailboxIds": {}},
                    "i4": {"blobId": "Gjunk", "mailboxIds": {&inbox: true}},
                }}),
            )
            .await;
        let id = r["created"]["i1"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_owned();
        assert_eq!(r["notCreated"]["i2"]["type"], json!("invalidProperties"));
        assert_eq!(r["notCreated"]["i3"]["type"], json!("invalidProperties"));
        assert_eq!(r["notCreated"]["i4"]["type"], json!("invalidEmail"), "{r}");
        assert_eq!(fake.messages("INBOX")[0].raw, raw);
        assert_eq!(fake.messages("INBOX")[0].received_at, 1_704_182_400);
        assert_eq!(fake.messages("Trash").len(), 1);
        let rec = record(&f, &id).await.unwrap();
        assert!(rec.keywords().contains("$seen") && rec.locations.len() == 2);
        // The same message again: alreadyExists, and nothing is left behind upstream.
        let r = f
            .ok(
                "Email/import",
                json!({"emails": {"i5": {"blobId": "Gmsg", "mailboxIds": {&inbox: true}}}}),
            )
            .await;
        assert_eq!(r["notCreated"]["i5"]["type"], json!("alreadyExists"), "{r}");
        assert_eq!(r["notCreated"]["i5"]["existingId"], json!(id));
        assert_eq!(fake.messages("INBOX").len(), 1);
        // An Email's own blobId imports too (here: a duplicate of itself).
        let r = f
            .call("Email/import", json!({"ifInState": "x", "emails": {}}))
            .await;
        assert_eq!(r[0][1]["type"], json!("stateMismatch"));
    }

    /// Two accounts, each over its own fake upstream.
    struct Two {
        a1: TestAccount,
        a2: TestAccount,
    }

    impl AccountDirectory for Two {
        type User = ();
        type Account = TestAccount;
        fn resolve(&self, _: &(), id: &Id, _: &str) -> Result<TestAccount, AccountError> {
            match id.as_str() {
                "a1" => Ok(self.a1.clone()),
                "a2" => Ok(self.a2.clone()),
                _ => Err(AccountError::NotFound),
            }
        }
    }

    #[tokio::test]
    async fn copy_between_accounts_and_destroy_the_original() {
        let (f, fake1) = fixture_with_fake().await;
        let id = delivered(&f, &fake1, "travelling").await;
        let original_raw = fake1.messages("INBOX")[0].raw.clone();
        let dir = tempfile::tempdir().unwrap();
        let store2 = AsyncStore::new(Arc::new(
            Store::open(dir.path().join("db"), StoreConfig::default()).unwrap(),
        ));
        let fake2 = Arc::new(FakeUpstream::new());
        let sync2 = AccountSync::new(
            store2.clone(),
            AccountId(2),
            fake2.clone(),
            SyncOptions::default(),
        );
        sync2.sync_all().await.unwrap();
        let archive2 = sync2.mailbox_id("INBOX").unwrap();
        let a2 = TestAccount {
            store: store2,
            id: AccountId(2),
            sync: Some(sync2),
            address: None,
            submitter: None,
        };
        let mut others = BTreeMap::new();
        others.insert(crate::methods::MAIL.to_owned(), json!({}));
        let mut engine = Engine::new(
            Two {
                a1: f.account.clone(),
                a2,
            },
            Capabilities {
                core: CoreCapability::default(),
                others,
            },
        );
        crate::methods::register(&mut engine);
        let body = json!({
            "using": [CORE_CAPABILITY, crate::methods::MAIL],
            "methodCalls": [["Email/copy", {
                "fromAccountId": "a1", "accountId": "a2",
                "create": {"c1": {"id": &id, "mailboxIds": {&archive2: true},
                                  "keywords": {"$flagged": true}},
                           "c2": {"id": "Enope", "mailboxIds": {&archive2: true}},
                           "c3": {"id": &id, "mailboxIds": {&archive2: true}, "subject": "x"}},
                "onSuccessDestroyOriginal": true
            }, "0"]]
        });
        let resp = engine
            .handle(&(), body.to_string().as_bytes(), "s")
            .await
            .unwrap();
        let v = serde_json::to_value(&resp).unwrap();
        let rs = v["methodResponses"].as_array().unwrap();
        assert_eq!(rs[0][0], json!("Email/copy"), "{v}");
        let copy = &rs[0][1];
        assert!(copy["created"]["c1"]["id"].is_string(), "{copy}");
        assert_eq!(copy["notCreated"]["c2"]["type"], json!("notFound"));
        assert_eq!(copy["notCreated"]["c3"]["type"], json!("invalidProperties"));
        assert_eq!(fake2.messages("INBOX").len(), 1);
        assert!(fake2.messages("INBOX")[0].keywords.contains("$flagged"));
        assert_eq!(fake2.messages("INBOX")[0].raw, original_raw);
        // The implicit Email/set destroy in the from-account.
        assert_eq!(rs[1][0], json!("Email/set"), "{v}");
        assert_eq!(rs[1][1]["destroyed"], json!([&id]));
        assert_eq!(rs[1][1]["accountId"], json!("a1"));
        assert!(fake1.messages("INBOX").is_empty());
    }

    // --- the message builder, on its own -------------------------------------------

    /// The message `object` describes, with `blobs` uploaded.
    fn build(object: Value, blobs: &[(&str, &[u8])]) -> Vec<u8> {
        let blobs = blobs
            .iter()
            .map(|(id, b)| ((*id).to_owned(), b.to_vec()))
            .collect();
        let built = super::build::message(object.as_object().unwrap(), &blobs, 1_709_287_200)
            .unwrap_or_else(|e| panic!("{object}: {e:?}"));
        built.raw
    }

    fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(raw).unwrap()
    }

    /// The MIME tree below part `id`, as `type(child,child)`.
    fn shape(m: &mail_parser::Message<'_>, id: u32) -> String {
        let p = m.part(id).unwrap();
        let ct = p.content_type().unwrap();
        let ty = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""));
        match &p.body {
            mail_parser::PartType::Multipart(ids) => {
                let kids: Vec<String> = ids.iter().map(|i| shape(m, *i)).collect();
                format!("{ty}({})", kids.join(","))
            }
            _ => ty,
        }
    }

    /// The first part of type `ty`.
    fn part_of<'a>(m: &'a mail_parser::Message<'a>, ty: &str) -> &'a mail_parser::MessagePart<'a> {
        m.parts
            .iter()
            .find(|p| {
                p.content_type()
                    .is_some_and(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")) == ty)
            })
            .unwrap_or_else(|| panic!("no {ty} part"))
    }

    #[test]
    fn html_with_inline_images_is_multipart_related() {
        let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake image";
        let raw = build(
            json!({
                "subject": "with a picture",
                "bodyValues": {"t": {"value": "see the picture"},
                               "h": {"value": "<p>see <img src=\"cid:pic1@x\"></p>"}},
                "textBody": [{"partId": "t", "type": "text/plain"}],
                "htmlBody": [{"partId": "h", "type": "text/html"}],
                "attachments": [
                    {"blobId": "Gpng", "type": "image/png", "cid": "pic1@x",
                     "disposition": "inline", "name": "pic.png"},
                    {"blobId": "Gpdf", "type": "application/pdf", "name": "a.pdf"},
                    {"blobId": "Gpng", "type": "image/png", "cid": "other@x",
                     "disposition": "attachment"}
                ]
            }),
            &[("Gpng", png), ("Gpdf", b"%PDF")],
        );
        let m = parse(&raw);
        assert_eq!(
            shape(&m, 0),
            "multipart/mixed(multipart/alternative(text/plain,\
             multipart/related(text/html,image/png)),application/pdf,image/png)"
        );
        let related = part_of(&m, "multipart/related");
        assert_eq!(
            related.content_type().unwrap().attribute("type"),
            Some("text/html")
        );
        let img = part_of(&m, "image/png");
        assert_eq!(img.content_id(), Some("pic1@x"));
        assert_eq!(img.content_disposition().unwrap().ctype(), "inline");
        assert_eq!(img.attachment_name(), Some("pic.png"));
        assert_eq!(img.contents(), png);
        assert_eq!(
            m.body_html(0).unwrap(),
            "<p>see <img src=\"cid:pic1@x\"></p>"
        );
        // Without an HTML body there is nothing to relate to: one multipart/mixed.
        let raw = build(
            json!({
                "bodyValues": {"t": {"value": "x"}},
                "textBody": [{"partId": "t"}],
                "attachments": [{"blobId": "Gpng", "type": "image/png", "cid": "p@x"}]
            }),
            &[("Gpng", png)],
        );
        assert_eq!(
            shape(&parse(&raw), 0),
            "multipart/mixed(text/plain,image/png)"
        );
        // An HTML body alone with an inline image.
        let raw = build(
            json!({
                "bodyValues": {"h": {"value": "<img src=\"cid:p@x\">"}},
                "htmlBody": [{"partId": "h"}],
                "attachments": [{"blobId": "Gpng", "type": "image/png", "cid": "<p@x>"}]
            }),
            &[("Gpng", png)],
        );
        let m = parse(&raw);
        assert_eq!(shape(&m, 0), "multipart/related(text/html,image/png)");
        assert_eq!(part_of(&m, "image/png").content_id(), Some("p@x"));
    }

    #[test]
    fn non_ascii_headers_decode_back_exactly() {
        let subject = "Grüße aus Köln — 日本語のテキスト, ελληνικά & \"quotes\" =?not a word";
        let raw = build(
            json!({
                "from": [{"name": "Ünïcode Ħ 日本 \"Q\"", "email": "u@example.com"}],
                "to": [{"name": "Bob, Jr.", "email": "bob@example.com"},
                       {"name": "Łukasz Żółć", "email": "l@example.com"},
                       {"email": "plain@example.com"}],
                "subject": subject,
                "header:Comments:asText": "naïve café",
                "header:Cc:asGroupedAddresses": [
                    {"name": "Équipe", "addresses": [{"name": "Zoë", "email": "z@example.com"},
                                                     {"email": "y@example.com"}]},
                    {"name": null, "addresses": [{"name": "Solo", "email": "s@example.com"}]},
                    {"name": "Empty", "addresses": []}
                ],
                "bodyValues": {"t": {"value": "x"}},
                "textBody": [{"partId": "t"}],
                "attachments": [{"blobId": "Gb", "type": "text/plain", "name": "résumé ü.txt"}]
            }),
            &[("Gb", b"attached")],
        );
        assert!(raw.is_ascii(), "{}", String::from_utf8_lossy(&raw));
        let m = parse(&raw);
        assert_eq!(m.subject(), Some(subject));
        let from = m.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Ünïcode Ħ 日本 \"Q\""));
        assert_eq!(from.address(), Some("u@example.com"));
        let to: Vec<_> = m
            .to()
            .unwrap()
            .iter()
            .map(|a| (a.name(), a.address().unwrap()))
            .collect();
        assert_eq!(
            to,
            vec![
                (Some("Bob, Jr."), "bob@example.com"),
                (Some("Łukasz Żółć"), "l@example.com"),
                (None, "plain@example.com"),
            ]
        );
        assert_eq!(
            m.header("Comments").and_then(|h| h.as_text()),
            Some("naïve café")
        );
        let groups = m.cc().unwrap().as_group().unwrap();
        let names: Vec<_> = groups.iter().map(|g| g.name.as_deref()).collect();
        assert_eq!(names, vec![Some("Équipe"), None, Some("Empty")]);
        assert_eq!(groups[0].addresses.len(), 2);
        assert_eq!(groups[0].addresses[0].name(), Some("Zoë"));
        assert_eq!(groups[1].addresses[0].address(), Some("s@example.com"));
        assert_eq!(
            m.attachment(0).unwrap().attachment_name(),
            Some("résumé ü.txt")
        );
    }

    /// The header section of part `n` (0 is the message's own), as written.
    fn header_section(raw: &[u8], n: usize) -> String {
        let text = String::from_utf8(raw.to_vec()).unwrap();
        let part = if n == 0 {
            text.as_str()
        } else {
            let boundary = parse(raw)
                .content_type()
                .unwrap()
                .attribute("boundary")
                .unwrap()
                .to_owned();
            text.split(&format!("--{boundary}\r\n")).nth(n).unwrap()
        };
        part.split_once("\r\n\r\n").unwrap().0.to_owned()
    }

    #[test]
    fn non_ascii_display_names_are_plain_encoded_words() {
        // RFC 2047 §5 (3): an encoded word may stand in for a word of a phrase, never inside
        // a quoted string.
        let names = [
            "Zoë Ünïcode",
            "Müller, Anna",
            "日本語の名前",
            "\"Steuerberater, Wirtschaftsprüfer\"",
            "Δοκιμή (Εταιρεία) <x>; @ \\ [y]",
        ];
        let to: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"name": n, "email": format!("p{i}@example.com")}))
            .collect();
        let raw = build(
            json!({
                "from": [{"name": "Ħélène", "email": "h@example.com"}],
                "to": to,
                "header:Cc:asGroupedAddresses": [
                    {"name": "Équipe, Köln", "addresses": [{"name": "Zoë", "email": "z@example.com"}]}
                ],
                "bodyValues": {"t": {"value": "x"}},
                "textBody": [{"partId": "t"}]
            }),
            &[],
        );
        let head = header_section(&raw, 0);
        assert!(head.is_ascii(), "{head}");
        assert!(!head.contains("\"=?"), "an encoded word in quotes: {head}");
        assert!(!head.contains("?=\""), "an encoded word in quotes: {head}");
        let fields = format!("\r\n{head}\r\n");
        for field in ["From", "To", "Cc"] {
            let value = raw_field(&fields, field, "");
            assert!(value.contains("=?utf-8?"), "{field} not encoded: {head}");
        }
        let m = parse(&raw);
        let from = m.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Ħélène"));
        let to: Vec<_> = m
            .to()
            .unwrap()
            .iter()
            .map(|a| (a.name().unwrap(), a.address().unwrap()))
            .collect();
        let want: Vec<(&str, String)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, format!("p{i}@example.com")))
            .collect();
        assert_eq!(
            to,
            want.iter()
                .map(|(n, e)| (*n, e.as_str()))
                .collect::<Vec<_>>()
        );
        let groups = m.cc().unwrap().as_group().unwrap();
        assert_eq!(groups[0].name.as_deref(), Some("Équipe, Köln"));
        assert_eq!(groups[0].addresses[0].name(), Some("Zoë"));
    }

    #[test]
    fn non_ascii_filenames_are_rfc2231_parameters() {
        let name = "résumé ü, 2024.txt";
        let raw = build(
            json!({
                "bodyValues": {"t": {"value": "x"}},
                "textBody": [{"partId": "t"}],
                "attachments": [{"blobId": "Gb", "type": "text/plain", "name": name}]
            }),
            &[("Gb", b"attached")],
        );
        let head = header_section(&raw, 2);
        assert!(head.is_ascii(), "{head}");
        assert!(
            !head.contains("=?"),
            "an RFC 2047 word in a parameter: {head}"
        );
        assert!(
            head.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%C3%BC%2C%202024.txt"),
            "{head}"
        );
        assert!(head.contains("name*=UTF-8''"), "{head}");
        let m = parse(&raw);
        let a = m.attachment(0).unwrap();
        assert_eq!(a.attachment_name(), Some(name));
        assert_eq!(
            a.content_disposition().unwrap().attribute("filename"),
            Some(name)
        );
        assert_eq!(a.content_type().unwrap().attribute("name"), Some(name));
    }

    #[test]
    fn long_filenames_are_rfc2231_continuations() {
        let ascii = format!("{}.pdf", "quarterly report draft ".repeat(6));
        let utf8 = format!(
            "{}.pdf",
            "Réunion d'équipe: résumé des décisions ".repeat(3)
        );
        let raw = build(
            json!({
                "attachments": [
                    {"blobId": "Gb", "type": "application/pdf", "name": ascii},
                    {"blobId": "Gb", "type": "application/pdf", "name": utf8}
                ]
            }),
            &[("Gb", b"%PDF")],
        );
        // RFC 2231 §3: sections name*0, name*1, …; extended ones (name*0*) carry the charset
        // in the first section only. RFC 2183 §2 keeps each parameter value short.
        let head = header_section(&raw, 1);
        assert!(head.contains("filename*0=\""), "{head}");
        assert!(head.contains("filename*1=\""), "{head}");
        let head = header_section(&raw, 2);
        assert!(head.contains("filename*0*=UTF-8''R%C3%A9union"), "{head}");
        assert!(head.contains("filename*1*="), "{head}");
        assert_eq!(
            head.matches("UTF-8''").count(),
            2,
            "name and filename: {head}"
        );
        for n in [1, 2] {
            let head = header_section(&raw, n);
            assert!(!head.contains("=?"), "{head}");
            for line in head.split("\r\n") {
                assert!(line.len() <= 78, "{} columns: {line:?}", line.len());
            }
        }
        let m = parse(&raw);
        for (i, want) in [&ascii, &utf8].into_iter().enumerate() {
            let a = m.attachment(u32::try_from(i).unwrap()).unwrap();
            assert_eq!(a.attachment_name(), Some(want.as_str()));
            assert_eq!(
                a.content_type().unwrap().attribute("name"),
                Some(want.as_str())
            );
        }
    }

    #[test]
    fn a_client_mime_version_is_the_only_one() {
        let count = |raw: &[u8]| {
            String::from_utf8_lossy(raw)
                .lines()
                .take_while(|l| !l.is_empty())
                .filter(|l| l.to_ascii_lowercase().starts_with("mime-version:"))
                .count()
        };
        let plain = json!({"subject": "x", "textBody": [{"partId": "1"}],
                           "bodyValues": {"1": {"value": "hi"}}});
        assert_eq!(count(&build(plain.clone(), &[])), 1);
        let mut given = plain;
        given["header:MIME-Version:asRaw"] = json!(" 1.0");
        let raw = build(given, &[]);
        assert_eq!(count(&raw), 1, "{}", String::from_utf8_lossy(&raw));
    }

    #[test]
    fn every_line_fits_in_78_columns() {
        // Everything the builder writes itself: names, groups, encoded words, parameters,
        // message IDs, URLs, quoted-printable and base64 bodies.
        let to: Vec<Value> = (0..6)
            .map(|i| {
                json!({"name": format!("Ünïcode Recipient Number {i} with a long name"),
                            "email": format!("recipient-{i}@example.com")})
            })
            .collect();
        let long_line = "a line of text that goes on and on ".repeat(10);
        let raw = build(
            json!({
                "from": [{"name": "Ħ".repeat(60), "email": "h@example.com"}],
                "to": to,
                "subject": "Grüße ".repeat(30),
                "references": (0..6).map(|i| format!("{i}-{}@example.com", "r".repeat(40))).collect::<Vec<_>>(),
                "header:List-Archive:asURLs": ["https://example.com/".to_owned() + &"p/".repeat(20)],
                "header:Cc:asGroupedAddresses": [
                    {"name": "Équipe ".repeat(8), "addresses": to.clone()}
                ],
                "header:Keywords:asText": "word ".repeat(40),
                "bodyValues": {"t": {"value": format!("{long_line}\nünïcode {long_line}")},
                               "h": {"value": format!("<p>{long_line}</p>")}},
                "textBody": [{"partId": "t"}],
                "htmlBody": [{"partId": "h", "language": ["en", "de"],
                              "header:X-Part:asText": "ünïcode ".repeat(20)}],
                "attachments": [
                    {"blobId": "Gb", "type": "application/octet-stream",
                     "name": "ñ".repeat(50) + ".bin", "disposition": "attachment",
                     "cid": format!("{}@example.com", "c".repeat(50))}
                ]
            }),
            &[("Gb", &(0..=255u8).cycle().take(3000).collect::<Vec<_>>())],
        );
        let text = String::from_utf8(raw.clone()).unwrap();
        for line in text.split("\r\n") {
            assert!(line.len() <= 78, "{} columns: {line:?}", line.len());
            assert!(
                line.is_empty() || !line.trim().is_empty(),
                "a line of white space: {line:?}"
            );
        }
        let m = parse(&raw);
        assert_eq!(m.subject(), Some("Grüße ".repeat(30).as_str()));
        assert_eq!(m.to().unwrap().iter().count(), 6);
        assert_eq!(
            m.from().unwrap().first().unwrap().name(),
            Some("Ħ".repeat(60).as_str())
        );
        assert_eq!(
            m.attachment(0).unwrap().attachment_name(),
            Some(("ñ".repeat(50) + ".bin").as_str())
        );
    }

    #[test]
    fn a_multipart_body_starts_at_its_first_boundary() {
        // mail-builder 0.4 left an empty line (an empty preamble) before the first boundary.
        let raw = build(
            json!({
                "bodyValues": {"t": {"value": "x"}, "h": {"value": "<p>x</p>"}},
                "textBody": [{"partId": "t"}],
                "htmlBody": [{"partId": "h"}]
            }),
            &[],
        );
        let text = String::from_utf8(raw.clone()).unwrap();
        let boundary = parse(&raw)
            .content_type()
            .unwrap()
            .attribute("boundary")
            .unwrap()
            .to_owned();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(body.starts_with(&format!("--{boundary}\r\n")), "{text}");
        assert!(body.ends_with(&format!("\r\n--{boundary}--\r\n")), "{text}");
    }

    #[test]
    fn long_header_fields_fold_within_78_columns() {
        let subject = "A rather long subject line that keeps going well past the \
                       seventy-eight column limit of RFC 5322, and then some more words";
        let to: Vec<Value> = (0..12)
            .map(|i| json!({"name": format!("Recipient Number {i}"), "email": format!("r{i}@example.com")}))
            .collect();
        let refs: Vec<String> = (0..8)
            .map(|i| format!("ref-{i}-0123456789@example.com"))
            .collect();
        let raw = build(
            json!({
                "subject": subject,
                "to": to,
                "references": refs,
                "header:List-Post:asURLs": ["mailto:list@example.com", "https://example.com/a/very/long/path/to/the/list/post/page"],
                "header:Comments:asText": "ünïcode ".repeat(20),
                "bodyValues": {"t": {"value": "short"}},
                "textBody": [{"partId": "t"}]
            }),
            &[],
        );
        let text = String::from_utf8(raw.clone()).unwrap();
        for line in text.split("\r\n") {
            assert!(line.len() <= 78, "{} columns: {line:?}", line.len());
        }
        let m = parse(&raw);
        assert_eq!(m.subject(), Some(subject));
        assert_eq!(m.to().unwrap().iter().count(), 12);
        assert_eq!(
            m.to().unwrap().iter().nth(11).unwrap().name(),
            Some("Recipient Number 11")
        );
        let got = m.references().as_text_list().unwrap();
        assert_eq!(got, refs.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            m.header("Comments").and_then(|h| h.as_text()),
            Some("ünïcode ".repeat(20).as_str())
        );
    }

    #[test]
    fn binary_attachments_round_trip_byte_exact() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let latin1 = b"caf\xe9 cr\r lf\n crlf\r\n nul\x00 end".to_vec();
        let raw = build(
            json!({
                "bodyStructure": {"type": "multipart/mixed", "subParts": [
                    {"blobId": "Gbin", "type": "application/octet-stream", "name": "all.bin"},
                    {"blobId": "Glat", "type": "text/plain", "charset": "iso-8859-1",
                     "disposition": "attachment"},
                    {"blobId": "Gmsg", "type": "message/rfc822"}
                ]}
            }),
            &[
                ("Gbin", &bytes),
                ("Glat", &latin1),
                ("Gmsg", b"Subject: inner\r\n\r\nhi\r\n"),
            ],
        );
        let m = parse(&raw);
        assert_eq!(m.attachment(0).unwrap().contents(), &bytes[..]);
        // A text blob keeps its charset and every line break as it was (mail-parser hands
        // the text back in UTF-8).
        let lat = m.attachment(1).unwrap();
        let as_utf8: String = latin1.iter().map(|b| char::from(*b)).collect();
        assert_eq!(lat.text_contents(), Some(as_utf8.as_str()));
        assert_eq!(
            lat.content_type().unwrap().attribute("charset"),
            Some("iso-8859-1")
        );
        // An encapsulated message is never base64 or quoted-printable (RFC 2046 §5.2.1).
        let inner = m.attachment(2).unwrap();
        assert_eq!(inner.content_transfer_encoding(), Some("7bit"));
        assert_eq!(inner.message().unwrap().subject(), Some("inner"));
    }

    #[test]
    fn raw_values_dates_and_message_ids() {
        let object = json!({
            "messageId": ["given@example.com"],
            "sentAt": "2024-03-01T12:30:00+02:00",
            "header:X-Folded": " first\r\n\tsecond",
            "header:X-Plain:asRaw": "  two spaces",
            "bodyValues": {"t": {"value": "x"}},
            "textBody": [{"partId": "t"}]
        });
        let built = super::build::message(object.as_object().unwrap(), &BTreeMap::new(), 0)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(built.message_id, "<given@example.com>");
        let text = String::from_utf8(built.raw.clone()).unwrap();
        // Raw values go as given (one leading space is the one after the colon).
        assert!(
            text.contains("\r\nX-Folded: first\r\n\tsecond\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nX-Plain:  two spaces\r\n"), "{text}");
        assert!(
            text.contains("\r\nDate: Fri, 1 Mar 2024 12:30:00 +0200\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Message-ID: <given@example.com>\r\n"),
            "{text}"
        );
        // Without them: a generated Message-ID and the receivedAt date.
        let object = json!({"subject": "s"});
        let built =
            super::build::message(object.as_object().unwrap(), &BTreeMap::new(), 1_709_287_200)
                .unwrap_or_else(|e| panic!("{e:?}"));
        let m = parse(&built.raw);
        assert_eq!(format!("<{}>", m.message_id().unwrap()), built.message_id);
        assert_eq!(m.date().unwrap().to_timestamp(), 1_709_287_200);
        assert_eq!(m.body_text(0).as_deref(), Some(""));
    }

    /// The raw value of the first field `name` in `text` from part `from` on: from after the
    /// colon to the CRLF that ends the field.
    fn raw_field<'a>(text: &'a str, name: &str, from: &str) -> &'a str {
        let start = text.find(from).unwrap();
        let at = start + text[start..].find(&format!("\r\n{name}:")).unwrap() + name.len() + 3;
        let len = text[at..]
            .match_indices("\r\n")
            .map(|(i, _)| i)
            .find(|i| !text[at + i + 2..].starts_with([' ', '\t']))
            .unwrap();
        &text[at..at + len]
    }

    /// RFC 5322 §2.2.3 unfolding.
    fn unfold(s: &str) -> String {
        s.replace("\r\n", "")
    }

    #[test]
    fn raw_part_fields_keep_their_folds() {
        // mail-builder 0.4 refolded a raw value without counting the folds in it, so part
        // fields were unfolded first; 2.x keeps the folds and adds its own only where a line
        // would be too long.
        let long = format!(
            " {}\r\n\tlast words,\r\n {}",
            "a long raw value ".repeat(7).trim_end(),
            "and more ".repeat(12).trim_end()
        );
        let raw = build(
            json!({
                "bodyStructure": {"type": "multipart/mixed", "subParts": [
                    {"partId": "t", "header:X-Folded": " first\r\n\tsecond",
                     "header:X-Long:asRaw": long.clone(),
                     "header:X-Plain": "  two spaces"}
                ]},
                "bodyValues": {"t": {"value": "x"}}
            }),
            &[],
        );
        let text = String::from_utf8(raw.clone()).unwrap();
        let part = "\r\n--";
        assert_eq!(
            raw_field(&text, "X-Folded", part),
            " first\r\n\tsecond",
            "{text}"
        );
        assert_eq!(raw_field(&text, "X-Plain", part), "  two spaces", "{text}");
        let got = raw_field(&text, "X-Long", part);
        assert_eq!(unfold(got), unfold(&long), "{text}");
        assert!(got.contains("\r\n\tlast words,\r\n and"), "{text}");
        for line in got.split("\r\n") {
            assert!(line.len() <= 78, "{} columns: {line:?}", line.len());
            assert!(!line.trim().is_empty(), "a line of white space in {got:?}");
        }
        let m = parse(&raw);
        assert_eq!(
            m.part(1)
                .unwrap()
                .headers
                .iter()
                .filter(|h| h.name.as_str() == "X-Long")
                .count(),
            1
        );
    }

    #[test]
    fn a_long_field_name_cannot_start_a_field_of_its_own() {
        // mail-builder 0.4 started the value of a field whose name reached column 76 with a
        // bare CRLF; 2.x folds with white space. Names around that column and well past it,
        // with nothing of ours in between.
        for len in (70..=80).chain([82, 120]) {
            let name = format!("X-{}", "n".repeat(len - 2));
            for value in ["Bcc: evil@example.com", "Bcc: ëvil@example.com"] {
                let key = format!("header:{name}:asText");
                let raw = build(
                    json!({
                        key.clone(): value,
                        "bodyStructure": {"subParts": [{"partId": "t", key: value}]},
                        "bodyValues": {"t": {"value": "x"}}
                    }),
                    &[],
                );
                let text = String::from_utf8_lossy(&raw);
                // Every line of a field's value after its first one is a continuation.
                let (head, _) = text.split_once("\r\n\r\n").unwrap();
                for line in head.split("\r\n") {
                    assert!(
                        line.starts_with([' ', '\t'])
                            || ["X-n", "Message-ID:", "Date:", "MIME-Version:", "Content-"]
                                .iter()
                                .any(|f| line.starts_with(f)),
                        "{line:?} in {text}"
                    );
                }
                let m = parse(&raw);
                assert!(m.bcc().is_none(), "{text}");
                assert_eq!(m.header_values(name.as_str()).count(), 1, "{text}");
                let got = m.header_raw(name.as_str()).unwrap();
                let section = format!("Subject:{got}\r\n\r\n");
                let parsed = mail_parser::MessageParser::new()
                    .parse_headers(section.as_bytes())
                    .unwrap();
                assert_eq!(parsed.subject(), Some(value), "{text}");
                let part = m.part(1).unwrap();
                assert!(
                    part.headers
                        .iter()
                        .filter(|h| h.name.as_str() == name)
                        .count()
                        == 1
                        && !part.headers.iter().any(|h| h.name.as_str() == "Bcc"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn two_properties_for_one_part_field_are_invalid() {
        let object = json!({
            "bodyValues": {"t": {"value": "x"}},
            "textBody": [{"partId": "t", "cid": "a@b", "header:Content-ID": " <c@d>"}]
        });
        let e = super::build::message(object.as_object().unwrap(), &BTreeMap::new(), 0)
            .err()
            .unwrap();
        assert_eq!(
            serde_json::to_value(&e).unwrap()["properties"],
            json!(["header:Content-ID"])
        );
    }

    #[tokio::test]
    async fn rfc8621_email_set_create_example() {
        // RFC 8621 §4.6's example create, in a mailbox of ours.
        let (f, fake) = fixture_with_fake().await;
        let drafts = mbox(&f, "Drafts");
        let plain =
            "I have the most brilliant plan. Let me tell you all about it. What we do is, we";
        let html = "<!DOCTYPE html><html><head><title></title><style type=\"text/css\">\
                    div{font-size:16px}</style></head><body><div>I have the most brilliant \
                    plan. Let me tell you all about it. What we do is, we</div></body></html>";
        let r = set(
            &f,
            json!({"create": {"k192": {
                "mailboxIds": {&drafts: true},
                "keywords": {"$seen": true, "$draft": true},
                "from": [{"name": "Joe Bloggs", "email": "joe@example.com"}],
                "subject": "World domination",
                "receivedAt": "2018-07-10T01:03:11Z",
                "header:User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:52.0) Gecko/20100101 Thunderbird/52.8.0",
                "bodyStructure": {
                    "type": "multipart/alternative",
                    "subParts": [{"partId": "1", "type": "text/plain"},
                                 {"partId": "2", "type": "text/html"}]
                },
                "bodyValues": {
                    "1": {"isEncodingProblem": false, "isTruncated": false, "value": plain},
                    "2": {"isEncodingProblem": false, "isTruncated": false, "value": html}
                }
            }}}),
        )
        .await;
        assert!(r["created"]["k192"]["id"].is_string(), "{r}");
        let stored = fake.messages("Drafts");
        assert_eq!(stored[0].received_at, 1_531_184_591);
        assert!(stored[0].keywords.contains("$draft") && stored[0].keywords.contains("$seen"));
        let m = parse(&stored[0].raw);
        assert_eq!(shape(&m, 0), "multipart/alternative(text/plain,text/html)");
        assert_eq!(m.subject(), Some("World domination"));
        let from = m.from().unwrap().first().unwrap();
        assert_eq!(
            (from.name(), from.address()),
            (Some("Joe Bloggs"), Some("joe@example.com"))
        );
        assert_eq!(
            m.header_raw("User-Agent").map(str::trim),
            Some("Mozilla/5.0 (X11; Linux x86_64; rv:52.0) Gecko/20100101 Thunderbird/52.8.0")
        );
        assert_eq!(m.body_text(0).as_deref(), Some(plain));
        assert_eq!(m.body_html(0).as_deref(), Some(html));
        assert_eq!(
            m.date().unwrap().to_timestamp(),
            1_531_184_591,
            "no sentAt: the Date is receivedAt"
        );
    }
}
