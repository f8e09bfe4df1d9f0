//! Local drafts: Emails kept by the gateway alone, for accounts whose server cannot store a
//! message (EAS 14.1 has no Sync Add for email, so `WriteOp::Append` is
//! `UpstreamError::Unsupported`). Without them such an account could not send: JMAP sends
//! an Email that Email/set created first.
//!
//! - **Created** by Email/set create when the append into the first target mailbox is
//!   refused as Unsupported (Email/import and Email/copy keep their SetError). The record
//!   is committed straight to the store, with one copy per target mailbox at a *local uid*
//!   (`local:` and 32 hex digits, see [`is_local_uid`]): IMAP uids are numbers and EAS
//!   ServerIds are the server's (`<collection>:<item>` or plain numbers), so no upstream
//!   produces one.
//! - **Id**: [`crate::email_id`] of the fingerprint `local:` + SHA-256 (hex) of the raw
//!   message; adapters' fingerprints carry their own prefixes (`eas:`, the IMAP header
//!   digest), so the ids cannot collide with synced Emails.
//! - **Raw message**: kept durably in the store's sync-cursor space under
//!   `local-draft:<email id>` (written in the same commit as the record), not in the blob
//!   cache, which may evict. [`super::read_blob`] looks there before asking the driver.
//! - **Writes** (keywords, mailboxIds, destroy, EmailSubmission's onSuccess*) change the
//!   record and never reach upstream. Moving a local draft only moves it between the
//!   gateway's own copies.
//! - **Resets**: the copies are stamped with the newest possible epoch (`u32::MAX`), so the
//!   end of a reset pass of their mailbox (which drops copies of older epochs that were not
//!   re-announced) keeps them. A mailbox deleted upstream takes its local drafts with it.

use std::collections::{BTreeMap, BTreeSet};

use jmap_engine::{MethodError, SetError};
use state::{Commit, DataType, ObjectId};

use super::{MailAccount, store_error};
use crate::{EmailRecord, MailboxCopies};

/// The prefix of a local copy's uid.
const UID_PREFIX: &str = "local:";
/// The prefix of the store entry holding a local draft's raw message.
const RAW_PREFIX: &str = "local-draft:";

/// Serializes read-modify-write of local draft records within this process.
static LOCAL_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// True for the uid of a copy only the gateway holds: `local:` then 32 lowercase hex digits.
pub(crate) fn is_local_uid(uid: &str) -> bool {
    uid.strip_prefix(UID_PREFIX).is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// True when every copy of the Email is local (it exists nowhere upstream).
pub(crate) fn is_local(record: &EmailRecord) -> bool {
    let copies = record.copies();
    !copies.is_empty() && copies.iter().all(|(_, uid)| is_local_uid(uid))
}

fn raw_name(email_id: &str) -> Vec<u8> {
    format!("{RAW_PREFIX}{email_id}").into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_uid() -> Result<String, MethodError> {
    use ring::rand::SecureRandom;
    let mut buf = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| MethodError::server_fail("no randomness"))?;
    Ok(format!("{UID_PREFIX}{}", hex(&buf)))
}

/// The fingerprint a local draft's id derives from.
fn fingerprint(raw: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, raw);
    format!("{UID_PREFIX}{}", hex(d.as_ref()))
}

/// The raw message of a local draft, if `email_id` is one.
pub(crate) async fn raw<A: MailAccount>(
    account: &A,
    email_id: &str,
) -> Result<Option<Vec<u8>>, state::Error> {
    if !email_id.starts_with('E') {
        return Ok(None);
    }
    let a = account.store_id();
    let name = raw_name(email_id);
    account.store().run(move |s| s.cursor(a, &name)).await
}

/// The header section of a message, with the empty line that ends it.
fn header_block(raw: &[u8]) -> &[u8] {
    for sep in [&b"\r\n\r\n"[..], &b"\n\n"[..]] {
        if let Some(i) = raw.windows(sep.len()).position(|w| w == sep) {
            return &raw[..i + sep.len()];
        }
    }
    raw
}

