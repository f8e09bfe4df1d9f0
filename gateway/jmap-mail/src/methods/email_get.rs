//! Email/get (RFC 8621 §4.2) and Email/parse (§4.9).
//!
//! Metadata and header properties come from the stored [`EmailRecord`] and its raw header
//! block, so a client asking only for them never causes a body fetch. The body properties
//! (`bodyStructure`, `bodyValues`, `textBody`, `htmlBody`, `attachments`) need the raw
//! message: from the sync driver (blob cache, else upstream) or, without one, from the blob
//! cache alone. When it cannot be had the whole call fails with `serverUnavailable` (/get
//! has no per-object error).
//!
//! An EAS record's header block is synthesised from the fields Sync reports
//! ([`EmailRecord::headers_synthesised`]): it has From, To, Cc, Reply-To, Subject and
//! Importance, a Date that is really the arrival time, and nothing else. The properties it
//! cannot answer ([`Prop::needs_real_headers`]: `messageId`, `inReplyTo`, `references`,
//! `sender`, `bcc`, `sentAt`, `headers` and every `header:*`) are then read from the raw
//! message, fetched once per Email through the same path as bodies (so it lands in the blob
//! cache and a later body or header request does not fetch it again); everything else still
//! comes from the record, so a list view of an EAS mailbox fetches nothing. If the message
//! cannot be had, those properties fall back to the record's values and a warning is
//! logged: the call still succeeds, as RFC 8620 /get has no per-object error but notFound.
//!
//! Blob ids are explained in [`crate::body`]; Email/parse reads any of them (an upload, an
//! Email's raw message, a part such as an attached message).

use jmap_engine::standard::{GetRequest, GetResponse};
use jmap_engine::{
    AccountDirectory, Arguments, Engine, ExtraArguments, Handler, HandlerFuture, Id, MethodCall,
    MethodError, MethodOutput, UnsignedInt, UtcDate,
};
use serde_json::{Map, Value, json};
use state::{DataType, ObjectId};

use super::{MAIL, MailAccount, jmap_id, object_id, store_error};
use crate::EmailRecord;
use crate::body::{Body, BodyProperty, ValueOptions};
use crate::header_forms::{self, Form, HeaderProperty, RawHeader};

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    engine.register("Email/get", MAIL, EmailGet);
    engine.register("Email/parse", MAIL, EmailParse);
}

