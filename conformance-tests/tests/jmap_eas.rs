//! An ActiveSync account through the whole gateway: one JMAP user with an IMAP account (a
//! private Dovecot) and an EAS account (the shared SOGo stack, alice, a DeviceId of this
//! test's own). Changes upstream are made through the stack's Dovecot by python3 imaplib.

use std::time::Instant;

use serde_json::json;

use crate::eas_adapter::{imap, make_mailbox, message, unique};
use crate::jmap_support::{EventStream, MailGateway};

fn eas_account_toml(test: &str) -> String {
    let s = conformance_tests::sogo();
    let device: String = unique(test)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    format!(
        "[[users.accounts]]\nkind = \"eas\"\nname = \"Test SOGo\"\nurl = \"{}\"\n\
         username = \"{}\"\npassword = \"{}\"\ndevice_id = \"{device}\"\n\
         address = \"alice@example.test\"\n",
        s.url,
        s.users[0].name,
        s.users[0].password.expose()
    )
}

/// The subjects of the Emails in mailbox `mailbox` of `account`.
async fn subjects(g: &MailGateway, account: &str, mailbox: &str) -> Vec<(String, String)> {
    let r = g
        .api_in(
            account,
            json!([
                ["Email/query", {"filter": {"inMailbox": mailbox},
                                 "sort": [{"property": "receivedAt"}]}, "q"],
                ["Email/get", {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                               "properties": ["subject"]}, "g"]
            ]),
        )
        .await;
    assert_eq!(r[1][0], json!("Email/get"), "{r:?}");
    let mut out: Vec<(String, String)> = r[1][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["subject"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

#[tokio::test]
async fn one_user_sees_imap_and_eas_and_eas_mail_is_pushed_and_moved() {
    let folder = unique("jmapeas");
    let target = unique("jmapeasto");
    make_mailbox(&folder, &folder, 2, |_| "()");
    make_mailbox(&target, &target, 0, |_| "()");
    let g = MailGateway::start_full(|_| {}, &eas_account_toml("jmapeas")).await;

    // One session, both accounts, both JMAP Mail.
    let session = g.session().await;
    let ids = g.account_ids();
    assert_eq!(ids.len(), 2);
    let eas = ids[1].clone();
    for id in &ids {
        let caps = &session["accounts"][id]["accountCapabilities"];
        assert!(caps["urn:ietf:params:jmap:mail"].is_object(), "{session}");
        assert!(caps["urn:ietf:params:jmap:submission"].is_object() || id == &ids[0]);
    }
    let eas_boxes = g.mailboxes_in(&eas).await;
    assert!(eas_boxes.iter().any(|m| m["role"] == json!("inbox")));
    assert!(
        eas_boxes
            .iter()
            .all(|m| m["name"] != json!("Calendar") && m["name"] != json!("Contacts")),
        "non-mail folders stay out of the Mail model: {eas_boxes:?}"
    );
    let imap_boxes = g.mailboxes().await;
    assert!(imap_boxes.iter().any(|m| m["role"] == json!("inbox")));

    let mbox = g.mailbox_id_in(&eas, &folder).await;
    let first = subjects(&g, &eas, &mbox).await;
    assert_eq!(
        first.iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
        [format!("{folder}-0"), format!("{folder}-1")]
    );

    // New mail in the EAS folder reaches an EventSource subscriber as a StateChange.
    let mut events = EventStream::open(&g).await;
    let sent = Instant::now();
    imap(
        0,
        &format!(
            "m.append({folder:?}, None, None, b\"{}\")",
            message(7, &format!("{folder}-new"))
        ),
    );
    let change = events
        .next_state_change(60, |changed| changed[&eas]["Email"].is_string())
        .await;
    println!(
        "EAS new mail → JMAP StateChange in {:?}: {change}",
        sent.elapsed()
    );
    let now = g
        .eventually(10, || async {
            let s = subjects(&g, &eas, &mbox).await;
            (s.len() == 3).then_some(s)
        })
        .await;
    let (new_id, _) = now
        .iter()
        .find(|(_, s)| s == &format!("{folder}-new"))
        .unwrap()
        .clone();

    // A move changes the item's ServerId upstream; the Email id stays.
    let to = g.mailbox_id_in(&eas, &target).await;
    let set = g
        .call_in(
            &eas,
            "Email/set",
            json!({"update": {new_id.clone(): {"mailboxIds": {to.clone(): true}}}}),
        )
        .await;
    assert!(
        set["updated"].as_object().unwrap().contains_key(&new_id),
        "{set}"
    );
    let moved = subjects(&g, &eas, &to).await;
    assert_eq!(moved, vec![(new_id.clone(), format!("{folder}-new"))]);
    let got = g
        .call_in(
            &eas,
            "Email/get",
            json!({"ids": [new_id], "properties": ["mailboxIds"]}),
        )
        .await;
    assert_eq!(got["list"][0]["mailboxIds"], json!({to: true}));
    let upstream = imap(
        0,
        &format!("m.select({target:?})\nprint(m.search(None, 'ALL')[1][0].decode())"),
    );
    assert_eq!(upstream.split_whitespace().count(), 1, "{upstream}");

    // Read state written through to the EAS server shows up over IMAP.
    let set = g
        .call_in(
            &eas,
            "Email/set",
            json!({"update": {new_id.clone(): {"keywords/$seen": true}}}),
        )
        .await;
    assert!(set["updated"].is_object(), "{set}");
    let flags = imap(
        0,
        &format!("m.select({target:?})\nprint(m.fetch('1', '(FLAGS)')[1][0].decode())"),
    );
    assert!(flags.contains("\\Seen"), "{flags}");
}

/// EAS Sync reports parsed fields, so the stored header block of an EAS Email is synthesised
/// and has no Message-ID, In-Reply-To or References, and its Date is the arrival time. Email/get
/// answers those from the raw message (ItemOperations, then the blob cache), so a client can
/// thread a reply; a list view still reads the store alone.
#[tokio::test]
async fn an_eas_email_has_the_message_ids_and_date_of_its_raw_message() {
    let folder = unique("jmapeashdr");
    make_mailbox(&folder, &folder, 0, |_| "()");
    let raw = format!(
        "From: Bob <bob@example.test>\\r\\nSender: Assistant <assistant@example.test>\\r\\n\
         To: Alice <alice@example.test>\\r\\nSubject: Re: {folder}\\r\\n\
         Date: Tue, 24 Nov 2026 09:15:00 -0500\\r\\n\
         Message-ID: <{folder}.reply@example.test>\\r\\n\
         In-Reply-To: <{folder}.parent@example.test>\\r\\n\
         References: <{folder}.root@example.test>\\r\\n <{folder}.parent@example.test>\\r\\n\
         X-Conformance: {folder}\\r\\n\\r\\nSee you there.\\r\\n"
    );
    imap(0, &format!("m.append({folder:?}, None, None, b\"{raw}\")"));
    let g = MailGateway::start_full(|_| {}, &eas_account_toml("jmapeashdr")).await;
    let eas = g.account_ids()[1].clone();
    let mbox = g.mailbox_id_in(&eas, &folder).await;
    let listed = g
        .eventually(60, || async {
            let s = subjects(&g, &eas, &mbox).await;
            (s.len() == 1).then_some(s)
        })
        .await;
    assert_eq!(listed[0].1, format!("Re: {folder}"));
    let id = listed[0].0.clone();

    let got = g
        .call_in(
            &eas,
            "Email/get",
            json!({"ids": [id.clone()],
                   "properties": ["messageId", "inReplyTo", "references", "sentAt", "sender",
                                  "receivedAt", "subject", "from", "header:X-Conformance"]}),
        )
        .await;
    let e = &got["list"][0];
    assert_eq!(
        e["messageId"],
        json!([format!("{folder}.reply@example.test")]),
        "{got}"
    );
    assert_eq!(
        e["inReplyTo"],
        json!([format!("{folder}.parent@example.test")]),
        "{got}"
    );
    assert_eq!(
        e["references"],
        json!([
            format!("{folder}.root@example.test"),
            format!("{folder}.parent@example.test")
        ]),
        "{got}"
    );
    assert_eq!(e["sentAt"], json!("2026-11-24T09:15:00-05:00"), "{got}");
    // SOGo's DateReceived is this same instant in UTC, so the synthesised Date would have
    // given "2026-11-24T14:15:00Z": the sender's offset shows sentAt is the message's own.
    assert_eq!(e["receivedAt"], json!("2026-11-24T14:15:00Z"), "{got}");
    assert_eq!(
        e["sender"],
        json!([{"name": "Assistant", "email": "assistant@example.test"}]),
        "{got}"
    );
    assert_eq!(
        e["header:X-Conformance"],
        json!(format!(" {folder}")),
        "{got}"
    );
    assert_eq!(e["subject"], json!(format!("Re: {folder}")));
    assert_eq!(
        e["from"],
        json!([{"name": "Bob", "email": "bob@example.test"}]),
        "{got}"
    );
}

/// An EAS account cannot store a message (no Sync Add for email), yet it can send: the draft
/// Email/set creates is kept by the gateway alone, EmailSubmission sends it through SendMail
/// (SOGo files the Sent copy) and onSuccessDestroyEmail removes it. Email/import, which
/// would need the server to store the message, is refused with a SetError saying so.
#[tokio::test]
async fn an_eas_draft_is_kept_locally_then_sent_to_bob_with_a_copy_in_sent() {
    let g = MailGateway::start_full(|_| {}, &eas_account_toml("jmapeasdraft")).await;
    let eas = g.account_ids()[1].clone();
    let drafts = g.mailbox_id_in(&eas, "drafts").await;
    let subject = unique("jmapeasdraft");
    let identity = g.call_in(&eas, "Identity/get", json!({"ids": null})).await["list"][0].clone();
    assert_eq!(identity["email"], json!("alice@example.test"), "{identity}");

    let r = g
        .api_in(
            &eas,
            json!([
                ["Email/set", {"create": {"d": {
                    "mailboxIds": {drafts.clone(): true},
                    "keywords": {"$draft": true, "$seen": true},
                    "from": [{"name": "Alice", "email": "alice@example.test"}],
                    "to": [{"name": "Bob", "email": "bob@example.test"}],
                    "subject": subject,
                    "bodyValues": {"t": {"value": "Hello Bob, from an EAS draft."}},
                    "textBody": [{"partId": "t", "type": "text/plain"}]
                }}}, "0"],
                ["Email/get", {"ids": ["#d"], "fetchTextBodyValues": true,
                               "properties": ["subject", "mailboxIds", "keywords",
                                              "bodyValues", "textBody"]}, "1"],
                ["Email/import", {"emails": {"i": {"blobId": "#d",
                                                   "mailboxIds": {drafts.clone(): true}}}}, "2"]
            ]),
        )
        .await;
    let id = r[0][1]["created"]["d"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the draft is created: {r:?}"))
        .to_owned();
    let got = &r[1][1]["list"][0];
    assert_eq!(got["subject"], json!(subject), "{r:?}");
    assert_eq!(got["mailboxIds"], json!({drafts.clone(): true}));
    assert_eq!(got["keywords"], json!({"$draft": true, "$seen": true}));
    let part = got["textBody"][0]["partId"].as_str().unwrap();
    assert_eq!(
        got["bodyValues"][part]["value"],
        json!("Hello Bob, from an EAS draft.")
    );
    let refused = &r[2][1]["notCreated"]["i"];
    assert_eq!(refused["type"], json!("forbidden"), "{r:?}");
    assert!(
        refused["description"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot store messages"),
        "{refused}"
    );

    let r = g
        .api_in(
            &eas,
            json!([["EmailSubmission/set", {
                "create": {"k": {"identityId": identity["id"], "emailId": id}},
                "onSuccessDestroyEmail": ["#k"]
            }, "0"]]),
        )
        .await;
    assert!(r[0][1]["created"]["k"]["id"].is_string(), "{r:?}");
    assert_eq!(r[1][0], json!("Email/set"), "{r:?}");
    assert_eq!(r[1][1]["destroyed"], json!([id.clone()]), "{r:?}");

    // Bob gets it (SOGo → the stack's SMTP sink → bob's INBOX); alice's Sent has the copy.
    let search = |user: usize, mailbox: &str| {
        imap(
            user,
            &format!("m.select({mailbox:?})\nprint(m.search(None, 'SUBJECT', {subject:?})[1])"),
        )
    };
    let started = Instant::now();
    loop {
        let bob = search(1, "INBOX");
        let sent = search(0, "Sent");
        if !bob.contains("[b'']") && !sent.contains("[b'']") {
            println!(
                "EmailSubmission → bob's INBOX and alice's Sent in {:?}",
                started.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "after 30 s: bob INBOX {bob}, alice Sent {sent}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let body = imap(
        1,
        &format!(
            "m.select('INBOX')\nn = m.search(None, 'SUBJECT', {subject:?})[1][0].split()[-1]\n\
             print(m.fetch(n, '(BODY.PEEK[])')[1][0][1].decode())"
        ),
    );
    assert!(body.contains("Hello Bob, from an EAS draft."), "{body}");
    assert!(!body.to_ascii_lowercase().contains("\nbcc:"), "{body}");

    // The local draft is gone.
    let got = g
        .call_in(&eas, "Email/get", json!({"ids": [id.clone()]}))
        .await;
    assert_eq!(got["notFound"], json!([id]), "{got}");
    let in_drafts = subjects(&g, &eas, &drafts).await;
    assert!(
        in_drafts.iter().all(|(_, s)| s != &subject),
        "{in_drafts:?}"
    );
}

/// A reply, sent through EmailSubmission, to a message held in alice's INBOX goes out as
/// SmartReply naming it: bob gets the reply exactly as written (SOGo does not append the
/// original, since ReplaceMime is set), and SOGo marks the original `\Answered`, which only
/// SmartReply does (SendMail marks nothing). The gateway re-syncs the original's mailbox after
/// the send, so the original is `$answered` as soon as the call returns.
#[tokio::test]
async fn a_reply_to_a_held_message_goes_out_as_smart_reply_and_marks_the_original_answered() {
    let token = unique("jmapeasreply");
    imap(
        0,
        &format!("m.append('INBOX', None, None, b\"{}\")", message(0, &token)),
    );
    let original_mid = format!("{token}.0@example.test");
    let g = MailGateway::start_full(|_| {}, &eas_account_toml("jmapeasreply")).await;
    let eas = g.account_ids()[1].clone();
    let inbox = g.mailbox_id_in(&eas, "inbox").await;
    let drafts = g.mailbox_id_in(&eas, "drafts").await;
    let find = |subject: String| {
        let g = &g;
        let (eas, inbox) = (eas.clone(), inbox.clone());
        async move {
            let r = g
                .api_in(
                    &eas,
                    json!([
                        ["Email/query", {"filter": {"inMailbox": inbox, "subject": subject}}, "q"],
                        ["Email/get", {"#ids": {"resultOf": "q", "name": "Email/query",
                                                "path": "/ids"},
                                       "properties": ["messageId", "keywords"]}, "g"]
                    ]),
                )
                .await;
            r[1][1]["list"].as_array().cloned().unwrap_or_default()
        }
    };
    let original = g
        .eventually(60, || async {
            find(token.clone()).await.into_iter().next()
        })
        .await;
    // EAS Sync reports no Message-ID, so the store does not know it; Email/get reads it from
    // the raw message, and EmailSubmission finds the original all the same.
    assert_eq!(original["messageId"], json!([original_mid]), "{original}");
    assert!(
        original["keywords"].get("$answered").is_none(),
        "{original}"
    );
    let original_id = original["id"].as_str().unwrap().to_owned();
    let identity = g.call_in(&eas, "Identity/get", json!({"ids": null})).await["list"][0].clone();

    let reply_text = format!("Thanks, {token}, I'll be there.");
    let r = g
        .api_in(
            &eas,
            json!([
                ["Email/set", {"create": {"d": {
                    "mailboxIds": {drafts: true},
                    "keywords": {"$draft": true, "$seen": true},
                    "from": [{"name": "Alice", "email": "alice@example.test"}],
                    "to": [{"name": "Bob", "email": "bob@example.test"}],
                    "subject": format!("Re: {token}"),
                    "inReplyTo": [original_mid],
                    "references": [original_mid],
                    "bodyValues": {"t": {"value": reply_text}},
                    "textBody": [{"partId": "t", "type": "text/plain"}]
                }}}, "0"],
                ["EmailSubmission/set", {
                    "create": {"k": {"identityId": identity["id"], "emailId": "#d"}},
                    "onSuccessDestroyEmail": ["#k"]
                }, "1"],
                ["Email/get", {"ids": [original_id.clone()], "properties": ["keywords"]}, "2"]
            ]),
        )
        .await;
    assert!(r[1][1]["created"]["k"]["id"].is_string(), "{r:?}");
    assert_eq!(r[2][0], json!("Email/set"), "{r:?}");
    assert!(
        r[2][1]["destroyed"]
            .as_array()
            .is_some_and(|d| d.len() == 1),
        "{r:?}"
    );
    // Marked upstream by SOGo, and already in the store when the request returns.
    assert_eq!(r[3][0], json!("Email/get"), "{r:?}");
    assert_eq!(
        r[3][1]["list"][0]["keywords"]["$answered"],
        json!(true),
        "{r:?}"
    );
    let flags = imap(
        0,
        &format!(
            "m.select('INBOX')\nn = m.search(None, 'HEADER', 'Message-ID', {original_mid:?})[1][0].split()[-1]\n\
             print(m.fetch(n, '(FLAGS)')[1][0].decode())"
        ),
    );
    assert!(flags.contains("\\Answered"), "{flags}");

    // Bob gets the reply once, as written, without the original appended.
    let search = format!("m.select('INBOX')\nprint(m.search(None, 'SUBJECT', '{token}')[1])");
    let started = Instant::now();
    while imap(1, &search).contains("[b'']") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "no reply in bob's INBOX"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let body = imap(
        1,
        &format!(
            "m.select('INBOX')\nfor n in m.search(None, 'SUBJECT', '{token}')[1][0].split(): \
             print(m.fetch(n, '(BODY.PEEK[])')[1][0][1].decode())"
        ),
    );
    assert_eq!(body.matches(&reply_text).count(), 1, "{body}");
    assert!(!body.contains(&format!("Body of {token}-0.")), "{body}");
    assert!(!body.contains(&format!("Body of {token}.")), "{body}");
    assert!(
        body.contains(&format!("In-Reply-To: <{original_mid}>")),
        "{body}"
    );

    // Clean up alice's INBOX and Sent and bob's INBOX.
    for (user, mailbox) in [(0, "INBOX"), (0, "Sent"), (1, "INBOX")] {
        imap(
            user,
            &format!(
                "m.select({mailbox:?})\nfor n in m.search(None, 'SUBJECT', {token:?})[1][0].split(): \
                 m.store(n, '+FLAGS', '\\\\Deleted')\nm.expunge()"
            ),
        );
    }
}