/// The thread a new local draft joins: the one its In-Reply-To / References point at with
/// the same base subject (read from the driver's Message-ID index), else a new one.
async fn thread_for<A: MailAccount>(
    account: &A,
    record: &EmailRecord,
) -> Result<String, state::Error> {
    use crate::tx::names;
    let a = account.store_id();
    let base = crate::base_subject(record.subject.as_deref());
    let refs: Vec<String> = record
        .in_reply_to
        .iter()
        .chain(&record.references)
        .cloned()
        .collect();
    let found = account
        .store()
        .run(move |s| {
            let text = |v: Option<Vec<u8>>| v.and_then(|v| String::from_utf8(v).ok());
            for r in &refs {
                let Some(mut t) = text(s.cursor(a, &names::msgid(r))?) else {
                    continue;
                };
                for _ in 0..32 {
                    match text(s.cursor(a, &names::alias(&t))?) {
                        Some(next) if next != t => t = next,
                        _ => break,
                    }
                }
                if text(s.cursor(a, &names::subject(&t))?).unwrap_or_default() == base {
                    return Ok(Some(t));
                }
            }
            Ok(None)
        })
        .await?;
    Ok(match found {
        Some(t) => t,
        None => ObjectId::new(record.id.clone())
            .map(|id| crate::thread_id_for_email(&id))
            .unwrap_or_default(),
    })
}

/// Keeps `raw` as a new local draft in `mailbox_ids` and returns its record.
pub(crate) async fn create<A: MailAccount>(
    account: &A,
    mailbox_ids: &[String],
    raw: Vec<u8>,
    keywords: BTreeSet<String>,
    received_at: i64,
) -> Result<Result<EmailRecord, SetError>, MethodError> {
    let fp = fingerprint(&raw);
    let id = crate::email_id(&fp);
    let block = header_block(&raw);
    let h = crate::parse_headers(block);
    let body = crate::body::Body::parse_lenient(&raw, id.as_str());
    let mut locations = BTreeMap::new();
    for m in mailbox_ids {
        let mut uids = BTreeMap::new();
        uids.insert(new_uid()?, keywords.clone());
        locations.insert(
            m.clone(),
            MailboxCopies {
                epoch: u32::MAX,
                uids,
            },
        );
    }
    let mut record = EmailRecord {
        id: id.as_str().to_owned(),
        thread_id: String::new(),
        fingerprint: fp,
        locations,
        received_at,
        sent_at: h.sent_at,
        size: raw.len() as u64,
        message_id: h.message_id,
        in_reply_to: h.in_reply_to,
        references: h.references,
        subject: h.subject,
        from: h.from,
        sender: h.sender,
        reply_to: h.reply_to,
        to: h.to,
        cc: h.cc,
        bcc: h.bcc,
        preview: body.preview(),
        has_attachment: body.has_attachment(),
        header_block: block.to_vec(),
        headers_complete: true,
    };
    record.thread_id = thread_for(account, &record).await.map_err(store_error)?;
    let _g = LOCAL_WRITES.lock().await;
    if load(account, &id).await?.is_some() {
        let existing = super::jmap_id(&id)?;
        return Ok(Err(SetError::already_exists(existing)));
    }
    let mut c = Commit::new(account.store_id());
    c.put_email(id.clone(), record.to_bytes(), record.facts());
    c.set_cursor(raw_name(id.as_str()), raw);
    account.store().commit(c).await.map_err(store_error)?;
    tracing::info!(account = %account.store_id(), email = %id, "kept a local draft (upstream cannot store messages)");
    Ok(Ok(record))
}

async fn load<A: MailAccount>(
    account: &A,
    id: &ObjectId,
) -> Result<Option<EmailRecord>, MethodError> {
    let a = account.store_id();
    let id = id.clone();
    Ok(account
        .store()
        .run(move |s| s.get(a, DataType::Email, &id))
        .await
        .map_err(store_error)?
        .and_then(|b| EmailRecord::from_bytes(&b)))
}