/// Email/get's default `properties` (RFC 8621 §4.2).
const GET_DEFAULT: [&str; 24] = [
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

/// Email/parse's default `properties` (RFC 8621 §4.9).
const PARSE_DEFAULT: [&str; 17] = [
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

/// An Email property.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Prop {
    Id,
    BlobId,
    ThreadId,
    MailboxIds,
    Keywords,
    Size,
    ReceivedAt,
    /// A convenience header property: the last field `name` in `form`.
    Field(&'static str, Form),
    HasAttachment,
    Preview,
    BodyStructure,
    BodyValues,
    TextBody,
    HtmlBody,
    Attachments,
    Headers,
    Header(HeaderProperty),
}

impl Prop {
    fn parse(name: &str) -> Result<Prop, MethodError> {
        Ok(match name {
            "id" => Prop::Id,
            "blobId" => Prop::BlobId,
            "threadId" => Prop::ThreadId,
            "mailboxIds" => Prop::MailboxIds,
            "keywords" => Prop::Keywords,
            "size" => Prop::Size,
            "receivedAt" => Prop::ReceivedAt,
            "messageId" => Prop::Field("Message-ID", Form::MessageIds),
            "inReplyTo" => Prop::Field("In-Reply-To", Form::MessageIds),
            "references" => Prop::Field("References", Form::MessageIds),
            "sender" => Prop::Field("Sender", Form::Addresses),
            "from" => Prop::Field("From", Form::Addresses),
            "to" => Prop::Field("To", Form::Addresses),
            "cc" => Prop::Field("Cc", Form::Addresses),
            "bcc" => Prop::Field("Bcc", Form::Addresses),
            "replyTo" => Prop::Field("Reply-To", Form::Addresses),
            "subject" => Prop::Field("Subject", Form::Text),
            "sentAt" => Prop::Field("Date", Form::Date),
            "hasAttachment" => Prop::HasAttachment,
            "preview" => Prop::Preview,
            "bodyStructure" => Prop::BodyStructure,
            "bodyValues" => Prop::BodyValues,
            "textBody" => Prop::TextBody,
            "htmlBody" => Prop::HtmlBody,
            "attachments" => Prop::Attachments,
            "headers" => Prop::Headers,
            other => match HeaderProperty::parse(other).map_err(MethodError::invalid_arguments)? {
                Some(h) => Prop::Header(h),
                None => {
                    return Err(MethodError::invalid_arguments(format!(
                        "unknown property '{other}'"
                    )));
                }
            },
        })
    }

    /// Read from the header section (the record's stored header block).
    fn needs_headers(&self) -> bool {
        matches!(self, Prop::Field(..) | Prop::Headers | Prop::Header(_))
    }

    /// Needs the message's own header section: what a synthesised header block (EAS) lacks
    /// (Message-ID, In-Reply-To, References, Sender, Bcc), gets wrong (Date is the arrival
    /// time) or cannot give in raw form (`headers`, `header:*`: the synthesised values are
    /// decoded and re-folded). From, To, Cc, Reply-To and Subject are EAS's own fields.
    fn needs_real_headers(&self) -> bool {
        match self {
            Prop::Field(name, _) => matches!(
                *name,
                "Message-ID" | "In-Reply-To" | "References" | "Sender" | "Bcc" | "Date"
            ),
            Prop::Headers | Prop::Header(_) => true,
            _ => false,
        }
    }

    fn needs_body(&self) -> bool {
        matches!(
            self,
            Prop::BodyStructure
                | Prop::BodyValues
                | Prop::TextBody
                | Prop::HtmlBody
                | Prop::Attachments
        )
    }
}

/// The requested properties as (response key, property); `with_id` adds `id` as /get must.
fn properties(
    list: Option<&[String]>,
    default: &[&str],
    with_id: bool,
) -> Result<Vec<(String, Prop)>, MethodError> {
    let names: Vec<String> = match list {
        Some(l) => l.to_vec(),
        None => default.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut out: Vec<(String, Prop)> = Vec::with_capacity(names.len() + 1);
    if with_id && !names.iter().any(|n| n == "id") {
        out.push(("id".into(), Prop::Id));
    }
    for name in names {
        let prop = Prop::parse(&name)?;
        if !out.iter().any(|(k, _)| *k == name) {
            out.push((name, prop));
        }
    }
    Ok(out)
}

/// The body arguments Email/get and Email/parse share.
#[derive(Debug, Clone, Default, PartialEq)]
struct BodyArgs {
    body_properties: Option<Vec<String>>,
    values: ValueOptions,
}

impl ExtraArguments for BodyArgs {
    fn take(args: &mut Arguments) -> Result<Self, MethodError> {
        Ok(BodyArgs {
            body_properties: args.optional("bodyProperties")?,
            values: ValueOptions {
                fetch_text: args.flag("fetchTextBodyValues", false)?,
                fetch_html: args.flag("fetchHTMLBodyValues", false)?,
                fetch_all: args.flag("fetchAllBodyValues", false)?,
                max_bytes: args
                    .optional::<UnsignedInt>("maxBodyValueBytes")?
                    .map_or(0, UnsignedInt::get),
            },
        })
    }
}

/// What one Email object is rendered from.
struct Source<'a> {
    /// The stored record (Email/get); `None` for Email/parse.
    record: Option<&'a EmailRecord>,
    headers: &'a [RawHeader],
    /// The message's own header section when `headers` is a synthesised stand-in and the
    /// raw message was read: answers the properties that [`Prop::needs_real_headers`].
    real_headers: Option<&'a [RawHeader]>,
    body: Option<&'a Body>,
    blob_id: &'a str,
    size: u64,
}

impl Source<'_> {
    /// The header fields `prop` is answered from.
    fn headers_for(&self, prop: &Prop) -> &[RawHeader] {
        match self.real_headers {
            Some(real) if prop.needs_real_headers() => real,
            _ => self.headers,
        }
    }
}

fn render(
    props: &[(String, Prop)],
    body_props: &[BodyProperty],
    values: ValueOptions,
    src: &Source<'_>,
) -> Map<String, Value> {
    let mut o = Map::new();
    let rec = src.record;
    for (key, prop) in props {
        let headers = src.headers_for(prop);
        let v = match prop {
            Prop::Id => rec.map_or(Value::Null, |r| json!(r.id)),
            Prop::BlobId => json!(src.blob_id),
            Prop::ThreadId => rec.map_or(Value::Null, |r| json!(r.thread_id)),
            Prop::MailboxIds => rec.map_or(Value::Null, |r| {
                Value::Object(
                    r.mailbox_ids()
                        .map(|m| (m.to_owned(), json!(true)))
                        .collect(),
                )
            }),
            Prop::Keywords => rec.map_or(Value::Null, |r| {
                Value::Object(
                    r.keywords()
                        .into_iter()
                        .map(|k| (k.to_ascii_lowercase(), json!(true)))
                        .collect(),
                )
            }),
            Prop::Size => json!(src.size),
            Prop::ReceivedAt => rec.map_or(Value::Null, |r| {
                json!(UtcDate::from_timestamp(r.received_at).as_str())
            }),
            Prop::Field(name, form) => header_forms::last(headers, name, *form),
            Prop::HasAttachment => match (rec, src.body) {
                (Some(r), _) => json!(r.has_attachment),
                (None, Some(b)) => json!(b.has_attachment()),
                (None, None) => json!(false),
            },
            Prop::Preview => match (rec, src.body) {
                (Some(r), _) => json!(r.preview),
                (None, Some(b)) => json!(b.preview()),
                (None, None) => json!(""),
            },
            Prop::Headers => header_forms::headers_json(headers),
            Prop::Header(h) => h.value(headers),
            Prop::BodyStructure => src.body.map_or(Value::Null, |b| b.part_json(0, body_props)),
            Prop::BodyValues => src.body.map_or(Value::Null, |b| b.values_json(values)),
            Prop::TextBody => src
                .body
                .map_or(Value::Null, |b| b.list_json(&b.text_body, body_props)),
            Prop::HtmlBody => src
                .body
                .map_or(Value::Null, |b| b.list_json(&b.html_body, body_props)),
            Prop::Attachments => src
                .body
                .map_or(Value::Null, |b| b.list_json(&b.attachments, body_props)),
        };
        o.insert(key.clone(), v);
    }
    o
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> MethodError {
    MethodError::server_unavailable().with_description(format!("{what}: {e}"))
}

/// The raw message of a stored Email: a local draft's from the store, else through the sync
/// driver when there is one (blob cache, else upstream), else from the blob cache alone.
async fn raw_message<A: MailAccount>(account: &A, id: &ObjectId) -> Result<Vec<u8>, MethodError> {
    if let Some(raw) = super::local::raw(account, id.as_str())
        .await
        .map_err(store_error)?
    {
        return Ok(raw);
    }
    if let Some(sync) = account.sync() {
        return sync.raw_message(id).await.map_err(|e| {
            unavailable(
                &format!("the message of Email {id} could not be fetched"),
                e,
            )
        });
    }
    account
        .store()
        .blob_get(account.store_id(), id.as_bytes().to_vec())
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            unavailable(
                &format!("the message of Email {id} could not be fetched"),
                "no upstream connection and not cached",
            )
        })
}

