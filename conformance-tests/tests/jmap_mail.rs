//! JMAP Mail end to end: HTTP requests to a gateway whose account lives on a private Dovecot,
//! and an independent IMAP client (async-imap) making and checking changes upstream.

use serde_json::{Value, json};

use crate::imap_support::{
    PASSWORD, PrivateDovecot, USER, append, create_mailbox, message, oauth_token, other_client,
    upstream_messages,
};
use crate::jmap_support::MailGateway;

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// Five messages in INBOX: a thread of three (by References) and two single ones; a Work
/// folder with a child. (Dovecot makes Archive, Drafts, Junk, Sent and Trash itself.)
async fn seed_inbox(g: &MailGateway) {
    let mut c = other_client(&g.dovecot.server()).await;
    let msgs = [
        message("Plans", "p1@test", "", "first"),
        message(
            "Re: Plans",
            "p2@test",
            "In-Reply-To: <p1@test>\r\nReferences: <p1@test>\r\n",
            "second",
        ),
        message(
            "Re: Plans",
            "p3@test",
            "References: <p1@test> <p2@test>\r\n",
            "third",
        ),
        message("Invoice", "i1@test", "", "pay me"),
        message("Lunch?", "l1@test", "", "noon"),
    ];
    for (i, m) in msgs.iter().enumerate() {
        let flags = if i == 3 { "\\Seen" } else { "" };
        append(&mut c, "INBOX", flags, m).await;
    }
    create_mailbox(&mut c, "Work").await;
    create_mailbox(&mut c, "Work/Reports").await;
    let _ = c.logout().await;
}

async fn inbox_view(g: &MailGateway, collapse: bool) -> Value {
    let inbox = g.mailbox_id("inbox").await;
    g.call(
        "Email/query",
        json!({
            "filter": {"inMailbox": inbox},
            "sort": [{"property": "receivedAt", "isAscending": false}],
            "collapseThreads": collapse,
            "calculateTotal": true,
            "limit": 50
        }),
    )
    .await
}

#[tokio::test]
async fn mailbox_tree_and_list_view() {
    let g = MailGateway::start().await;
    seed_inbox(&g).await;
    let list = g
        .eventually(10, || async {
            let list = g.mailboxes().await;
            let inbox = list.iter().find(|m| m["role"] == json!("inbox"))?;
            let reports = list.iter().any(|m| m["name"] == json!("Reports"));
            (inbox["totalEmails"] == json!(5) && reports).then_some(list)
        })
        .await;
    let by_name = |n: &str| list.iter().find(|m| m["name"] == json!(n)).unwrap().clone();
    let inbox = list.iter().find(|m| m["role"] == json!("inbox")).unwrap();
    assert_eq!(inbox["unreadEmails"], json!(4));
    assert_eq!(inbox["totalThreads"], json!(3));
    assert_eq!(
        inbox["unreadThreads"],
        json!(2),
        "the Invoice thread is read"
    );
    let work = by_name("Work");
    let reports = by_name("Reports");
    assert_eq!(reports["parentId"], work["id"]);
    assert_eq!(work["parentId"], Value::Null);
    for m in &list {
        assert!(m["myRights"]["mayReadItems"].is_boolean(), "{m}");
        assert!(m["isSubscribed"].is_boolean());
    }

    let flat = inbox_view(&g, false).await;
    assert_eq!(flat["total"], json!(5));
    assert_eq!(flat["ids"].as_array().unwrap().len(), 5);
    let collapsed = inbox_view(&g, true).await;
    assert_eq!(collapsed["total"], json!(3));
    assert_eq!(collapsed["ids"].as_array().unwrap().len(), 3);

    // Anchor paging: the element after the second, one at a time.
    let all = ids(&flat["ids"]);
    let page = g
        .call(
            "Email/query",
            json!({
                "filter": {"inMailbox": inbox["id"]},
                "sort": [{"property": "receivedAt", "isAscending": false}],
                "anchor": all[1], "anchorOffset": 1, "limit": 2
            }),
        )
        .await;
    assert_eq!(ids(&page["ids"]), all[2..4].to_vec());
    assert_eq!(page["position"], json!(2));

    // The list view as a client asks for it: query and get in one request, the get taking
    // its ids from the query's result.
    let r = g
        .api(json!([
            ["Email/query", {
                "filter": {"inMailbox": inbox["id"]},
                "sort": [{"property": "receivedAt", "isAscending": false}],
                "limit": 50
            }, "q"],
            ["Email/get", {
                "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["threadId", "mailboxIds", "keywords", "from", "subject",
                               "receivedAt", "preview", "hasAttachment", "size"]
            }, "g"]
        ]))
        .await;
    assert_eq!(r[1][0], json!("Email/get"), "{r:?}");
    let got = r[1][1].clone();
    assert_eq!(
        got["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        all
    );
    let emails = got["list"].as_array().unwrap();
    assert_eq!(emails.len(), 5);
    let plans: Vec<&Value> = emails
        .iter()
        .filter(|e| e["subject"].as_str().unwrap().ends_with("Plans"))
        .collect();
    assert_eq!(plans.len(), 3);
    assert!(plans.iter().all(|e| e["threadId"] == plans[0]["threadId"]));
    let invoice = emails
        .iter()
        .find(|e| e["subject"] == json!("Invoice"))
        .unwrap();
    assert_eq!(invoice["keywords"], json!({"$seen": true}));
    assert_ne!(invoice["threadId"], plans[0]["threadId"]);
    assert_eq!(
        invoice["from"],
        json!([{"name": "Alice", "email": "alice@example.test"}])
    );
    assert_eq!(
        invoice["mailboxIds"],
        json!({inbox["id"].as_str().unwrap(): true})
    );
}