/// Gives a local draft these keywords and mailboxes (mailboxes it stays in keep their local
/// uid). `Ok(false)` when it is no longer a local draft.
pub(crate) async fn update<A: MailAccount>(
    account: &A,
    id: &ObjectId,
    keywords: &BTreeSet<String>,
    mailbox_ids: &BTreeSet<String>,
) -> Result<bool, MethodError> {
    let _g = LOCAL_WRITES.lock().await;
    let Some(mut record) = load(account, id).await? else {
        return Ok(false);
    };
    if !is_local(&record) {
        return Ok(false);
    }
    let mut locations = BTreeMap::new();
    for m in mailbox_ids {
        let uid = match record
            .locations
            .remove(m)
            .and_then(|c| c.uids.into_keys().next())
        {
            Some(u) => u,
            None => new_uid()?,
        };
        let mut uids = BTreeMap::new();
        uids.insert(uid, keywords.clone());
        locations.insert(
            m.clone(),
            MailboxCopies {
                epoch: u32::MAX,
                uids,
            },
        );
    }
    record.locations = locations;
    let mut c = Commit::new(account.store_id());
    c.put_email(id.clone(), record.to_bytes(), record.facts());
    account.store().commit(c).await.map_err(store_error)?;
    Ok(true)
}

/// Destroys a local draft and its raw message. `Ok(false)` when it is not one.
pub(crate) async fn destroy<A: MailAccount>(
    account: &A,
    id: &ObjectId,
) -> Result<bool, MethodError> {
    let _g = LOCAL_WRITES.lock().await;
    let Some(record) = load(account, id).await? else {
        return Ok(false);
    };
    if !is_local(&record) {
        return Ok(false);
    }
    let mut c = Commit::new(account.store_id());
    c.destroy(DataType::Email, id.clone());
    c.clear_cursor(raw_name(id.as_str()));
    account.store().commit(c).await.map_err(store_error)?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};
    use upstream::WriteOp;

    use super::*;
    use crate::methods::fake::{FakeUpstream, fixture_with, message};
    use crate::methods::testing::Fixture;

    #[test]
    fn local_uids_are_recognised_and_upstream_ones_are_not() {
        let uid = new_uid().unwrap();
        assert!(is_local_uid(&uid), "{uid}");
        for other in ["1", "42", "5:12", "local:", "local:xyz", "Local:0123"] {
            assert!(!is_local_uid(other), "{other}");
        }
        assert!(fingerprint(b"x").starts_with("local:"));
        assert_eq!(header_block(b"A: b\r\n\r\nbody"), b"A: b\r\n\r\n");
    }

    /// A fixture over a fake server that cannot store messages, sending through it.
    async fn eas_like() -> (Fixture, Arc<FakeUpstream>) {
        let fake = FakeUpstream::new();
        fake.deliver("INBOX", message("Old", "old@x", "body"), &[]);
        fake.cannot_store();
        let (mut f, fake) = fixture_with(fake).await;
        f.account.submitter = Some(Arc::new(super::super::UpstreamSubmitter(fake.clone())));
        f.rebuild();
        (f, fake)
    }

    fn mbox(f: &Fixture, remote: &str) -> String {
        f.account.sync.as_ref().unwrap().mailbox_id(remote).unwrap()
    }

    fn draft(drafts: &str, subject: &str) -> Value {
        json!({
            "mailboxIds": {drafts: true},
            "keywords": {"$draft": true},
            "from": [{"name": "Alice", "email": "alice@example.com"}],
            "to": [{"email": "bob@example.com"}],
            "subject": subject,
            "bodyValues": {"t": {"value": "Hello Bob"}},
            "textBody": [{"partId": "t", "type": "text/plain"}],
        })
    }

    async fn record(f: &Fixture, id: &str) -> Option<EmailRecord> {
        load(&f.account, &ObjectId::new(id).unwrap()).await.unwrap()
    }

    async fn get(f: &Fixture, id: &str) -> Value {
        f.ok(
            "Email/get",
            json!({"ids": [id], "fetchTextBodyValues": true,
                   "properties": ["subject", "mailboxIds", "keywords", "threadId", "preview",
                                  "bodyValues", "textBody", "size"]}),
        )
        .await
    }

    async fn identity_id(f: &Fixture) -> Value {
        f.ok("Identity/get", json!({"ids": null})).await["list"][0]["id"].clone()
    }

    #[tokio::test]
    async fn a_draft_the_server_cannot_store_is_kept_locally_read_moved_and_destroyed() {
        let (f, fake) = eas_like().await;
        let (drafts, inbox, trash) = (mbox(&f, "Drafts"), mbox(&f, "INBOX"), mbox(&f, "Trash"));
        let r = f
            .ok(
                "Email/set",
                json!({"create": {"d": draft(&drafts, "Local one")}}),
            )
            .await;
        let created = &r["created"]["d"];
        let id = created["id"].as_str().expect("created").to_owned();
        assert_eq!(created["blobId"], json!(id));
        assert!(
            fake.messages("Drafts").is_empty(),
            "nothing stored upstream"
        );
        let rec = record(&f, &id).await.unwrap();
        assert!(is_local(&rec) && rec.fingerprint.starts_with("local:"));
        assert_eq!(rec.locations[&drafts].epoch, u32::MAX);

        // Read: properties from the record, the body from the stored raw.
        let got = get(&f, &id).await;
        let e = &got["list"][0];
        assert_eq!(e["subject"], json!("Local one"), "{got}");
        assert_eq!(e["mailboxIds"], json!({&drafts: true}));
        assert_eq!(e["keywords"], json!({"$draft": true}));
        assert_eq!(e["preview"], json!("Hello Bob"));
        assert_eq!(e["size"], json!(rec.size));
        let part = e["textBody"][0]["partId"].as_str().unwrap();
        assert_eq!(e["bodyValues"][part]["value"], json!("Hello Bob"));
        let blob = crate::methods::read_blob(&f.account, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(blob.bytes.len() as u64, rec.size);
        let query = f
            .ok("Email/query", json!({"filter": {"inMailbox": &drafts}}))
            .await;
        assert_eq!(query["ids"], json!([&id]));

        // Import keeps its SetError, a clear one.
        let r = f
            .ok(
                "Email/import",
                json!({"emails": {"i": {"blobId": &id, "mailboxIds": {&inbox: true}}}}),
            )
            .await;
        let err = &r["notCreated"]["i"];
        assert_eq!(err["type"], json!("forbidden"), "{r}");
        assert!(
            err["description"]
                .as_str()
                .unwrap()
                .contains("cannot store messages"),
            "{err}"
        );

        // Writes stay local: keywords and a move.
        let writes_before = fake.ops().len();
        let r = f
            .ok(
                "Email/set",
                json!({"update": {&id: {"keywords/$seen": true,
                                        format!("mailboxIds/{drafts}"): null,
                                        format!("mailboxIds/{trash}"): true}}}),
            )
            .await;
        assert_eq!(r["updated"], json!({&id: null}), "{r}");
        let e = get(&f, &id).await["list"][0].clone();
        assert_eq!(e["keywords"], json!({"$draft": true, "$seen": true}));
        assert_eq!(e["mailboxIds"], json!({&trash: true}));
        assert_eq!(fake.ops().len(), writes_before, "{:?}", fake.ops());

        // A reset of its mailbox upstream leaves it alone.
        fake.deliver("Trash", message("Upstream", "up@x", "b"), &[]);
        let sync = f.account.sync.clone().unwrap();
        sync.sync_changed(&["Trash".to_owned()]).await.unwrap();
        fake.reset_uids("Trash");
        sync.sync_changed(&["Trash".to_owned()]).await.unwrap();
        let query = f
            .ok("Email/query", json!({"filter": {"inMailbox": &trash}}))
            .await;
        assert_eq!(query["ids"].as_array().unwrap().len(), 2, "{query}");
        assert!(record(&f, &id).await.is_some(), "the reset kept the draft");

        // Destroy: the record and the raw go, upstream is not asked.
        let r = f.ok("Email/set", json!({"destroy": [&id]})).await;
        assert_eq!(r["destroyed"], json!([&id]), "{r}");
        assert!(record(&f, &id).await.is_none());
        assert!(raw(&f.account, &id).await.unwrap().is_none());
        assert_eq!(fake.ops().len(), writes_before);
    }

    #[tokio::test]
    async fn a_local_draft_is_sent_and_destroyed_on_success() {
        let (f, fake) = eas_like().await;
        let drafts = mbox(&f, "Drafts");
        let identity = identity_id(&f).await;
        let r = f
            .request(json!([
                ["Email/set", {"accountId": "a1",
                               "create": {"d": draft(&drafts, "Send me")}}, "0"],
                ["EmailSubmission/set", {"accountId": "a1",
                    "create": {"k": {"identityId": identity, "emailId": "#d"}},
                    "onSuccessDestroyEmail": ["#k"]}, "1"]
            ]))
            .await;
        let id = r[0][1]["created"]["d"]["id"].as_str().unwrap().to_owned();
        assert!(r[1][1]["created"]["k"]["id"].is_string(), "{r:?}");
        assert_eq!(r[2][0], json!("Email/set"), "{r:?}");
        assert_eq!(r[2][1]["destroyed"], json!([&id]), "{r:?}");
        let sent = fake.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.rcpt_to, ["bob@example.com"]);
        assert!(String::from_utf8_lossy(&sent[0].1).contains("Subject: Send me"));
        assert_eq!(fake.messages("Sent").len(), 1, "the server filed the copy");
        assert!(record(&f, &id).await.is_none());
        assert!(raw(&f.account, &id).await.unwrap().is_none());
        let got = f.ok("Email/get", json!({"ids": [&id]})).await;
        assert_eq!(got["notFound"], json!([&id]));
    }

    #[tokio::test]
    async fn a_sent_local_draft_is_not_moved_into_sent_when_the_server_filed_it() {
        let (f, fake) = eas_like().await;
        let (drafts, sent, trash) = (mbox(&f, "Drafts"), mbox(&f, "Sent"), mbox(&f, "Trash"));
        let identity = identity_id(&f).await;
        let create = |subject: &str| {
            json!(["Email/set", {"accountId": "a1",
                                 "create": {"d": draft(&drafts, subject)}}, "0"])
        };
        // Moved to Sent only: the server's Sent copy stands for it, the draft goes.
        let r = f
            .request(json!([
                create("First"),
                ["EmailSubmission/set", {"accountId": "a1",
                    "create": {"k": {"identityId": identity, "emailId": "#d"}},
                    "onSuccessUpdateEmail": {"#k": {format!("mailboxIds/{drafts}"): null,
                                                    format!("mailboxIds/{sent}"): true,
                                                    "keywords/$draft": null}}}, "1"]
            ]))
            .await;
        let id = r[0][1]["created"]["d"]["id"].as_str().unwrap().to_owned();
        assert_eq!(r[2][1]["updated"], json!({&id: null}), "{r:?}");
        assert!(record(&f, &id).await.is_none());
        // Moved to Sent and Trash: it stays, in Trash, without $draft.
        let r = f
            .request(json!([
                create("Second"),
                ["EmailSubmission/set", {"accountId": "a1",
                    "create": {"k": {"identityId": identity, "emailId": "#d"}},
                    "onSuccessUpdateEmail": {"#k": {"mailboxIds": {&sent: true, &trash: true},
                                                    "keywords/$draft": null}}}, "1"]
            ]))
            .await;
        let id = r[0][1]["created"]["d"]["id"].as_str().unwrap().to_owned();
        assert_eq!(r[2][1]["updated"], json!({&id: null}), "{r:?}");
        let rec = record(&f, &id).await.unwrap();
        assert_eq!(rec.mailbox_ids().collect::<Vec<_>>(), [trash.as_str()]);
        assert!(rec.keywords().is_empty());
        assert_eq!(fake.sent().len(), 2);
        assert!(
            !fake
                .ops()
                .iter()
                .any(|o| matches!(o, WriteOp::Move { .. } | WriteOp::Delete { .. })),
            "{:?}",
            fake.ops()
        );
    }
}
