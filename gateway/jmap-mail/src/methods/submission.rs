//! EmailSubmission (RFC 8621 §7): get, changes, query, queryChanges and set over records kept
//! in the store (`DataType::EmailSubmission`), sending through the account's [`Submitter`].
//!
//! A create sends at once (there is no delayed send, so `undoStatus` is `final` from the start
//! and canceling is `cannotUnsend`). Before anything is sent: the Identity and Email must exist
//! (else `invalidProperties`), the From header must be the Identity's address
//! (`forbiddenFrom`), the envelope is checked or derived from the headers (§7.5:
//! `forbiddenMailFrom`, `noRecipients`, `tooManyRecipients`, `invalidRecipients`,
//! `invalidEmail`). The Bcc header field is removed from what is sent.
//!
//! Outcomes of the send: success stores the record (deliveryStatus `queued` per recipient with
//! the server's reply); a refusal is `forbiddenToSend` or `invalidRecipients`; an unreachable
//! server is `serverUnavailable` (nothing sent); an outcome that is unknown (the connection
//! broke after the message data) is reported as `serverFail` saying it *may* have been sent,
//! and is never retried, by us or by the implicit Email/set (which is skipped for it).
//!
//! Sent copy: unless the submitter files its own ([`Submitter::files_sent_copy`], EAS), the
//! sent message (Bcc kept) is appended, `$seen`, to the mailbox with role `sent`, except when
//! the Email is already there or this call's `onSuccessUpdateEmail` puts it there.
//!
//! `onSuccessUpdateEmail` / `onSuccessDestroyEmail` become one implicit Email/set response,
//! done through the sync driver (keywords, mailbox moves/copies/deletes, destroy), or in the
//! store alone for a local draft (see `local`; a sent local draft is not moved into Sent when
//! the submitter filed the Sent copy itself).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use jmap_engine::standard::{
    AddedItem, Filter, QueryChangesRequest, QueryChangesResponse, QueryRequest, SetRequest,
    SetResponse,
};
use jmap_engine::{
    AccountDirectory, Arguments, Engine, ExtraArguments, Handler, HandlerFuture, Id, IdRef,
    MethodCall, MethodError, MethodOutput, NoExtra, PatchObject, SetError, SetErrorType,
    UnsignedInt, UtcDate,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use state::{Commit, DataType, ObjectId};
use upstream::{BoxFuture, Envelope, SendSource, SourceKind, WriteOp};

use super::identity::{
    identity, load_all, load_one, new_id, only_properties, stored_changes, stored_get,
};
use super::{MailAccount, SUBMISSION, store_error};
use crate::{EmailRecord, SyncError};

/// What a submission produced: the server's reply, kept for deliveryStatus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitReceipt {
    /// The final reply of the submission server (e.g. `250 2.0.0 Ok: queued as 1234`).
    pub reply: String,
}

/// Why a submission failed, and whether it may have been sent anyway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Refused before any data was accepted: certainly not sent.
    #[error("refused: {0}")]
    Refused(String),
    /// Some recipients were refused (the rest not attempted): not sent.
    #[error("recipients refused: {0:?}")]
    RecipientsRefused(Vec<String>),
    /// The connection broke after the message data was sent: it may have been delivered.
    /// Never retried blindly.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// Could not reach the server: certainly not sent.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Sends a message for an account (SMTP submission, EAS SendMail).
pub trait Submitter: Send + Sync + std::fmt::Debug {
    fn submit<'a>(
        &'a self,
        envelope: &'a Envelope,
        raw: &'a [u8],
    ) -> BoxFuture<'a, Result<SubmitReceipt, SubmitError>>;

    /// True when a successful submission already files a copy in the Sent mailbox (EAS
    /// SendMail with SaveInSentItems). When false, EmailSubmission/set appends the sent message
    /// to the account's mailbox with role `sent` itself.
    fn files_sent_copy(&self) -> bool {
        false
    }

    /// Sends like [`Submitter::submit`], told which message of the account this one replies
    /// to or forwards (`source`, found by EmailSubmission/set), so that a submitter whose
    /// server can refer to it does (EAS SmartReply / SmartForward). The default ignores it.
    /// EmailSubmission/set looks for a source only for a submitter that
    /// [marks it](Submitter::marks_source); the others are given `None`.
    fn submit_about<'a>(
        &'a self,
        envelope: &'a Envelope,
        raw: &'a [u8],
        source: Option<&'a SendSource>,
    ) -> BoxFuture<'a, Result<SubmitReceipt, SubmitError>> {
        let _ = source;
        self.submit(envelope, raw)
    }

    /// True when a submission with a source has upstream mark that source (`$answered`,
    /// `$forwarded`): EmailSubmission/set then syncs the source's mailbox after sending, so
    /// the mark is in the store when the call returns.
    fn marks_source(&self) -> bool {
        false
    }
}

/// Sends through the upstream server itself (`WriteOp::Send`: EAS SendMail with
/// SaveInSentItems), which also files the Sent copy.
#[derive(Debug)]
pub struct UpstreamSubmitter(pub std::sync::Arc<dyn upstream::Upstream>);

impl Submitter for UpstreamSubmitter {
    fn submit<'a>(
        &'a self,
        envelope: &'a Envelope,
        raw: &'a [u8],
    ) -> BoxFuture<'a, Result<SubmitReceipt, SubmitError>> {
        self.submit_about(envelope, raw, None)
    }

    /// With a source, `Upstream::send_about` (EAS: SmartReply / SmartForward, which falls
    /// back to SendMail only when the server proves it sent nothing); else `WriteOp::Send`.
    fn submit_about<'a>(
        &'a self,
        envelope: &'a Envelope,
        raw: &'a [u8],
        source: Option<&'a SendSource>,
    ) -> BoxFuture<'a, Result<SubmitReceipt, SubmitError>> {
        Box::pin(async move {
            let op = WriteOp::Send {
                raw: raw.to_vec(),
                envelope: envelope.clone(),
                save_in_sent: true,
            };
            let result = match source {
                Some(source) => self.0.send_about(op, source.clone()).await,
                None => self.0.apply(op).await,
            };
            match result {
                Ok(_) => Ok(SubmitReceipt {
                    reply: "accepted by the upstream server".into(),
                }),
                Err(upstream::UpstreamError::Refused(m))
                | Err(upstream::UpstreamError::Unsupported(m))
                | Err(upstream::UpstreamError::AuthFailed(m)) => Err(SubmitError::Refused(m)),
                // The request may have reached the server before the failure.
                Err(e) => Err(SubmitError::Unknown(e.to_string())),
            }
        })
    }

    fn files_sent_copy(&self) -> bool {
        true
    }

    fn marks_source(&self) -> bool {
        true
    }
}

/// At most this many recipients per submission (RFC 5321 §4.5.3.1.8's minimum a server must
/// accept).
pub const MAX_RECIPIENTS: usize = 100;
/// The largest message sent, in octets.
pub const MAX_SIZE: u64 = 50 * 1024 * 1024;

const PROPERTIES: [&str; 10] = [
    "id",
    "identityId",
    "emailId",
    "threadId",
    "envelope",
    "sendAt",
    "undoStatus",
    "deliveryStatus",
    "dsnBlobIds",
    "mdnBlobIds",
];

// --- /set extra arguments -----------------------------------------------------------------

#[derive(Debug, Default)]
struct SetExtra {
    on_success_update_email: Option<BTreeMap<IdRef, PatchObject>>,
    on_success_destroy_email: Option<Vec<IdRef>>,
}

impl ExtraArguments for SetExtra {
    fn take(args: &mut Arguments) -> Result<Self, MethodError> {
        Ok(SetExtra {
            on_success_update_email: args.optional("onSuccessUpdateEmail")?,
            on_success_destroy_email: args.optional("onSuccessDestroyEmail")?,
        })
    }
}

// --- envelope ------------------------------------------------------------------------------

fn set_error(t: SetErrorType, description: impl Into<String>) -> SetError {
    SetError::new(t).with_description(description)
}

fn unavailable(description: impl Into<String>) -> SetError {
    set_error(SetErrorType::Other("serverUnavailable".into()), description)
}

/// A plausible SMTP mailbox: `local@domain`, no spaces, controls or brackets.
fn valid_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && domain.contains(|c: char| c.is_alphanumeric())
        && !a.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '(' | ')' | ',' | ';')
        })
}

