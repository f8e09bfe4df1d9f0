//! Thread (RFC 8621 §3): /get and /changes.
//!
//! Threads are not stored objects: the store derives them from the Emails' thread ids (its
//! thread index lists a thread's Emails oldest first, ties by id) and logs Thread
//! created/updated/destroyed changes itself in every commit that moves an Email into or out
//! of a thread. A thread with no Email left does not exist.

use std::collections::BTreeSet;

use jmap_engine::standard::{ChangesRequest, GetRequest, GetResponse};
use jmap_engine::{AccountDirectory, Engine, Handler, HandlerFuture, Id, MethodCall, NoExtra};
use serde_json::{Map, Value, json};
use state::{DataType, ObjectId};

use super::{MAIL, MailAccount, jmap_id, object_id, store_error};

const PROPERTIES: [&str; 2] = ["id", "emailIds"];

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    engine.register("Thread/get", MAIL, ThreadGet);
    engine.register("Thread/changes", MAIL, ThreadChanges);
}

#[derive(Debug, Clone, Copy)]
struct ThreadGet;

impl<D> Handler<D> for ThreadGet
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
            let wanted: Option<Vec<(Id, Option<ObjectId>)>> = ids.map(|ids| {
                ids.into_iter()
                    .map(|id| {
                        let oid = object_id(&id);
                        (id, oid)
                    })
                    .collect()
            });
            let all = wanted.is_none();
            // Enough to tell that ids null asks for more than maxObjectsInGet.
            let cap = usize::try_from(call.limits().max_objects_in_get.get())
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            // The state is read first, so the data is at least as new as the state.
            let (state, rows) = account
                .store()
                .run(move |s| {
                    let state = s.state(a, DataType::Thread)?;
                    let wanted = match wanted {
                        Some(w) => w,
                        None => {
                            // Every thread: the distinct threads of every Email.
                            let (_, emails) = s.ids(a, DataType::Email)?;
                            let mut threads = BTreeSet::new();
                            for e in emails {
                                if let Some(f) = s.email_facts(a, &e)? {
                                    threads.insert(f.thread_id.unwrap_or(e));
                                }
                                if threads.len() >= cap {
                                    break;
                                }
                            }
                            threads
                                .into_iter()
                                .filter_map(|t| Id::new(t.as_str()).ok().map(|id| (id, Some(t))))
                                .collect()
                        }
                    };
                    let mut rows = Vec::with_capacity(wanted.len());
                    for (id, oid) in wanted {
                        let emails = match oid {
                            Some(t) => s.thread_email_ids(a, &t)?,
                            None => Vec::new(),
                        };
                        rows.push((id, emails));
                    }
                    Ok((state, rows))
                })
                .await
                .map_err(store_error)?;
            if all {
                request.check_fetch_all(rows.len(), call.limits())?;
            }
            let mut list = Vec::new();
            let mut not_found = Vec::new();
            for (id, emails) in rows {
                if emails.is_empty() {
                    not_found.push(id);
                    continue;
                }
                let mut o = Map::new();
                o.insert("id".into(), json!(id));
                if properties.iter().any(|p| p == "emailIds") {
                    let ids = emails.iter().map(jmap_id).collect::<Result<Vec<_>, _>>()?;
                    o.insert("emailIds".into(), json!(ids));
                }
                list.push(o);
            }
            let response: GetResponse<Map<String, Value>> = GetResponse {
                account_id: request.account_id,
                state: state.to_string(),
                list,
                not_found,
            };
            Ok(call.reply(response.to_arguments()))
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct ThreadChanges;