#[tokio::test]
async fn keyword_and_move_updates_reach_upstream() {
    let g = MailGateway::start().await;
    seed_inbox(&g).await;
    let inbox = g.mailbox_id("inbox").await;
    let view = g
        .eventually(10, || async {
            let v = inbox_view(&g, false).await;
            (v["total"] == json!(5)).then_some(v)
        })
        .await;
    let archive = g.mailbox_id("Archive").await;
    let lunch = g
        .call(
            "Email/get",
            json!({"ids": view["ids"], "properties": ["subject"]}),
        )
        .await["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["subject"] == json!("Lunch?"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let set = g
        .call(
            "Email/set",
            json!({"update": {lunch.clone(): {
                "keywords/$seen": true, "keywords/$flagged": true,
                format!("mailboxIds/{inbox}"): null, format!("mailboxIds/{archive}"): true
            }}}),
        )
        .await;
    assert!(
        set["updated"].as_object().unwrap().contains_key(&lunch),
        "{set}"
    );

    let mut c = other_client(&g.dovecot.server()).await;
    let archived = upstream_messages(&mut c, "Archive").await;
    assert_eq!(archived.len(), 1);
    let flags = &archived[0].1;
    assert!(flags.iter().any(|f| f.contains("Seen")), "{flags:?}");
    assert!(flags.iter().any(|f| f.contains("Flagged")), "{flags:?}");
    assert_eq!(upstream_messages(&mut c, "INBOX").await.len(), 4);

    // The Email keeps its id in its new mailbox.
    let got = g
        .call(
            "Email/get",
            json!({"ids": [lunch], "properties": ["mailboxIds", "keywords"]}),
        )
        .await;
    assert_eq!(got["list"][0]["mailboxIds"], json!({archive: true}));
    assert_eq!(
        got["list"][0]["keywords"],
        json!({"$seen": true, "$flagged": true})
    );
    let _ = c.logout().await;
}

#[tokio::test]
async fn changes_and_query_changes_follow_another_client() {
    let g = MailGateway::start().await;
    seed_inbox(&g).await;
    let inbox = g.mailbox_id("inbox").await;
    let before = g
        .eventually(10, || async {
            let v = inbox_view(&g, false).await;
            (v["total"] == json!(5)).then_some(v)
        })
        .await;
    let email_state = g.call("Email/get", json!({"ids": []})).await["state"].clone();
    let query_state = before["queryState"].clone();

    // receivedAt has one-second resolution: make the new message the newest for sure.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut c = other_client(&g.dovecot.server()).await;
    append(&mut c, "INBOX", "", &message("Fresh", "f1@test", "", "new")).await;
    let _ = c.logout().await;

    let changes = g
        .eventually(5, || async {
            let ch = g
                .call("Email/changes", json!({"sinceState": email_state}))
                .await;
            (ch["created"].as_array().unwrap().len() == 1).then_some(ch)
        })
        .await;
    assert!(changes["updated"].as_array().unwrap().is_empty());
    assert!(changes["destroyed"].as_array().unwrap().is_empty());
    let new_id = changes["created"][0].clone();

    let qc = g
        .call(
            "Email/queryChanges",
            json!({
                "filter": {"inMailbox": inbox},
                "sort": [{"property": "receivedAt", "isAscending": false}],
                "sinceQueryState": query_state,
                "calculateTotal": true
            }),
        )
        .await;
    assert_eq!(qc["total"], json!(6));
    assert_eq!(qc["added"], json!([{"id": new_id, "index": 0}]));
    // The patch applied to the old result gives the new result.
    let now = inbox_view(&g, false).await;
    let mut patched = ids(&before["ids"]);
    patched.insert(0, new_id.as_str().unwrap().to_owned());
    assert_eq!(ids(&now["ids"]), patched);
    assert_eq!(qc["newQueryState"], now["queryState"]);
    assert!(qc["removed"].as_array().unwrap().is_empty() || qc["removed"] == json!([new_id]));
}

#[tokio::test]
async fn import_and_draft_create_land_upstream() {
    let g = MailGateway::start().await;
    let inbox = g.mailbox_id("inbox").await;
    let raw = message("Imported", "imp1@test", "", "imported body");
    let upload = g
        .http
        .post(format!("{}/jmap/upload/{}/", g.base, g.account_id))
        .basic_auth(
            crate::jmap_support::JMAP_USER,
            Some(crate::jmap_support::JMAP_PASSWORD),
        )
        .header("content-type", "message/rfc822")
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    let upload = crate::jmap_support::json_body(upload).await;
    let imported = g
        .call(
            "Email/import",
            json!({"emails": {"i1": {
                "blobId": upload["blobId"], "mailboxIds": {inbox.clone(): true},
                "keywords": {"$seen": true}, "receivedAt": "2026-01-02T03:04:05Z"
            }}}),
        )
        .await;
    let created = &imported["created"]["i1"];
    assert!(created["id"].is_string(), "{imported}");

    let drafts = match g
        .mailboxes()
        .await
        .iter()
        .find(|m| m["role"] == json!("drafts"))
    {
        Some(m) => m["id"].as_str().unwrap().to_owned(),
        None => {
            let r = g
                .call("Mailbox/set", json!({"create": {"d": {"name": "Drafts"}}}))
                .await;
            r["created"]["d"]["id"].as_str().unwrap().to_owned()
        }
    };
    let draft = g
        .call(
            "Email/set",
            json!({"create": {"d1": {
                "mailboxIds": {drafts.clone(): true},
                "keywords": {"$draft": true, "$seen": true},
                "from": [{"name": "Tester", "email": "tester@example.test"}],
                "to": [{"email": "bob@example.test"}],
                "subject": "Draft über",
                "textBody": [{"partId": "t", "type": "text/plain"}],
                "bodyValues": {"t": {"value": "Hello Bob — draft"}}
            }}}),
        )
        .await;
    assert!(draft["created"]["d1"]["id"].is_string(), "{draft}");

    let mut c = other_client(&g.dovecot.server()).await;
    let inbox_msgs = upstream_messages(&mut c, "INBOX").await;
    assert_eq!(inbox_msgs.len(), 1);
    assert!(String::from_utf8_lossy(&inbox_msgs[0].2).contains("Subject: Imported"));
    assert!(inbox_msgs[0].1.iter().any(|f| f.contains("Seen")));
    let drafts_name = g
        .call(
            "Mailbox/get",
            json!({"ids": [drafts], "properties": ["name"]}),
        )
        .await["list"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let draft_msgs = upstream_messages(&mut c, &drafts_name).await;
    assert_eq!(draft_msgs.len(), 1);
    assert!(draft_msgs[0].1.iter().any(|f| f.contains("Draft")));
    let _ = c.logout().await;
}

/// `text` and `body` are answered by Dovecot's own search (UID SEARCH TEXT/BODY), so a word
/// that only occurs past the preview is found, in every mailbox or in one, and non-ASCII
/// terms reach the server intact.
#[tokio::test]
async fn full_text_filters_search_upstream() {
    let g = MailGateway::start().await;
    // Past the preview (Dovecot's is about 200 characters, the gateway keeps at most 256).
    let deep = |tail: &str| format!("{}{tail}", "lorem ipsum dolor ".repeat(30));
    let mut c = other_client(&g.dovecot.server()).await;
    for (mailbox, subject, body) in [
        ("INBOX", "Deep one", deep("the Xylophonic word")),
        ("INBOX", "Xylophonic subject", "short body".to_owned()),
        ("INBOX", "Greetings", deep("Viele Grüße")),
        ("Archive", "Deep two", deep("xylophonic again")),
    ] {
        let id = format!("{}@test", subject.replace(' ', "-"));
        append(&mut c, mailbox, "", &message(subject, &id, "", &body)).await;
    }
    let _ = c.logout().await;
    let inbox = g.mailbox_id("inbox").await;
    let archive = g.mailbox_id("Archive").await;
    g.eventually(20, || async {
        (total_in(&g, &inbox).await == json!(3) && total_in(&g, &archive).await == json!(1))
            .then_some(())
    })
    .await;

    assert_eq!(
        subjects_found(&g, json!({"text": "XYLOPHONIC"})).await,
        vec!["Deep one", "Deep two", "Xylophonic subject"]
    );
    assert_eq!(
        subjects_found(&g, json!({"body": "xylophonic"})).await,
        vec!["Deep one", "Deep two"]
    );
    assert_eq!(
        subjects_found(&g, json!({"body": "xylophonic", "inMailbox": inbox})).await,
        vec!["Deep one"]
    );
    assert_eq!(
        subjects_found(&g, json!({"text": "\"the xylophonic word\" lorem"})).await,
        vec!["Deep one"]
    );
    assert_eq!(
        subjects_found(&g, json!({"body": "grüße"})).await,
        vec!["Greetings"]
    );
    assert!(
        subjects_found(&g, json!({"body": "subject"}))
            .await
            .is_empty()
    );
}

async fn total_in(g: &MailGateway, mailbox: &str) -> Value {
    g.call(
        "Email/query",
        json!({"filter": {"inMailbox": mailbox}, "calculateTotal": true}),
    )
    .await["total"]
        .clone()
}

/// The subjects of the Emails an Email/query with `filter` finds, sorted; checks that none
/// of them has the full-text test word in its preview (so a match was not a preview match).
async fn subjects_found(g: &MailGateway, filter: Value) -> Vec<String> {
    let q = g.call("Email/query", json!({ "filter": filter })).await;
    let got = g
        .call(
            "Email/get",
            json!({"ids": q["ids"], "properties": ["subject", "preview"]}),
        )
        .await;
    let list = got["list"].as_array().unwrap().clone();
    for e in &list {
        let preview = e["preview"].as_str().unwrap().to_lowercase();
        assert!(!preview.contains("xylophonic"), "{e}");
    }
    let mut s: Vec<String> = list
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect();
    s.sort();
    s
}

/// An account configured with `auth = "xoauth2"` and its token in a file: the gateway logs
/// in with the token and reads the file again for each new connection, so a token rewritten
/// by a refresher is used without a restart.
#[tokio::test]
async fn an_oauth_account_logs_in_with_the_token_file_and_follows_its_updates() {
    const OAUTH_USER: &str = "oauthuser";
    use base64::Engine;
    let key = b"a key shared with the test Dovecot".to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
    // A second user for the OAuth account: the same login twice would be one account.
    let users = format!("{USER}:{PASSWORD} {OAUTH_USER}:unused-password");
    let dovecot =
        PrivateDovecot::start_with_env(&[("DOVECOT_OAUTH2_KEY", &b64), ("DOVECOT_USERS", &users)]);
    let tokens = tempfile::tempdir().unwrap();
    let token_file = tokens.path().join("token");
    // Short-lived, so the later reconnection can only succeed with the refreshed token.
    let first_lifetime = 15;
    let expires = std::time::Instant::now() + std::time::Duration::from_secs(first_lifetime + 1);
    std::fs::write(
        &token_file,
        oauth_token(&key, OAUTH_USER, first_lifetime as i64) + "\n",
    )
    .unwrap();
    let g = MailGateway::start_on(
        dovecot,
        |_| {},
        |d| {
            format!(
                "[[users.accounts]]\nkind = \"imap\"\nname = \"OAuth\"\nhost = \"127.0.0.1\"\n\
                 port = {}\ntls = \"none\"\nusername = \"{OAUTH_USER}\"\nauth = \"xoauth2\"\n\
                 password = {{ file = {:?} }}\n",
                d.imap_port,
                token_file.display().to_string()
            )
        },
    )
    .await;
    let ids = g.account_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let oauth = ids.iter().find(|a| **a != g.account_id).unwrap().clone();
    let boxes = g.mailboxes_in(&oauth).await;
    assert!(
        boxes.iter().any(|m| m["role"] == json!("inbox")),
        "{boxes:?}"
    );

    // The token expires and the refresher writes a new one; every connection drops with
    // the server restart, and new mail still arrives over the new logins.
    tokio::time::sleep_until(expires.into()).await;
    std::fs::write(&token_file, oauth_token(&key, OAUTH_USER, 600)).unwrap();
    g.dovecot.restart();
    let mut c = imap::connect(
        &g.dovecot.server(),
        &imap::Credentials {
            username: OAUTH_USER.into(),
            password: upstream::Secret::new("unused-password".into()),
        },
    )
    .await
    .unwrap();
    append(
        &mut c,
        "INBOX",
        "",
        &message("After refresh", "refresh@x", "", "hi"),
    )
    .await;
    let inbox = g.mailbox_id_in(&oauth, "inbox").await;
    g.eventually(60, || async {
        let q = g
            .call_in(
                &oauth,
                "Email/query",
                json!({"filter": {"inMailbox": inbox}}),
            )
            .await;
        (q["ids"].as_array()?.len() == 1).then_some(())
    })
    .await;
}