fn same_address(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// The client's envelope: `{mailFrom: Address, rcptTo: Address[]}` without SMTP parameters.
fn parse_envelope(v: &Value) -> Result<Envelope, SetError> {
    let bad =
        |why: &str| SetError::invalid_properties(["envelope"]).with_description(why.to_owned());
    let Value::Object(o) = v else {
        return Err(bad("the envelope must be an object"));
    };
    if o.keys().any(|k| k != "mailFrom" && k != "rcptTo") {
        return Err(bad("unknown envelope property"));
    }
    let address = |a: &Value| -> Result<String, SetError> {
        let Value::Object(a) = a else {
            return Err(bad("an Address must be an object"));
        };
        if a.keys().any(|k| k != "email" && k != "parameters") {
            return Err(bad("unknown Address property"));
        }
        match a.get("parameters") {
            None | Some(Value::Null) => {}
            Some(Value::Object(p)) if p.is_empty() => {}
            Some(_) => return Err(bad("SMTP parameters are not supported")),
        }
        match a.get("email") {
            Some(Value::String(e)) => Ok(e.clone()),
            _ => Err(bad("an Address needs an email string")),
        }
    };
    let mail_from = address(o.get("mailFrom").unwrap_or(&Value::Null))?;
    let Some(Value::Array(rcpts)) = o.get("rcptTo") else {
        return Err(bad("rcptTo must be an array of Address"));
    };
    let rcpt_to = rcpts.iter().map(address).collect::<Result<Vec<_>, _>>()?;
    Ok(Envelope { mail_from, rcpt_to })
}

/// How many header fields named `name` the header block has.
fn header_count(block: &[u8], name: &str) -> usize {
    block
        .split(|b| *b == b'\n')
        .filter(|line| {
            line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && line[name.len()..].trim_ascii_start().first() == Some(&b':')
        })
        .count()
}

/// The envelope RFC 8621 §7.5 derives from the Email's headers.
fn derive_envelope(email: &EmailRecord, identity_email: &str) -> Result<Envelope, SetError> {
    let block = email.header_bytes();
    let invalid = |p: &str| {
        set_error(
            SetErrorType::InvalidEmail,
            format!("more than one {p} address"),
        )
        .with_property("properties", json!([p]))
    };
    let mail_from = if header_count(block, "sender") > 0 {
        if header_count(block, "sender") > 1 || email.sender.len() > 1 {
            return Err(invalid("sender"));
        }
        email.sender.first().map(|a| a.email.clone())
    } else {
        if header_count(block, "from") > 1 || email.from.len() > 1 {
            return Err(invalid("from"));
        }
        email.from.first().map(|a| a.email.clone())
    };
    let mail_from = match mail_from {
        Some(a) if same_address(&a, identity_email) => a,
        _ => identity_email.to_owned(),
    };
    let mut seen = BTreeSet::new();
    let rcpt_to = email
        .to
        .iter()
        .chain(&email.cc)
        .chain(&email.bcc)
        .map(|a| a.email.trim().to_owned())
        .filter(|a| seen.insert(a.to_ascii_lowercase()))
        .collect();
    Ok(Envelope { mail_from, rcpt_to })
}

/// Removes every Bcc header field (with its folded lines) from a raw message.
pub(crate) fn strip_bcc(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    let mut dropping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            // End of the header section: the body goes through untouched.
            out.extend_from_slice(rest);
            return out;
        }
        let folded = matches!(line.first(), Some(b' ' | b'\t'));
        if !folded {
            dropping = header_count(content, "bcc") == 1;
        }
        if !dropping {
            out.extend_from_slice(line);
        }
        rest = tail;
    }
    out
}

// --- handlers ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Changes,
    Query,
    QueryChanges,
    Set,
}

#[derive(Debug, Clone, Copy)]
struct SubmissionMethod(Op);

impl<D> Handler<D> for SubmissionMethod
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let account = call.account()?.clone();
            let (store, a, t) = (
                account.store(),
                account.store_id(),
                DataType::EmailSubmission,
            );
            let output = match self.0 {
                Op::Get => call.reply(stored_get(&call, store, a, t, &PROPERTIES).await?),
                Op::Changes => call.reply(stored_changes(&call, store, a, t).await?),
                Op::Query => call.reply(query(&call, &account).await?),
                Op::QueryChanges => call.reply(query_changes(&call, &account).await?),
                Op::Set => set(&call, &account).await?,
            };
            Ok(output)
        })
    }
}

// --- query ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Condition {
    identity_ids: Option<Vec<Id>>,
    email_ids: Option<Vec<Id>>,
    thread_ids: Option<Vec<Id>>,
    undo_status: Option<String>,
    before: Option<UtcDate>,
    after: Option<UtcDate>,
}

fn text<'a>(r: &'a Map<String, Value>, k: &str) -> &'a str {
    r.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn send_at(r: &Map<String, Value>) -> i64 {
    UtcDate::parse(text(r, "sendAt")).map_or(0, |d| d.timestamp())
}

fn matches(c: &Condition, r: &Map<String, Value>) -> bool {
    let within = |list: &Option<Vec<Id>>, k: &str| {
        list.as_ref()
            .is_none_or(|l| l.iter().any(|i| i.as_str() == text(r, k)))
    };
    within(&c.identity_ids, "identityId")
        && within(&c.email_ids, "emailId")
        && within(&c.thread_ids, "threadId")
        && c.undo_status
            .as_ref()
            .is_none_or(|u| u == text(r, "undoStatus"))
        && c.before.as_ref().is_none_or(|b| send_at(r) < b.timestamp())
        && c.after.as_ref().is_none_or(|a| send_at(r) >= a.timestamp())
}

/// The full sorted result list (`sentAt`, the RFC's spelling, and `sendAt` both sort by the
/// send time).
async fn results<A: MailAccount>(
    account: &A,
    filter: Option<&Filter<Condition>>,
    sort: Option<&[jmap_engine::standard::Comparator]>,
    collations: &[String],
) -> Result<(String, Vec<Id>), MethodError> {
    let sort = sort.unwrap_or_default();
    for c in sort {
        c.check_supported(&["emailId", "threadId", "sentAt", "sendAt"], collations)?;
    }
    let (state, mut all) = load_all(
        account.store(),
        account.store_id(),
        DataType::EmailSubmission,
    )
    .await?;
    all.retain(|(_, r)| filter.is_none_or(|f| f.matches(&mut |c| matches(c, r))));
    all.sort_by(|(ia, a), (ib, b)| {
        for c in sort {
            let ord = match c.property.as_str() {
                "emailId" => text(a, "emailId").cmp(text(b, "emailId")),
                "threadId" => text(a, "threadId").cmp(text(b, "threadId")),
                _ => send_at(a).cmp(&send_at(b)),
            };
            let ord = if c.is_ascending { ord } else { ord.reverse() };
            if ord.is_ne() {
                return ord;
            }
        }
        ia.as_str().cmp(ib.as_str())
    });
    Ok((
        state.to_string(),
        all.into_iter().map(|(id, _)| id).collect(),
    ))
}

async fn query<D>(
    call: &MethodCall<'_, D>,
    account: &D::Account,
) -> Result<Map<String, Value>, MethodError>
where
    D: AccountDirectory,
    D::Account: MailAccount,
{
    let request = QueryRequest::<Condition, NoExtra>::from_arguments(call.arguments.clone())?;
    let (state, ids) = results(
        account,
        request.filter.as_ref(),
        request.sort.as_deref(),
        &call.core.collation_algorithms,
    )
    .await?;
    let page = request.paginate(&ids, None)?;
    Ok(request.respond(page, state, true).to_arguments())
}

async fn query_changes<D>(
    call: &MethodCall<'_, D>,
    account: &D::Account,
) -> Result<Map<String, Value>, MethodError>
where
    D: AccountDirectory,
    D::Account: MailAccount,
{
    let request =
        QueryChangesRequest::<Condition, NoExtra>::from_arguments(call.arguments.clone())?;
    let changes = account
        .store()
        .changes(
            account.store_id(),
            DataType::EmailSubmission,
            request.since_query_state.clone(),
            None,
        )
        .await
        .map_err(store_error)?;
    if changes.has_more_changes {
        return Err(MethodError::cannot_calculate_changes());
    }
    let (state, ids) = results(
        account,
        request.filter.as_ref(),
        request.sort.as_deref(),
        &call.core.collation_algorithms,
    )
    .await?;
    // Only undoStatus ever changes, which may move a submission in or out of the results:
    // every updated or destroyed id is reported removed, and added again where it now is.
    let removed: Vec<Id> = changes
        .updated
        .iter()
        .chain(&changes.destroyed)
        .filter_map(|o| Id::new(o.as_str()).ok())
        .collect();
    let touched: BTreeSet<&str> = changes
        .created
        .iter()
        .chain(&changes.updated)
        .map(ObjectId::as_str)
        .collect();
    let added: Vec<AddedItem> = ids
        .iter()
        .enumerate()
        .filter(|(_, id)| touched.contains(id.as_str()))
        .map(|(i, id)| AddedItem {
            id: id.clone(),
            index: UnsignedInt::from_usize(i),
        })
        .collect();
    request.check_max_changes(removed.len(), added.len())?;
    Ok(QueryChangesResponse {
        account_id: request.account_id.clone(),
        old_query_state: request.since_query_state.clone(),
        new_query_state: state,
        total: request
            .calculate_total
            .then(|| UnsignedInt::from_usize(ids.len())),
        removed,
        added,
    }
    .to_arguments())
}

// --- set -----------------------------------------------------------------------------------

/// A submission that went through in this call, for onSuccess*.
#[derive(Debug, Clone)]
struct Done {
    /// The creation id, for creations.
    creation_id: Option<Id>,
    id: Id,
    email_id: String,
}

/// A Sent copy to file after the implicit Email/set: the Email it copies is destroyed by it,
/// and with content-derived Email ids the copy is the same Email, so filing it first would
/// have the destroy remove the copy too.
struct PendingSent {
    email: EmailRecord,
    raw: Vec<u8>,
}

use upstream::civil::unix_now as now;

/// True when `patch` (an Email PatchObject) puts the Email into `mailbox`.
fn patch_adds_mailbox(patch: &PatchObject, mailbox: &str) -> bool {
    patch.as_map().iter().any(|(k, v)| {
        (k == &format!("mailboxIds/{mailbox}") && v == &Value::Bool(true))
            || (k == "mailboxIds" && v.get(mailbox) == Some(&Value::Bool(true)))
    })
}

