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
