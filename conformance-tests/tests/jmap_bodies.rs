//! Whole messages through the gateway: Email/get of real MIME stored on Dovecot (alternatives,
//! attachments, legacy charsets, encoded words) and their blob downloads; mailbox management
//! and submission with its Sent copy, each checked upstream by an independent IMAP client.

use futures::TryStreamExt;
use serde_json::{Value, json};

use crate::imap_support::{append, other_client, upstream_messages};
use crate::jmap_client::SmtpSink;
use crate::jmap_support::{JMAP_PASSWORD, JMAP_USER, MailGateway, json_body};

const ALTERNATIVE: &str = "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.test>\r\n\
To: tester@example.test\r\n\
Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=\r\n\
Date: Tue, 03 Feb 2026 09:15:00 +0100\r\n\
Message-ID: <alt@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Sch=F6ne Gr=FC=DFe!\r\n\
--inner\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Sch\u{f6}ne Gr\u{fc}\u{df}e!</p>\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: application/pdf\r\n\
Content-Disposition: attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK\r\n\
--outer--\r\n";

const CP1252: &[u8] = b"From: shop@example.test\r\n\
To: tester@example.test\r\n\
Subject: =?windows-1252?Q?Preis_=80_99?=\r\n\
Date: Wed, 04 Feb 2026 10:00:00 +0000\r\n\
Message-ID: <cp1252@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=windows-1252\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Nur \x80 99 \x96 \x84g\xfcnstig\x93.\r\n";

const PDF: &[u8] = b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n";

async fn email_by_message_id(g: &MailGateway, msgid: &str, properties: Value) -> Value {
    let inbox = g.mailbox_id("inbox").await;
    let r = g
        .api(json!([
            ["Email/query", {"filter": {"inMailbox": inbox}}, "q"],
            ["Email/get", {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                           "properties": ["messageId"]}, "g"]
        ]))
        .await;
    let id = r[1][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["messageId"] == json!([msgid]))
        .unwrap_or_else(|| panic!("no Email with Message-ID {msgid}: {r:?}"))["id"]
        .clone();
    let mut args = json!({"ids": [id], "fetchAllBodyValues": true});
    args["properties"] = properties;
    let got = g.call("Email/get", args).await;
    got["list"][0].clone()
}

