//! Test fixtures for the mail methods: an engine over a temporary store with one account,
//! records put straight into the store, and requests run as JSON.
//!
//! Write-through tests attach a sync driver over an in-memory upstream (`fake` below, when
//! present); real-server behaviour is tested through the gateway in `conformance-tests`.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jmap_engine::{
    AccountDirectory, AccountError, CORE_CAPABILITY, Capabilities, CoreCapability, Engine, Id,
};
use serde_json::{Value, json};
use state::{AccountId, AsyncStore, Commit, DataType, ObjectId, Store, StoreConfig};

use super::{MailAccount, Submitter};
use crate::{AccountSync, EmailRecord, MailboxCopies, MailboxRecord};

/// The one account of the fixture.
#[derive(Clone, Debug)]
pub struct TestAccount {
    pub store: AsyncStore,
    pub id: AccountId,
    pub sync: Option<AccountSync>,
    pub address: Option<String>,
    pub submitter: Option<Arc<dyn Submitter>>,
}

impl MailAccount for TestAccount {
    fn store(&self) -> &AsyncStore {
        &self.store
    }
    fn store_id(&self) -> AccountId {
        self.id
    }
    fn sync(&self) -> Option<&AccountSync> {
        self.sync.as_ref()
    }
    fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }
    fn submitter(&self) -> Option<&Arc<dyn Submitter>> {
        self.submitter.as_ref()
    }
}

/// Resolves `a1` (the fixture account) for any capability.
#[derive(Clone, Debug)]
pub struct TestDirectory {
    pub account: TestAccount,
}

impl AccountDirectory for TestDirectory {
    type User = ();
    type Account = TestAccount;

    fn resolve(&self, _: &(), id: &Id, _: &str) -> Result<TestAccount, AccountError> {
        if id.as_str() == "a1" {
            Ok(self.account.clone())
        } else {
            Err(AccountError::NotFound)
        }
    }

    fn is_read_only(&self, _: &TestAccount) -> bool {
        false
    }
}

/// A store in a temporary folder, an account and an engine with every mail method.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub account: TestAccount,
    pub engine: Engine<TestDirectory>,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture").finish_non_exhaustive()
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db"), StoreConfig::default()).unwrap();
        let account = TestAccount {
            store: AsyncStore::new(Arc::new(store)),
            id: AccountId(1),
            sync: None,
            address: Some("alice@example.com".into()),
            submitter: None,
        };
        let engine = Self::engine_for(&account);
        Fixture {
            dir,
            account,
            engine,
        }
    }

    /// Rebuilds the engine after `account` changed (a sync driver or submitter attached).
    pub fn rebuild(&mut self) {
        self.engine = Self::engine_for(&self.account);
    }

    fn engine_for(account: &TestAccount) -> Engine<TestDirectory> {
        let mut others = BTreeMap::new();
        for cap in [
            super::MAIL,
            super::SUBMISSION,
            super::VACATION,
            super::QUOTA,
        ] {
            others.insert(cap.to_owned(), json!({}));
        }
        let mut engine = Engine::new(
            TestDirectory {
                account: account.clone(),
            },
            Capabilities {
                core: CoreCapability::default(),
                others,
            },
        );
        super::register(&mut engine);
        engine
    }

    /// Runs one method call in account `a1` and returns its response invocations as
    /// `[name, arguments, callId]` arrays.
    pub async fn call(&self, method: &str, mut args: Value) -> Vec<Value> {
        if let Some(o) = args.as_object_mut() {
            o.entry("accountId").or_insert(json!("a1"));
        }
        self.request(json!([[method, args, "c0"]])).await
    }

    /// Runs `methodCalls` (using every mail capability) and returns the responses.
    pub async fn request(&self, method_calls: Value) -> Vec<Value> {
        let body = json!({
            "using": [CORE_CAPABILITY, super::MAIL, super::SUBMISSION, super::VACATION, super::QUOTA],
            "methodCalls": method_calls,
        });
        let response = self
            .engine
            .handle(&(), body.to_string().as_bytes(), "s0")
            .await
            .unwrap();
        let v = serde_json::to_value(&response).unwrap();
        v["methodResponses"].as_array().unwrap().clone()
    }

    /// The arguments of the single response of `method`, panicking on an error response.
    pub async fn ok(&self, method: &str, args: Value) -> Value {
        let r = self.call(method, args).await;
        assert_eq!(r[0][0], json!(method), "error response: {r:?}");
        r[0][1].clone()
    }

    pub async fn commit(&self, c: Commit) {
        self.account.store.commit(c).await.unwrap();
    }

    /// Stores a mailbox record as the sync driver would.
    pub async fn put_mailbox(&self, m: &MailboxRecord) {
        let mut c = Commit::new(self.account.id);
        c.put(
            DataType::Mailbox,
            ObjectId::new(m.id.clone()).unwrap(),
            m.to_bytes(),
        );
        self.commit(c).await;
    }

    /// Stores an Email record (and its index facts) as the sync driver would.
    pub async fn put_email(&self, e: &EmailRecord) {
        let mut c = Commit::new(self.account.id);
        c.put_email(
            ObjectId::new(e.id.clone()).unwrap(),
            e.to_bytes(),
            e.facts(),
        );
        self.commit(c).await;
    }
}

/// A selectable, subscribed mailbox record named `name` at the top level.
pub fn mailbox(id: &str, name: &str, role: Option<&str>) -> MailboxRecord {
    MailboxRecord {
        id: id.into(),
        remote_id: name.into(),
        name: name.into(),
        parent_id: None,
        role: role.map(str::to_owned),
        sort_order: 0,
        is_subscribed: true,
        selectable: true,
    }
}

/// An Email record in `mailbox` (uid `uid`) with the given keywords, received at `received_at`
/// (seconds), from a header block built from `headers` (e.g. "Subject: hi\r\nFrom: a@b\r\n").
pub fn email(
    id: &str,
    thread: &str,
    mailbox: &str,
    uid: &str,
    keywords: &[&str],
    received_at: i64,
    headers: &str,
) -> EmailRecord {
    let block = format!("{headers}\r\n");
    let parsed = crate::parse_headers(block.as_bytes());
    let mut uids = BTreeMap::new();
    uids.insert(
        uid.to_owned(),
        keywords
            .iter()
            .map(|k| (*k).to_owned())
            .collect::<BTreeSet<_>>(),
    );
    let mut locations = BTreeMap::new();
    locations.insert(mailbox.to_owned(), MailboxCopies { epoch: 0, uids });
    EmailRecord {
        id: id.into(),
        thread_id: thread.into(),
        fingerprint: format!("test:{id}"),
        locations,
        received_at,
        sent_at: parsed.sent_at.or(Some(received_at)),
        size: 1000,
        message_id: parsed.message_id,
        in_reply_to: parsed.in_reply_to,
        references: parsed.references,
        subject: parsed.subject,
        from: parsed.from,
        sender: parsed.sender,
        reply_to: parsed.reply_to,
        to: parsed.to,
        cc: parsed.cc,
        bcc: parsed.bcc,
        preview: String::new(),
        has_attachment: false,
        header_block: block.as_bytes().to_vec(),
        headers_complete: true,
    }
}