async fn set<D>(call: &MethodCall<'_, D>, account: &D::Account) -> Result<MethodOutput, MethodError>
where
    D: AccountDirectory,
    D::Account: MailAccount,
{
    let request = SetRequest::<SetExtra>::from_arguments(call.arguments.clone())?;
    let (store, a, t) = (
        account.store(),
        account.store_id(),
        DataType::EmailSubmission,
    );
    let old_state = store.state(a, t).await.map_err(store_error)?.to_string();
    request.check_state(&old_state)?;
    let mut response: SetResponse = SetResponse::new(
        request.account_id.clone(),
        Some(old_state.clone()),
        old_state,
    );
    let mut done: Vec<Done> = Vec::new();
    let mut pending_sent: Vec<PendingSent> = Vec::new();

    for (creation_id, object) in request.create.clone().unwrap_or_default() {
        let on_update = request
            .extra
            .on_success_update_email
            .as_ref()
            .and_then(|m| m.get(&IdRef::Creation(creation_id.clone())));
        let destroyed_after = request
            .extra
            .on_success_destroy_email
            .iter()
            .flatten()
            .any(|r| r == &IdRef::Creation(creation_id.clone()));
        match create(call, account, &object, on_update, destroyed_after).await? {
            Ok((id, email_id, server_set, pending)) => {
                pending_sent.extend(pending);
                response.add_created(creation_id.clone(), server_set);
                done.push(Done {
                    creation_id: Some(creation_id),
                    id,
                    email_id,
                });
            }
            Err(e) => response.add_not_created(creation_id, e),
        }
    }

    let created_here: Vec<(Id, Id)> = done
        .iter()
        .filter_map(|d| d.creation_id.clone().map(|c| (c, d.id.clone())))
        .collect();
    let resolve = |r: &IdRef| super::identity::resolve_ref(call, &created_here, r);
    let mut commit = Commit::new(a);
    let destroying: Vec<Option<Id>> = request.destroy.iter().flatten().map(resolve).collect();

    for (id_ref, patch) in request.update.clone().unwrap_or_default() {
        let Some(id) = resolve(&id_ref) else {
            response.add_not_updated(id_ref, SetError::not_found());
            continue;
        };
        if destroying.contains(&Some(id.clone())) {
            response.add_not_updated(id_ref, SetError::will_destroy());
            continue;
        }
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
        let changed: Vec<&String> = patched
            .keys()
            .chain(current.keys())
            .filter(|k| patched.get(*k) != current.get(*k))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if changed.iter().any(|k| k.as_str() != "undoStatus") {
            let bad: Vec<String> = changed
                .iter()
                .filter(|k| k.as_str() != "undoStatus")
                .map(|k| (*k).clone())
                .collect();
            response.add_not_updated(
                id_ref,
                SetError::invalid_properties(bad)
                    .with_description("only undoStatus can be changed"),
            );
            continue;
        }
        if !changed.is_empty() {
            let to = patched.get("undoStatus");
            let from = text(&current, "undoStatus");
            let error = if to != Some(&json!("canceled")) {
                SetError::invalid_properties(["undoStatus"])
                    .with_description("undoStatus can only be set to \"canceled\"")
            } else if from == "pending" {
                // Nothing is ever pending here: we send at once.
                set_error(SetErrorType::CannotUnsend, "the message cannot be recalled")
            } else {
                set_error(
                    SetErrorType::CannotUnsend,
                    format!("the submission is {from}; the message cannot be recalled"),
                )
            };
            response.add_not_updated(id_ref, error);
            continue;
        }
        response.add_updated(id.clone(), None);
        done.push(Done {
            creation_id: None,
            email_id: text(&current, "emailId").to_owned(),
            id,
        });
    }

    for (id_ref, id) in request
        .destroy
        .clone()
        .unwrap_or_default()
        .into_iter()
        .zip(destroying)
    {
        let Some(id) = id else {
            response.add_not_destroyed(id_ref, SetError::not_found());
            continue;
        };
        let Some(current) = load_one(store, a, t, &id).await? else {
            response.add_not_destroyed(id_ref, SetError::not_found());
            continue;
        };
        commit.destroy(
            t,
            ObjectId::new(id.as_str()).map_err(|e| MethodError::server_fail(e.to_string()))?,
        );
        response.add_destroyed(id.clone());
        done.push(Done {
            creation_id: None,
            email_id: text(&current, "emailId").to_owned(),
            id,
        });
    }
    if !commit.is_empty() {
        store.commit(commit).await.map_err(store_error)?;
    }
    response.new_state = store.state(a, t).await.map_err(store_error)?.to_string();
    let output = MethodOutput::new(call.name.clone(), response.to_arguments());

    // The implicit Email/set.
    let find = |r: &IdRef| -> Option<&Done> {
        done.iter().find(|d| match r {
            IdRef::Creation(c) => d.creation_id.as_ref() == Some(c),
            IdRef::Id(i) => &d.id == i,
        })
    };
    let mut updates: Vec<(String, PatchObject)> = Vec::new();
    for (r, patch) in request.extra.on_success_update_email.iter().flatten() {
        if let Some(d) = find(r) {
            updates.push((d.email_id.clone(), patch.clone()));
        }
    }
    let mut destroys: Vec<String> = Vec::new();
    for r in request.extra.on_success_destroy_email.iter().flatten() {
        if let Some(d) = find(r)
            && !destroys.contains(&d.email_id)
        {
            destroys.push(d.email_id.clone());
        }
    }
    if updates.is_empty() && destroys.is_empty() {
        for p in pending_sent {
            file_sent_copy(account, &p.email, p.raw, None).await;
        }
        return Ok(output);
    }
    let email_set = implicit_email_set(account, &request.account_id, updates, destroys).await?;
    for p in pending_sent {
        file_sent_copy(account, &p.email, p.raw, None).await;
    }
    Ok(output.and_then("Email/set", email_set))
}

type Created = (Id, String, Map<String, Value>, Option<PendingSent>);

/// One create: checks, the send, the record. `Ok(Err(_))` is this object's SetError.
async fn create<D>(
    call: &MethodCall<'_, D>,
    account: &D::Account,
    object: &Map<String, Value>,
    on_update: Option<&PatchObject>,
    destroyed_after: bool,
) -> Result<Result<Created, SetError>, MethodError>
where
    D: AccountDirectory,
    D::Account: MailAccount,
{
    if let Err(e) = only_properties(object, &["identityId", "emailId", "envelope"]) {
        return Ok(Err(e));
    }
    let reference = |k: &str| {
        object
            .get(k)
            .and_then(Value::as_str)
            .and_then(|s| call.created_ids.resolve_str(s))
    };
    let Some(identity_id) = reference("identityId") else {
        return Ok(Err(SetError::invalid_properties(["identityId"])));
    };
    let Some(identity) = identity(account, &identity_id).await? else {
        return Ok(Err(
            SetError::invalid_properties(["identityId"]).with_description("no such Identity")
        ));
    };
    let identity_email = text(&identity, "email").to_owned();
    let Some(email_id) = reference("emailId") else {
        return Ok(Err(SetError::invalid_properties(["emailId"])));
    };
    let email = match load_one_email(account, &email_id).await? {
        Some(e) => e,
        None => {
            return Ok(Err(
                SetError::invalid_properties(["emailId"]).with_description("no such Email")
            ));
        }
    };
    let Some(submitter) = account.submitter().cloned() else {
        return Ok(Err(set_error(
            SetErrorType::ForbiddenToSend,
            "this account has no way to send mail",
        )));
    };
    if email.from.is_empty() {
        return Ok(Err(set_error(
            SetErrorType::InvalidEmail,
            "the Email has no From address",
        )
        .with_property("properties", json!(["from"]))));
    }
    if let Some(other) = email
        .from
        .iter()
        .find(|f| !same_address(&f.email, &identity_email))
    {
        return Ok(Err(set_error(
            SetErrorType::ForbiddenFrom,
            format!("this account may not send as {}", other.email),
        )));
    }
    let envelope = match object.get("envelope") {
        None | Some(Value::Null) => match derive_envelope(&email, &identity_email) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e)),
        },
        Some(v) => match parse_envelope(v) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e)),
        },
    };
    if !same_address(&envelope.mail_from, &identity_email) {
        return Ok(Err(set_error(
            SetErrorType::ForbiddenMailFrom,
            format!("MAIL FROM must be {identity_email}"),
        )));
    }
    if envelope.rcpt_to.is_empty() {
        return Ok(Err(set_error(
            SetErrorType::NoRecipients,
            "there are no recipients",
        )));
    }
    if envelope.rcpt_to.len() > MAX_RECIPIENTS {
        return Ok(Err(set_error(
            SetErrorType::TooManyRecipients,
            format!("at most {MAX_RECIPIENTS} recipients"),
        )
        .with_property("maxRecipients", json!(MAX_RECIPIENTS))));
    }
    let invalid: Vec<&String> = envelope
        .rcpt_to
        .iter()
        .filter(|r| !valid_address(r))
        .collect();
    if !invalid.is_empty() {
        return Ok(Err(set_error(
            SetErrorType::InvalidRecipients,
            "invalid recipient addresses",
        )
        .with_property("invalidRecipients", json!(invalid))));
    }
    let too_large = || {
        SetError::too_large()
            .with_description(format!("at most {MAX_SIZE} octets can be sent"))
            .with_property("maxSize", json!(MAX_SIZE))
    };
    if email.size > MAX_SIZE {
        return Ok(Err(too_large()));
    }
    let raw = match raw_message(account, &email_id).await {
        Ok(raw) => raw,
        Err(e) => return Ok(Err(e)),
    };
    if u64::try_from(raw.len()).unwrap_or(u64::MAX) > MAX_SIZE {
        return Ok(Err(too_large()));
    }
    let to_send = strip_bcc(&raw);
    // Finding the source can mean reading many records (EAS reports no Message-ID), so it
    // is looked for only when the submitter makes use of it.
    let source = if submitter.marks_source() {
        send_source(account, &email, &raw).await
    } else {
        None
    };

    let receipt = match submitter
        .submit_about(&envelope, &to_send, source.as_ref())
        .await
    {
        Ok(r) => r,
        Err(SubmitError::Refused(reply)) => {
            return Ok(Err(set_error(
                SetErrorType::ForbiddenToSend,
                format!("the submission server refused the message: {reply}"),
            )));
        }
        Err(SubmitError::RecipientsRefused(list)) => {
            return Ok(Err(set_error(
                SetErrorType::InvalidRecipients,
                "the submission server refused these recipients",
            )
            .with_property("invalidRecipients", json!(list))));
        }
        Err(SubmitError::Unavailable(why)) => {
            return Ok(Err(unavailable(format!(
                "the submission server is unreachable, nothing was sent: {why}"
            ))));
        }
        Err(SubmitError::Unknown(why)) => {
            tracing::warn!(account = %account.store_id(), email = %email_id, "submission outcome unknown: {why}");
            return Ok(Err(set_error(
                SetErrorType::Other("serverFail".into()),
                format!(
                    "the message may or may not have been sent ({why}); check before sending it again"
                ),
            )));
        }
    };

    // Sent: record it. From here on nothing may turn into an error of the call.
    if let (Some(source), Some(sync)) = (&source, account.sync())
        && submitter.marks_source()
        && let Err(e) = sync.sync_mailbox(&source.mailbox).await
    {
        tracing::warn!(account = %account.store_id(), mailbox = %source.mailbox, "the replied-to mailbox was not synced after sending: {e}");
    }
    let id = new_id('S')?;
    let sent_at = UtcDate::from_timestamp(now());
    let delivery: Map<String, Value> = envelope
        .rcpt_to
        .iter()
        .map(|r| {
            (
                r.clone(),
                json!({"smtpReply": receipt.reply, "delivered": "queued", "displayed": "unknown"}),
            )
        })
        .collect();
    let envelope_json = json!({
        "mailFrom": {"email": envelope.mail_from, "parameters": null},
        "rcptTo": envelope.rcpt_to.iter().map(|r| json!({"email": r, "parameters": null})).collect::<Vec<_>>(),
    });
    let mut record = Map::new();
    record.insert("identityId".into(), json!(identity_id));
    record.insert("emailId".into(), json!(email_id));
    record.insert("threadId".into(), json!(email.thread_id));
    record.insert("envelope".into(), envelope_json);
    record.insert("sendAt".into(), json!(sent_at.as_str()));
    record.insert("undoStatus".into(), json!("final"));
    record.insert("deliveryStatus".into(), Value::Object(delivery));
    record.insert("dsnBlobIds".into(), json!([]));
    record.insert("mdnBlobIds".into(), json!([]));
    let mut c = Commit::new(account.store_id());
    match (ObjectId::new(id.as_str()), serde_json::to_vec(&record)) {
        (Ok(oid), Ok(bytes)) => {
            c.put(DataType::EmailSubmission, oid, bytes);
            if let Err(e) = account.store().commit(c).await {
                tracing::error!(account = %account.store_id(), "a sent submission was not recorded: {e}");
            }
        }
        _ => tracing::error!("a sent submission could not be encoded"),
    }

    let mut pending = None;
    if !submitter.files_sent_copy() {
        if destroyed_after {
            pending = Some(PendingSent {
                email: email.clone(),
                raw,
            });
        } else {
            file_sent_copy(account, &email, raw, on_update).await;
        }
    }

    let mut server_set = Map::new();
    server_set.insert("id".into(), json!(id));
    server_set.insert("threadId".into(), json!(email.thread_id));
    server_set.insert("sendAt".into(), json!(sent_at.as_str()));
    server_set.insert("undoStatus".into(), json!("final"));
    if object.get("envelope").is_none_or(Value::is_null) {
        server_set.insert("envelope".into(), record["envelope"].clone());
    }
    server_set.insert("deliveryStatus".into(), record["deliveryStatus"].clone());
    server_set.insert("dsnBlobIds".into(), json!([]));
    server_set.insert("mdnBlobIds".into(), json!([]));
    Ok(Ok((id, email_id.as_str().to_owned(), server_set, pending)))
}