async fn download(g: &MailGateway, blob_id: &str, name: &str) -> (u16, Vec<u8>) {
    let session = g.session().await;
    let url = session["downloadUrl"]
        .as_str()
        .unwrap()
        .replace("{accountId}", &g.account_id)
        .replace("{blobId}", blob_id)
        .replace("{name}", name)
        .replace("{type}", "application/octet-stream");
    let url = if url.starts_with('/') {
        format!("{}{url}", g.base)
    } else {
        url
    };
    let r = g
        .http
        .get(url)
        .basic_auth(JMAP_USER, Some(JMAP_PASSWORD))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn full_email_get_of_real_mime_and_blob_downloads() {
    let g = MailGateway::start().await;
    let mut c = other_client(&g.dovecot.server()).await;
    append(&mut c, "INBOX", "", ALTERNATIVE.as_bytes()).await;
    append(&mut c, "INBOX", "", CP1252).await;
    let _ = c.logout().await;
    g.eventually(10, || async {
        let inbox = g.mailbox_id("inbox").await;
        let q = g
            .call(
                "Email/query",
                json!({"filter": {"inMailbox": inbox}, "calculateTotal": true}),
            )
            .await;
        (q["total"] == json!(2)).then_some(())
    })
    .await;

    let e = email_by_message_id(
        &g,
        "alt@example.test",
        json!([
            "subject",
            "from",
            "sentAt",
            "hasAttachment",
            "bodyStructure",
            "textBody",
            "htmlBody",
            "attachments",
            "bodyValues",
            "blobId",
            "size",
            "header:Subject:asText",
            "header:From:asAddresses"
        ]),
    )
    .await;
    assert_eq!(e["subject"], json!("Grüße aus Köln"));
    assert_eq!(e["header:Subject:asText"], json!("Grüße aus Köln"));
    assert_eq!(
        e["from"],
        json!([{"name": "Jörg Müller", "email": "joerg@example.test"}])
    );
    assert_eq!(e["sentAt"], json!("2026-02-03T09:15:00+01:00"));
    assert_eq!(e["hasAttachment"], json!(true));
    assert_eq!(e["bodyStructure"]["type"], json!("multipart/mixed"));
    let text = &e["textBody"][0];
    let html = &e["htmlBody"][0];
    assert_eq!(text["type"], json!("text/plain"));
    assert_eq!(html["type"], json!("text/html"));
    let value = |part: &Value| e["bodyValues"][part["partId"].as_str().unwrap()].clone();
    // The line break before a boundary belongs to the boundary (RFC 2046 §5.1.1).
    assert_eq!(value(text)["value"], json!("Schöne Grüße!"));
    assert_eq!(value(text)["isEncodingProblem"], json!(false));
    assert!(
        value(html)["value"]
            .as_str()
            .unwrap()
            .contains("<p>Schöne Grüße!</p>")
    );
    let attachments = e["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0]["name"], json!("Rechnung März.pdf"));
    assert_eq!(attachments[0]["type"], json!("application/pdf"));
    assert_eq!(attachments[0]["size"], json!(PDF.len()));

    // The attachment's blob downloads decoded; the Email's blob is the raw message.
    let (status, bytes) = download(&g, attachments[0]["blobId"].as_str().unwrap(), "r.pdf").await;
    assert_eq!(status, 200);
    assert_eq!(bytes, PDF);
    let (status, raw) = download(&g, e["blobId"].as_str().unwrap(), "m.eml").await;
    assert_eq!(status, 200);
    assert_eq!(raw, ALTERNATIVE.as_bytes());
    assert_eq!(e["size"], json!(ALTERNATIVE.len()));
    let (status, _) = download(&g, "Bnosuchblob_1", "x").await;
    assert_eq!(status, 404);

    let w = email_by_message_id(
        &g,
        "cp1252@example.test",
        json!(["subject", "textBody", "bodyValues", "preview"]),
    )
    .await;
    assert_eq!(w["subject"], json!("Preis € 99"));
    let part = w["textBody"][0]["partId"].as_str().unwrap();
    assert_eq!(
        w["bodyValues"][part]["value"],
        json!("Nur € 99 – „günstig“.\n"),
        "RFC 8621 §4.1.4: CRLF becomes LF in bodyValues"
    );
    assert!(w["preview"].as_str().unwrap().starts_with("Nur € 99"));
}

/// Upstream mailbox names (by the independent client).
async fn upstream_names(g: &MailGateway) -> Vec<String> {
    let mut c = other_client(&g.dovecot.server()).await;
    let names: Vec<String> = c
        .list(Some(""), Some("*"))
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|n| n.name().to_owned())
        .collect();
    let _ = c.logout().await;
    names
}

#[tokio::test]
async fn mailbox_management_reaches_upstream() {
    let g = MailGateway::start().await;
    let created = g
        .call(
            "Mailbox/set",
            json!({"create": {
                "p": {"name": "Projects"},
                "c": {"name": "2026", "parentId": "#p"}
            }}),
        )
        .await;
    let p = created["created"]["p"]["id"].as_str().unwrap().to_owned();
    let child = created["created"]["c"]["id"].as_str().unwrap().to_owned();
    let names = upstream_names(&g).await;
    assert!(names.iter().any(|n| n == "Projects"), "{names:?}");
    assert!(names.iter().any(|n| n == "Projects/2026"), "{names:?}");

    // Rename the parent: the child follows upstream and both keep their ids.
    let renamed = g
        .call(
            "Mailbox/set",
            json!({"update": {p.clone(): {"name": "Clients"}}}),
        )
        .await;
    assert!(
        renamed["updated"].as_object().unwrap().contains_key(&p),
        "{renamed}"
    );
    let names = upstream_names(&g).await;
    assert!(names.iter().any(|n| n == "Clients/2026"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("Projects")),
        "{names:?}"
    );
    let got = g
        .call(
            "Mailbox/get",
            json!({"ids": [p, child], "properties": ["name", "parentId"]}),
        )
        .await;
    assert_eq!(got["list"][0]["name"], json!("Clients"));
    assert_eq!(got["list"][1]["name"], json!("2026"));
    assert_eq!(got["list"][1]["parentId"], json!(p));

    // A parent with a child cannot go; the child can, then the parent.
    let refused = g.call("Mailbox/set", json!({"destroy": [p]})).await;
    assert_eq!(
        refused["notDestroyed"][&p]["type"],
        json!("mailboxHasChild")
    );
    let gone = g
        .call(
            "Mailbox/set",
            json!({"destroy": [child.clone(), p.clone()]}),
        )
        .await;
    assert_eq!(gone["destroyed"].as_array().unwrap().len(), 2, "{gone}");
    let names = upstream_names(&g).await;
    assert!(!names.iter().any(|n| n.starts_with("Clients")), "{names:?}");
}

#[tokio::test]
async fn submission_reaches_smtp_and_files_a_sent_copy() {
    let smtp = SmtpSink::start().await;
    let g = MailGateway::start_with_smtp(|_| {}, smtp.port).await;
    let drafts = g.mailbox_id("drafts").await;
    let sent = g.mailbox_id("sent").await;
    let identity = g.call("Identity/get", json!({"ids": null})).await["list"][0].clone();
    assert_eq!(identity["email"], json!("tester@example.test"));
    let r = g
        .api(json!([
            ["Email/set", {"create": {"d": {
                "mailboxIds": {drafts.clone(): true},
                "keywords": {"$draft": true, "$seen": true},
                "from": [{"email": "tester@example.test"}],
                "to": [{"email": "bob@example.test"}],
                "bcc": [{"email": "hidden@example.test"}],
                "subject": "Sent through JMAP",
                "textBody": [{"partId": "t", "type": "text/plain"}],
                "bodyValues": {"t": {"value": "Hello Bob"}}
            }}}, "0"],
            ["EmailSubmission/set", {
                "create": {"s": {"identityId": identity["id"], "emailId": "#d"}},
                "onSuccessDestroyEmail": ["#s"]
            }, "1"]
        ]))
        .await;
    assert_eq!(r[1][0], json!("EmailSubmission/set"), "{r:?}");
    assert!(r[1][1]["created"]["s"]["id"].is_string(), "{r:?}");
    assert_eq!(r[2][0], json!("Email/set"), "the implicit destroy: {r:?}");

    let deliveries = smtp.deliveries();
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert_eq!(d.mail_from, "tester@example.test");
    let mut rcpt = d.rcpt_to.clone();
    rcpt.sort();
    assert_eq!(rcpt, ["bob@example.test", "hidden@example.test"]);
    let data = String::from_utf8_lossy(&d.data);
    assert!(data.contains("Subject: Sent through JMAP"), "{data}");
    assert!(
        !data.to_ascii_lowercase().contains("bcc:"),
        "Bcc is not sent: {data}"
    );

    // The Sent copy is upstream (Bcc kept), and the draft is gone.
    let mut c = other_client(&g.dovecot.server()).await;
    let sent_name = g
        .call(
            "Mailbox/get",
            json!({"ids": [sent], "properties": ["name"]}),
        )
        .await["list"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let copies = upstream_messages(&mut c, &sent_name).await;
    assert_eq!(copies.len(), 1);
    let header = String::from_utf8_lossy(&copies[0].2);
    assert!(header.contains("Subject: Sent through JMAP"), "{header}");
    assert!(header.to_ascii_lowercase().contains("bcc:"), "{header}");
    let drafts_name = g
        .call(
            "Mailbox/get",
            json!({"ids": [drafts], "properties": ["name"]}),
        )
        .await["list"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(upstream_messages(&mut c, &drafts_name).await.is_empty());
    let _ = c.logout().await;
}

#[tokio::test]
async fn bad_requests_get_specific_errors() {
    let g = MailGateway::start().await;
    let r = g
        .api(json!([
            ["Email/get", {"ids": ["not a valid id!"], "properties": ["subject"]}, "0"],
            ["Email/get", {"ids": [], "properties": ["noSuchProperty"]}, "1"],
            ["Email/query", {"filter": {"noSuchCondition": 1}}, "2"],
            ["Email/query", {"sort": [{"property": "nope"}]}, "3"],
            ["Mailbox/get", {"accountId": "a999", "ids": null}, "4"],
            ["Email/changes", {"sinceState": "garbage"}, "5"]
        ]))
        .await;
    let error = |i: usize| (r[i][0].clone(), r[i][1]["type"].clone());
    // Not an Id at all (RFC 8620 §1.2): the arguments break the type signature.
    assert_eq!(error(0), (json!("error"), json!("invalidArguments")));
    assert_eq!(error(1), (json!("error"), json!("invalidArguments")));
    assert_eq!(error(2), (json!("error"), json!("unsupportedFilter")));
    assert_eq!(error(3), (json!("error"), json!("unsupportedSort")));
    assert_eq!(error(4), (json!("error"), json!("accountNotFound")));
    assert_eq!(error(5), (json!("error"), json!("cannotCalculateChanges")));
    let upload = g
        .http
        .post(format!("{}/jmap/upload/{}/", g.base, g.account_id))
        .basic_auth(JMAP_USER, Some(JMAP_PASSWORD))
        .header("content-type", "message/rfc822")
        .body("this is not a message at all")
        .send()
        .await
        .unwrap();
    let blob = json_body(upload).await["blobId"].clone();
    let inbox = g.mailbox_id("inbox").await;
    let imported = g
        .call(
            "Email/import",
            json!({"emails": {"x": {"blobId": blob, "mailboxIds": {inbox: true}}}}),
        )
        .await;
    assert_eq!(
        imported["notCreated"]["x"]["type"],
        json!("invalidEmail"),
        "{imported}"
    );
}

/// One Quota method call with the Quota capability in `using`; the whole response.
async fn quota_call(g: &MailGateway, method: &str, mut args: Value) -> Value {
    args["accountId"] = json!(g.account_id);
    let using = [
        "urn:ietf:params:jmap:core",
        "urn:ietf:params:jmap:mail",
        "urn:ietf:params:jmap:quota",
    ];
    let r = g
        .http
        .post(format!("{}/jmap/api", g.base))
        .basic_auth(JMAP_USER, Some(JMAP_PASSWORD))
        .header("content-type", "application/json")
        .body(json!({"using": using, "methodCalls": [[method, args, "0"]]}).to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    json_body(r).await["methodResponses"][0].clone()
}

/// The Quota/get list entry with `resourceType`, once the account offers Quota.
async fn quota_of(g: &MailGateway, resource_type: &str) -> Option<(Value, String)> {
    let r = quota_call(g, "Quota/get", json!({"ids": null})).await;
    if r[0] != json!("Quota/get") {
        return None;
    }
    let state = r[1]["state"].as_str()?.to_owned();
    r[1]["list"]
        .as_array()?
        .iter()
        .find(|q| q["resourceType"] == json!(resource_type))
        .map(|q| (q.clone(), state))
}

#[tokio::test]
async fn quota_get_shows_upstream_storage_and_its_growth() {
    let g = MailGateway::start().await;
    // Dovecot's quota root (GETQUOTAROOT INBOX): STORAGE 10 GiB, MESSAGE 1000000.
    let (storage, state) = g.eventually(10, || quota_of(&g, "octets")).await;
    assert_eq!(storage["hardLimit"], json!(10u64 << 30), "{storage}");
    assert_eq!(storage["scope"], json!("account"));
    assert_eq!(storage["name"], json!("User quota"));
    assert_eq!(storage["types"], json!(["Mail"]));
    let (count, _) = quota_of(&g, "count").await.unwrap();
    assert_eq!(count["hardLimit"], json!(1_000_000));
    let session = g.session().await;
    assert!(
        session["capabilities"]
            .as_object()
            .unwrap()
            .contains_key("urn:ietf:params:jmap:quota")
    );
    assert_eq!(
        session["accounts"][&g.account_id]["accountCapabilities"]["urn:ietf:params:jmap:quota"],
        json!({})
    );

    // Another client stores 40 KB; usage follows (Dovecot counts whole KiB).
    let used = storage["used"].as_u64().unwrap();
    let messages = count["used"].as_u64().unwrap();
    let mut raw = b"From: big@example.test\r\nSubject: big\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'x', 40_000));
    raw.extend_from_slice(b"\r\n");
    let mut c = other_client(&g.dovecot.server()).await;
    append(&mut c, "INBOX", "", &raw).await;
    let _ = c.logout().await;
    let grown = g
        .eventually(10, || async {
            let (q, _) = quota_of(&g, "octets").await?;
            (q["used"].as_u64()? >= used + 38 * 1024).then_some(q)
        })
        .await;
    assert_eq!(grown["id"], storage["id"], "the id survives a refresh");
    let (count, _) = quota_of(&g, "count").await.unwrap();
    assert_eq!(count["used"], json!(messages + 1));
    let changes = quota_call(&g, "Quota/changes", json!({"sinceState": state})).await;
    assert_eq!(changes[0], json!("Quota/changes"), "{changes}");
    assert_eq!(
        changes[1]["updatedProperties"],
        json!(["used"]),
        "{changes}"
    );
    let mut updated: Vec<Value> = changes[1]["updated"].as_array().unwrap().clone();
    updated.sort_by_key(|v| v.to_string());
    let mut want = vec![storage["id"].clone(), count["id"].clone()];
    want.sort_by_key(|v| v.to_string());
    assert_eq!(updated, want);
}
