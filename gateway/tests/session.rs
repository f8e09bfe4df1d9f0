//! The Session resource.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::{NOTE_CAPABILITY, TestServer, client};

async fn session(s: &TestServer, path: &str, user: &str) -> Value {
    let r = client()
        .get(s.url(path))
        .basic_auth(user, Some(format!("{user}-pw")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    crate::support::json(r).await.unwrap()
}

#[tokio::test]
async fn session_lists_capabilities_accounts_and_urls() {
    let s = TestServer::start();
    let body = session(&s, "/.well-known/jmap", "alice").await;
    assert_eq!(body, session(&s, "/jmap/session", "alice").await);
    let core = &body["capabilities"]["urn:ietf:params:jmap:core"];
    for limit in [
        "maxSizeUpload",
        "maxConcurrentUpload",
        "maxSizeRequest",
        "maxConcurrentRequests",
        "maxCallsInRequest",
        "maxObjectsInGet",
        "maxObjectsInSet",
        "collationAlgorithms",
    ] {
        assert!(!core[limit].is_null(), "{limit} missing: {core}");
    }
    let ws = &body["capabilities"]["urn:ietf:params:jmap:websocket"];
    assert_eq!(ws["url"], format!("ws://{}/jmap/ws", s.addr()));
    assert_eq!(ws["supportsPush"], true);
    let (a0, a1) = (s.account("alice", 0), s.account("alice", 1));
    assert_eq!(
        body["accounts"][&a0],
        json!({"name": "Alice IMAP", "isPersonal": true, "isReadOnly": false,
               "accountCapabilities": {NOTE_CAPABILITY: {}}})
    );
    assert_eq!(body["accounts"][&a1]["name"], "Alice EAS");
    assert_eq!(body["accounts"].as_object().unwrap().len(), 2);
    assert_eq!(body["primaryAccounts"][NOTE_CAPABILITY], json!(a0));
    assert_eq!(body["username"], "alice");
    assert_eq!(body["apiUrl"], s.url("/jmap/api"));
    assert_eq!(
        body["downloadUrl"],
        s.url("/jmap/download/{accountId}/{blobId}/{name}?accept={type}")
    );
    assert_eq!(body["uploadUrl"], s.url("/jmap/upload/{accountId}/"));
    assert_eq!(
        body["eventSourceUrl"],
        s.url("/jmap/eventsource?types={types}&closeafter={closeafter}&ping={ping}")
    );
    // Bob sees only his own account.
    let bob = session(&s, "/.well-known/jmap", "bob").await;
    assert_eq!(bob["accounts"].as_object().unwrap().len(), 1);
    assert!(bob["accounts"].get(&a0).is_none());
}

#[tokio::test]
async fn session_state_changes_when_accounts_change() {
    let s = TestServer::start();
    let before = session(&s, "/jmap/session", "alice").await["state"].clone();
    let bob_before = session(&s, "/jmap/session", "bob").await["state"].clone();
    let user = s.gateway.registry().user("alice").unwrap();
    s.gateway.registry().set_account_capabilities(
        user.accounts[1].store_id,
        BTreeMap::from([("urn:ietf:params:jmap:mail".to_owned(), json!({}))]),
    );
    let after = session(&s, "/jmap/session", "alice").await;
    assert_ne!(after["state"], before);
    assert_eq!(
        after["primaryAccounts"]["urn:ietf:params:jmap:mail"],
        json!(s.account("alice", 1))
    );
    assert_eq!(
        session(&s, "/jmap/session", "bob").await["state"],
        bob_before
    );
}

#[tokio::test]
async fn account_ids_are_stable_across_restarts_of_the_registry() {
    let s = TestServer::start();
    let ids: Vec<String> = (0..2).map(|i| s.account("alice", i)).collect();
    let bob = s.account("bob", 0);
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[0], bob);
    // A registry over the same store, with the config's users reordered, gives the same ids.
    let config = gateway::config::Config::parse(&reorder(crate::support::CONFIG)).unwrap();
    let registry = gateway::accounts::Registry::new(
        s.gateway.store().clone(),
        &config,
        Vec::new(),
        Default::default(),
    )
    .await
    .unwrap();
    let alice = registry.user("alice").unwrap();
    assert_eq!(
        alice
            .accounts
            .iter()
            .map(|a| a.id.as_str().to_owned())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(registry.user("bob").unwrap().accounts[0].id.as_str(), bob);
}

/// Moves the last user (bob) first.
fn reorder(config: &str) -> String {
    let (head, bob) = config.rsplit_once("[[users]]\nname = \"bob\"").unwrap();
    let (prefix, alice) = head.split_once("[[users]]").unwrap();
    format!("{prefix}[[users]]\nname = \"bob\"{bob}\n[[users]]{alice}")
}