/// The message of the account that `email` replies to or forwards, where upstream holds it:
/// its first In-Reply-To is a reply; without one, the Message-ID in an
/// `X-Forwarded-Message-Id` header field (as Thunderbird writes) or of an attached
/// message/rfc822 part is a forward. `None` when there is none, it is not held, or only in
/// Drafts, or the account has no live upstream: then the message is sent on its own.
async fn send_source<A: MailAccount>(
    account: &A,
    email: &EmailRecord,
    raw: &[u8],
) -> Option<SendSource> {
    let sync = account.sync()?;
    let mut wanted: Vec<(SourceKind, String)> = email
        .in_reply_to
        .first()
        .map(|m| (SourceKind::Reply, m.clone()))
        .into_iter()
        .collect();
    if wanted.is_empty() {
        wanted.extend(
            forwarded_ids(raw)
                .into_iter()
                .map(|m| (SourceKind::Forward, m)),
        );
    }
    for (kind, message_id) in wanted {
        let found = match held_email(account, &message_id, &email.id).await {
            Ok(Some(found)) => Some(found),
            Ok(None) => unindexed_email(account, sync, &message_id, email).await,
            Err(e) => {
                tracing::debug!(account = %account.store_id(), "looking up {message_id}: {e}");
                None
            }
        };
        let Some(original) = found else {
            tracing::debug!(account = %account.store_id(), "{message_id} is not held upstream: not named as the source");
            continue;
        };
        let mailboxes = sync.mailboxes();
        // A copy in the inbox first, then any other that is not a draft.
        let best = original
            .copies()
            .into_iter()
            .filter_map(|(mailbox_id, uid)| {
                let (remote, record) = mailboxes.iter().find(|(_, m)| m.id == mailbox_id)?;
                let rank = match record.role.as_deref() {
                    Some("drafts") => return None,
                    Some("inbox") => 0,
                    Some("trash" | "junk") => 2,
                    _ => 1,
                };
                Some((rank, remote.remote_id.clone(), uid))
            })
            .min();
        if let Some((_, mailbox, uid)) = best {
            return Some(SendSource { kind, mailbox, uid });
        }
    }
    None
}

/// The stored Email records of `ids` except `not`, read as the caller goes (ids without a
/// readable record are passed over).
fn other_records<'s>(
    s: &'s state::Store,
    a: state::AccountId,
    ids: Vec<ObjectId>,
    not: &'s str,
) -> impl Iterator<Item = Result<(ObjectId, EmailRecord), state::Error>> + 's {
    ids.into_iter()
        .filter(move |id| id.as_str() != not)
        .filter_map(move |id| match s.get(a, DataType::Email, &id) {
            Ok(bytes) => bytes
                .and_then(|b| EmailRecord::from_bytes(&b))
                .map(|record| Ok((id, record))),
            Err(e) => Some(Err(e)),
        })
}

/// How many raw messages [`unindexed_email`] reads at most.
const UNINDEXED_READS: usize = 5;