/// The header section of the raw message of an Email whose stored header block is
/// synthesised, or `None` (logged) when the message cannot be had: the caller then answers
/// from the record, since the rest of the Email, and of the call, is still good.
/// How many messages one Email/get fetches from upstream at once.
const FETCH_CONCURRENCY: usize = 4;

/// The raw messages of `ids`, fetched a few at a time (one after another, 50 uncached
/// messages cost 50 upstream round trips in a row). Each id gets its own result.
async fn fetch_raw_messages<A: MailAccount>(
    account: &A,
    ids: Vec<ObjectId>,
) -> std::collections::HashMap<ObjectId, Result<Vec<u8>, MethodError>> {
    let mut out = std::collections::HashMap::with_capacity(ids.len());
    let mut pending = ids.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < FETCH_CONCURRENCY
            && let Some(id) = pending.next()
        {
            let account = account.clone();
            running.spawn(async move {
                let raw = raw_message(&account, &id).await;
                (id, raw)
            });
        }
        match running.join_next().await {
            Some(Ok((id, raw))) => {
                out.insert(id, raw);
            }
            Some(Err(e)) => tracing::warn!("a message fetch task failed: {e}"),
            None => return out,
        }
    }
}

/// The header section of a fetched message, for an Email whose stored header block is
/// synthesised; `None` (the synthesised values stand) when the fetch failed.
fn real_header_section(id: &ObjectId, raw: Result<Vec<u8>, MethodError>) -> Option<Vec<RawHeader>> {
    match raw {
        Ok(raw) => Some(header_forms::headers_of_block(&raw)),
        Err(e) => {
            tracing::warn!(
                email = %id,
                "Message-ID, Date and other header fields come from the synthesised header \
                 block: {e}"
            );
            None
        }
    }
}

/// The octets of `blob_id` for Email/parse, or `None` when there is no such blob (see
/// [`super::read_blob`] for the blob ids an account answers).
async fn blob_bytes<A: MailAccount>(
    account: &A,
    blob_id: &str,
) -> Result<Option<Vec<u8>>, MethodError> {
    super::read_blob(account, blob_id)
        .await
        .map(|b| b.map(|d| d.bytes))
        .map_err(super::blob_error)
}

/// Email/get.
#[derive(Debug, Clone, Copy)]
struct EmailGet;