impl<D> Handler<D> for ThreadChanges
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
                DataType::Thread,
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
    use serde_json::json;
    use state::{AccountId, Commit};

    use super::super::fake::{self, fixture_with_fake};
    use super::super::testing::{Fixture, email, mailbox};
    use super::*;

    async fn fixture() -> Fixture {
        let f = Fixture::new();
        f.put_mailbox(&mailbox("Minbox", "INBOX", Some("inbox")))
            .await;
        f.put_mailbox(&mailbox("Marchive", "Archive", None)).await;
        f.put_email(&email("Ea", "T1", "Minbox", "1", &[], 300, "Subject: a"))
            .await;
        f.put_email(&email("Eb", "T1", "Minbox", "2", &[], 100, "Subject: a"))
            .await;
        f.put_email(&email("Ec", "T1", "Marchive", "1", &[], 200, "Subject: a"))
            .await;
        // Same receivedAt as Eb: ties go by id.
        f.put_email(&email("Ea0", "T1", "Marchive", "2", &[], 100, "Subject: a"))
            .await;
        f.put_email(&email("Ed", "T2", "Minbox", "3", &[], 50, "Subject: d"))
            .await;
        f
    }

    #[tokio::test]
    async fn get_lists_emails_oldest_first() {
        let f = fixture().await;
        let r = f
            .ok("Thread/get", json!({"ids": ["T1", "T2", "Tnope", "T1"]}))
            .await;
        assert_eq!(
            r["list"],
            json!([
                {"id": "T1", "emailIds": ["Ea0", "Eb", "Ec", "Ea"]},
                {"id": "T2", "emailIds": ["Ed"]}
            ])
        );
        assert_eq!(r["notFound"], json!(["Tnope"]));
        let state = f
            .account
            .store
            .state(AccountId(1), DataType::Thread)
            .await
            .unwrap();
        assert_eq!(r["state"], json!(state.to_string()));
        let r = f
            .ok("Thread/get", json!({"ids": null, "properties": ["id"]}))
            .await;
        assert_eq!(r["list"], json!([{"id": "T1"}, {"id": "T2"}]));
        let r = f
            .call("Thread/get", json!({"properties": ["subject"]}))
            .await;
        assert_eq!(r[0][1]["type"], json!("invalidArguments"));
    }

    #[tokio::test]
    async fn changes_follow_the_emails() {
        let f = fixture().await;
        let s0 = f.ok("Thread/get", json!({"ids": []})).await["state"].clone();
        f.put_email(&email("Ee", "T1", "Minbox", "4", &[], 400, "Subject: a"))
            .await;
        f.put_email(&email("Ef", "T3", "Minbox", "5", &[], 500, "Subject: f"))
            .await;
        let mut c = Commit::new(AccountId(1));
        c.destroy(DataType::Email, ObjectId::new("Ed").unwrap());
        f.commit(c).await;
        let r = f.ok("Thread/changes", json!({"sinceState": s0})).await;
        assert_eq!(r["updated"], json!(["T1"]));
        assert_eq!(r["created"], json!(["T3"]));
        assert_eq!(r["destroyed"], json!(["T2"]));
        assert_eq!(r["hasMoreChanges"], json!(false));
        assert_eq!(r["oldState"], s0);
        let page = f
            .ok("Thread/changes", json!({"sinceState": s0, "maxChanges": 2}))
            .await;
        assert_eq!(page["hasMoreChanges"], json!(true));
        let rest = f
            .ok("Thread/changes", json!({"sinceState": page["newState"]}))
            .await;
        assert_eq!(rest["newState"], r["newState"]);
        let got = f.ok("Thread/get", json!({"ids": ["T2"]})).await;
        assert_eq!(got["notFound"], json!(["T2"]));
        let r = f.call("Thread/changes", json!({"sinceState": "x"})).await;
        assert_eq!(r[0][1]["type"], json!("cannotCalculateChanges"));
    }

    #[tokio::test]
    async fn the_sync_driver_threads_replies() {
        let (f, fake) = fixture_with_fake().await;
        let sync = f.account.sync.clone().unwrap();
        let s0 = f.ok("Thread/get", json!({"ids": []})).await["state"].clone();
        let root = fake::message("Plans", "root@x", "hi");
        let reply = String::from_utf8(fake::message("Re: Plans", "reply@x", "ok"))
            .unwrap()
            .replace("Date:", "In-Reply-To: <root@x>\r\nDate:");
        fake.deliver_at("INBOX", &root, &[], 1000);
        fake.deliver_at("INBOX", reply.as_bytes(), &[], 2000);
        sync.sync_all().await.unwrap();
        let root_id = crate::email_id(&fake::fingerprint(&root));
        let reply_id = crate::email_id(&fake::fingerprint(reply.as_bytes()));
        let rec = sync.email(&reply_id).await.unwrap().unwrap();
        let r = f.ok("Thread/get", json!({"ids": [rec.thread_id]})).await;
        assert_eq!(
            r["list"][0]["emailIds"],
            json!([root_id.as_str(), reply_id.as_str()])
        );
        let c = f.ok("Thread/changes", json!({"sinceState": s0})).await;
        assert_eq!(c["created"], json!([rec.thread_id]));
        assert_eq!(c["newState"], r["state"]);
    }
}