/// The Email whose Message-ID is `message_id` among those whose Message-ID the store does not
/// know (EAS reports no Message-ID, so its Emails have none until their raw message is read):
/// the newest few of the account's Emails with the base subject of `sent`, confirmed by the
/// Message-ID of their raw message (the blob cache, else fetched upstream). Every Email of
/// the account is looked at, however old, so a reply to an old message still names it; the
/// scan reads the records in key order and decodes only their subject and arrival time
/// (about 0.25 s for 100k Emails).
async fn unindexed_email<A: MailAccount>(
    account: &A,
    sync: &crate::AccountSync,
    message_id: &str,
    sent: &EmailRecord,
) -> Option<EmailRecord> {
    let a = account.store_id();
    let base = crate::base_subject(sent.subject.as_deref());
    let not = sent.id.clone();
    let candidates = account
        .store()
        .run(move |s| {
            // The newest matches, newest first (ties by id), with their bytes.
            let mut newest: Vec<(Reverse<i64>, ObjectId, Vec<u8>)> = Vec::new();
            s.scan_objects(a, DataType::Email, |id, bytes| {
                let Some(peek) = EmailRecord::peek(bytes) else {
                    return true;
                };
                if !peek.message_id.is_empty()
                    || id.as_str() == not
                    || crate::base_subject(peek.subject.as_deref()) != base
                {
                    return true;
                }
                let rank = (Reverse(peek.received_at), id);
                let at = newest.partition_point(|(t, i, _)| (t, i) < (&rank.0, &rank.1));
                if at < UNINDEXED_READS {
                    newest.insert(at, (rank.0, rank.1, bytes.to_vec()));
                    newest.truncate(UNINDEXED_READS);
                }
                true
            })?;
            Ok::<_, state::Error>(
                newest
                    .into_iter()
                    .filter_map(|(_, id, bytes)| Some((id, EmailRecord::from_bytes(&bytes)?)))
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .ok()?;
    for (id, record) in candidates {
        let raw = match sync.raw_message(&id).await {
            Ok(raw) => raw,
            Err(e) => {
                tracing::debug!(account = %a, email = %id, "not read while looking for a source: {e}");
                continue;
            }
        };
        let own = mail_parser::MessageParser::default()
            .parse_headers(&raw[..])
            .and_then(|m| m.message_id().map(str::to_owned));
        if own.is_some_and(|m| m.eq_ignore_ascii_case(message_id)) {
            return Some(record);
        }
    }
    None
}

/// The Message-IDs a message says it forwards: `X-Forwarded-Message-Id` header fields and
/// the Message-IDs of attached message/rfc822 parts.
fn forwarded_ids(raw: &[u8]) -> Vec<String> {
    let Some(message) = mail_parser::MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = message
        .header_values("X-Forwarded-Message-Id")
        .filter_map(|v| match v {
            mail_parser::HeaderValue::Text(t) => Some(t.to_string()),
            mail_parser::HeaderValue::TextList(l) => Some(l.join(" ")),
            _ => None,
        })
        .filter_map(|t| crate::header_forms::message_ids(t.as_bytes()))
        .flatten()
        .collect();
    for part in message.attachments() {
        if let Some(id) = part.message().and_then(|m| m.message_id()) {
            ids.push(id.to_owned());
        }
    }
    ids
}

/// The Email other than `not` whose Message-ID is `message_id`, found through the sync
/// driver's Message-ID → thread index and that thread's Emails.
async fn held_email<A: MailAccount>(
    account: &A,
    message_id: &str,
    not: &str,
) -> Result<Option<EmailRecord>, state::Error> {
    use crate::tx::names;
    let a = account.store_id();
    let message_id = message_id.to_owned();
    let not = not.to_owned();
    account
        .store()
        .run(move |s| {
            let text = |v: Option<Vec<u8>>| v.and_then(|v| String::from_utf8(v).ok());
            let Some(mut thread) = text(s.cursor(a, &names::msgid(&message_id))?) else {
                return Ok(None);
            };
            for _ in 0..32 {
                match text(s.cursor(a, &names::alias(&thread))?) {
                    Some(next) if next != thread => thread = next,
                    _ => break,
                }
            }
            let Ok(thread) = ObjectId::new(thread) else {
                return Ok(None);
            };
            for item in other_records(s, a, s.thread_email_ids(a, &thread)?, &not) {
                let (_, record) = item?;
                if record
                    .message_id
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&message_id))
                {
                    return Ok(Some(record));
                }
            }
            Ok(None)
        })
        .await
}

async fn load_one_email<A: MailAccount>(
    account: &A,
    id: &Id,
) -> Result<Option<EmailRecord>, MethodError> {
    let Ok(oid) = ObjectId::new(id.as_str()) else {
        return Ok(None);
    };
    let a = account.store_id();
    let bytes = account
        .store()
        .run(move |s| s.get(a, DataType::Email, &oid))
        .await
        .map_err(store_error)?;
    Ok(bytes.and_then(|b| EmailRecord::from_bytes(&b)))
}

/// The raw message, read as the Email's blob: the blob cache, a local draft's stored raw,
/// else fetched upstream through the sync driver.
async fn raw_message<A: MailAccount>(account: &A, id: &Id) -> Result<Vec<u8>, SetError> {
    match super::read_blob(account, id.as_str()).await {
        Ok(Some(blob)) => Ok(blob.bytes),
        Ok(None) if account.sync().is_none() => Err(unavailable(
            "the message is not available without the upstream server; nothing was sent",
        )),
        Ok(None) => Err(SetError::invalid_properties(["emailId"])),
        Err(e) => Err(unavailable(format!(
            "the message could not be read, nothing was sent: {e}"
        ))),
    }
}

/// Appends what was sent to the Sent mailbox, unless it is or will be there anyway.
async fn file_sent_copy<A: MailAccount>(
    account: &A,
    email: &EmailRecord,
    raw: Vec<u8>,
    on_update: Option<&PatchObject>,
) {
    let Some(sync) = account.sync() else {
        return;
    };
    let Some((remote, sent)) = sync
        .mailboxes()
        .into_iter()
        .find(|(_, m)| m.role.as_deref() == Some("sent") && m.selectable)
    else {
        return;
    };
    if email.locations.contains_key(&sent.id)
        || on_update.is_some_and(|p| patch_adds_mailbox(p, &sent.id))
    {
        return;
    }
    let op = WriteOp::Append {
        mailbox: remote.remote_id.clone(),
        raw,
        keywords: BTreeSet::from(["$seen".to_owned()]),
        received_at: Some(now()),
    };
    if let Err(e) = sync.write(op).await {
        tracing::warn!(account = %account.store_id(), mailbox = %remote.remote_id, "sent message not filed: {e}");
    }
}

// --- the implicit Email/set ----------------------------------------------------------------

fn sync_set_error(e: SyncError) -> SetError {
    match e {
        SyncError::UnknownEmail(_) => SetError::not_found(),
        SyncError::Upstream(upstream::UpstreamError::NotFound(_)) => SetError::not_found(),
        SyncError::Upstream(upstream::UpstreamError::Refused(t)) => {
            SetError::forbidden().with_description(t)
        }
        e => unavailable(e.to_string()),
    }
}

async fn implicit_email_set<A: MailAccount>(
    account: &A,
    account_id: &Id,
    updates: Vec<(String, PatchObject)>,
    destroys: Vec<String>,
) -> Result<Map<String, Value>, MethodError> {
    let (store, a) = (account.store(), account.store_id());
    let old_state = store
        .state(a, DataType::Email)
        .await
        .map_err(store_error)?
        .to_string();
    let mut response: SetResponse =
        SetResponse::new(account_id.clone(), Some(old_state.clone()), old_state);
    for (email_id, patch) in updates {
        let Ok(id) = Id::new(email_id.as_str()) else {
            continue;
        };
        if destroys.contains(&email_id) {
            response.add_not_updated(IdRef::Id(id), SetError::will_destroy());
            continue;
        }
        match update_email(account, &id, &patch).await {
            Ok(()) => response.add_updated(id, None),
            Err(e) => response.add_not_updated(IdRef::Id(id), e),
        }
    }
    for email_id in destroys {
        let (Ok(id), Ok(oid)) = (Id::new(email_id.as_str()), ObjectId::new(email_id.as_str()))
        else {
            continue;
        };
        let local = super::local::destroy(account, &oid).await?;
        let result = match account.sync() {
            _ if local => Ok(()),
            Some(sync) => sync.destroy_email(&oid).await.map_err(sync_set_error),
            None => Err(unavailable("the upstream server is not connected")),
        };
        match result {
            Ok(()) => response.add_destroyed(id),
            Err(e) => response.add_not_destroyed(IdRef::Id(id), e),
        }
    }
    response.new_state = store
        .state(a, DataType::Email)
        .await
        .map_err(store_error)?
        .to_string();
    Ok(response.to_arguments())
}

/// Applies an Email patch of keywords and mailboxIds through the sync driver.
async fn update_email<A: MailAccount>(
    account: &A,
    id: &Id,
    patch: &PatchObject,
) -> Result<(), SetError> {
    let bad: Vec<String> = patch
        .properties()
        .into_iter()
        .filter(|p| p != "keywords" && p != "mailboxIds")
        .collect();
    if !bad.is_empty() {
        return Err(SetError::invalid_properties(bad)
            .with_description("only keywords and mailboxIds can be changed after a submission"));
    }
    let Some(sync) = account.sync() else {
        return Err(unavailable("the upstream server is not connected"));
    };
    let oid = ObjectId::new(id.as_str()).map_err(|_| SetError::not_found())?;
    let Some(email) = sync.email(&oid).await.map_err(sync_set_error)? else {
        return Err(SetError::not_found());
    };
    let keywords = email.keywords();
    let mailboxes: BTreeSet<String> = email.locations.keys().cloned().collect();
    let view = json!({
        "keywords": keywords.iter().map(|k| (k.clone(), Value::Bool(true))).collect::<Map<_, _>>(),
        "mailboxIds": mailboxes.iter().map(|m| (m.clone(), Value::Bool(true))).collect::<Map<_, _>>(),
    });
    let patched = patch.apply(&view).map_err(SetError::from)?;
    let set_of = |k: &str| -> Result<BTreeSet<String>, SetError> {
        match patched.get(k) {
            Some(Value::Object(m)) if m.values().all(|v| v == &Value::Bool(true)) => {
                Ok(m.keys().cloned().collect())
            }
            _ => Err(SetError::invalid_properties([k])),
        }
    };
    let new_keywords: BTreeSet<String> = set_of("keywords")?
        .into_iter()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    let new_mailboxes = set_of("mailboxIds")?;
    let known = sync.mailboxes();
    let remote = |m: &str| {
        known
            .iter()
            .find(|(_, r)| r.id == m && r.selectable)
            .map(|(r, _)| r.remote_id.clone())
    };
    if new_mailboxes.is_empty() || new_mailboxes.iter().any(|m| remote(m).is_none()) {
        return Err(SetError::invalid_properties(["mailboxIds"]));
    }
    if super::local::is_local(&email) {
        return update_local_draft(account, &oid, &known, &new_keywords, new_mailboxes).await;
    }

    let add: BTreeSet<String> = new_keywords.difference(&keywords).cloned().collect();
    let remove: BTreeSet<String> = keywords.difference(&new_keywords).cloned().collect();
    if !add.is_empty() || !remove.is_empty() {
        sync.set_email_keywords(&oid, add, remove)
            .await
            .map_err(sync_set_error)?;
    }

    let added: Vec<&String> = new_mailboxes.difference(&mailboxes).collect();
    let removed: Vec<&String> = mailboxes.difference(&new_mailboxes).collect();
    let uids = |m: &str| -> Vec<String> {
        email
            .locations
            .get(m)
            .map(|c| c.uids.keys().cloned().collect())
            .unwrap_or_default()
    };
    let remote_of = |m: &str| remote(m).ok_or_else(|| SetError::invalid_properties(["mailboxIds"]));
    // Extra targets are copied from a mailbox the Email stays in (or the first it is in).
    if added.len() > removed.len() {
        let source = mailboxes
            .iter()
            .find(|m| new_mailboxes.contains(*m))
            .or_else(|| mailboxes.iter().next())
            .ok_or_else(SetError::not_found)?;
        for to in &added[removed.len()..] {
            sync.write(WriteOp::Copy {
                from: remote_of(source)?,
                uids: uids(source),
                to: remote_of(to)?,
            })
            .await
            .map_err(sync_set_error)?;
        }
    }
    for (from, to) in removed.iter().zip(&added) {
        sync.write(WriteOp::Move {
            from: remote_of(from)?,
            uids: uids(from),
            to: remote_of(to)?,
        })
        .await
        .map_err(sync_set_error)?;
    }
    for from in removed.iter().skip(added.len()) {
        sync.write(WriteOp::Delete {
            mailbox: remote_of(from)?,
            uids: uids(from),
        })
        .await
        .map_err(sync_set_error)?;
    }
    Ok(())
}

/// The implicit update of a local draft that was sent. The submitter that files its own
/// copy in Sent (EAS) already made the Sent copy: moving the draft there would add a second
/// one that lives in the gateway only, so that mailbox is left out (and a draft left in no
/// mailbox is destroyed).
async fn update_local_draft<A: MailAccount>(
    account: &A,
    id: &ObjectId,
    known: &[(upstream::RemoteMailbox, crate::MailboxRecord)],
    keywords: &BTreeSet<String>,
    mut mailboxes: BTreeSet<String>,
) -> Result<(), SetError> {
    if account.submitter().is_some_and(|s| s.files_sent_copy())
        && let Some((_, sent)) = known
            .iter()
            .find(|(_, m)| m.role.as_deref() == Some("sent"))
    {
        mailboxes.remove(&sent.id);
    }
    let done = if mailboxes.is_empty() {
        super::local::destroy(account, id).await
    } else {
        super::local::update(account, id, keywords, &mailboxes).await
    };
    match done {
        Ok(true) => Ok(()),
        Ok(false) => Err(SetError::not_found()),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    for (name, op) in [
        ("EmailSubmission/get", Op::Get),
        ("EmailSubmission/changes", Op::Changes),
        ("EmailSubmission/query", Op::Query),
        ("EmailSubmission/queryChanges", Op::QueryChanges),
        ("EmailSubmission/set", Op::Set),
    ] {
        engine.register(name, SUBMISSION, SubmissionMethod(op));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::super::fake::{FakeUpstream, fingerprint, fixture_with};
    use super::super::identity::seeded_id;
    use super::super::testing::{Fixture, email, mailbox};
    use super::*;
    use crate::email_id;

    /// A Submitter that records what it was asked to send and answers as told.
    #[derive(Debug, Default)]
    pub struct Recorder {
        pub sent: Mutex<Vec<(Envelope, Vec<u8>)>>,
        pub answer: Mutex<Option<SubmitError>>,
        pub files_own_copy: bool,
        /// The source of every submission, in order.
        pub sources: Mutex<Vec<Option<SendSource>>>,
    }

    impl Submitter for Recorder {
        fn submit_about<'a>(
            &'a self,
            envelope: &'a Envelope,
            raw: &'a [u8],
            source: Option<&'a SendSource>,
        ) -> BoxFuture<'a, Result<SubmitReceipt, SubmitError>> {
            self.sources.lock().unwrap().push(source.cloned());
            self.submit(envelope, raw)
        }

        fn marks_source(&self) -> bool {
            true
        }

        fn submit<'a>(
            &'a self,
            envelope: &'a Envelope,
            raw: &'a [u8],
        ) -> BoxFuture<'a, Result<SubmitReceipt, SubmitError>> {
            Box::pin(async move {
                if let Some(e) = self.answer.lock().unwrap().take() {
                    return Err(e);
                }
                self.sent
                    .lock()
                    .unwrap()
                    .push((envelope.clone(), raw.to_vec()));
                Ok(SubmitReceipt {
                    reply: "250 2.0.0 Ok: queued as 42".into(),
                })
            })
        }

        fn files_sent_copy(&self) -> bool {
            self.files_own_copy
        }
    }

    const HEADERS: &str = "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>, carol@example.org\r\nCc: BOB@example.net\r\nBcc: dave@example.com\r\nSubject: plans\r\nMessage-ID: <m1@example.com>";

    fn raw_of(headers: &str) -> Vec<u8> {
        format!("{headers}\r\n\r\nSee you.\r\nBcc: not a header\r\n").into_bytes()
    }

    /// A fixture with a recording submitter and Email `E1` (headers as given) whose raw
    /// message is in the blob cache.
    async fn fixture(headers: &str) -> (Fixture, Arc<Recorder>) {
        let mut f = Fixture::new();
        let rec = Arc::new(Recorder::default());
        f.account.submitter = Some(rec.clone());
        f.rebuild();
        f.put_mailbox(&mailbox("Mdrafts", "Drafts", Some("drafts")))
            .await;
        f.put_email(&email(
            "E1",
            "T1",
            "Mdrafts",
            "1",
            &["$draft"],
            1_700_000_000,
            headers,
        ))
        .await;
        f.account
            .store
            .blob_put(f.account.id, b"E1".to_vec(), raw_of(headers))
            .await
            .unwrap();
        (f, rec)
    }

    fn identity() -> String {
        seeded_id("alice@example.com")
    }

    async fn submit(f: &Fixture, create: Value) -> Value {
        f.ok("EmailSubmission/set", json!({"create": {"k1": create}}))
            .await
    }

    #[tokio::test]
    async fn a_send_derives_the_envelope_strips_bcc_and_is_recorded() {
        let (f, rec) = fixture(HEADERS).await;
        let r = submit(&f, json!({"identityId": identity(), "emailId": "E1"})).await;
        let created = &r["created"]["k1"];
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["undoStatus"], json!("final"));
        assert_eq!(created["threadId"], json!("T1"));
        assert_eq!(
            created["envelope"],
            json!({"mailFrom": {"email": "alice@example.com", "parameters": null},
                   "rcptTo": [{"email": "bob@example.net", "parameters": null},
                              {"email": "carol@example.org", "parameters": null},
                              {"email": "dave@example.com", "parameters": null}]})
        );
        assert_eq!(
            created["deliveryStatus"]["carol@example.org"],
            json!({"smtpReply": "250 2.0.0 Ok: queued as 42", "delivered": "queued",
                   "displayed": "unknown"})
        );
        let sent = rec.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        let text = String::from_utf8(sent[0].1.clone()).unwrap();
        assert!(!text.contains("dave@example.com"), "{text}");
        assert!(
            text.contains("Cc: BOB@example.net\r\nSubject: plans"),
            "{text}"
        );
        assert!(
            text.ends_with("See you.\r\nBcc: not a header\r\n"),
            "{text}"
        );
        assert_eq!(sent[0].0.rcpt_to.len(), 3);

        let got = f
            .ok("EmailSubmission/get", json!({"ids": [id.clone()]}))
            .await;
        assert_eq!(got["list"][0]["emailId"], json!("E1"));
        assert_eq!(got["list"][0]["identityId"], json!(identity()));
        assert_eq!(got["state"], r["newState"]);
        let changes = f
            .ok(
                "EmailSubmission/changes",
                json!({"sinceState": r["oldState"]}),
            )
            .await;
        assert_eq!(changes["created"], json!([id]));
    }

    #[tokio::test]
    async fn a_given_envelope_and_an_identity_created_in_the_same_request() {
        let (f, rec) = fixture(HEADERS).await;
        let r = f
            .request(json!([
                ["Identity/set", {"accountId": "a1",
                    "create": {"id1": {"email": "alice@example.com", "name": "A"}}}, "0"],
                ["EmailSubmission/set", {"accountId": "a1", "create": {"k1": {
                    "identityId": "#id1", "emailId": "E1",
                    "envelope": {"mailFrom": {"email": "ALICE@example.com"},
                                 "rcptTo": [{"email": "x@example.net", "parameters": {}}]}}}}, "1"]
            ]))
            .await;
        assert!(r[1][1]["created"]["k1"]["id"].is_string(), "{r:?}");
        assert!(r[1][1]["created"]["k1"].get("envelope").is_none());
        let sent = rec.sent.lock().unwrap().clone();
        assert_eq!(sent[0].0.rcpt_to, vec!["x@example.net".to_owned()]);
    }

    #[tokio::test]
    async fn checks_before_sending() {
        let (f, rec) = fixture(HEADERS).await;
        let env = |from: &str, to: Value| json!({"mailFrom": {"email": from}, "rcptTo": to});
        let many: Vec<Value> = (0..=MAX_RECIPIENTS)
            .map(|i| json!({"email": format!("r{i}@example.net")}))
            .collect();
        let r = f
            .ok(
                "EmailSubmission/set",
                json!({"create": {
                    "noIdentity": {"identityId": "Inope", "emailId": "E1"},
                    "noEmail": {"identityId": identity(), "emailId": "Enope"},
                    "serverSet": {"identityId": identity(), "emailId": "E1", "undoStatus": "final"},
                    "mailFrom": {"identityId": identity(), "emailId": "E1",
                                 "envelope": env("eve@example.com", json!([{"email": "b@c.d"}]))},
                    "empty": {"identityId": identity(), "emailId": "E1",
                              "envelope": env("alice@example.com", json!([]))},
                    "invalid": {"identityId": identity(), "emailId": "E1",
                                "envelope": env("alice@example.com",
                                    json!([{"email": "ok@example.net"}, {"email": "not an address"}]))},
                    "many": {"identityId": identity(), "emailId": "E1",
                             "envelope": env("alice@example.com", json!(many))},
                    "params": {"identityId": identity(), "emailId": "E1",
                               "envelope": {"mailFrom": {"email": "alice@example.com",
                                                          "parameters": {"RET": "HDRS"}},
                                            "rcptTo": [{"email": "b@c.d"}]}}
                }}),
            )
            .await;
        let t = |k: &str| r["notCreated"][k]["type"].clone();
        assert_eq!(t("noIdentity"), json!("invalidProperties"));
        assert_eq!(
            r["notCreated"]["noIdentity"]["properties"],
            json!(["identityId"])
        );
        assert_eq!(t("noEmail"), json!("invalidProperties"));
        assert_eq!(r["notCreated"]["noEmail"]["properties"], json!(["emailId"]));
        assert_eq!(t("serverSet"), json!("invalidProperties"));
        assert_eq!(t("mailFrom"), json!("forbiddenMailFrom"));
        assert_eq!(t("empty"), json!("noRecipients"));
        assert_eq!(t("invalid"), json!("invalidRecipients"));
        assert_eq!(
            r["notCreated"]["invalid"]["invalidRecipients"],
            json!(["not an address"])
        );
        assert_eq!(t("many"), json!("tooManyRecipients"));
        assert_eq!(
            r["notCreated"]["many"]["maxRecipients"],
            json!(MAX_RECIPIENTS)
        );
        assert_eq!(t("params"), json!("invalidProperties"));
        assert!(r.get("created").is_none());
        assert_eq!(r["oldState"], r["newState"]);
        assert!(rec.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_from_header_must_be_the_identity() {
        let (f, _) = fixture("From: eve@example.com\r\nTo: b@example.net").await;
        let r = submit(&f, json!({"identityId": identity(), "emailId": "E1"})).await;
        assert_eq!(r["notCreated"]["k1"]["type"], json!("forbiddenFrom"));

        let (f, _) = fixture("To: b@example.net\r\nSubject: no from").await;
        let r = submit(&f, json!({"identityId": identity(), "emailId": "E1"})).await;
        assert_eq!(r["notCreated"]["k1"]["type"], json!("invalidEmail"));
        assert_eq!(r["notCreated"]["k1"]["properties"], json!(["from"]));

        let (f, _) = fixture(
            "From: alice@example.com\r\nSender: alice@example.com, x@example.com\r\nTo: b@example.net",
        )
        .await;
        let r = submit(&f, json!({"identityId": identity(), "emailId": "E1"})).await;
        assert_eq!(r["notCreated"]["k1"]["type"], json!("invalidEmail"));
        assert_eq!(r["notCreated"]["k1"]["properties"], json!(["sender"]));
    }

    #[tokio::test]
    async fn no_submitter_is_forbidden_to_send() {
        let (mut f, _) = fixture(HEADERS).await;
        f.account.submitter = None;
        f.rebuild();
        let r = submit(&f, json!({"identityId": identity(), "emailId": "E1"})).await;
        assert_eq!(r["notCreated"]["k1"]["type"], json!("forbiddenToSend"));
    }

    #[tokio::test]
    async fn submitter_failures() {
        let (f, rec) = fixture(HEADERS).await;
        let cases = [
            (
                SubmitError::RecipientsRefused(vec!["carol@example.org".into()]),
                "invalidRecipients",
            ),
            (
                SubmitError::Refused("554 5.7.1 no".into()),
                "forbiddenToSend",
            ),
            (
                SubmitError::Unavailable("refused".into()),
                "serverUnavailable",
            ),
            (
                SubmitError::Unknown("connection reset".into()),
                "serverFail",
            ),
        ];
        for (error, expected) in cases {
            *rec.answer.lock().unwrap() = Some(error);
            let r = f
                .ok(
                    "EmailSubmission/set",
                    json!({"create": {"k1": {"identityId": identity(), "emailId": "E1"}},
                           "onSuccessDestroyEmail": ["#k1"]}),
                )
                .await;
            assert_eq!(r["notCreated"]["k1"]["type"], json!(expected), "{r}");
            assert_eq!(r["oldState"], r["newState"]);
        }
        let r = f
            .call(
                "EmailSubmission/set",
                json!({"create": {"k1": {"identityId": identity(), "emailId": "E1"}}}),
            )
            .await;
        assert_eq!(r.len(), 1, "no implicit Email/set: {r:?}");
        assert!(r[0][1]["created"]["k1"]["id"].is_string(), "{r:?}");
    }

    #[tokio::test]
    async fn update_and_destroy() {
        let (f, _) = fixture(HEADERS).await;
        let r = submit(&f, json!({"identityId": identity(), "emailId": "E1"})).await;
        let id = r["created"]["k1"]["id"].as_str().unwrap().to_owned();
        let r = f
            .ok(
                "EmailSubmission/set",
                json!({"update": {
                    id.clone(): {"undoStatus": "canceled"},
                    "Snope": {"undoStatus": "canceled"}
                }}),
            )
            .await;
        assert_eq!(r["notUpdated"][&id]["type"], json!("cannotUnsend"));
        assert_eq!(r["notUpdated"]["Snope"]["type"], json!("notFound"));
        let r = f
            .ok(
                "EmailSubmission/set",
                json!({"update": {id.clone(): {"emailId": "E2"}}}),
            )
            .await;
        assert_eq!(r["notUpdated"][&id]["type"], json!("invalidProperties"));
        let r = f
            .ok(
                "EmailSubmission/set",
                json!({"update": {id.clone(): {"undoStatus": "final"}}}),
            )
            .await;
        assert_eq!(r["updated"], json!({id.clone(): null}));
        let r = f
            .ok(
                "EmailSubmission/set",
                json!({"destroy": [id.clone(), "Snope"]}),
            )
            .await;
        assert_eq!(r["destroyed"], json!([id]));
        assert_eq!(r["notDestroyed"]["Snope"]["type"], json!("notFound"));
        let got = f
            .ok("EmailSubmission/get", json!({"ids": [id.clone()]}))
            .await;
        assert_eq!(got["notFound"], json!([id]));
    }

    #[tokio::test]
    async fn query_and_query_changes() {
        let (f, _) = fixture(HEADERS).await;
        f.put_email(&email("E0", "T0", "Mdrafts", "2", &[], 1, HEADERS))
            .await;
        f.account
            .store
            .blob_put(f.account.id, b"E0".to_vec(), raw_of(HEADERS))
            .await
            .unwrap();
        let q0 = f.ok("EmailSubmission/query", json!({})).await;
        assert_eq!(q0["ids"], json!([]));
        let a = submit(&f, json!({"identityId": identity(), "emailId": "E1"})).await;
        let b = submit(&f, json!({"identityId": identity(), "emailId": "E0"})).await;
        let (a, b) = (
            a["created"]["k1"]["id"].clone(),
            b["created"]["k1"]["id"].clone(),
        );
        let r = f
            .ok(
                "EmailSubmission/query",
                json!({"sort": [{"property": "emailId"}], "calculateTotal": true}),
            )
            .await;
        assert_eq!(r["ids"], json!([b, a]));
        assert_eq!(r["total"], json!(2));
        let r = f
            .ok(
                "EmailSubmission/query",
                json!({"filter": {"threadIds": ["T1"], "undoStatus": "final",
                                  "after": "2000-01-01T00:00:00Z"}}),
            )
            .await;
        assert_eq!(r["ids"], json!([a]));
        let r = f
            .ok(
                "EmailSubmission/query",
                json!({"filter": {"before": "2000-01-01T00:00:00Z"}}),
            )
            .await;
        assert_eq!(r["ids"], json!([]));
        let bad = f
            .call(
                "EmailSubmission/query",
                json!({"sort": [{"property": "envelope"}]}),
            )
            .await;
        assert_eq!(bad[0][1]["type"], json!("unsupportedSort"));
        let bad = f
            .call(
                "EmailSubmission/query",
                json!({"filter": {"colour": "red"}}),
            )
            .await;
        assert_eq!(bad[0][1]["type"], json!("invalidArguments"));

        let c = f
            .ok(
                "EmailSubmission/queryChanges",
                json!({"sinceQueryState": q0["queryState"],
                       "sort": [{"property": "sentAt", "isAscending": false}]}),
            )
            .await;
        assert_eq!(c["removed"], json!([]));
        assert_eq!(c["added"].as_array().unwrap().len(), 2);
        assert_eq!(c["newQueryState"], r["queryState"]);
        let bad = f
            .call(
                "EmailSubmission/queryChanges",
                json!({"sinceQueryState": "junk"}),
            )
            .await;
        assert_eq!(bad[0][1]["type"], json!("cannotCalculateChanges"));
    }

    /// A fixture over the fake upstream with a draft from alice in Drafts and a recording
    /// submitter; gives the draft's Email id and the Drafts and Sent mailbox ids.
    async fn with_upstream(
        files_own_copy: bool,
    ) -> (
        Fixture,
        Arc<FakeUpstream>,
        Arc<Recorder>,
        String,
        String,
        String,
    ) {
        let fake = FakeUpstream::new();
        let raw = raw_of(HEADERS);
        fake.deliver("Drafts", &raw, &["$draft", "$seen"]);
        let (mut f, fake) = fixture_with(fake).await;
        let rec = Arc::new(Recorder {
            files_own_copy,
            ..Recorder::default()
        });
        f.account.submitter = Some(rec.clone());
        f.rebuild();
        let sync = f.account.sync.clone().unwrap();
        let drafts = sync.mailbox_id("Drafts").unwrap();
        let sent = sync.mailbox_id("Sent").unwrap();
        let id = email_id(&fingerprint(&raw)).as_str().to_owned();
        (f, fake, rec, id, drafts, sent)
    }

    #[tokio::test]
    async fn on_success_moves_the_draft_and_no_extra_sent_copy_is_filed() {
        let (f, fake, rec, id, drafts, sent) = with_upstream(false).await;
        let r = f
            .call(
                "EmailSubmission/set",
                json!({
                    "create": {"k1": {"identityId": identity(), "emailId": id}},
                    "onSuccessUpdateEmail": {"#k1": {
                        format!("mailboxIds/{drafts}"): null,
                        format!("mailboxIds/{sent}"): true,
                        "keywords/$draft": null
                    }}
                }),
            )
            .await;
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0][1]["created"]["k1"]["id"].is_string());
        assert_eq!(r[1][0], json!("Email/set"));
        assert_eq!(r[1][2], json!("c0"));
        assert_eq!(r[1][1]["updated"], json!({id.clone(): null}), "{r:?}");
        assert_ne!(r[1][1]["oldState"], r[1][1]["newState"]);
        assert_eq!(rec.sent.lock().unwrap().len(), 1);
        let ops = fake.ops();
        assert!(
            !ops.iter().any(|o| matches!(o, WriteOp::Append { .. })),
            "{ops:?}"
        );
        assert!(
            ops.iter()
                .any(|o| matches!(o, WriteOp::Move { to, .. } if to == "Sent"))
        );
        let in_sent = fake.messages("Sent");
        assert_eq!(in_sent.len(), 1);
        assert!(fake.messages("Drafts").is_empty());
        let email = f
            .account
            .sync
            .as_ref()
            .unwrap()
            .email(&ObjectId::new(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(email.keywords(), BTreeSet::from(["$seen".to_owned()]));
    }

    #[tokio::test]
    async fn a_sent_copy_is_filed_unless_the_submitter_does_it() {
        let (f, fake, _, id, _, _) = with_upstream(false).await;
        let r = f
            .call(
                "EmailSubmission/set",
                json!({"create": {"k1": {"identityId": identity(), "emailId": id}},
                       "onSuccessDestroyEmail": ["#k1"]}),
            )
            .await;
        assert_eq!(r[1][1]["destroyed"], json!([id]), "{r:?}");
        let appended: Vec<_> = fake
            .ops()
            .into_iter()
            .filter_map(|o| match o {
                WriteOp::Append {
                    mailbox,
                    raw,
                    keywords,
                    ..
                } => Some((mailbox, raw, keywords)),
                _ => None,
            })
            .collect();
        assert_eq!(appended.len(), 1);
        assert_eq!(appended[0].0, "Sent");
        // The Sent copy keeps Bcc; only what went out lost it.
        assert!(String::from_utf8_lossy(&appended[0].1).contains("Bcc: dave@example.com"));
        assert_eq!(appended[0].2, BTreeSet::from(["$seen".to_owned()]));
        assert!(fake.messages("Drafts").is_empty());

        let (f, fake, _, id, _, _) = with_upstream(true).await;
        let r = submit(&f, json!({"identityId": identity(), "emailId": id})).await;
        assert!(r["created"]["k1"]["id"].is_string());
        assert!(
            !fake
                .ops()
                .iter()
                .any(|o| matches!(o, WriteOp::Append { .. }))
        );
    }

    /// A reply names the Email its In-Reply-To points at; a forward the one its
    /// X-Forwarded-Message-Id or attached message/rfc822 names; the inbox copy is chosen; a
    /// message that points at nothing held has no source.
    #[tokio::test]
    async fn a_reply_or_forward_of_a_held_message_names_it_as_the_source() {
        let fake = FakeUpstream::new();
        fake.deliver(
            "Trash",
            super::super::fake::message("plans", "orig@example.com", "Shall we?"),
            &[],
        );
        let original = fake.deliver(
            "INBOX",
            super::super::fake::message("plans", "orig@example.com", "Shall we?"),
            &["$seen"],
        );
        let head = "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\n";
        let drafts = [
            format!(
                "{head}Subject: Re: plans\r\nMessage-ID: <r1@example.com>\r\n\
                 In-Reply-To: <orig@example.com>\r\nReferences: <orig@example.com>\r\n\r\nYes.\r\n"
            ),
            format!(
                "{head}Subject: Fwd: plans\r\nMessage-ID: <f1@example.com>\r\n\
                 X-Forwarded-Message-Id: <orig@example.com>\r\n\r\nSee below.\r\n"
            ),
            format!(
                "{head}Subject: Fwd: plans\r\nMessage-ID: <f2@example.com>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
                 Content-Type: text/plain\r\n\r\nAttached.\r\n--b\r\n\
                 Content-Type: message/rfc822\r\n\r\nFrom: bob@example.com\r\n\
                 Subject: plans\r\nMessage-ID: <orig@example.com>\r\n\r\nShall we?\r\n--b--\r\n"
            ),
            format!(
                "{head}Subject: Re: other\r\nMessage-ID: <r2@example.com>\r\n\
                 In-Reply-To: <elsewhere@example.com>\r\n\r\nNo.\r\n"
            ),
        ];
        let ids: Vec<String> = drafts
            .iter()
            .map(|raw| {
                fake.deliver("Drafts", raw, &["$draft"]);
                email_id(&fingerprint(raw.as_bytes())).as_str().to_owned()
            })
            .collect();
        let (mut f, _fake) = fixture_with(fake).await;
        let rec = Arc::new(Recorder::default());
        f.account.submitter = Some(rec.clone());
        f.rebuild();
        for id in &ids {
            let r = submit(&f, json!({"identityId": identity(), "emailId": id})).await;
            assert!(r["created"]["k1"]["id"].is_string(), "{r}");
        }
        let inbox = |kind| {
            Some(SendSource {
                kind,
                mailbox: "INBOX".into(),
                uid: original.clone(),
            })
        };
        assert_eq!(
            *rec.sources.lock().unwrap(),
            [
                inbox(SourceKind::Reply),
                inbox(SourceKind::Forward),
                inbox(SourceKind::Forward),
                None
            ]
        );
    }

    /// EAS reports no Message-ID: a reply's original is found by its base subject and the
    /// Message-ID of its raw message, however many newer Emails the account holds.
    #[tokio::test]
    async fn a_reply_names_an_old_original_whose_message_id_the_store_does_not_know() {
        let fake = FakeUpstream::new();
        fake.synthesise_headers();
        let day = 86_400;
        let original = fake.deliver_at(
            "INBOX",
            super::super::fake::message("plans", "orig@example.com", "Shall we?"),
            &[],
            now() - 30 * day,
        );
        // A newer message with the same subject, which is not the original.
        fake.deliver_at(
            "INBOX",
            super::super::fake::message("Re: plans", "other@example.com", "Maybe."),
            &[],
            now() - 20 * day,
        );
        for i in 0..2100 {
            fake.deliver_at(
                "INBOX",
                super::super::fake::message(
                    &format!("news {i}"),
                    &format!("n{i}@example.com"),
                    ".",
                ),
                &[],
                now() - 10 * day + i,
            );
        }
        fake.cannot_store();
        let (mut f, _fake) = fixture_with(fake).await;
        let rec = Arc::new(Recorder::default());
        f.account.submitter = Some(rec.clone());
        f.rebuild();
        let drafts = f
            .account
            .sync
            .as_ref()
            .unwrap()
            .mailbox_id("Drafts")
            .unwrap();
        let r = f
            .ok(
                "Email/set",
                json!({"create": {"d": {
                    "mailboxIds": {drafts: true},
                    "keywords": {"$draft": true},
                    "from": [{"name": "Alice", "email": "alice@example.com"}],
                    "to": [{"email": "bob@example.com"}],
                    "subject": "Re: plans",
                    "inReplyTo": ["orig@example.com"],
                    "bodyValues": {"t": {"value": "Yes."}},
                    "textBody": [{"partId": "t", "type": "text/plain"}],
                }}}),
            )
            .await;
        let draft = r["created"]["d"]["id"].as_str().unwrap().to_owned();
        let r = submit(&f, json!({"identityId": identity(), "emailId": draft})).await;
        assert!(r["created"]["k1"]["id"].is_string(), "{r}");
        assert_eq!(
            *rec.sources.lock().unwrap(),
            [Some(SendSource {
                kind: SourceKind::Reply,
                mailbox: "INBOX".into(),
                uid: original,
            })]
        );
    }

    #[test]
    fn bcc_fields_and_their_folded_lines_go() {
        let raw = b"From: a@b.c\r\nBCC: x@y.z,\r\n  w@y.z\r\nTo: t@u.v\r\nbcc : q@r.s\r\n\r\nBcc: body\r\n";
        assert_eq!(
            strip_bcc(raw),
            b"From: a@b.c\r\nTo: t@u.v\r\n\r\nBcc: body\r\n".to_vec()
        );
        assert_eq!(
            strip_bcc(b"From: a@b.c\nBccx: 1\n"),
            b"From: a@b.c\nBccx: 1\n".to_vec()
        );
    }

    #[test]
    fn the_derived_mail_from_falls_back_to_the_identity() {
        let rec = email(
            "E1",
            "T1",
            "M",
            "1",
            &[],
            0,
            "From: other@example.com\r\nSender: alice@example.com\r\nTo: a@x.y\r\nBcc: a@X.y",
        );
        let env = derive_envelope(&rec, "alice@example.com").unwrap();
        assert_eq!(env.mail_from, "alice@example.com");
        assert_eq!(env.rcpt_to, vec!["a@x.y".to_owned()]);
        let rec = email(
            "E1",
            "T1",
            "M",
            "1",
            &[],
            0,
            "From: Eve <eve@example.com>\r\nTo: a@x.y",
        );
        let env = derive_envelope(&rec, "alice@example.com").unwrap();
        assert_eq!(env.mail_from, "alice@example.com");
    }
}