impl<D> Handler<D> for EmailGet
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let request = GetRequest::<BodyArgs>::from_arguments(call.arguments.clone())?;
            let props = properties(request.properties.as_deref(), &GET_DEFAULT, true)?;
            let body_props = BodyProperty::parse_list(request.extra.body_properties.as_deref())
                .map_err(MethodError::invalid_arguments)?;
            let account = call.account()?;
            let a = account.store_id();
            let ids: Vec<Id> = match request.resolved_ids(call.created_ids)? {
                Some(ids) => ids,
                None => {
                    let (_, all) = account
                        .store()
                        .run(move |s| s.ids(a, DataType::Email))
                        .await
                        .map_err(store_error)?;
                    request.check_fetch_all(all.len(), call.limits())?;
                    all.iter().map(jmap_id).collect::<Result<_, _>>()?
                }
            };
            let mut not_found = Vec::new();
            let mut wanted = Vec::new();
            for id in ids {
                match object_id(&id) {
                    Some(oid) => wanted.push((id, oid)),
                    None => not_found.push(id),
                }
            }
            let (state, rows) = account
                .store()
                .get_many(
                    a,
                    DataType::Email,
                    wanted.iter().map(|(_, o)| o.clone()).collect(),
                )
                .await
                .map_err(store_error)?;
            let needs_body = props.iter().any(|(_, p)| p.needs_body());
            // A list view asking only for stored metadata parses no header section.
            let needs_headers = props.iter().any(|(_, p)| p.needs_headers());
            let needs_real_headers = props.iter().any(|(_, p)| p.needs_real_headers());
            let mut found = Vec::new();
            for ((id, oid), row) in wanted.into_iter().zip(rows) {
                let Some(bytes) = row else {
                    not_found.push(id);
                    continue;
                };
                let record = EmailRecord::from_bytes(&bytes).ok_or_else(|| {
                    MethodError::server_fail("a stored Email record is unreadable")
                })?;
                found.push((oid, record));
            }
            // Only a synthesised header block needs the message's own; a body needs it anyway.
            let wants_real = |r: &EmailRecord| needs_real_headers && r.headers_synthesised();
            let mut raws = fetch_raw_messages(
                account,
                found
                    .iter()
                    .filter(|(_, r)| needs_body || wants_real(r))
                    .map(|(oid, _)| oid.clone())
                    .collect(),
            )
            .await;
            let mut list = Vec::new();
            for (oid, record) in found {
                let headers = if needs_headers {
                    header_forms::headers_of_block(record.header_bytes())
                } else {
                    Vec::new()
                };
                let mut raw = raws.remove(&oid);
                let body = if needs_body {
                    let raw = raw
                        .take()
                        .unwrap_or_else(|| {
                            Err(MethodError::server_fail("a message went unfetched"))
                        })
                        .inspect_err(|e| tracing::warn!("{e}"))?;
                    Some(Body::parse_lenient(&raw, &record.id))
                } else {
                    None
                };
                let wants_real = wants_real(&record);
                let fetched = match (&body, raw) {
                    (None, Some(raw)) if wants_real => real_header_section(&oid, raw),
                    _ => None,
                };
                let real_headers = match &body {
                    Some(b) if wants_real => Some(b.headers()),
                    _ => fetched.as_deref(),
                };
                let src = Source {
                    record: Some(&record),
                    headers: &headers,
                    real_headers,
                    body: body.as_ref(),
                    blob_id: &record.id,
                    size: record.size,
                };
                list.push(render(&props, &body_props, request.extra.values, &src));
            }
            let response = GetResponse {
                account_id: request.account_id,
                state: state.to_string(),
                list,
                not_found,
            };
            Ok(MethodOutput::new(
                call.name.clone(),
                response.to_arguments(),
            ))
        })
    }
}

/// Email/parse.
#[derive(Debug, Clone, Copy)]
struct EmailParse;

impl<D> Handler<D> for EmailParse
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let mut args = Arguments::new(call.arguments.clone());
            let account_id: Id = args.required("accountId")?;
            let blob_ids: Vec<Id> = args.required("blobIds")?;
            let list: Option<Vec<String>> = args.optional("properties")?;
            let extra = BodyArgs::take(&mut args)?;
            args.finish()?;
            let max = call.limits().max_objects_in_get.get();
            if u64::try_from(blob_ids.len()).unwrap_or(u64::MAX) > max {
                return Err(MethodError::request_too_large(format!(
                    "{} blobIds, more than maxObjectsInGet ({max})",
                    blob_ids.len()
                )));
            }
            let props = properties(list.as_deref(), &PARSE_DEFAULT, false)?;
            let body_props = BodyProperty::parse_list(extra.body_properties.as_deref())
                .map_err(MethodError::invalid_arguments)?;
            let account = call.account()?;
            let mut parsed = Map::new();
            let mut not_parsable: Vec<Id> = Vec::new();
            let mut not_found: Vec<Id> = Vec::new();
            for blob_id in blob_ids {
                if parsed.contains_key(blob_id.as_str())
                    || not_parsable.contains(&blob_id)
                    || not_found.contains(&blob_id)
                {
                    continue;
                }
                let Some(raw) = blob_bytes(account, blob_id.as_str()).await? else {
                    not_found.push(blob_id);
                    continue;
                };
                let body = match Body::parse(&raw, blob_id.as_str()) {
                    Some(b) if !b.headers().is_empty() => b,
                    _ => {
                        not_parsable.push(blob_id);
                        continue;
                    }
                };
                let src = Source {
                    record: None,
                    headers: body.headers(),
                    real_headers: None,
                    body: Some(&body),
                    blob_id: blob_id.as_str(),
                    size: raw.len() as u64,
                };
                let email = render(&props, &body_props, extra.values, &src);
                parsed.insert(blob_id.into_string(), Value::Object(email));
            }
            let mut out = Map::new();
            out.insert("accountId".into(), json!(account_id));
            out.insert(
                "parsed".into(),
                if parsed.is_empty() {
                    Value::Null
                } else {
                    Value::Object(parsed)
                },
            );
            let ids_or_null = |v: Vec<Id>| if v.is_empty() { Value::Null } else { json!(v) };
            out.insert("notParsable".into(), ids_or_null(not_parsable));
            out.insert("notFound".into(), ids_or_null(not_found));
            Ok(MethodOutput::new(call.name.clone(), out))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use crate::methods::testing::{Fixture, email, mailbox};

    const HEADERS: &str = "From: Joe Bloggs <joe@example.com>\r\nTo: a@example.com, Friends: b@example.com;\r\n\
Subject: =?utf-8?q?Dinner_on_Thursday=3F?=\r\nDate: Sun, 13 Oct 2013 22:12:00 +0800\r\n\
Message-ID: <m1@example.com>\r\nList-Post: <mailto:partytime@lists.example.com>\r\nX-Thing: one\r\nX-Thing: two";

    const BODY: &str = "Content-Type: multipart/alternative; boundary=x\r\n\r\n\
--x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello there.\r\n\
--x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hello <b>there</b>.</p></body></html>\r\n\
--x--\r\n";

    /// A fixture with mailbox `Mi` and Email `E1` in it; the raw message is in the blob
    /// cache only when `cached`.
    async fn fixture(cached: bool) -> Fixture {
        let f = Fixture::new();
        f.put_mailbox(&mailbox("Mi", "INBOX", Some("inbox"))).await;
        let mut e = email(
            "E1",
            "T1",
            "Mi",
            "7",
            &["$seen", "$Flagged"],
            1381673520,
            HEADERS,
        );
        e.preview = "Hello there.".into();
        let raw = format!("{HEADERS}\r\n{BODY}");
        e.size = raw.len() as u64;
        f.put_email(&e).await;
        if cached {
            f.account
                .store
                .blob_put(f.account.id, b"E1".to_vec(), raw.into_bytes())
                .await
                .unwrap();
        }
        f
    }

    async fn error_type(f: &Fixture, method: &str, args: Value) -> String {
        let r = f.call(method, args).await;
        assert_eq!(r[0][0], "error", "{r:?}");
        r[0][1]["type"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn metadata_and_headers_without_fetching_the_body() {
        // Nothing cached and no upstream: only header and metadata properties can work.
        let f = fixture(false).await;
        let r = f
            .ok(
                "Email/get",
                json!({
                    "ids": ["E1"],
                    "properties": ["blobId", "threadId", "mailboxIds", "keywords", "size",
                        "receivedAt", "messageId", "inReplyTo", "references", "from", "to",
                        "subject", "sentAt", "hasAttachment", "preview", "headers",
                        "header:x-thing:all", "header:X-Thing", "header:To:asGroupedAddresses",
                        "header:Subject:asRaw", "header:Date:asDate"]
                }),
            )
            .await;
        let e = &r["list"][0];
        assert_eq!(e["id"], "E1");
        assert_eq!(e["blobId"], "E1");
        assert_eq!(e["threadId"], "T1");
        assert_eq!(e["mailboxIds"], json!({ "Mi": true }));
        assert_eq!(e["keywords"], json!({ "$seen": true, "$flagged": true }));
        assert_eq!(e["receivedAt"], "2013-10-13T14:12:00Z");
        assert_eq!(e["sentAt"], "2013-10-13T22:12:00+08:00");
        assert_eq!(e["header:Date:asDate"], "2013-10-13T22:12:00+08:00");
        assert_eq!(e["messageId"], json!(["m1@example.com"]));
        assert_eq!(e["inReplyTo"], Value::Null);
        assert_eq!(e["references"], Value::Null);
        assert_eq!(
            e["from"],
            json!([{ "name": "Joe Bloggs", "email": "joe@example.com" }])
        );
        assert_eq!(
            e["to"],
            json!([{ "name": null, "email": "a@example.com" }, { "name": null, "email": "b@example.com" }])
        );
        assert_eq!(
            e["header:To:asGroupedAddresses"],
            json!([
                { "name": null, "addresses": [{ "name": null, "email": "a@example.com" }] },
                { "name": "Friends", "addresses": [{ "name": null, "email": "b@example.com" }] }
            ])
        );
        assert_eq!(e["subject"], "Dinner on Thursday?");
        assert_eq!(
            e["header:Subject:asRaw"],
            " =?utf-8?q?Dinner_on_Thursday=3F?="
        );
        assert_eq!(e["header:x-thing:all"], json!([" one", " two"]));
        assert_eq!(e["header:X-Thing"], " two");
        assert_eq!(e["hasAttachment"], false);
        assert_eq!(e["preview"], "Hello there.");
        assert_eq!(e["headers"].as_array().unwrap().len(), 8);
        assert_eq!(
            e["headers"][0],
            json!({ "name": "From", "value": " Joe Bloggs <joe@example.com>" })
        );
        assert!(e.get("textBody").is_none());

        // A body property needs the message, which cannot be had.
        assert_eq!(
            error_type(
                &f,
                "Email/get",
                json!({ "ids": ["E1"], "properties": ["textBody"] })
            )
            .await,
            "serverUnavailable"
        );
        assert_eq!(
            error_type(&f, "Email/get", json!({ "ids": ["E1"] })).await,
            "serverUnavailable"
        );
    }

    /// The Email/get example of RFC 8621 §4.2.
    #[tokio::test]
    async fn rfc_example() {
        let f = fixture(true).await;
        let r = f
            .ok(
                "Email/get",
                json!({
                    "ids": ["f123u456", "E1"],
                    "properties": ["threadId", "mailboxIds", "from", "subject", "receivedAt",
                        "header:List-POST:asURLs", "htmlBody", "bodyValues"],
                    "bodyProperties": ["partId", "blobId", "size", "type"],
                    "fetchHTMLBodyValues": true,
                    "maxBodyValueBytes": 22
                }),
            )
            .await;
        assert_eq!(r["accountId"], "a1");
        assert!(r["state"].is_string());
        assert_eq!(r["notFound"], json!(["f123u456"]));
        let e = &r["list"][0];
        assert_eq!(e.as_object().unwrap().len(), 9);
        assert_eq!(
            e["header:List-POST:asURLs"],
            json!(["mailto:partytime@lists.example.com"])
        );
        assert_eq!(
            e["from"],
            json!([{ "name": "Joe Bloggs", "email": "joe@example.com" }])
        );
        let html = "<html><body><p>Hello <b>there</b>.</p></body></html>";
        assert_eq!(
            e["htmlBody"],
            json!([{ "partId": "2", "blobId": "BE1_2", "size": html.len(), "type": "text/html" }])
        );
        assert_eq!(
            e["bodyValues"],
            json!({ "2": { "value": "<html><body><p>Hello ", "isEncodingProblem": false, "isTruncated": true } })
        );
    }

    #[tokio::test]
    async fn default_properties_and_body_lists() {
        let f = fixture(true).await;
        let r = f
            .ok(
                "Email/get",
                json!({ "ids": null, "fetchTextBodyValues": true }),
            )
            .await;
        assert_eq!(r["list"].as_array().unwrap().len(), 1);
        let e = &r["list"][0];
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 24, "{keys:?}");
        assert_eq!(e["textBody"][0]["partId"], "1");
        assert_eq!(e["textBody"][0]["charset"], "utf-8");
        assert_eq!(e["textBody"][0]["name"], Value::Null);
        assert_eq!(e["htmlBody"][0]["partId"], "2");
        assert_eq!(e["attachments"], json!([]));
        assert_eq!(
            e["bodyValues"],
            json!({ "1": { "value": "Hello there.", "isEncodingProblem": false, "isTruncated": false } })
        );

        let r = f
            .ok(
                "Email/get",
                json!({ "ids": ["E1"], "properties": ["bodyStructure"],
                        "bodyProperties": ["type", "subParts", "header:Content-Type:asText"] }),
            )
            .await;
        assert_eq!(
            r["list"][0]["bodyStructure"],
            json!({
                "type": "multipart/alternative",
                "header:Content-Type:asText": "multipart/alternative; boundary=x",
                "subParts": [
                    { "type": "text/plain", "subParts": null, "header:Content-Type:asText": "text/plain; charset=utf-8" },
                    { "type": "text/html", "subParts": null, "header:Content-Type:asText": "text/html; charset=utf-8" }
                ]
            })
        );
    }

    /// Bodies of many uncached Emails are fetched a few at a time, not one after another,
    /// and each Email still gets its own body, in the order asked.
    #[tokio::test]
    async fn bodies_are_fetched_a_few_at_a_time_in_order() {
        use crate::email_id;
        use crate::methods::fake::{FakeUpstream, fingerprint, fixture_with, message};

        let fake = FakeUpstream::new();
        let raws: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                message(
                    &format!("M{i}"),
                    &format!("m{i}@example.com"),
                    &format!("body {i}"),
                )
            })
            .collect();
        for raw in &raws {
            fake.deliver_at("INBOX", raw, &[], 1_704_103_200);
        }
        let (f, fake) = fixture_with(fake).await;
        f.account.sync.clone().unwrap().sync_all().await.unwrap();
        fake.set_fetch_delay(std::time::Duration::from_millis(20));
        let ids: Vec<String> = raws
            .iter()
            .map(|raw| email_id(&fingerprint(raw)).as_str().to_owned())
            .collect();
        let got = f
            .ok(
                "Email/get",
                json!({ "ids": ids, "properties": ["subject", "bodyValues", "textBody"],
                        "fetchTextBodyValues": true }),
            )
            .await;
        let list = got["list"].as_array().unwrap();
        assert_eq!(list.len(), 10, "{got}");
        for (i, e) in list.iter().enumerate() {
            assert_eq!(e["subject"], format!("M{i}"));
            let part = e["textBody"][0]["partId"].as_str().unwrap();
            let text = e["bodyValues"][part]["value"].as_str().unwrap();
            assert!(text.starts_with(&format!("body {i}")), "{e}");
        }
        assert_eq!(fake.fetches(), 10);
        let most = fake.max_fetches_in_flight();
        assert!(
            (2..=super::FETCH_CONCURRENCY).contains(&most),
            "{most} at once"
        );
    }

    /// An EAS-like account: the synced header block is synthesised, so Message-ID and the
    /// rest come from the raw message, fetched once and only when such a property is asked.
    #[tokio::test]
    async fn a_synthesised_header_block_is_completed_from_the_raw_message() {
        use crate::email_id;
        use crate::methods::fake::{FakeUpstream, fingerprint, fixture_with, message};

        const RECEIVED: i64 = 1_704_103_200; // 1 Jan 2024 10:00 UTC
        let fake = FakeUpstream::new();
        // A message synced with its own header section, as from IMAP.
        let plain = message("Plain", "plain@example.com", "From IMAP.");
        fake.deliver_at("INBOX", &plain, &[], RECEIVED);
        let (f, fake) = fixture_with(fake).await;
        let sync = f.account.sync.clone().unwrap();
        fake.synthesise_headers();
        let reply = "From: Bob <bob@example.com>\r\nSender: List <list@example.com>\r\n\
To: alice@example.com\r\nSubject: Re: plans\r\nDate: Tue, 2 Jan 2024 08:30:00 +0100\r\n\
Message-ID: <r2@example.com>\r\nIn-Reply-To: <r1@example.com>\r\n\
References: <r0@example.com>\r\n <r1@example.com>\r\nX-Tag: real\r\n\r\nSee you.\r\n";
        let gone = message("Gone", "gone@example.com", "Expunged unseen.");
        fake.deliver_at("INBOX", reply, &[], RECEIVED);
        let gone_uid = fake.deliver_at("INBOX", &gone, &[], RECEIVED);
        sync.sync_all().await.unwrap();
        let [plain_id, reply_id, gone_id] = [plain.as_slice(), reply.as_bytes(), gone.as_slice()]
            .map(|raw| email_id(&fingerprint(raw)).as_str().to_owned());

        // A list view of all three, and every header property of the complete one: no fetch.
        let list = f
            .ok(
                "Email/get",
                json!({ "ids": [&plain_id, &reply_id, &gone_id],
                        "properties": ["subject", "from", "to", "cc", "replyTo", "preview",
                            "receivedAt", "keywords", "mailboxIds", "threadId", "size",
                            "hasAttachment", "blobId"] }),
            )
            .await;
        assert_eq!(list["list"].as_array().unwrap().len(), 3, "{list}");
        assert_eq!(list["list"][1]["subject"], "Re: plans");
        assert_eq!(
            list["list"][1]["from"],
            json!([{ "name": "Bob", "email": "bob@example.com" }])
        );
        let plain_headers = f
            .ok(
                "Email/get",
                json!({ "ids": [&plain_id],
                        "properties": ["messageId", "sentAt", "headers", "header:Subject"] }),
            )
            .await;
        assert_eq!(
            plain_headers["list"][0]["messageId"],
            json!(["plain@example.com"])
        );
        assert_eq!(fake.fetches(), 0, "nothing fetched for a list view");

        // The synthesised block has none of these; the raw message has them all.
        let props = json!([
            "messageId",
            "inReplyTo",
            "references",
            "sender",
            "bcc",
            "sentAt",
            "header:X-Tag",
            "header:Date:asDate",
            "subject",
            "from"
        ]);
        let got = f
            .ok(
                "Email/get",
                json!({ "ids": [&reply_id], "properties": props.clone() }),
            )
            .await;
        let e = &got["list"][0];
        assert_eq!(e["messageId"], json!(["r2@example.com"]));
        assert_eq!(e["inReplyTo"], json!(["r1@example.com"]));
        assert_eq!(e["references"], json!(["r0@example.com", "r1@example.com"]));
        assert_eq!(
            e["sender"],
            json!([{ "name": "List", "email": "list@example.com" }])
        );
        assert_eq!(e["bcc"], Value::Null);
        assert_eq!(e["sentAt"], "2024-01-02T08:30:00+01:00");
        assert_eq!(e["header:Date:asDate"], "2024-01-02T08:30:00+01:00");
        assert_eq!(e["header:X-Tag"], " real");
        assert_eq!(e["subject"], "Re: plans");
        assert_eq!(fake.fetches(), 1);

        // The message is in the blob cache now: neither headers nor the body fetch again.
        let again = f
            .ok(
                "Email/get",
                json!({ "ids": [&reply_id], "properties": props.clone() }),
            )
            .await;
        assert_eq!(again["list"], got["list"]);
        let with_body = f
            .ok(
                "Email/get",
                json!({ "ids": [&reply_id], "fetchTextBodyValues": true,
                        "properties": ["references", "textBody", "bodyValues"] }),
            )
            .await;
        assert_eq!(
            with_body["list"][0]["references"],
            json!(["r0@example.com", "r1@example.com"])
        );
        assert_eq!(
            with_body["list"][0]["bodyValues"]["1"]["value"],
            "See you.\n"
        );
        assert_eq!(fake.fetches(), 1);

        // Expunged upstream behind the gateway's back: the record's values, and the call
        // (with the other Email in it) still succeeds.
        fake.expunge("INBOX", &gone_uid);
        let fallback = f
            .ok(
                "Email/get",
                json!({ "ids": [&gone_id, &reply_id],
                        "properties": ["messageId", "sentAt", "subject"] }),
            )
            .await;
        let g = &fallback["list"][0];
        assert_eq!(g["messageId"], Value::Null);
        assert_eq!(g["sentAt"], "2024-01-01T10:00:00Z");
        assert_eq!(g["subject"], "Gone");
        assert_eq!(fallback["list"][1]["messageId"], json!(["r2@example.com"]));
        assert_eq!(fake.fetches(), 2);
    }

    #[tokio::test]
    async fn bad_arguments() {
        let f = fixture(true).await;
        for args in [
            json!({ "ids": ["E1"], "properties": ["nope"] }),
            json!({ "ids": ["E1"], "properties": ["header:From:asDate"] }),
            json!({ "ids": ["E1"], "properties": ["header:Subject:asText:all:more"] }),
            json!({ "ids": ["E1"], "bodyProperties": ["nope"] }),
            json!({ "ids": ["E1"], "fetchTextBodyValues": "yes" }),
            json!({ "ids": ["E1"], "maxBodyValueBytes": -1 }),
            json!({ "ids": ["E1"], "unknownArgument": 1 }),
        ] {
            assert_eq!(
                error_type(&f, "Email/get", args.clone()).await,
                "invalidArguments",
                "{args}"
            );
        }
        // Unknown ids are not found; a repeated id is answered once.
        let r = f
            .ok(
                "Email/get",
                json!({ "ids": ["E1", "Enope", "E1"], "properties": ["id"] }),
            )
            .await;
        assert_eq!(r["list"], json!([{ "id": "E1" }]));
        assert_eq!(r["notFound"], json!(["Enope"]));
    }

    #[tokio::test]
    async fn email_parse() {
        let f = fixture(true).await;
        let attached = "From: =?iso-8859-1?q?J=F6rg?= <jorg@example.com>\r\nSubject: =?utf-8?b?R3LDvMOfZQ==?=\r\n\
Date: Mon, 1 Jan 2024 09:00:00 -0500\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 at nine.\r\n";
        let outer = format!(
            "From: a@example.com\r\nSubject: fwd\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n\
--o\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n\
--o\r\nContent-Type: message/rfc822\r\n\r\n{attached}\r\n--o--\r\n"
        );
        let store = &f.account.store;
        store
            .blob_put(f.account.id, b"Gup1".to_vec(), outer.into_bytes())
            .await
            .unwrap();
        store
            .blob_put(f.account.id, b"Gjunk".to_vec(), Vec::new())
            .await
            .unwrap();

        let r = f
            .ok(
                "Email/parse",
                json!({ "blobIds": ["Gup1", "Gmissing", "Gjunk"], "fetchAllBodyValues": true }),
            )
            .await;
        assert_eq!(r["accountId"], "a1");
        assert_eq!(r["notFound"], json!(["Gmissing"]));
        assert_eq!(r["notParsable"], json!(["Gjunk"]));
        let e = &r["parsed"]["Gup1"];
        assert_eq!(e["subject"], "fwd");
        assert_eq!(e["hasAttachment"], true);
        assert_eq!(e["preview"], "See below.");
        assert_eq!(e["attachments"][0]["type"], "message/rfc822");
        assert_eq!(e["attachments"][0]["blobId"], "BGup1_2");
        assert!(e.get("id").is_none() && e.get("mailboxIds").is_none());

        // The attached message, by its part blobId.
        let r = f
            .ok(
                "Email/parse",
                json!({
                    "blobIds": ["BGup1_2"],
                    "properties": ["id", "blobId", "threadId", "mailboxIds", "keywords",
                        "receivedAt", "size", "from", "subject", "sentAt", "textBody", "bodyValues"],
                    "fetchTextBodyValues": true
                }),
            )
            .await;
        let e = &r["parsed"]["BGup1_2"];
        for null in ["id", "threadId", "mailboxIds", "keywords", "receivedAt"] {
            assert_eq!(e[null], Value::Null, "{null}");
        }
        assert_eq!(e["blobId"], "BGup1_2");
        assert_eq!(e["size"], attached.len());
        assert_eq!(
            e["from"],
            json!([{ "name": "Jörg", "email": "jorg@example.com" }])
        );
        assert_eq!(e["subject"], "Grüße");
        assert_eq!(e["sentAt"], "2024-01-01T09:00:00-05:00");
        assert_eq!(e["textBody"][0]["blobId"], "BBGup1_2_1");
        assert_eq!(
            e["bodyValues"]["1"],
            json!({ "value": "Café at nine.\n", "isEncodingProblem": false, "isTruncated": false })
        );
        assert_eq!(r["notFound"], Value::Null);
        assert_eq!(r["notParsable"], Value::Null);

        // A stored Email's own blobId parses too.
        let r = f
            .ok(
                "Email/parse",
                json!({ "blobIds": ["E1"], "properties": ["subject"] }),
            )
            .await;
        assert_eq!(
            r["parsed"]["E1"],
            json!({ "subject": "Dinner on Thursday?" })
        );

        assert_eq!(
            error_type(
                &f,
                "Email/parse",
                json!({ "blobIds": ["E1"], "properties": ["header:To:asDate"] })
            )
            .await,
            "invalidArguments"
        );
        assert_eq!(
            error_type(&f, "Email/parse", json!({})).await,
            "invalidArguments"
        );
    }
}
